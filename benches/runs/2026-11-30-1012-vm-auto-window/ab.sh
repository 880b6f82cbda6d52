#!/bin/bash
# usage: tlsab.sh RUNS VARIANT... ; VARIANT = name:binary:tls(0/1):ENV=..,ENV=..  (env applies to both ends)
RUNS=$1; shift
DATA=/tmp/pareco-tls/data/full/big
for i in $(seq $RUNS); do
 for spec in "$@"; do
  IFS=: read -r name bin tls envs <<< "$spec"
  envarr=(); [[ -n "$envs" ]] && IFS=, read -ra envarr <<< "$envs"
  rm -rf /tmp/s13/root/dst; sync
  args=(listen --bind 127.0.0.1:0 --root /tmp/s13/root --no-cache)
  [[ $tls == 1 ]] && args+=(--tls-cert /tmp/s13/cert.pem --tls-key /tmp/s13/key.pem)
  env "${envarr[@]}" $bin "${args[@]}" > /tmp/s13/srv.log 2>&1 &
  sp=$!
  for _ in $(seq 100); do port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' /tmp/s13/srv.log); [[ -n $port ]] && break; sleep 0.05; done
  cargs=(send --no-cache $CARGS); [[ $tls == 1 ]] && cargs+=(--tls --ca-cert /tmp/s13/cert.pem)
  c=$( { env "${envarr[@]}" /usr/bin/time -f "%e %U %S" $bin "${cargs[@]}" $DATA pareco://127.0.0.1:$port/dst -q ; } 2>&1 | tail -1)
  s=$(awk '{print ($14+$15)}' /proc/$sp/stat); kill $sp; wait $sp 2>/dev/null
  echo "$name $c $s" | awk '{printf "%-12s wall %s client %.2f server %.2f total %.2f\n", $1, $2, $3+$4, $5/100, $3+$4+$5/100}'
 done
done
