#!/usr/bin/env bash
# benches/faults.sh: what faults and safety cost pareco, in two measurements.
#
#   cuts   a 1 GiB upload (8 files x 128 MiB) over the emulated lossy WAN link of
#          compare.sh ('wan-loss': 50 ms RTT, 0.1 % loss, 1 Gbit/s) while one of the
#          client's TCP connections is killed every second (ss -K in the client's
#          namespace), against the same upload without cuts and against iperf3 -P 8
#          on the same link; runs alternate iperf3 / no cuts / cuts.
#   fsync  the cost of --fsync on loopback, into a journaled ext4 (loop-mounted, as
#          compare.sh does): 1 GiB in 8 files and 20 000 files of 1-4 KiB, cold,
#          with and without --fsync, alternating.
#
# See benches/README.md ("Faults and --fsync") for what is measured and how. -h for options.
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
source "$REPO/benches/compare/quote_args.sh"
CMDLINE=$(quote_args "$0" "$@")

usage() {
  cat <<EOF
Usage: benches/faults.sh [options] [cuts|fsync|all]      (default: all)

  cuts    1 GiB upload over the lossy 50 ms link with one connection killed every
          second, against the same upload without cuts and iperf3 -P 8 (needs root)
  fsync   pareco send with and without --fsync on loopback into a journaled ext4:
          1 GiB in 8 files, and 20 000 files of 1-4 KiB, cold

Options:
  --runs N          runs of each variant in 'cuts' (iperf3, no cuts, cuts)   [3]
  --fsync-runs N    runs of each variant in 'fsync'                           [5]
  --cut-every SEC   seconds between two cuts (may be fractional)             [1]
  --connections N   pareco -n                                               [8]
  --iperf-secs SEC  length of each iperf3 -P 8 measurement                   [30]
  --timeout SEC     kill a client run after this long                        [900]
  --quick           8 x 8 MiB and 2 000 small files instead (development)
  --work DIR        data, destination file system, results  [/tmp/pareco-faults]
  --out DIR         results directory                       [WORK/results/STAMP-PROFILE]
  --warm-mib MIB    memory written to /dev/shm and freed before every run
                    [3072 when the kernel has free page reporting, else 0; see benches/README.md]
  --wait-idle REGEX before every run, wait while a process whose command line matches
                    REGEX runs (pgrep -f; this script's own ancestors and any process whose
                    command line holds REGEX itself are ignored), checking every 20 s
  --wait-cpu PCT    before every run, also wait while the other processes of the machine
                    used more than PCT % of all its CPUs over 3 s
  --wait-max SEC    give up waiting after SEC seconds in all, and say so      [2400]
  --no-diag         skip the extra cuts run with -vv and a timestamped log (not in the medians)
  --disturbed-pct P a run during which other processes (everything but the client, the server,
                    delaypipe and kernel threads) used more than P % of all the CPUs is marked
                    disturbed: listed, but left out of the medians                [20]
  --extra-rounds N  rounds run beyond --runs / --fsync-runs (at most) while a variant has fewer
                    undisturbed runs than asked                 [as many as --runs / --fsync-runs]
  --pareco BIN      use this binary instead of building HEAD
  -h, --help        this text

Without --pareco the script builds the committed HEAD (git archive into WORK/src-REV, so
nobody's uncommitted edits are measured) with cargo build --release into CARGO_TARGET_DIR
(default /tmp/target-bench) and copies the binary to WORK/pareco-REV.
Environment: PARECO_BENCH_NETNS (netns.sh, default <repo>/../shared/wan/netns.sh),
WAN_NS_A / WAN_NS_B (namespace names, default nsA / nsB).
EOF
}

BENCH=faults.sh
source "$REPO/benches/lib.sh"

# ---------------------------------------------------------------- options
MODE=all RUNS=3 FSYNC_RUNS=5 CUT_EVERY=1 CONNS=8 IPERF_SECS=30 TIMEOUT=900 QUICK=0
WORK=/tmp/pareco-faults OUT="" PARECO="" WAIT_IDLE="" WAIT_CPU="" WAIT_MAX=2400 DIAG=1 DISTURBED_PCT=20 EXTRA=""
if [[ -d /sys/module/page_reporting ]]; then WARM_MIB=3072; else WARM_MIB=0; fi
NETNS=${PARECO_BENCH_NETNS:-$REPO/../shared/wan/netns.sh}
NS_A=${WAN_NS_A:-nsA} NS_B=${WAN_NS_B:-nsB}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --runs) RUNS=${2:?}; shift 2 ;;
    --fsync-runs) FSYNC_RUNS=${2:?}; shift 2 ;;
    --cut-every) CUT_EVERY=${2:?}; shift 2 ;;
    --connections) CONNS=${2:?}; shift 2 ;;
    --iperf-secs) IPERF_SECS=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --work) WORK=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --warm-mib) WARM_MIB=${2:?}; shift 2 ;;
    --wait-idle) WAIT_IDLE=${2:?}; shift 2 ;;
    --wait-max) WAIT_MAX=${2:?}; shift 2 ;;
    --wait-cpu) WAIT_CPU=${2:?}; shift 2 ;;
    --no-diag) DIAG=0; shift ;;
    --disturbed-pct) DISTURBED_PCT=${2:?}; shift 2 ;;
    --extra-rounds) EXTRA=${2:?}; shift 2 ;;
    --pareco) PARECO=${2:?}; shift 2 ;;
    cuts|fsync|all) MODE=$1; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
for v in RUNS FSYNC_RUNS CONNS IPERF_SECS TIMEOUT; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v wants a positive integer, not '${!v}'"
done
[[ "$WARM_MIB" =~ ^[0-9]+$ && "$WAIT_MAX" =~ ^[0-9]+$ ]] || die "--warm-mib and --wait-max want integers"
[[ -z "$WAIT_CPU" || "$WAIT_CPU" =~ ^[0-9]+$ ]] || die "--wait-cpu wants a percentage"
[[ "$DISTURBED_PCT" =~ ^[0-9]+$ && "$EXTRA$DISTURBED_PCT" =~ ^[0-9]+$ ]] || die "--disturbed-pct and --extra-rounds want integers"
[[ "$CUT_EVERY" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--cut-every wants seconds, not '$CUT_EVERY'"
[[ $EUID -eq 0 ]] || die "needs root (network namespaces, ss -K, a loop-mounted file system)"

# ---------------------------------------------------------------- tools
need=()
for t in iperf3 openssl python3 ss ip mkfs.ext4 mountpoint pgrep timeout diff; do command -v $t >/dev/null || need+=("$t"); done
[[ -x /usr/bin/time ]] || need+=(/usr/bin/time)
if [[ ${#need[@]} -gt 0 ]]; then
  command -v apt-get >/dev/null || die "missing: ${need[*]}"
  log "installing what provides: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 openssl python3 iproute2 e2fsprogs \
    util-linux procps coreutils diffutils time >/dev/null
fi

mkdir -p "$WORK"
WORK=$(readlink -f "$WORK")
build_head

# ---------------------------------------------------------------- data
# Big files: the same AES-128-CTR keystreams as benches/compare/gen.py (so the same
# bytes as compare.sh's scenario 1). Small files: 1-4 KiB (uniform, fixed seed) in
# 200 directories, from one keystream. Deterministic and incompressible; fixed mtimes.
if [[ $QUICK == 1 ]]; then PROFILE=quick BIG_SIZE=$((8 << 20)) SMALL_FILES=2000 SMALL_DIRS=20
else PROFILE=full BIG_SIZE=$((128 << 20)) SMALL_FILES=20000 SMALL_DIRS=200; fi
DATA=$WORK/data/$PROFILE
python3 - "$DATA" "$BIG_SIZE" "$SMALL_FILES" "$SMALL_DIRS" >&2 <<'EOF'
import hashlib, json, os, random, shutil, subprocess, sys
out, big_size, small_files, small_dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
SEED, MTIME, MIB = 20240601, 1_700_000_000, 1 << 20
params = {"seed": SEED, "big_files": 8, "big_size": big_size, "small_files": small_files,
          "small_dirs": small_dirs, "small_min": 1024, "small_max": 4096, "version": 1}
mpath = os.path.join(out, "manifest.json")
if os.path.exists(mpath) and json.load(open(mpath)).get("params") == params:
    print(f"data in {out} is up to date (reused)"); sys.exit(0)
shutil.rmtree(out, ignore_errors=True)
def stream(label):
    key = hashlib.sha256(f"{SEED}:{label}".encode()).hexdigest()[:32]
    return subprocess.Popen(["openssl", "enc", "-aes-128-ctr", "-nosalt", "-K", key, "-iv", "0" * 32],
                            stdin=open("/dev/zero", "rb"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
def read(s, n):
    b = bytearray()
    while len(b) < n:
        x = s.stdout.read(min(n - len(b), 4 * MIB))
        if not x: raise RuntimeError("keystream ended")
        b += x
    return bytes(b)
big = os.path.join(out, "big"); os.makedirs(big)
for i in range(8):
    s = stream(f"big/{i}"); p = os.path.join(big, f"file{i}.bin")
    with open(p, "wb") as f:
        left = big_size
        while left:
            n = min(left, 4 * MIB); f.write(read(s, n)); left -= n
    s.kill(); s.wait(); os.utime(p, (MTIME, MTIME))
os.utime(big, (MTIME, MTIME))
small = os.path.join(out, "small"); os.makedirs(small)
rng, s = random.Random(SEED), stream("small-1-4k")
per_dir, made, total = -(-small_files // small_dirs), 0, 0
for d in range(small_dirs):
    dp = os.path.join(small, f"dir{d:03d}"); os.makedirs(dp)
    for j in range(per_dir):
        if made == small_files: break
        n = rng.randint(1024, 4096); p = os.path.join(dp, f"f{j:04d}.bin")
        with open(p, "wb") as f: f.write(read(s, n))
        os.utime(p, (MTIME, MTIME)); made += 1; total += n
    os.utime(dp, (MTIME, MTIME))
s.kill(); s.wait(); os.utime(small, (MTIME, MTIME))
m = {"params": params, "big_bytes": 8 * big_size, "small_files": made, "small_bytes": total}
json.dump(m, open(mpath, "w"), indent=1)
print(f"generated data in {out}: {json.dumps(m)}")
EOF
manifest() { python3 -c "import json; print(json.load(open('$DATA/manifest.json'))['$1'])"; }
BIG_BYTES=$(manifest big_bytes) SMALL_BYTES=$(manifest small_bytes)

STAMP=$(date -u +%Y%m%d-%H%M%S)
[[ -n "$OUT" ]] || OUT=$WORK/results/$STAMP-$PROFILE
mkdir -p "$OUT/runs"
OUT=$(readlink -f "$OUT")
cp "$DATA/manifest.json" "$OUT/"

# ---------------------------------------------------------------- cleanup
SRV_PID="" IPERF_PID="" CUTTER_PID="" WAN_UP=0
LOOP_IMG=$WORK/loopfs.img LOOP_MNT=$WORK/mnt
cleanup() {
  local rc=$?
  for p in "$CUTTER_PID" "$SRV_PID" "$IPERF_PID"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$WARM_FILE"
  loopfs_down
  if [[ $WAN_UP == 1 ]]; then log "taking the namespaces down"; bash "$NETNS" down >/dev/null 2>&1 || true; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- destination file system
# A fresh ext4 with its journal, as in compare.sh (benches/lib.sh; /tmp here has no
# journal).
LOOP_MIB=$(( (3 * (BIG_BYTES + SMALL_BYTES) >> 20) + 512 ))
loopfs_up pareco-faults "$LOOP_MIB"
LOOP_DEV=$(findmnt -n -o SOURCE --target "$LOOP_MNT")
compgen -G "/proc/fs/jbd2/${LOOP_DEV##*/}-*" >/dev/null || die "$LOOP_MNT has no journal"
mkdir -p "$LOOP_MNT/dst"

# ---------------------------------------------------------------- header
{
  echo "### pareco faults and --fsync, $(date -u '+%Y-%m-%d %H:%M UTC') ($PROFILE data)"
  echo
  echo "- machine: \`nproc\` = $(nproc), memory $(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo) GiB, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
  echo "- command: \`$CMDLINE\`"
  echo "- pareco: $BIN_NOTE"
  echo "- data: 8 files x $((BIG_SIZE >> 20)) MiB ($BIG_BYTES bytes); $(manifest small_files) files of 1-4 KiB in $SMALL_DIRS directories ($SMALL_BYTES bytes); AES-CTR keystreams, fixed seed"
  echo "- destinations: a fresh ext4 with its journal, ${LOOP_MIB} MiB sparse image loop-mounted (nodiscard) at WORK/mnt, every block written once; emptied before every run, \`sync\` before every run (untimed)"
  echo "- memory: $WARM_MIB MiB written to /dev/shm and freed before every run"
  echo "- every run: a fresh \`pareco listen\`; time = wall time of the client process; the destination compared with the source by \`diff -r\` (every file's bytes, and the same names) afterwards"
  echo "- load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
  [[ -n "$WAIT_IDLE" ]] && echo "- before every run: waited while \`pgrep -f '$WAIT_IDLE'\` found a process (at most $WAIT_MAX s in all; see each run's meta: waited_s)"
  [[ -n "$WAIT_CPU" ]] && echo "- before every run: waited while other processes used more than $WAIT_CPU % of the machine's CPUs over 3 s (same budget)"
  echo "- CPU of everything else during each run: from /proc before and after the client (meta: others_cpu_s, others_top); 'rest' in the tables = the machine's busy CPU s minus client, server and delaypipe; 'others %' = rest minus kernel threads, as a share of all CPUs over the run; above $DISTURBED_PCT % the run is **disturbed** (other engineers' builds and tests), listed but left out of the medians, and rounds are added (at most ${EXTRA:-as many as asked}) until every variant has its runs"
} > "$OUT/header.md"
cat "$OUT/header.md" >&2

# ---------------------------------------------------------------- helpers
# cpu.py: snapshots of the machine's CPU counters and of every process, to see what
# else ran during a run (other engineers' builds, tests, servers) and to wait for quiet.
CPU_PY=$WORK/cpu.py
cat > "$CPU_PY" <<'EOF'
import json, os, sys, time
HZ, NCPU = os.sysconf("SC_CLK_TCK"), os.cpu_count()
def snap():
    v = list(map(int, open("/proc/stat").readline().split()[1:9]))
    ps = {}
    for d in os.listdir("/proc"):
        if not d.isdigit(): continue
        try: st = open(f"/proc/{d}/stat").read()
        except OSError: continue
        r = st[st.rindex(")") + 2:].split()
        ps[d] = [st[st.index("(") + 1:st.rindex(")")], r[1], int(r[11]) + int(r[12]), r[19]]
    return {"busy": sum(v) - v[3] - v[4], "procs": ps}
def mine(ps, roots):
    out = set()
    for p in ps:
        q, n = p, 0
        while q in ps and n < 64:
            if q in roots: out.add(p); break
            q, n = ps[q][1], n + 1
    return out
def diff(a, b, roots):
    m = mine(a["procs"], roots) | mine(b["procs"], roots)
    other, kern = {}, 0.0
    for p, (comm, ppid, j, start) in b["procs"].items():
        if p in m: continue
        j0 = a["procs"].get(p)
        d = (j - j0[2]) if j0 and j0[3] == start else j
        if d < 5: continue  # under 0.05 s (HZ 100): noise
        if ppid in ("0", "2") or p == "2": kern += d / HZ
        else: other[f"{comm}({p})"] = d / HZ
    top = sorted(other.items(), key=lambda kv: -kv[1])[:5]
    return (b["busy"] - a["busy"]) / HZ, sum(other.values()), kern, top
cmd = sys.argv[1]
if cmd == "snap":
    json.dump(snap(), open(sys.argv[2], "w"))
elif cmd == "diff":  # FILE0 FILE1 BUSY0 BUSY1 ROOTS...: BUSYn = the machine's busy jiffies at t0 and t1
    a, b = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
    a["busy"], b["busy"] = int(sys.argv[4]), int(sys.argv[5])
    busy, oth, kern, top = diff(a, b, set(sys.argv[6:]))
    print(f"machine_cpu_s={busy:.2f}\nothers_cpu_s={oth:.2f}\nkernel_threads_cpu_s={kern:.2f}")
    print("others_top=" + ", ".join(f"{k} {v:.1f}s" for k, v in top))
elif cmd == "sample":
    secs = float(sys.argv[2]); a = snap(); time.sleep(secs); b = snap()
    busy, oth, kern, top = diff(a, b, set(sys.argv[3:]))
    print(f"{oth / secs / NCPU * 100:.0f} " + ", ".join(f"{k} {v / secs * 100:.0f}%" for k, v in top))
EOF
proc_cpu() { # PID: user+system seconds so far
  [[ -n "$1" && -r /proc/$1/stat ]] || { echo 0; return; }
  awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / t }' "/proc/$1/stat"
}
WAITED=0 GAVE_UP=0 DISTURBED=0
ancestors() { local p=$$; while [[ $p -gt 1 ]]; do echo "$p"; p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null || echo 1); done; }
busy() { # prints the first process matching WAIT_IDLE that is neither us nor a waiting loop like us
  local anc p cmd; anc=" $(ancestors | tr '\n' ' ') "
  for p in $(pgrep -f "$WAIT_IDLE" || true); do
    [[ "$anc" == *" $p "* ]] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" || true)
    [[ -z "$cmd" || "$cmd" == *"$WAIT_IDLE"* ]] && continue
    echo "$p ${cmd:0:100}"; return 0
  done
  return 1
}
cpu_busy() { # with --wait-cpu: prints what uses the CPU when the other processes use more than WAIT_CPU %
  [[ -n "$WAIT_CPU" ]] || return 1
  local s; s=$(python3 "$CPU_PY" sample 3 $$ $(delaypipe_pid))
  [[ ${s%% *} -gt $WAIT_CPU ]] || return 1
  echo "other processes at ${s%% *} % of the CPUs: ${s#* }"
}
RUN_WAITED=0
wait_idle() {
  RUN_WAITED=0
  [[ -n "$WAIT_IDLE$WAIT_CPU" ]] || return 0
  local b
  while b=$(busy) || b=$(cpu_busy); do
    if [[ $WAITED -ge $WAIT_MAX ]]; then
      [[ $GAVE_UP == 1 ]] || log "gave up waiting after ${WAITED}s in all; measuring with: $b"
      GAVE_UP=1; echo "busy_at_start=$b" >> "$1"; return 0
    fi
    [[ $RUN_WAITED -eq 0 ]] && log "waiting for: $b"
    echo "$(date -u +%H:%M:%S) $b" >> "${1%/meta}/waits.log"
    sleep 20; WAITED=$((WAITED + 20)); RUN_WAITED=$((RUN_WAITED + 20))
  done
}


SRV_NS=() CLI_NS=() SRV_HOST=127.0.0.1

# The cutter: every CUT_EVERY seconds (on a fixed schedule from its start) kill ONE of
# the client's established connections to the server, picked at random, with ss -K
# in the client's namespace. One line per tick in LOG: "T killed SPORT of N" or "T none".
cutter() { # PORT LOG
  local port=$1 logf=$2 start=$EPOCHREALTIME k=0 next now d sports sp out
  while :; do
    k=$((k + 1))
    next=$(awk -v s="$start" -v k="$k" -v e="$CUT_EVERY" 'BEGIN {printf "%.6f", s + k * e}')
    now=$EPOCHREALTIME
    d=$(awk -v a="$now" -v b="$next" 'BEGIN {d = b - a; printf "%.6f", (d > 0 ? d : 0)}')
    sleep "$d"
    mapfile -t sports < <("${CLI_NS[@]}" ss -Htn state established dst "$SRV_HOST" dport = ":$port" \
      | awk '{n = split($3, a, ":"); print a[n]}')
    t=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a}')
    if [[ ${#sports[@]} -eq 0 ]]; then echo "$t none" >> "$logf"; continue; fi
    sp=${sports[RANDOM % ${#sports[@]}]}
    out=$("${CLI_NS[@]}" ss -HtnK state established dst "$SRV_HOST" dport = ":$port" sport = ":$sp" 2>&1 || true)
    if [[ -n "$out" ]]; then echo "$t killed $sp of ${#sports[@]}" >> "$logf"; else echo "$t missed $sp of ${#sports[@]}" >> "$logf"; fi
  done
}

ORDER=0
upload() { # QUESTION VARIANT RUN SRC BYTES [pareco options...]: one timed pareco send
  local q=$1 variant=$2 run=$3 src=$4 bytes=$5; shift 5
  ORDER=$((ORDER + 1))
  local dir; dir=$OUT/runs/$(printf %02d "$ORDER")-$q-$variant-r$run
  mkdir -p "$dir"
  local rel=dst/$q-$variant
  rm -rf "${LOOP_MNT:?}/$rel"
  wait_idle "$dir/meta"
  sync
  warm_memory
  start_server "$dir" --root "$LOOP_MNT"
  local cmd=("$PARECO" send --json -n "$CONNS" "$@" "$src" "pareco://$SRV_HOST:$SRV_PORT/$rel")
  printf '%q ' "${CLI_NS[@]}" "${cmd[@]}" > "$dir/command"
  local rc=0 t0 t1 load1 dp dp0 dp1; load1=$(cut -d' ' -f1 /proc/loadavg)
  dp=$(delaypipe_pid); dp0=$(proc_cpu "$dp")
  python3 "$CPU_PY" snap "$dir/.cpu0"
  [[ $variant == cuts* ]] && { : > "$dir/cuts.log"; cutter "$SRV_PORT" "$dir/cuts.log" & CUTTER_PID=$!; }
  local b0 b1; b0=$(busy_jiffies)
  t0=$EPOCHREALTIME
  if [[ $variant == *-vv ]]; then
    # diagnostic: every stderr line stamped with the seconds since the start
    "${CLI_NS[@]}" timeout -k 10 "$TIMEOUT" /usr/bin/time -f '%e %U %S %M' -o "$dir/client.time" \
      "${cmd[@]}" > "$dir/client.stdout" 2> >(python3 -u -c 'import sys, time
t0 = float(sys.argv[1])
for line in sys.stdin: sys.stdout.write("%8.3f %s" % (time.time() - t0, line))' "$t0" > "$dir/client.stderr") < /dev/null || rc=$?
  else
    "${CLI_NS[@]}" timeout -k 10 "$TIMEOUT" /usr/bin/time -f '%e %U %S %M' -o "$dir/client.time" \
      "${cmd[@]}" > "$dir/client.stdout" 2> "$dir/client.stderr" < /dev/null || rc=$?
  fi
  t1=$EPOCHREALTIME
  b1=$(busy_jiffies)
  if [[ -n "$CUTTER_PID" ]]; then kill "$CUTTER_PID" 2>/dev/null || true; wait "$CUTTER_PID" 2>/dev/null || true; CUTTER_PID=""; fi
  python3 "$CPU_PY" snap "$dir/.cpu1"
  dp1=$(proc_cpu "$dp")
  python3 "$CPU_PY" diff "$dir/.cpu0" "$dir/.cpu1" "$b0" "$b1" $$ "$dp" >> "$dir/meta"
  echo "delaypipe_cpu_s=$(awk -v a="$dp0" -v b="$dp1" 'BEGIN {printf "%.2f", b - a}')" >> "$dir/meta"
  rm -f "$dir/.cpu0" "$dir/.cpu1"
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  # untimed: how long the writeback the run left behind takes (syncfs of the destination's
  # file system only, which ends with a flush of the loop device and so of its image)
  local s0 s1; s0=$EPOCHREALTIME; sync -f "$LOOP_MNT"; s1=$EPOCHREALTIME
  stop_server "$dir/meta"
  local verify=ok
  if [[ $rc != 0 ]]; then verify="not checked (exit $rc)"
  elif ! diff -rq "$src" "$LOOP_MNT/$rel" > "$dir/diff.txt" 2>&1; then verify="DIFFERS ($(wc -l < "$dir/diff.txt") lines in diff.txt)"; fi
  [[ -s "$dir/diff.txt" ]] || rm -f "$dir/diff.txt"
  {
    echo "order=$ORDER"; echo "question=$q"; echo "variant=$variant"; echo "run=$run"
    echo "seconds=$secs"; echo "exit=$rc"; echo "source_bytes=$bytes"; echo "verify=$verify"
    echo "sync_after_s=$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.3f", b - a}')"
    echo "load1=$load1"; echo "waited_s=$RUN_WAITED"; echo "started=$(date -u -d "@${t0%.*}" +%H:%M:%S)"
    if [[ -f "$dir/cuts.log" ]]; then
      echo "kills=$(grep -c ' killed ' "$dir/cuts.log" || true)"
      echo "ticks_without_connection=$(grep -c ' none$' "$dir/cuts.log" || true)"
      echo "kills_missed=$(grep -c ' missed ' "$dir/cuts.log" || true)"
    fi
  } >> "$dir/meta"
  rm -rf "${LOOP_MNT:?}/$rel"
  DISTURBED=$(python3 - "$dir" "$DISTURBED_PCT" <<'EOF'
import os, sys
d, limit = sys.argv[1], float(sys.argv[2])
m = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(d, "meta")) if "=" in l)
try:
    u, s_ = open(os.path.join(d, "client.time")).read().split()[-3:-1]
    rest = float(m["machine_cpu_s"]) - float(u) - float(s_) - float(m.get("server_cpu_s", 0)) - float(m.get("delaypipe_cpu_s", 0))
    pct = (rest - float(m.get("kernel_threads_cpu_s", 0))) / (float(m["seconds"]) * os.cpu_count()) * 100
except Exception:
    pct = 0.0
with open(os.path.join(d, "meta"), "a") as f:
    f.write(f"others_pct={pct:.0f}\ndisturbed={int(pct > limit)}\n")
print(int(pct > limit))
EOF
)
  local extra=""
  [[ $DISTURBED == 1 ]] && extra+="  DISTURBED ($(sed -n 's/^others_pct=//p' "$dir/meta") % of the CPUs used by others)"
  [[ -f "$dir/cuts.log" ]] && extra="  kills $(grep -c ' killed ' "$dir/cuts.log" || true)"
  extra+="  $(python3 -c 'import json,sys
try: j=json.load(open(sys.argv[1])); print("reconnects %s retried %s sessions %s" % (j["reconnects"], j["requests_retried"], j["sessions_opened"]))
except Exception: print("(no JSON report)")' "$dir/client.stdout")"
  log "$(printf '%-5s %-9s run %s: %8.2f s  exit %s  verify %s%s' "$q" "$variant" "$run" "$secs" "$rc" "$verify" "$extra")"
  [[ $rc == 0 ]] || sed 's/^/    | /' "$dir/client.stderr" | tail -12 >&2
}

iperf_run() { # RUN: iperf3 -P 8 for IPERF_SECS through the link, receiver Mbit/s
  local run=$1 port dir
  ORDER=$((ORDER + 1))
  dir=$OUT/runs/$(printf %02d "$ORDER")-cuts-iperf3-r$run
  mkdir -p "$dir"
  wait_idle "$dir/meta"
  port=$("${SRV_NS[@]}" python3 -c 'import socket; s=socket.socket(); s.bind(("'"$SRV_HOST"'", 0)); print(s.getsockname()[1])')
  "${SRV_NS[@]}" iperf3 -s -1 -p "$port" > "$dir/server.log" 2>&1 < /dev/null &
  IPERF_PID=$!
  for _ in $(seq 100); do "${SRV_NS[@]}" ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.05; done
  echo "${CLI_NS[*]} iperf3 -c $SRV_HOST -p $port -t $IPERF_SECS -P 8 -J" > "$dir/command"
  "${CLI_NS[@]}" iperf3 -c "$SRV_HOST" -p "$port" -t "$IPERF_SECS" -P 8 -J > "$dir/iperf3.json" 2>&1 || true
  kill "$IPERF_PID" 2>/dev/null || true; wait "$IPERF_PID" 2>/dev/null || true; IPERF_PID=""
  local mbit; mbit=$(python3 -c 'import json,sys
try: print("%.1f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e6))
except Exception: print("")' "$dir/iperf3.json")
  { echo "order=$ORDER"; echo "question=cuts"; echo "variant=iperf3"; echo "run=$run"; echo "mbit_s=$mbit"; echo "waited_s=$RUN_WAITED"; } >> "$dir/meta"
  log "cuts  iperf3 -P8 run $run: ${mbit:-?} Mbit/s"
}

# ---------------------------------------------------------------- cuts
if [[ $MODE == cuts || $MODE == all ]]; then
  [[ -f "$NETNS" ]] || die "no $NETNS"
  [[ -e /run/netns/$NS_A || -e /run/netns/$NS_B ]] && { log "namespaces exist: taking them down first"; bash "$NETNS" down >/dev/null 2>&1 || true; }
  WAN_OPTS=(--delay 25ms --loss 0.1% --rate 1gbit)   # compare.sh's 'wan-loss'
  log "netns.sh up ${WAN_OPTS[*]}"
  bash "$NETNS" up "${WAN_OPTS[@]}" > "$OUT/netns.log" 2>&1 || { cat "$OUT/netns.log" >&2; die "netns.sh up failed"; }
  WAN_UP=1
  SRV_NS=(ip netns exec "$NS_B") CLI_NS=(ip netns exec "$NS_A") SRV_HOST=10.201.0.2
  CC=$(ip netns exec "$NS_A" sysctl -n net.ipv4.tcp_congestion_control)
  echo "- link (cuts): \`netns.sh up ${WAN_OPTS[*]}\` (compare.sh's wan-loss): client in $NS_A (10.201.0.1), server in $NS_B ($SRV_HOST), 50 ms RTT, 0.1 % loss and 1 Gbit/s each way, TCP congestion control $CC; one client connection killed every $CUT_EVERY s with \`ss -K\` in $NS_A" >> "$OUT/header.md"
  good_nc=0 good_c=0 r=0
  while [[ $r -lt $RUNS ]] || [[ ( $good_nc -lt $RUNS || $good_c -lt $RUNS ) && $r -lt $((RUNS + ${EXTRA:-$RUNS})) ]]; do
    r=$((r + 1))
    [[ $r -le $RUNS ]] && iperf_run "$r"
    upload cuts no-cuts "$r" "$DATA/big" "$BIG_BYTES"; [[ $DISTURBED == 1 ]] || good_nc=$((good_nc + 1))
    upload cuts cuts "$r" "$DATA/big" "$BIG_BYTES"; [[ $DISTURBED == 1 ]] || good_c=$((good_c + 1))
  done
  # one more run with cuts, -vv and every log line timestamped: to see what happens (not in the medians)
  [[ $DIAG == 1 ]] && upload cuts cuts-vv 1 "$DATA/big" "$BIG_BYTES" -vv
  bash "$NETNS" down >/dev/null 2>&1 || true
  WAN_UP=0
  SRV_NS=() CLI_NS=() SRV_HOST=127.0.0.1
fi

# ---------------------------------------------------------------- fsync
if [[ $MODE == fsync || $MODE == all ]]; then
  echo "- link (fsync): loopback 127.0.0.1, client and server in the same namespace" >> "$OUT/header.md"
  for w in big small; do
    if [[ $w == big ]]; then bytes=$BIG_BYTES; else bytes=$SMALL_BYTES; fi
    good_p=0 good_f=0 r=0
    while [[ $r -lt $FSYNC_RUNS ]] || [[ ( $good_p -lt $FSYNC_RUNS || $good_f -lt $FSYNC_RUNS ) && $r -lt $((FSYNC_RUNS + ${EXTRA:-$FSYNC_RUNS})) ]]; do
      r=$((r + 1))
      upload "fsync" "$w-plain" "$r" "$DATA/$w" "$bytes"; [[ $DISTURBED == 1 ]] || good_p=$((good_p + 1))
      upload "fsync" "$w-fsync" "$r" "$DATA/$w" "$bytes" --fsync; [[ $DISTURBED == 1 ]] || good_f=$((good_f + 1))
    done
  done
fi

echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); waited ${WAITED} s in all for other processes$([[ $GAVE_UP == 1 ]] && echo ', then GAVE UP waiting and measured anyway')" >> "$OUT/header.md"

# ---------------------------------------------------------------- report
python3 - "$OUT" > "$OUT/results.md" <<'EOF'
import glob, json, os, statistics, sys
out = sys.argv[1]
runs = []
for d in sorted(glob.glob(os.path.join(out, "runs", "*"))):
    m = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(d, "meta")) if "=" in l)
    try: m["json"] = json.load(open(os.path.join(d, "client.stdout")))
    except Exception: m["json"] = {}
    try:
        e, u, s, rss = open(os.path.join(d, "client.time")).read().split()[-4:]
        m["client_cpu_s"] = float(u) + float(s)
    except Exception: pass
    runs.append(m)
def ok(r): return r.get("exit") == "0" and r.get("verify") == "ok" and r.get("disturbed") != "1"
def rest(r):
    try: return f"{float(r['machine_cpu_s']) - r.get('client_cpu_s', 0) - float(r.get('server_cpu_s', 0)) - float(r.get('delaypipe_cpu_s', 0)):.2f}"
    except Exception: return "—"
def dist(r): return f"**{r.get('others_pct', '?')} disturbed**" if r.get("disturbed") == "1" else r.get("others_pct", "?")
def med(xs): return statistics.median(xs) if xs else float("nan")
def spread(xs): return f"{min(xs):.2f}–{max(xs):.2f}" if xs else "—"
print(open(os.path.join(out, "header.md")).read())
cuts = [r for r in runs if r["question"] == "cuts"]
if cuts:
    ip = [float(r["mbit_s"]) for r in cuts if r["variant"] == "iperf3" and r.get("mbit_s")]
    ipm = med(ip)
    print("#### 1 GiB upload over the lossy 50 ms link, one connection killed every second\n")
    print(f"iperf3 -P 8 on the link: median {ipm:.0f} Mbit/s = {ipm / 8:.1f} MB/s (runs: {', '.join(f'{x:.0f}' for x in ip)})\n")
    print("Runs that failed or were disturbed are left out of the medians (ok runs: the rest / all).\n")
    print("| variant | ok runs | median s | spread s | MB/s | % of iperf3 -P 8 | kills per run | reconnects per run | requests retried per run | sessions |")
    print("|---|---:|---:|---:|---:|---:|---|---|---|---|")
    meds = {}
    for v in ("no-cuts", "cuts"):
        rs = [r for r in cuts if r["variant"] == v]
        good = [r for r in rs if ok(r)]
        secs = [float(r["seconds"]) for r in good]
        m = med(secs); meds[v] = m
        mbs = int(good[0]["source_bytes"]) / m / 1e6 if good else float("nan")
        f = lambda k: ", ".join(str(r.get(k, "—")) for r in rs)
        j = lambda k: ", ".join(str(r["json"].get(k, "—")) for r in rs)
        print(f"| {v} | {len(good)}/{len(rs)} | {m:.2f} | {spread(secs)} | {mbs:.1f} | {mbs * 8 / ipm * 100:.0f} | {f('kills') if v == 'cuts' else '0'} | {j('reconnects')} | {j('requests_retried')} | {j('sessions_opened')} |")
    if meds.get("no-cuts"):
        print(f"\ncuts / no cuts (median s): **{meds['cuts'] / meds['no-cuts']:.2f}**")
    print("\nPer run (in the order run):\n")
    print("| # | variant | s | exit | identical | kills | ticks without a connection | reconnects | retried | wire MB | client CPU s | server CPU s | delaypipe CPU s | rest of the machine CPU s | others % | other processes seen (largest) |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in cuts:
        if r["variant"] == "iperf3":
            print(f"| {r['order']} | iperf3 -P 8 | {r.get('mbit_s', '?')} Mbit/s | | | | | | | | | | | | | |"); continue
        print(f"| {r['order']} | {r['variant']} | {r['seconds']} | {r['exit']} | {r['verify']} | {r.get('kills', 0)} | {r.get('ticks_without_connection', '')} | "
              f"{r['json'].get('reconnects', '—')} | {r['json'].get('requests_retried', '—')} | {r['json'].get('wire_bytes', 0) / 1e6:.0f} | {r.get('client_cpu_s', 0):.2f} | {r.get('server_cpu_s', '—')} | "
              f"{r.get('delaypipe_cpu_s', '—')} | {rest(r)} | {dist(r)} | {r.get('others_top', '')} |")
    print()
fs = [r for r in runs if r["question"] == "fsync"]
if fs:
    print("#### --fsync on loopback into a journaled ext4, cold\n")
    print("Runs that failed or were disturbed are left out of the medians (ok runs: the rest / all).\n")
    print("| workload | variant | ok runs | median s | spread s (min–max) | MB/s | --fsync / plain | `sync -f` of the destination after the run, median s | client CPU s | server CPU s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in ("big", "small"):
        base = None
        for v in ("plain", "fsync"):
            rs = [r for r in fs if r["variant"] == f"{w}-{v}"]
            if not rs: continue
            good = [r for r in rs if ok(r)]
            secs = [float(r["seconds"]) for r in good]
            m = med(secs)
            if v == "plain": base = m
            ratio = f"**{m / base:.2f}**" if v == "fsync" and base else "1"
            mbs = int(rs[0]["source_bytes"]) / m / 1e6
            print(f"| {'1 GiB in 8 files' if w == 'big' else 'small files, 1-4 KiB'} | {'--fsync' if v == 'fsync' else 'without'} | {len(good)}/{len(rs)} | {m:.3f} | {spread(secs)} | {mbs:.1f} | {ratio} | "
                  f"{med([float(r['sync_after_s']) for r in good]):.3f} | {med([r.get('client_cpu_s', 0) for r in good]):.2f} | {med([float(r.get('server_cpu_s', 0)) for r in good]):.2f} |")
    print("\nPer run (in the order run):\n")
    print("| # | variant | s | exit | identical | `sync -f` after, s | client CPU s | server CPU s | rest of the machine CPU s | kernel threads CPU s | others % | other processes seen (largest) |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in fs:
        print(f"| {r['order']} | {r['variant']} | {r['seconds']} | {r['exit']} | {r['verify']} | {r['sync_after_s']} | {r.get('client_cpu_s', 0):.2f} | {r.get('server_cpu_s', '—')} | {rest(r)} | {r.get('kernel_threads_cpu_s', '—')} | {dist(r)} | {r.get('others_top', '')} |")
EOF
echo >&2
cat "$OUT/results.md"
echo
echo "results: $OUT/results.md"
