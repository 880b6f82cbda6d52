#!/bin/bash
# usage: ab.sh RUNS [extra client args]; alternates base (port 4777) and new (4778) against one tree
RUNS=$1; shift
export PARECO_TOKEN=t0ken XDG_CACHE_HOME=/tmp/s12/ccache
declare -A BIN=([base]=/work/wt/target-base/release/pareco [new]=/work/main/target/release/pareco)
declare -A PORT=([base]=4777 [new]=4778)
pkill -f "listen --bind 127.0.0.1:477"; sleep 0.5
for v in base new; do
  nohup chrt -f 10 ${BIN[$v]} listen --bind 127.0.0.1:${PORT[$v]} --root /tmp/s12/root --cache-dir /tmp/s12/scache > /tmp/s12/server-$v.log 2>&1 &
done
sleep 1
for v in base new; do SP[${PORT[$v]}]=$(pgrep -f "listen --bind 127.0.0.1:${PORT[$v]}"); done
# warm
for v in base new; do ${BIN[$v]} send /tmp/s12/src/many pareco://127.0.0.1:${PORT[$v]}/many -q "$@"; done
for i in $(seq $RUNS); do
 for v in base new; do
  sp=${SP[${PORT[$v]}]}
  a=$(awk '{print ($14+$15)}' /proc/$sp/stat)
  c=$( { /usr/bin/time -f "%e %U %S" chrt -f 10 ${BIN[$v]} send /tmp/s12/src/many pareco://127.0.0.1:${PORT[$v]}/many -q "$@"; } 2>&1 | tail -1)
  b=$(awk '{print ($14+$15)}' /proc/$sp/stat)
  echo "$v $c $((b-a))" | awk '{printf "%-5s wall %s client %.2f server %.2f total %.2f\n", $1, $2, $3+$4, $5/100, $3+$4+$5/100}'
 done
done
