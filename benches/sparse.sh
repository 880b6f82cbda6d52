#!/usr/bin/env bash
# benches/sparse.sh: a sparse disk image copied cold over loopback,
# pareco --sparse against rsync --sparse (daemon mode, no ssh): seconds,
# bytes on the wire, bytes the copy takes on disk. See BENCHMARKS.md.
#
# Usage: benches/sparse.sh [SIZE_GIB [DATA_MIB [RUNS]]]
#   SIZE_GIB  apparent size of the image      (default 100; env PARECO_SPARSE_GIB)
#   DATA_MIB  data in it, in runs of 64 MiB   (default 2048; env PARECO_SPARSE_DATA_MIB)
#   RUNS      runs per tool, median reported  (default 3; env PARECO_SPARSE_RUNS)
# Environment: PARECO_BIN (a built binary; else cargo builds --release into
# CARGO_TARGET_DIR, default /tmp/target-bench), PARECO_SPARSE_WORK (default
# /tmp/pareco-sparse-bench; needs about 3 x DATA_MIB free).
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
SIZE_GIB=${1:-${PARECO_SPARSE_GIB:-100}}
DATA_MIB=${2:-${PARECO_SPARSE_DATA_MIB:-2048}}
RUNS=${3:-${PARECO_SPARSE_RUNS:-3}}
WORK=${PARECO_SPARSE_WORK:-/tmp/pareco-sparse-bench}

if [[ -z "${PARECO_BIN:-}" ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
  cargo build --release --manifest-path "$REPO/Cargo.toml" >&2
  PARECO_BIN=$CARGO_TARGET_DIR/release/pareco
fi
command -v rsync >/dev/null || { echo "rsync is needed" >&2; exit 2; }

rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/dst"
IMG=$WORK/src/disk.img

# The image: DATA_MIB of incompressible, deterministic data (AES-CTR of
# zeros) in runs of 64 MiB spread evenly over SIZE_GIB; the rest holes.
truncate -s "${SIZE_GIB}G" "$IMG"
runs=$(( DATA_MIB / 64 ))
step=$(( SIZE_GIB * 1024 / runs ))   # MiB between the starts of two runs
for ((k = 0; k < runs; k++)); do
  { openssl enc -aes-128-ctr -pass "pass:pareco-$k" -nosalt -pbkdf2 < /dev/zero 2>/dev/null || true; } \
    | head -c $(( 64 << 20 )) \
    | dd of="$IMG" bs=1M seek=$(( k * step )) conv=notrunc iflag=fullblock status=none
done
touch -d '2024-01-01 00:00:00' "$IMG"
echo "image: $(stat -c %s "$IMG") bytes apparent, $(( $(stat -c %b "$IMG") * 512 )) allocated" >&2

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }

# pareco: one server for all runs, serving $WORK/dst.
PORT=$(free_port)
"$PARECO_BIN" listen --bind "127.0.0.1:$PORT" --root "$WORK/dst" --no-cache -q 2>"$WORK/listen.log" &
PIDS+=($!)
wait_port "$PORT"

# rsync: a daemon with one writable module on $WORK/dst.
RPORT=$(free_port)
cat > "$WORK/rsyncd.conf" <<CONF
use chroot = no
[dst]
  path = $WORK/dst
  read only = no
  uid = $(id -u)
  gid = $(id -g)
CONF
rsync --daemon --no-detach --config="$WORK/rsyncd.conf" --address=127.0.0.1 --port="$RPORT" \
  --log-file="$WORK/rsyncd.log" &
PIDS+=($!)
wait_port "$RPORT"

now() { date +%s.%N; }
allocated() { echo $(( $(stat -c %b "$WORK/dst/disk.img") * 512 )); }
result() { echo "$1 $2 $3 $4"; }   # tool seconds wire_bytes allocated_bytes

run_pareco() {
  rm -rf "${WORK:?}/dst/"*; sync
  local t0 t1 json
  t0=$(now)
  json=$("$PARECO_BIN" send "$WORK/src" "pareco://127.0.0.1:$PORT/" --sparse --json --no-cache)
  t1=$(now)
  result pareco "$(echo "$t1 - $t0" | bc)" "$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wire_bytes"])')" "$(allocated)"
}

run_rsync() {
  rm -rf "${WORK:?}/dst/"*; sync
  local t0 t1 out sent recv
  t0=$(now)
  out=$(rsync -a -W --sparse --stats "$WORK/src/" "rsync://127.0.0.1:$RPORT/dst/")
  t1=$(now)
  sent=$(echo "$out" | sed -n 's/^Total bytes sent: \([0-9,]*\).*/\1/p' | tr -d ,)
  recv=$(echo "$out" | sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' | tr -d ,)
  result rsync "$(echo "$t1 - $t0" | bc)" $(( sent + recv )) "$(allocated)"
}

for ((r = 1; r <= RUNS; r++)); do
  run_rsync
  run_pareco
done | tee "$WORK/results.txt" >&2

# The last copy, pareco's, has the source's bytes.
cmp "$IMG" "$WORK/dst/disk.img" && echo "pareco's last copy: identical" >&2

python3 - "$WORK/results.txt" "$SIZE_GIB" "$DATA_MIB" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(f"sparse image: {sys.argv[2]} GiB apparent, {sys.argv[3]} MiB of data; cold copy over loopback, median of {len(rows)//2} runs")
print("| tool | s | wire MB | on disk MB |")
print("|---|---:|---:|---:|")
for tool, label in (("pareco", "pareco send --sparse"), ("rsync", "rsync -a -W --sparse (daemon)")):
    mine = [r for r in rows if r[0] == tool]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"| {label} | {med(1):.2f} | {med(2)/1e6:.1f} | {med(3)/1e6:.1f} |")
PY
