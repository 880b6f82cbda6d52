#!/usr/bin/env bash
# run.sh BIN tls|plain TAG [perf]
set -euo pipefail
BIN=$1 V=$2 TAG=$3 PERF=${4:-}
cd /tmp/tlsprof
D=/dev/shm/tlsprof-dst; rm -rf $D; mkdir -p $D
SARGS=(listen --bind 127.0.0.1:0 --root $D); CARGS=(send --json)
if [[ $V == tls ]]; then SARGS+=(--tls-cert cert.pem --tls-key key.pem); CARGS+=(--tls --ca-cert cert.pem); fi
PRE=(); CPRE=()
if [[ -n $PERF ]]; then PRE=(perf record -e cpu-clock $PERF -o $TAG-server.data --); CPRE=(perf record -e cpu-clock $PERF -o $TAG-client.data --); fi
"${PRE[@]}" $BIN "${SARGS[@]}" > $TAG-server.log 2>&1 &
SP=$!
for _ in $(seq 200); do PORT=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' $TAG-server.log); [[ -n $PORT ]] && break; sleep 0.05; done
SPID=$(pgrep -P $SP -x pareco-base || pgrep -f "^$BIN listen" | head -1 || echo $SP)
[[ -z $PERF ]] && SPID=$SP
"${CPRE[@]}" /usr/bin/time -f '%e %U %S' -o $TAG-client.time $BIN "${CARGS[@]}" src pareco://127.0.0.1:$PORT/x > $TAG-client.out 2>&1
TCK=$(getconf CLK_TCK)
SCPU=$(awk -v t=$TCK '{ sub(/^.*\) /, ""); printf "%.2f %.2f", $12/t, $13/t }' /proc/$SPID/stat)
kill $SPID; wait $SP || true
echo "$TAG $V client(wall user sys): $(cat $TAG-client.time)  server(user sys): $SCPU"
rm -rf $D
