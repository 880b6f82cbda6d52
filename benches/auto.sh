#!/usr/bin/env bash
# benches/auto.sh: does `-n auto` reach the best fixed -n? (issue 12)
#
# A 1 GiB upload (8 files x 128 MiB, the same AES-CTR keystreams as compare.sh's
# scenario 1 and faults.sh), cold (destination emptied before every run, --no-cache on
# both sides), for -n in 1 2 4 8 16 32 auto, the N values alternating within a round,
# on up to three links:
#   loopback        127.0.0.1, client and server in the root namespace
#   wan-loss        netns.sh up --delay 25ms --loss 0.1% --rate 1gbit   (bbr, the host's)
#   wan-loss-cubic  the same with --cc cubic
# On the WAN links the server runs in nsB (10.201.0.2) and the client in nsA, as in
# compare.sh and faults.sh. Per link: median wall time, MB/s, % of the best fixed -n,
# the N `-n auto` settled on (from -v), and the verdict (auto >= 90 % of the best?).
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
CMDLINE="$0 $*"

usage() {
  cat <<EOF
Usage: benches/auto.sh --pareco BIN [options]      (needs root for the WAN links)

  --pareco BIN        the pareco binary to measure (required)
  --links LIST        loopback,wan-loss,wan-loss-cubic                [all three]
  --ns LIST           the -n values, 'auto' among them     [1,2,4,8,16,32,auto]
  --runs N            rounds on loopback and wan-loss                       [3]
  --cubic-runs N      rounds on wan-loss-cubic                              [2]
  --timeout SEC       kill a client run after this long (it counts as > SEC) [120]
  --work DIR          data and destination                  [/tmp/pareco-auto]
  --out DIR           results (raw logs per run, results.md)   [WORK/results/STAMP]
  --wait REGEX        before every run, wait while pgrep -f REGEX finds a process
                      other than this script (poll every 30 s)
                      [benches/(compare|faults|tls)\.sh]
  --wait-max SEC      give up waiting after SEC s in all (and say so)     [1200]
  -h, --help          this text

The data (8 x 128 MiB) is generated once into WORK/data and reused.
Environment: PARECO_BENCH_NETNS (netns.sh, default <repo>/../shared/wan/netns.sh).
EOF
}
BENCH=auto.sh
source "$REPO/benches/lib.sh"

PARECO="" LINKS=loopback,wan-loss,wan-loss-cubic NS_LIST=1,2,4,8,16,32,auto RUNS=3 CUBIC_RUNS=2
TIMEOUT=120 WORK=/tmp/pareco-auto OUT="" WAIT_RE='benches/(compare|faults|tls)\.sh' WAIT_MAX=1200
NETNS=${PARECO_BENCH_NETNS:-$REPO/../shared/wan/netns.sh}
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --pareco) PARECO=${2:?}; shift 2 ;;
    --links) LINKS=${2:?}; shift 2 ;;
    --ns) NS_LIST=${2:?}; shift 2 ;;
    --runs) RUNS=${2:?}; shift 2 ;;
    --cubic-runs) CUBIC_RUNS=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --work) WORK=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --wait) WAIT_RE=${2?}; shift 2 ;;
    --wait-max) WAIT_MAX=${2:?}; shift 2 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ -n "$PARECO" && -x "$PARECO" ]] || die "--pareco BIN is required (an executable)"
PARECO=$(readlink -f "$PARECO")
for v in RUNS CUBIC_RUNS TIMEOUT WAIT_MAX; do [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v wants an integer"; done
IFS=, read -r -a LINK_ARR <<< "$LINKS"
IFS=, read -r -a NS_ARR <<< "$NS_LIST"
for l in "${LINK_ARR[@]}"; do case $l in loopback|wan-loss|wan-loss-cubic) ;; *) die "unknown link $l" ;; esac; done
for n in "${NS_ARR[@]}"; do [[ $n == auto || $n =~ ^[1-9][0-9]*$ ]] || die "bad -n value $n"; done
[[ $LINKS == loopback || $EUID -eq 0 ]] || die "the WAN links need root (network namespaces)"

mkdir -p "$WORK"; WORK=$(readlink -f "$WORK")
STAMP=$(date -u +%Y%m%d-%H%M%S)
[[ -n "$OUT" ]] || OUT=$WORK/results/$STAMP
mkdir -p "$OUT/runs"; OUT=$(readlink -f "$OUT")

# ---------------------------------------------------------------- data
# The keystreams of benches/compare/gen.py (big/0..7), so the same bytes as faults.sh.
DATA=$WORK/data/big SIZE=$((128 << 20)) TOTAL=$((8 * (128 << 20)))
if [[ "$(cat "$DATA.complete" 2>/dev/null)" != "8x$SIZE" ]]; then
  log "generating 8 x 128 MiB into $DATA"
  rm -rf "$DATA"; mkdir -p "$DATA"
  for i in $(seq 0 7); do
    key=$(printf '%s' "20240601:big/$i" | sha256sum | cut -c1-32)
    openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 < /dev/zero 2>/dev/null \
      | head -c "$SIZE" > "$DATA/file$i.bin" || true
    [[ $(stat -c %s "$DATA/file$i.bin") == "$SIZE" ]] || die "could not generate $DATA/file$i.bin"
    touch -d @1700000000 "$DATA/file$i.bin"
  done
  touch -d @1700000000 "$DATA"
  echo "8x$SIZE" > "$DATA.complete"
fi
DST_ROOT=$WORK/dst
mkdir -p "$DST_ROOT"

# ---------------------------------------------------------------- cleanup
SRV_PID="" WAN_UP=0
cleanup() {
  local rc=$?
  [[ -n "$SRV_PID" ]] && kill "$SRV_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  if [[ $WAN_UP == 1 ]]; then log "taking the namespaces down"; bash "$NETNS" down >/dev/null 2>&1 || true; fi
  rm -rf "${DST_ROOT:?}/run"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
WAITED=0 GAVE_UP=0
wait_idle() {
  [[ -n "$WAIT_RE" ]] || return 0
  while :; do
    local others; others=$(pgrep -af "$WAIT_RE" | grep -v -e "^$$ " -e 'pgrep' | grep -v 'benches/auto.sh' || true)
    [[ -z "$others" ]] && return 0
    if [[ $WAITED -ge $WAIT_MAX ]]; then
      [[ $GAVE_UP == 1 ]] || log "waited $WAITED s for other benchmarks: giving up, measuring anyway"
      GAVE_UP=1; return 0
    fi
    log "another benchmark runs ($(echo "$others" | head -1 | cut -c1-100)); waiting 30 s"
    sleep 30; WAITED=$((WAITED + 30))
  done
}

ORDER=0
upload() { # LINK N RUN
  local link=$1 n=$2 run=$3 dir rc=0 t0 t1 secs
  ORDER=$((ORDER + 1))
  dir=$OUT/runs/$(printf %03d "$ORDER")-$link-n$n-r$run
  mkdir -p "$dir"
  rm -rf "${DST_ROOT:?}/run"
  wait_idle
  sync
  start_server "$dir" --no-cache --root "$DST_ROOT"
  local cmd=("$PARECO" send --no-cache --json -v -n "$n" "$DATA" "pareco://$SRV_HOST:$SRV_PORT/run")
  echo "${CLI_NS[*]} ${cmd[*]}" > "$dir/command"
  local load0; load0=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$EPOCHREALTIME
  "${CLI_NS[@]}" timeout -k 5 "$TIMEOUT" /usr/bin/time -f '%e %U %S %M' -o "$dir/client.time" \
    "${cmd[@]}" > "$dir/client.stdout" 2> "$dir/client.stderr" < /dev/null || rc=$?
  t1=$EPOCHREALTIME
  stop_server
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  local settled; settled=$(sed -n 's/.*-n auto: settled on \([0-9][0-9]*\) connections.*/\1/p' "$dir/client.stderr" | tail -1)
  local bytes; bytes=$(du -sb "$DST_ROOT/run" 2>/dev/null | cut -f1 || echo 0)
  {
    echo "link=$link"; echo "n=$n"; echo "run=$run"; echo "order=$ORDER"; echo "seconds=$secs"; echo "exit=$rc"
    echo "settled=${settled:-}"; echo "dst_bytes=${bytes:-0}"
    echo "load_before=$load0"; echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "started=$(date -u -d "@${t0%.*}" +%H:%M:%S)"
  } > "$dir/meta"
  rm -rf "${DST_ROOT:?}/run"
  log "$(printf '%-15s -n %-4s run %s: %8.2f s  exit %s%s  load %s' "$link" "$n" "$run" "$secs" "$rc" "${settled:+  settled on $settled}" "$load0")"
}

# ---------------------------------------------------------------- header
{
  echo "### pareco \`-n auto\` against fixed -n, 1 GiB upload, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: \`nproc\` = $(nproc), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r); shared with other engineers"
  echo "- command: \`$CMDLINE\`"
  echo "- pareco: $PARECO ($("$PARECO" --version 2>/dev/null || echo '?')); HEAD of the repo: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- data: 8 files x 128 MiB ($TOTAL bytes), AES-CTR keystreams (compare.sh's scenario 1)"
  echo "- every run: a fresh \`pareco listen --no-cache\`, destination emptied (and \`sync\`) before; client \`pareco send --no-cache --json -v -n N\`; time = wall time of the client; runs over $TIMEOUT s are killed and count as > $TIMEOUT s"
  echo "- destination: $DST_ROOT on $(df --output=fstype "$DST_ROOT" | tail -1) (page cache, no fsync)"
  echo "- -n values per round, in this order: ${NS_ARR[*]}; rounds: $RUNS (loopback, wan-loss), $CUBIC_RUNS (wan-loss-cubic)"
  echo "- load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/header.md"
cat "$OUT/header.md" >&2

# ---------------------------------------------------------------- links
for LINK in "${LINK_ARR[@]}"; do
  if [[ $LINK == loopback ]]; then
    SRV_NS=() CLI_NS=() SRV_HOST=127.0.0.1 R=$RUNS
    echo "- link loopback: 127.0.0.1, root namespace" >> "$OUT/header.md"
  else
    [[ -f "$NETNS" ]] || die "no $NETNS"
    wait_idle
    # namespaces that exist belong to someone else's run: wait for them to go, never take them down
    while [[ -e /run/netns/nsA || -e /run/netns/nsB ]]; do
      [[ $WAITED -lt $WAIT_MAX ]] || die "nsA/nsB still exist after waiting $WAITED s (someone else's?)"
      log "nsA/nsB exist (another run uses them); waiting 30 s"; sleep 30; WAITED=$((WAITED + 30))
    done
    opts=(--delay 25ms --loss 0.1% --rate 1gbit); R=$RUNS
    [[ $LINK == wan-loss-cubic ]] && { opts+=(--cc cubic); R=$CUBIC_RUNS; }
    log "netns.sh up ${opts[*]}"
    WAN_UP=1
    bash "$NETNS" up "${opts[@]}" > "$OUT/netns-$LINK.log" 2>&1 || { cat "$OUT/netns-$LINK.log" >&2; die "netns.sh up failed"; }
    SRV_NS=(ip netns exec nsB) CLI_NS=(ip netns exec nsA) SRV_HOST=10.201.0.2
    cc=$(ip netns exec nsA sysctl -n net.ipv4.tcp_congestion_control)
    echo "- link $LINK: \`netns.sh up ${opts[*]}\`, client in nsA, server in nsB ($SRV_HOST), 50 ms RTT, congestion control $cc" >> "$OUT/header.md"
  fi
  for r in $(seq 1 "$R"); do
    for n in "${NS_ARR[@]}"; do upload "$LINK" "$n" "$r"; done
  done
  if [[ $LINK != loopback ]]; then bash "$NETNS" down >/dev/null 2>&1 || true; WAN_UP=0; fi
done
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); waited $WAITED s for other benchmarks$([[ $GAVE_UP == 1 ]] && echo ', then gave up waiting')" >> "$OUT/header.md"

# ---------------------------------------------------------------- report
python3 - "$OUT" "$TOTAL" "$TIMEOUT" > "$OUT/results.md" <<'EOF'
import glob, os, statistics, sys
out, total, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
runs = []
for d in sorted(glob.glob(os.path.join(out, "runs", "*"))):
    m = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(d, "meta")) if "=" in l)
    runs.append(m)
print(open(os.path.join(out, "header.md")).read())
links = []
for r in runs:
    if r["link"] not in links: links.append(r["link"])
def secs(r):  # a failed or killed run counts as at least the timeout
    return float(r["seconds"]) if r["exit"] == "0" else max(float(r["seconds"]), timeout)
for link in links:
    rs = [r for r in runs if r["link"] == link]
    ns = []
    for r in rs:
        if r["n"] not in ns: ns.append(r["n"])
    rows = {}
    for n in ns:
        xs = [secs(r) for r in rs if r["n"] == n]
        bad = sum(1 for r in rs if r["n"] == n and r["exit"] != "0")
        rows[n] = (statistics.median(xs), xs, bad, [r.get("settled", "") for r in rs if r["n"] == n])
    fixed = {n: v for n, v in rows.items() if n != "auto"}
    best_n = min(fixed, key=lambda n: fixed[n][0]) if fixed else None
    best = total / fixed[best_n][0] / 1e6 if best_n else float("nan")
    print(f"#### {link}\n")
    print("| -n | runs | median s | runs s | MB/s | % of best fixed | settled on |")
    print("|---|---:|---:|---|---:|---:|---|")
    for n in ns:
        m, xs, bad, st = rows[n]
        mbs = total / m / 1e6
        gt = ">" if bad * 2 >= len(xs) else ""
        runs_s = ", ".join((f">{x:.0f}" if x >= timeout else f"{x:.2f}") for x in xs)
        name = f"**{n}**" if n == best_n else n
        print(f"| {name} | {len(xs)} | {gt}{m:.2f} | {runs_s} | {'<' if gt else ''}{mbs:.1f} | {mbs / best * 100:.0f} | {', '.join(s or '?' for s in st) if n == 'auto' else ''} |")
    if "auto" in rows and best_n:
        pct = total / rows["auto"][0] / 1e6 / best * 100
        print(f"\nbest fixed: -n {best_n} ({best:.1f} MB/s); `-n auto`: {pct:.0f} % of it -> **{'meets' if pct >= 90 else 'misses'} the 90 % goal**\n")
EOF
cat "$OUT/results.md"
echo "results: $OUT/results.md" >&2
