#!/usr/bin/env bash
# benches/tls.sh: what TLS costs pareco. A cold upload of 1 GiB in 8 files
# (compare.sh's scenario 1 and 6 data) over TLS and in plain TCP, alternating
# (the order swapped every round), on loopback and optionally on the emulated
# lossy WAN link of compare.sh ('wan-loss'). For every run: the client's wall
# time, the client's and the server's CPU seconds, and how much CPU the rest of
# the machine used meanwhile (a run during which other processes used more
# than --disturbed-pct of the CPUs is marked, listed, and left out of the
# medians). Prints the medians, the TLS / plain ratio of the medians and the
# median of the ratios of each round's pair. -h for the options.
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
HELPERS=$REPO/benches/compare
source "$HELPERS/quote_args.sh"
CMDLINE=$(quote_args "$0" "$@")

usage() {
  cat <<EOF
Usage: benches/tls.sh [options]

Options:
  --runs N           rounds (one TLS and one plain run each) per link         [5]
  --links LIST       loopback, wan-loss (needs root and ../shared/wan/netns.sh) [loopback]
  --quick            8 x 8 MiB instead of 8 x 128 MiB (development)
  --work DIR         data, destination file system, results       [/tmp/pareco-tls]
  --warm-mib MIB     memory written to /dev/shm and freed before every run
                     [3072 when the kernel has free page reporting, else 0; see benches/README.md]
  --no-loopfs        write into WORK instead of a fresh journaled ext4 loop-mounted at WORK/mnt
                     (the default as root, like compare.sh and faults.sh)
  --disturbed-pct P  mark a run during which other processes used more than P % of all the CPUs [20]
  --timeout SEC      kill a client run after this long                        [600]
  --pareco BIN       use this binary instead of building HEAD
  -h, --help         this text

Without --pareco the script builds the committed HEAD (git archive, so nobody's
uncommitted edits are measured) with cargo build --release into CARGO_TARGET_DIR
(default /tmp/target-bench). Environment: PARECO_BENCH_NETNS (netns.sh, default
<repo>/../shared/wan/netns.sh), WAN_NS_A / WAN_NS_B (namespace names, default nsA / nsB).
EOF
}

BENCH=tls.sh
source "$REPO/benches/lib.sh"

# ---------------------------------------------------------------- options
RUNS=5 LINKS=loopback QUICK=0 WORK=/tmp/pareco-tls LOOPFS=1 DISTURBED_PCT=20 TIMEOUT=600 PARECO=""
if [[ -d /sys/module/page_reporting ]]; then WARM_MIB=3072; else WARM_MIB=0; fi
NETNS=${PARECO_BENCH_NETNS:-$REPO/../shared/wan/netns.sh}
NS_A=${WAN_NS_A:-nsA} NS_B=${WAN_NS_B:-nsB}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --runs) RUNS=${2:?}; shift 2 ;;
    --links) LINKS=${2:?}; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --work) WORK=${2:?}; shift 2 ;;
    --warm-mib) WARM_MIB=${2:?}; shift 2 ;;
    --no-loopfs) LOOPFS=0; shift ;;
    --disturbed-pct) DISTURBED_PCT=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --pareco) PARECO=${2:?}; shift 2 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
for v in RUNS TIMEOUT; do [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v wants a positive integer, not '${!v}'"; done
[[ "$WARM_MIB" =~ ^[0-9]+$ && "$DISTURBED_PCT" =~ ^[0-9]+$ ]] || die "--warm-mib and --disturbed-pct want integers"
IFS=, read -ra LINK_LIST <<< "$LINKS"
for l in "${LINK_LIST[@]}"; do
  case $l in loopback) ;; wan-loss) [[ $EUID -eq 0 ]] || die "wan-loss needs root" ;; *) die "unknown link: $l" ;; esac
done
[[ $EUID -eq 0 ]] || LOOPFS=0

for t in openssl python3 pgrep timeout; do command -v $t >/dev/null || die "missing: $t"; done
[[ -x /usr/bin/time ]] || die "missing: /usr/bin/time (apt-get install time)"

mkdir -p "$WORK"
WORK=$(readlink -f "$WORK")
build_head

# ---------------------------------------------------------------- data
# The big files of compare.sh's scenarios 1 and 6: the same AES-128-CTR keystreams as
# benches/compare/gen.py (so the same bytes), made here as faults.sh does; fixed mtimes.
if [[ $QUICK == 1 ]]; then PROFILE=quick BIG_SIZE=$((8 << 20)); else PROFILE=full BIG_SIZE=$((128 << 20)); fi
DATA=$WORK/data/$PROFILE
python3 - "$DATA" "$BIG_SIZE" >&2 <<'EOF_PY'
import hashlib, json, os, shutil, subprocess, sys
out, big_size = sys.argv[1], int(sys.argv[2])
SEED, MTIME, MIB = 20240601, 1_700_000_000, 1 << 20
params = {"seed": SEED, "big_files": 8, "big_size": big_size, "version": 1}
mpath = os.path.join(out, "manifest.json")
if os.path.exists(mpath) and json.load(open(mpath)).get("params") == params:
    print(f"data in {out} is up to date (reused)"); sys.exit(0)
shutil.rmtree(out, ignore_errors=True)
big = os.path.join(out, "big"); os.makedirs(big)
for i in range(8):
    key = hashlib.sha256(f"{SEED}:big/{i}".encode()).hexdigest()[:32]
    s = subprocess.Popen(["openssl", "enc", "-aes-128-ctr", "-nosalt", "-K", key, "-iv", "0" * 32],
                         stdin=open("/dev/zero", "rb"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p = os.path.join(big, f"file{i}.bin")
    with open(p, "wb") as f:
        left = big_size
        while left:
            x = s.stdout.read(min(left, 4 * MIB))
            if not x: raise RuntimeError("keystream ended")
            f.write(x); left -= len(x)
    s.kill(); s.wait(); os.utime(p, (MTIME, MTIME))
os.utime(big, (MTIME, MTIME))
json.dump({"params": params, "big_bytes": 8 * big_size}, open(mpath, "w"), indent=1)
print(f"generated 8 x {big_size} bytes in {big}")
EOF_PY
BIG_BYTES=$((8 * BIG_SIZE))

STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=$WORK/results/$STAMP-$PROFILE
mkdir -p "$OUT/runs"

# ---------------------------------------------------------------- cleanup
SRV_PID="" WAN_UP=0
LOOP_IMG=$WORK/loopfs.img LOOP_MNT=$WORK/mnt
cleanup() {
  local rc=$?
  [[ -n "$SRV_PID" ]] && kill "$SRV_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -f "$WARM_FILE"
  loopfs_down
  if [[ $WAN_UP == 1 ]]; then log "taking the namespaces down"; bash "$NETNS" down >/dev/null 2>&1 || true; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- destination file system
# As compare.sh and faults.sh: a fresh ext4 with its journal (benches/lib.sh).
if [[ $LOOPFS == 1 ]]; then
  LOOP_MIB=$(( (3 * BIG_BYTES >> 20) + 512 ))
  loopfs_up pareco-tls "$LOOP_MIB"
  ROOT=$LOOP_MNT
  DST_NOTE="a fresh ext4 with its journal, ${LOOP_MIB} MiB sparse image loop-mounted (nodiscard) at WORK/mnt, every block written once"
else
  ROOT=$WORK/root
  DST_NOTE="in $ROOT ($(findmnt -n -o FSTYPE --target "$WORK" 2>/dev/null || echo '?'), as found)"
fi
mkdir -p "$ROOT/dst"

# A certificate for 127.0.0.1 and the WAN server's address. CA:FALSE matters (see compare.sh).
CERT=$OUT/cert.pem KEY=$OUT/key.pem
openssl req -x509 -newkey rsa:3072 -nodes -days 2 -subj "/CN=pareco-bench" \
  -addext "subjectAltName=IP:127.0.0.1,IP:10.201.0.2" -addext "basicConstraints=critical,CA:FALSE" \
  -keyout "$KEY" -out "$CERT" 2>/dev/null || die "openssl could not make a certificate"

{
  echo "### pareco over TLS against plain TCP, $(date -u '+%Y-%m-%d %H:%M UTC') ($PROFILE data)"
  echo
  echo "- machine: \`nproc\` = $(nproc), memory $(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo) GiB, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), AES instructions: $(grep -qw aes /proc/cpuinfo && echo yes || echo no), Linux $(uname -r)"
  echo "- command: \`$CMDLINE\`"
  echo "- pareco: $BIN_NOTE"
  echo "- data: 8 files x $((BIG_SIZE >> 20)) MiB ($BIG_BYTES bytes), the bytes of compare.sh's scenario 1 (AES-CTR keystreams, fixed seed)"
  echo "- destinations: $DST_NOTE; emptied, \`sync\` and $WARM_MIB MiB written to /dev/shm and freed before every run (untimed)"
  echo "- every run: a fresh \`pareco listen\` (with --tls-cert/--tls-key for TLS, an RSA-3072 self-signed certificate); time = wall time of the client process; CPU of the client from /usr/bin/time, of the server from /proc at its end; destination compared with the source (benches/compare/verify.py)"
  echo "- rounds: $RUNS per link, each one TLS and one plain run, the order swapped every round"
  echo "- load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/header.md"
cat "$OUT/header.md" >&2

# ---------------------------------------------------------------- helpers
proc_jiffies() { # PID: user+system jiffies so far (0 without one)
  [[ -n "$1" && -r /proc/$1/stat ]] || { echo 0; return; }
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
kthreads_jiffies() { # user+system jiffies of the kernel's threads (writeback, the loop device, softirqs...)
  awk 'FNR == 1 { sub(/^.*\) /, ""); if ($2 == 2 || $2 == 0) t += $12 + $13 } END { print t + 0 }' /proc/[0-9]*/stat 2>/dev/null
}

SRV_NS=() CLI_NS=() SRV_HOST=127.0.0.1 LINK=""

ORDER=0
upload() { # VARIANT(tls|plain) ROUND
  local variant=$1 round=$2 tls=0
  [[ $variant == tls ]] && tls=1
  ORDER=$((ORDER + 1))
  local dir; dir=$OUT/runs/$(printf %02d "$ORDER")-$LINK-$variant-r$round
  mkdir -p "$dir"
  local rel=dst/$variant
  rm -rf "${ROOT:?}/$rel"
  sync
  warm_memory
  local serve=(--root "$ROOT") cmd=("$PARECO" send --json)
  [[ $tls == 1 ]] && serve+=(--tls-cert "$CERT" --tls-key "$KEY") cmd+=(--tls --ca-cert "$CERT")
  start_server "$dir" "${serve[@]}"
  cmd+=("$DATA/big" "pareco://$SRV_HOST:$SRV_PORT/$rel")
  printf '%q ' "${CLI_NS[@]}" "${cmd[@]}" > "$dir/command"
  local rc=0 t0 t1 b0 b1 d0 d1 k0 k1 dp load1; load1=$(cut -d' ' -f1 /proc/loadavg)
  dp=$(delaypipe_pid); d0=$(proc_jiffies "$dp"); k0=$(kthreads_jiffies)
  b0=$(busy_jiffies); t0=$EPOCHREALTIME
  "${CLI_NS[@]}" timeout -k 10 "$TIMEOUT" /usr/bin/time -f '%e %U %S %M' -o "$dir/client.time" \
    "${cmd[@]}" > "$dir/client.stdout" 2> "$dir/client.stderr" < /dev/null || rc=$?
  t1=$EPOCHREALTIME; b1=$(busy_jiffies); d1=$(proc_jiffies "$dp"); k1=$(kthreads_jiffies)
  stop_server "$dir/meta"
  local verify="not checked (exit $rc)"
  [[ $rc == 0 ]] && verify=$(python3 "$HELPERS/verify.py" "$DATA/big" "$ROOT/$rel" | head -3 | tr '\n' ' ' || true)
  rm -rf "${ROOT:?}/$rel"
  {
    echo "order=$ORDER"; echo "link=$LINK"; echo "variant=$variant"; echo "round=$round"
    echo "seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')"
    echo "exit=$rc"; echo "verify=${verify% }"; echo "load1=$load1"; echo "source_bytes=$BIG_BYTES"
    echo "machine_cpu_s=$(awk -v a="$b0" -v b="$b1" -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / t}')"
    echo "delaypipe_cpu_s=$(awk -v a="$d0" -v b="$d1" -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / t}')"
    echo "kernel_threads_cpu_s=$(awk -v a="$k0" -v b="$k1" -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / t}')"
  } >> "$dir/meta"
  log "$(printf '%-8s %-5s round %s: %7.3f s  exit %s  verify %s' "$LINK" "$variant" "$round" \
    "$(sed -n 's/^seconds=//p' "$dir/meta")" "$rc" "${verify% }")"
  [[ $rc == 0 ]] || sed 's/^/    | /' "$dir/client.stderr" | tail -12 >&2
}

# ---------------------------------------------------------------- runs
for LINK in "${LINK_LIST[@]}"; do
  if [[ $LINK == wan-loss ]]; then
    [[ -f "$NETNS" ]] || die "no $NETNS"
    [[ -e /run/netns/$NS_A || -e /run/netns/$NS_B ]] && { log "namespaces exist: taking them down first"; bash "$NETNS" down >/dev/null 2>&1 || true; }
    WAN_OPTS=(--delay 25ms --loss 0.1% --rate 1gbit)   # compare.sh's 'wan-loss'
    log "netns.sh up ${WAN_OPTS[*]}"
    bash "$NETNS" up "${WAN_OPTS[@]}" > "$OUT/netns.log" 2>&1 || { cat "$OUT/netns.log" >&2; die "netns.sh up failed"; }
    WAN_UP=1
    SRV_NS=(ip netns exec "$NS_B") CLI_NS=(ip netns exec "$NS_A") SRV_HOST=10.201.0.2
    echo "- link wan-loss: \`netns.sh up ${WAN_OPTS[*]}\`: client in $NS_A, server in $NS_B ($SRV_HOST), 50 ms RTT, 0.1 % loss and 1 Gbit/s each way, TCP congestion control $(ip netns exec "$NS_A" sysctl -n net.ipv4.tcp_congestion_control)" >> "$OUT/header.md"
  else
    SRV_NS=() CLI_NS=() SRV_HOST=127.0.0.1
    echo "- link loopback: 127.0.0.1, client and server in the same namespace" >> "$OUT/header.md"
  fi
  for r in $(seq "$RUNS"); do
    if (( r % 2 )); then upload tls "$r"; upload plain "$r"; else upload plain "$r"; upload tls "$r"; fi
  done
  if [[ $WAN_UP == 1 ]]; then bash "$NETNS" down >/dev/null 2>&1 || true; WAN_UP=0; fi
done
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/header.md"

# ---------------------------------------------------------------- report
python3 - "$OUT" "$DISTURBED_PCT" > "$OUT/results.md" <<'EOF'
import glob, os, statistics, sys
out, limit = sys.argv[1], float(sys.argv[2])
ncpu = os.cpu_count()
runs = []
for d in sorted(glob.glob(os.path.join(out, "runs", "*"))):
    m = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(d, "meta")) if "=" in l)
    try:
        _, u, s, rss = open(os.path.join(d, "client.time")).read().split()[-4:]
        m["client_cpu"] = float(u) + float(s)
        m["client_rss_mib"] = int(rss) / 1024
    except Exception:
        m["client_cpu"] = float("nan")
    m["server_cpu"] = float(m.get("server_user_s", "nan")) + float(m.get("server_sys_s", "nan"))
    m["seconds"] = float(m["seconds"])
    # the link's forwarder (delaypipe, on wan-loss) and the kernel's threads (writeback, the
    # loop device) are part of the run, not a disturbance
    others = (float(m["machine_cpu_s"]) - m["client_cpu"] - m["server_cpu"] - float(m.get("delaypipe_cpu_s", 0))
              - float(m.get("kernel_threads_cpu_s", 0)))
    m["others_pct"] = others / (m["seconds"] * ncpu) * 100
    m["ok"] = m["exit"] == "0" and m["verify"] == "ok" and m["others_pct"] <= limit
    runs.append(m)
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(open(os.path.join(out, "header.md")).read())
print(f"Runs that failed, differ from the source, or during which other processes used more than {limit:.0f} % "
      "of the CPUs are left out of the medians (ok runs: the rest / all). 'pairs' are the rounds whose two runs are both ok.\n")
print("| link | variant | ok runs | median s | spread s | MB/s | client CPU s | server CPU s | client + server CPU s |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for link in dict.fromkeys(r["link"] for r in runs):
    meds = {}
    for v in ("plain", "tls"):
        rs = [r for r in runs if r["link"] == link and r["variant"] == v]
        good = [r for r in rs if r["ok"]]
        secs = [r["seconds"] for r in good]
        meds[v] = med(secs)
        spread = f"{min(secs):.3f}–{max(secs):.3f}" if secs else "—"
        c, s = med([r["client_cpu"] for r in good]), med([r["server_cpu"] for r in good])
        print(f"| {link} | {'TLS' if v == 'tls' else 'plain TCP'} | {len(good)}/{len(rs)} | {meds[v]:.3f} | {spread} | "
              f"{int(rs[0]['source_bytes']) / meds[v] / 1e6:.0f} | "
              f"{c:.2f} | {s:.2f} | {med([r['client_cpu'] + r['server_cpu'] for r in good]):.2f} |")
    pairs = []
    for rnd in dict.fromkeys(r["round"] for r in runs if r["link"] == link):
        p = {r["variant"]: r for r in runs if r["link"] == link and r["round"] == rnd}
        if all(v in p and p[v]["ok"] for v in ("tls", "plain")):
            pairs.append(p["tls"]["seconds"] / p["plain"]["seconds"])
    print(f"| {link} | **TLS / plain** | {len(pairs)} pairs | **{meds['tls'] / meds['plain']:.2f}** (of the medians) | "
          f"{'–'.join(f'{x:.2f}' for x in (min(pairs), max(pairs))) if pairs else '—'} | | median of the pairs' ratios: **{med(pairs):.2f}** | | |")
print("\nPer run (in the order run):\n")
print("| # | link | variant | s | exit | verify | client CPU s | server CPU s | delaypipe CPU s | kernel threads CPU s | others % | load1 |")
print("|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
for r in runs:
    flag = "" if r["ok"] or r["exit"] != "0" or r["verify"] != "ok" else " **disturbed**"
    print(f"| {r['order']} | {r['link']} | {r['variant']} | {r['seconds']:.3f} | {r['exit']} | {r['verify']} | "
          f"{r['client_cpu']:.2f} | {r['server_cpu']:.2f} | {r.get('delaypipe_cpu_s', '—')} | {r.get('kernel_threads_cpu_s', '—')} | {r['others_pct']:.0f}{flag} | {r['load1']} |")
EOF
echo >&2
cat "$OUT/results.md"
echo
echo "results: $OUT/results.md"
