#!/usr/bin/env bash
# benches/bwlimit.sh: does --bwlimit hold? Runs uploads and downloads of
# SIZE MiB at each RATE with -n N on loopback, samples every 100 ms the
# bytes the sending process has written to its sockets (`wchar` of
# /proc/PID/io: the client's for an upload, the server's for a download;
# both run with --no-cache, so they write nothing else), and reports, over
# the part of the run between 1 % and 99 % of its bytes:
#   - the mean rate against the limit,
#   - the worst 10 s window: the largest deviation from the limit of the
#     bytes moved in any 10 s (sliding, interpolated between samples),
#   - the largest 1 s burst: the most bytes moved in any 1 s, in seconds'
#     worth of the limit (1.00 = exactly the limit),
# and the load average when the run started (the machine is shared).
#
# Usage: benches/bwlimit.sh            (1 GiB at 20M and 100M, -n 8)
# Environment: PARECO_BWLIMIT_MIB (default 1024), PARECO_BWLIMIT_RATES
# (default "20M 100M"), PARECO_BWLIMIT_N (default 8), PARECO_BWLIMIT_WORK
# (default /tmp/pareco-bwlimit), PARECO_BIN (default: build the release
# binary of this checkout).
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
MIB=${PARECO_BWLIMIT_MIB:-1024}
RATES=${PARECO_BWLIMIT_RATES:-"20M 100M"}
N=${PARECO_BWLIMIT_N:-8}
WORK=${PARECO_BWLIMIT_WORK:-/tmp/pareco-bwlimit}

if [[ -z ${PARECO_BIN:-} ]]; then
  (cd "$REPO" && cargo build --release --quiet)
  PARECO_BIN=$REPO/target/release/pareco
fi

mkdir -p "$WORK/src" "$WORK/srv"
# Four incompressible files, made once.
for i in 0 1 2 3; do
  f=$WORK/src/f$i
  if [[ ! -f $f || $(stat -c %s "$f") -ne $((MIB / 4 << 20)) ]]; then
    head -c $((MIB / 4 << 20)) /dev/urandom >"$f"
  fi
done

SERVER_PID=
cleanup() { [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; true; }
trap cleanup EXIT
"$PARECO_BIN" listen --bind 127.0.0.1:0 --root "$WORK/srv" --no-cache 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
  PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$WORK/server.log")
  [[ -n $PORT ]] && break
  sleep 0.1
done
[[ -n ${PORT:-} ]] || { echo "the server did not start" >&2; exit 1; }

# wchar of PID every 100 ms, "seconds bytes" a line, while WATCHED lives.
sample() {
  local pid=$1 watched=$2 out=$3
  : >"$out"
  while kill -0 "$watched" 2>/dev/null; do
    local w
    w=$(awk '/^wchar:/ {print $2}' "/proc/$pid/io" 2>/dev/null) || break
    echo "$(date +%s.%N) $w" >>"$out"
    sleep 0.1
  done
}

analyse() {
  python3 - "$@" <<'EOF'
import sys
samples, rate = sys.argv[1], float(sys.argv[2])
pts = [tuple(map(float, l.split())) for l in open(samples) if l.strip()]
t0, b0 = pts[0]
pts = [(t - t0, b - b0) for t, b in pts]
total = pts[-1][1]
def at(t):
    # bytes written by time t, interpolated between samples
    for (ta, ba), (tb, bb) in zip(pts, pts[1:]):
        if ta <= t <= tb:
            return ba + (bb - ba) * (t - ta) / (tb - ta) if tb > ta else bb
    return pts[-1][1] if t > pts[-1][0] else 0.0
start = next(t for t, b in pts if b >= 0.01 * total)
end = next(t for t, b in pts if b >= 0.99 * total)
def worst(window):
    steps = int((end - start - window) / 0.05)
    moved = [at(start + i * 0.05 + window) - at(start + i * 0.05) for i in range(max(steps, 0) + 1)]
    return moved
tens = worst(10.0) if end - start >= 10.0 else []
ones = worst(1.0)
mean = (at(end) - at(start)) / (end - start)
dev = max((abs(m / 10.0 - rate) / rate for m in tens), default=float("nan"))
burst = max(ones) / rate
print(f"{total / 2**20:.0f} {end - start:.1f} {mean / 2**20:.2f} {(mean - rate) / rate * 100:+.1f} "
      f"{dev * 100:.1f} {burst:.2f} {len(tens)}")
EOF
}

to_bytes() {
  python3 -c "import sys; s=sys.argv[1]; u={'k':1<<10,'m':1<<20,'g':1<<30}; print(int(float(s[:-1])*u[s[-1].lower()]) if s[-1].lower() in u else int(s))" "$1"
}

echo "pareco --bwlimit on loopback: $MIB MiB, -n $N, $(nproc) cores; commit $(git -C "$REPO" rev-parse --short HEAD)"
echo
echo "| direction | --bwlimit | MiB moved | s (1-99 %) | mean MiB/s | mean vs limit | worst 10 s window | largest 1 s (× limit) | load avg at start |"
echo "|---|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
  bytes=$(to_bytes "$rate")
  for way in send recv; do
    rm -rf "$WORK/srv/dst" "$WORK/back"
    if [[ $way == send ]]; then
      # The source must be on the server for the download that follows.
      rm -rf "$WORK/srv/src"
    fi
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    if [[ $way == send ]]; then
      "$PARECO_BIN" send "$WORK/src" "pareco://127.0.0.1:$PORT/src" -n "$N" --bwlimit "$rate" --no-cache -q &
      client=$!
      sample "$client" "$client" "$WORK/samples" &
    else
      "$PARECO_BIN" recv "pareco://127.0.0.1:$PORT/src" "$WORK/back" -n "$N" --bwlimit "$rate" --no-cache -q &
      client=$!
      sample "$SERVER_PID" "$client" "$WORK/samples" &
    fi
    sampler=$!
    wait "$client"
    wait "$sampler" || true
    read -r moved secs mean vs dev burst windows < <(analyse "$WORK/samples" "$bytes")
    echo "| $way | $rate | $moved | $secs | $mean | $vs % | ±$dev % ($windows windows) | $burst | $load |"
  done
done
