#!/usr/bin/env bash
# trace.sh BIN N OUT : one cold 1 GiB upload over nsA->nsB with -n N; samples tunA tx bytes every 0.25 s
set -euo pipefail
BIN=$1 N=$2 OUT=$3
DATA=/tmp/pareco-auto/data/big DST=/tmp/auto-trace/dst
rm -rf $DST; mkdir -p $DST
ip netns exec nsB $BIN listen --no-cache --bind 10.201.0.2:0 --root $DST > $OUT.server 2>&1 &
SP=$!
for i in $(seq 100); do PORT=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' $OUT.server); [[ -n "$PORT" ]] && break; sleep 0.05; done
ip netns exec nsA python3 -c '
import time,sys
t0=time.time()
while True:
    for l in open("/proc/net/dev"):
        if "tunA" in l: b=int(l.split(":")[1].split()[8])
    print(f"{time.time()-t0:.3f} {b}", flush=True); time.sleep(0.25)
' > $OUT.samples &
PP=$!
/usr/bin/time -f '%e %U %S' -o $OUT.time ip netns exec nsA timeout 60 $BIN send --no-cache -vv -n $N $DATA pareco://10.201.0.2:$PORT/run > $OUT.out 2> $OUT.err || true
kill $PP $SP; wait 2>/dev/null || true
cat $OUT.time
