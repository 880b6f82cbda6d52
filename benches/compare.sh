#!/usr/bin/env bash
# benches/compare.sh: pareco versus rsync (daemon mode), side by side, on the
# same generated data and the same link. See benches/README.md for what every
# scenario and column means. Run with -h for the options.
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
HELPERS=$REPO/benches/compare
source "$REPO/benches/compare/quote_args.sh"
CMDLINE=$(quote_args "$0" "$@")

usage() {
  cat <<EOF
Usage: benches/compare.sh [options]

Builds pareco (release), generates deterministic incompressible data (cached in
the work dir), runs pareco and rsync (as a daemon, no ssh) alternately on the
same data and link, and prints one table (also written as Markdown).

Options (each also settable by the environment variable shown):
  --scenarios LIST        scenarios on every link, e.g. 1,3   [PARECO_BENCH_SCENARIOS]
                          (default: 1,2,3,4,5,6 on loopback, and the two below on the WAN links)
  --wan-scenarios LIST    on wan-loss and wan-clean           [PARECO_BENCH_WAN_SCENARIOS, default 1,2,5]
  --cubic-scenarios LIST  on wan-loss-cubic                   [PARECO_BENCH_CUBIC_SCENARIOS, default 1]
  --links LIST            loopback, wan-loss, wan-clean, wan-loss-cubic
                          [PARECO_BENCH_LINKS, default all four]
  --runs N                runs per tool and scenario          [PARECO_BENCH_RUNS, default 3]
  --cubic-runs N          the same on wan-loss-cubic          [PARECO_BENCH_CUBIC_RUNS, default 1,
                          or --runs when only that is given]. rsync moves ~10 Mbit/s there,
                          ~15 min per GiB, so the default is one run of scenario 1.
  --quick                 scale the data down (64 MiB, 2 000 files) for development [PARECO_BENCH_QUICK=1]
  --work DIR              data, destinations, results         [PARECO_BENCH_WORK, default /tmp/pareco-bench]
  --timeout SEC           kill a client run after SEC seconds [PARECO_BENCH_TIMEOUT, default 1800]
  --warm-mib MIB          before each run, touch and free this much memory (see benches/README.md)
                          [PARECO_BENCH_WARM_MIB, default 3072 when the kernel has free page
                          reporting (/sys/module/page_reporting), else 0]
  --iperf-secs SEC        length of each iperf3 measurement of a link [PARECO_BENCH_IPERF_SECS,
                          default 30: on the lossy cubic link a 5 s run is mostly slow start
                          and reads 2-2.5x the steady rate]
  --no-loopfs             keep the destinations in the work dir instead of on a fresh journaled
                          ext4 loop-mounted at WORK/mnt (the default when run as root and
                          'mount -o loop' works; see benches/README.md) [PARECO_BENCH_LOOPFS=0]
  --no-build              use the existing binary, do not run cargo
  --pareco BIN            use this pareco binary (implies --no-build) [PARECO_BIN]
  -h, --help              this text

Other environment: CARGO_TARGET_DIR (default /tmp/target-bench, so the repo's
target/ is never touched), PARECO_BENCH_NETNS (path of netns.sh, default
<repo>/../shared/wan/netns.sh), WAN_NS_A / WAN_NS_B (namespace names, default
nsA / nsB), PARECO_BENCH_WAN_EXTRA (extra options for 'netns.sh up', e.g.
"--tcp-buf 33554432").

Scenarios:
  1 cold copy, upload: 8 files x 128 MiB (rsync -a -W)
  2 cold copy, upload: 20 000 files x 4 KiB in 200 directories (rsync -a)
  3 re-sync of scenario 1's tree, nothing changed, digests on (pareco default; rsync -a --checksum)
  4 one 1 GiB file, 1 % of its 4 KiB pages rewritten, destination holds the old version
    (pareco -c 4KiB and -c 1MiB; rsync -a --no-W, its delta algorithm)
  5 scenario 1 as a download (pareco recv; rsync pulling from the daemon)
  6 scenario 1 over TLS (pareco over TLS and plain; rsync plain for reference: its daemon has no TLS)

Links:
  loopback        127.0.0.1
  wan-loss        netns.sh up --delay 25ms --loss 0.1% --rate 1gbit  (50 ms RTT, host's default cc, bbr here)
  wan-clean       netns.sh up --delay 25ms --rate 1gbit
  wan-loss-cubic  netns.sh up --delay 25ms --loss 0.1% --rate 1gbit --cc cubic
  WAN links need root and ip(8); the server runs in nsB (10.201.0.2), the client in nsA.

Example: benches/compare.sh --quick --scenarios 1,3 --links loopback,wan-loss --runs 1
EOF
}

die() { echo "compare.sh: error: $*" >&2; exit 1; }
log() { echo "compare.sh: $*" >&2; }

# ---------------------------------------------------------------- options
WORK=${PARECO_BENCH_WORK:-/tmp/pareco-bench}
RUNS=${PARECO_BENCH_RUNS:-3}
CUBIC_RUNS=${PARECO_BENCH_CUBIC_RUNS:-}
SCENARIOS=${PARECO_BENCH_SCENARIOS:-}
WAN_SCENARIOS=${PARECO_BENCH_WAN_SCENARIOS:-}
CUBIC_SCENARIOS=${PARECO_BENCH_CUBIC_SCENARIOS:-}
RUNS_SET=0
[[ -n "${PARECO_BENCH_RUNS:-}" ]] && RUNS_SET=1
LINKS=${PARECO_BENCH_LINKS:-loopback,wan-loss,wan-clean,wan-loss-cubic}
QUICK=${PARECO_BENCH_QUICK:-0}
TIMEOUT=${PARECO_BENCH_TIMEOUT:-1800}
IPERF_SECS=${PARECO_BENCH_IPERF_SECS:-30}
if [[ -d /sys/module/page_reporting ]]; then WARM_MIB=${PARECO_BENCH_WARM_MIB:-3072}; else WARM_MIB=${PARECO_BENCH_WARM_MIB:-0}; fi
LOOPFS=${PARECO_BENCH_LOOPFS:-1}
PARECO=${PARECO_BIN:-}
BUILD=1
[[ -n "$PARECO" ]] && BUILD=0
NETNS=${PARECO_BENCH_NETNS:-$REPO/../shared/wan/netns.sh}
WAN_EXTRA=${PARECO_BENCH_WAN_EXTRA:-}
NS_A=${WAN_NS_A:-nsA}
NS_B=${WAN_NS_B:-nsB}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --scenarios) SCENARIOS=${2:?}; shift 2 ;;
    --wan-scenarios) WAN_SCENARIOS=${2:?}; shift 2 ;;
    --cubic-scenarios) CUBIC_SCENARIOS=${2:?}; shift 2 ;;
    --cubic-runs) CUBIC_RUNS=${2:?}; shift 2 ;;
    --links) LINKS=${2:?}; shift 2 ;;
    --runs) RUNS=${2:?}; RUNS_SET=1; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --work) WORK=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --iperf-secs) IPERF_SECS=${2:?}; shift 2 ;;
    --warm-mib) WARM_MIB=${2:?}; shift 2 ;;
    --no-loopfs) LOOPFS=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --pareco) PARECO=${2:?}; BUILD=0; shift 2 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
# an explicit --scenarios / --runs applies to every link unless a link-specific option is given too
LAN_SCENARIOS=${SCENARIOS:-1,2,3,4,5,6}
WAN_SCENARIOS=${WAN_SCENARIOS:-${SCENARIOS:-1,2,5}}
CUBIC_SCENARIOS=${CUBIC_SCENARIOS:-${SCENARIOS:-1}}
if [[ -z "$CUBIC_RUNS" ]]; then
  if [[ $RUNS_SET == 1 ]]; then CUBIC_RUNS=$RUNS; else CUBIC_RUNS=1; fi
fi
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive integer, not '$RUNS'"
[[ "$CUBIC_RUNS" =~ ^[1-9][0-9]*$ ]] || die "--cubic-runs wants a positive integer, not '$CUBIC_RUNS'"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--timeout wants seconds, not '$TIMEOUT'"
[[ "$IPERF_SECS" =~ ^[1-9][0-9]*$ ]] || die "--iperf-secs wants seconds, not '$IPERF_SECS'"
[[ "$WARM_MIB" =~ ^[0-9]+$ ]] || die "--warm-mib wants MiB, not '$WARM_MIB'"
for s in ${LAN_SCENARIOS//,/ } ${WAN_SCENARIOS//,/ } ${CUBIC_SCENARIOS//,/ }; do
  [[ "$s" =~ ^[1-6]$ ]] || die "unknown scenario '$s' (1-6)"
done
for l in ${LINKS//,/ }; do
  case "$l" in loopback|wan-loss|wan-clean|wan-loss-cubic) ;; *) die "unknown link '$l'" ;; esac
done

# ---------------------------------------------------------------- tools
ensure_tools() {
  local pkgs=()
  command -v rsync >/dev/null || pkgs+=(rsync)
  command -v iperf3 >/dev/null || pkgs+=(iperf3)
  command -v openssl >/dev/null || pkgs+=(openssl)
  command -v python3 >/dev/null || pkgs+=(python3)
  [[ -x /usr/bin/time ]] || pkgs+=(time)
  command -v pgrep >/dev/null || pkgs+=(procps)
  command -v ss >/dev/null || pkgs+=(iproute2)
  command -v timeout >/dev/null || pkgs+=(coreutils)
  if [[ $LOOPFS == 1 && $EUID -eq 0 ]]; then
    command -v mkfs.ext4 >/dev/null || pkgs+=(e2fsprogs)
    command -v mountpoint >/dev/null || pkgs+=(util-linux)
  fi
  if [[ ${#pkgs[@]} -gt 0 ]]; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
      log "installing ${pkgs[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    else
      die "missing ${pkgs[*]} and cannot install them (need root and apt-get)"
    fi
  fi
}
ensure_tools

GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $BUILD == 1 ]]; then
  command -v cargo >/dev/null || die "cargo not found (or use --pareco BIN)"
  log "building pareco (release) into $CARGO_TARGET_DIR"
  (cd "$REPO" && cargo build --release --quiet --bin pareco)
  PARECO=$CARGO_TARGET_DIR/release/pareco
  BIN_NOTE="built by this run from the working tree at commit $GIT_REV (uncommitted changes included)"
fi
[[ -n "$PARECO" ]] || PARECO=$CARGO_TARGET_DIR/release/pareco
[[ -x "$PARECO" ]] || die "no pareco binary at $PARECO"
PARECO=$(readlink -f "$PARECO")
[[ $BUILD == 1 ]] || BIN_NOTE="not built by this run: binary of $(date -u -r "$PARECO" '+%Y-%m-%d %H:%M UTC'); HEAD is now $GIT_REV"

# ---------------------------------------------------------------- data
mkdir -p "$WORK"
WORK=$(readlink -f "$WORK")
if [[ $QUICK == 1 ]]; then
  PROFILE=quick
  GEN_ARGS=(--big-size $((8 << 20)) --small-files 2000 --small-dirs 20 --delta-size $((64 << 20)))
else
  PROFILE=full
  GEN_ARGS=()
fi
DATA=$WORK/data/$PROFILE
log "data: $DATA"
python3 "$HELPERS/gen.py" "$DATA" "${GEN_ARGS[@]}" >&2
manifest() { python3 -c "import json,sys; print(json.load(open('$DATA/manifest.json'))['$1'])"; }
BIG_BYTES=$(manifest big_bytes)
SMALL_BYTES=$(manifest small_bytes)
DELTA_BYTES=$(manifest delta_bytes)

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$WORK/results/$STAMP-$PROFILE
mkdir -p "$RESULTS/runs"
cp "$DATA/manifest.json" "$RESULTS/"

# ---------------------------------------------------------------- processes
SRV_PID=""       # the server process (pareco listen, or rsync --daemon)
SRV_WRAP_PID=""  # /usr/bin/time around the rsync daemon
IPERF_PID=""
WAN_UP=0
cleanup() {
  local rc=$?
  if [[ -n "$SRV_PID" ]]; then kill "$SRV_PID" 2>/dev/null || true; fi
  if [[ -n "$IPERF_PID" ]]; then kill "$IPERF_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -f "/dev/shm/pareco-bench-warm.$$"
  loopfs_down
  if [[ $WAN_UP == 1 ]]; then
    log "bringing the WAN namespaces down"
    bash "$NETNS" down >/dev/null 2>&1 || true
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- destination file system
# Every destination tree (uploads: WORK/mnt/dst/..., reached by both servers through
# their root WORK; downloads: WORK/mnt/local/...; the prepared trees of scenarios 3
# and 4) lives on a fresh ext4 with its default journal, made by this script in a
# sparse image file under WORK and loop-mounted at WORK/mnt. Why: on an ext4
# without a journal (as /tmp is here) the inode allocator skips inodes freed in the
# last few minutes (recently_deleted() in fs/ext4/ialloc.c, only consulted when
# there is no journal), so creating many files right after deleting many others
# gets slower run after run, for both tools. The sources stay where they are.
LOOP_IMG=$WORK/loopfs.img
LOOP_MNT=$WORK/mnt
LOOP_MOUNTED=0
loopfs_down() {
  [[ $LOOP_MOUNTED == 1 ]] || return 0
  for _ in $(seq 20); do
    umount "$LOOP_MNT" 2>/dev/null && { LOOP_MOUNTED=0; break; }
    sleep 0.5
  done
  if [[ $LOOP_MOUNTED == 1 ]]; then
    log "could not unmount $LOOP_MNT (busy?): detaching it lazily"
    umount -l "$LOOP_MNT" 2>/dev/null || true
    LOOP_MOUNTED=0
  fi
  rm -f "$LOOP_IMG"
  rmdir "$LOOP_MNT" 2>/dev/null || true
}
loopfs_up() { # sets DST_BASE, DST_PREFIX and DST_NOTE; returns 1 with the reason in LOOPFS_WHY when it cannot
  [[ $EUID -eq 0 ]] || { LOOPFS_WHY="not root"; return 1; }
  command -v mkfs.ext4 >/dev/null || { LOOPFS_WHY="no mkfs.ext4"; return 1; }
  command -v mount >/dev/null || { LOOPFS_WHY="no mount(8)"; return 1; }
  # left over from an interrupted run of this script
  if mountpoint -q "$LOOP_MNT" 2>/dev/null; then
    log "$LOOP_MNT is still mounted (an earlier run was interrupted?): unmounting it"
    umount "$LOOP_MNT" >&2 || { LOOPFS_WHY="$LOOP_MNT is mounted and cannot be unmounted"; return 1; }
  fi
  rm -f "$LOOP_IMG"
  # the destinations hold at most one tree at a time (plus a temporary copy of the
  # scenario 4 file); 3x all the data plus 512 MiB is ample. Sparse: truncate.
  local mib=$(( (3 * (BIG_BYTES + SMALL_BYTES + DELTA_BYTES) >> 20) + 512 ))
  local out
  truncate -s "${mib}M" "$LOOP_IMG" || { LOOPFS_WHY="truncate -s ${mib}M $LOOP_IMG failed"; return 1; }
  if ! out=$(mkfs.ext4 -q -F -L pareco-bench "$LOOP_IMG" 2>&1); then
    rm -f "$LOOP_IMG"; LOOPFS_WHY="mkfs.ext4 failed: $out"; return 1
  fi
  mkdir -p "$LOOP_MNT"
  if ! out=$(mount -o loop,nodiscard "$LOOP_IMG" "$LOOP_MNT" 2>&1); then
    rm -f "$LOOP_IMG"; rmdir "$LOOP_MNT" 2>/dev/null || true
    LOOPFS_WHY="mount -o loop failed: $out"; return 1
  fi
  LOOP_MOUNTED=1
  # Write every block of the image once, then free it again. Until a block of the
  # sparse image has been written, the first write into it costs the writer about
  # 2.5 s of CPU per GiB more (measured: a 1 GiB download used 2.8 s of system time
  # on a fresh image and 0.45 s on a filled one), and which tool happens to land on
  # fresh blocks is luck. nodiscard keeps the freed blocks allocated in the image.
  log "filling the ${mib} MiB image once so no run writes into never-written blocks"
  dd if=/dev/zero of="$LOOP_MNT/.fill" bs=4M status=none 2>/dev/null
  sync; rm -f "$LOOP_MNT/.fill"; sync
  [[ $(fs_of "$LOOP_MNT") == "ext4 with a journal" ]] || log "warning: $LOOP_MNT is $(fs_of "$LOOP_MNT"), not a journaled ext4"
  local dev; dev=$(findmnt -n -o SOURCE --target "$LOOP_MNT" 2>/dev/null || echo "a loop device")
  DST_BASE=$LOOP_MNT DST_PREFIX=mnt/
  DST_NOTE="a fresh ext4 with its default journal (\`mkfs.ext4\`, ${mib} MiB sparse image \`WORK/loopfs.img\`, \`mount -o loop,nodiscard\` at \`WORK/mnt\`, every block written once before the first run), made for this run, the same for both tools; sources in \`WORK/data\` ($(fs_of "$DATA"))"
  log "destinations: ext4 with journal, ${mib} MiB sparse image on $dev, mounted at $LOOP_MNT"
  return 0
}
fs_of() { # DIR: "ext4 without a journal", "ext4 with a journal", "xfs", ... (a mounted ext4 with a
  # journal has /proc/fs/jbd2/DEV-INO; /proc/fs/ext4/DEV exists for every mounted ext4)
  local fs dev; fs=$(findmnt -n -o FSTYPE --target "$1" 2>/dev/null || echo '?')
  dev=$(findmnt -n -o SOURCE --target "$1" 2>/dev/null || true)
  dev=${dev##*/}
  if [[ $fs == ext4 && -n "$dev" && -d /proc/fs/ext4/$dev ]]; then
    if compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null; then fs+=" with a journal"; else fs+=" without a journal"; fi
  fi
  echo "$fs"
}
DST_BASE=$WORK DST_PREFIX="" LOOPFS_WHY=""
WORK_FS=$(fs_of "$WORK")
DST_NOTE="in the work dir ($WORK_FS, as found)"
if [[ $LOOPFS == 1 ]]; then
  if ! loopfs_up; then
    log "NOT using a loop-mounted file system for the destinations ($LOOPFS_WHY): they stay in $WORK ($WORK_FS)"
    DST_NOTE="in the work dir ($WORK_FS, as found; no loop file system: $LOOPFS_WHY)"
  fi
else
  DST_NOTE="in the work dir ($WORK_FS, as found; --no-loopfs)"
fi
mkdir -p "$DST_BASE/dst" "$DST_BASE/local"
: > "$RESULTS/links.tsv"
: > "$RESULTS/iperf.tsv"

# TLS certificate for scenario 6, made at run time. CA:FALSE matters: openssl's
# default for req -x509 is CA:TRUE, and rustls/webpki then refuses the
# certificate as a server certificate (CaUsedAsEndEntity).
TLSDIR=$RESULTS/tls
mkdir -p "$TLSDIR"
CERT=$TLSDIR/cert.pem
KEY=$TLSDIR/key.pem
openssl req -x509 -newkey rsa:3072 -nodes -days 2 -subj "/CN=pareco-bench" \
  -addext "subjectAltName=IP:127.0.0.1,IP:10.201.0.2" -addext "basicConstraints=critical,CA:FALSE" \
  -keyout "$KEY" -out "$CERT" 2>/dev/null || die "openssl could not make a certificate"

# rsync daemon configuration (the module is the work dir, like pareco's --root)
RSYNC_CONF=$RESULTS/rsyncd.conf
cat > "$RSYNC_CONF" <<EOF
use chroot = no
read only = no
uid = root
gid = root
max connections = 0
[bench]
  path = $WORK
  use chroot = no
  read only = no
  uid = root
  gid = root
EOF

# ---------------------------------------------------------------- header
MEM_GIB=$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)
CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "### pareco vs rsync, $(date -u '+%Y-%m-%d %H:%M UTC') ($PROFILE data)"
  echo
  echo "- machine: \`nproc\` = $(nproc), memory $MEM_GIB GiB, ${CPU_MODEL:-unknown CPU}, Linux $(uname -r)"
  echo "- command: \`$CMDLINE\`"
  echo "- pareco: $("$PARECO" --version 2>/dev/null), $BIN_NOTE ($PARECO)"
  echo "- rsync: $(rsync --version | head -1 | sed 's/  */ /g'), daemon per run, no ssh"
  echo "- destinations: $DST_NOTE"
  echo "- warm cache: nothing is dropped from the page cache (sources are read from RAM); \`sync\` before every run"
  echo "- load average (1, 5, 15 min) at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- runs: $RUNS per tool and scenario ($CUBIC_RUNS on wan-loss-cubic), alternating pareco/rsync; median of the successful runs"
  echo "- link capacity: iperf3 -P 1 and -P 8, ${IPERF_SECS} s each, on every WAN link before its runs"
  if [[ $WARM_MIB -gt 0 ]]; then
    echo "- memory: $WARM_MIB MiB written to /dev/shm and freed again right before every run (free page reporting, see benches/README.md)"
  else
    echo "- memory: no warm-up before the runs (--warm-mib 0)"
  fi
} > "$RESULTS/header.txt"
cat "$RESULTS/header.txt" >&2
echo >&2

SRV_NS=() CLI_NS=() SRV_HOST=127.0.0.1 LINK=""

free_port() { # a free TCP port in the server's namespace
  "${SRV_NS[@]}" python3 -c 'import socket; s=socket.socket(); s.bind(("'"$SRV_HOST"'", 0)); print(s.getsockname()[1])'
}

wait_port() { # wait until something listens on $1 in the server's namespace
  for _ in $(seq 100); do
    "${SRV_NS[@]}" ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    sleep 0.05
  done
  return 1
}

start_pareco_server() { # DIR TLS(0/1): sets SRV_PID, SRV_PORT
  local dir=$1 tls=$2
  local args=(listen --bind "$SRV_HOST:0" --root "$WORK")
  [[ $tls == 1 ]] && args+=(--tls-cert "$CERT" --tls-key "$KEY")
  : > "$dir/server.log"
  "${SRV_NS[@]}" "$PARECO" "${args[@]}" > "$dir/server.log" 2>&1 < /dev/null &
  SRV_PID=$!
  SRV_PORT=""
  for _ in $(seq 100); do
    SRV_PORT=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$dir/server.log" || true)
    [[ -n "$SRV_PORT" ]] && return 0
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$dir/server.log" >&2
  die "pareco server did not start"
}

stop_pareco_server() { # DIR: records VmHWM (KiB) of the server in DIR/server.rss
  local dir=$1
  if kill -0 "$SRV_PID" 2>/dev/null; then
    # same layout as /usr/bin/time -f '%e %U %S %M': wall (unknown), user s, system s, peak RSS KiB
    local hwm ticks; ticks=$(getconf CLK_TCK)
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SRV_PID/status" 2>/dev/null || true)
    awk -v t="$ticks" -v m="$hwm" '{ sub(/^.*\) /, ""); printf "0 %.2f %.2f %s\n", $12 / t, $13 / t, m }' \
      "/proc/$SRV_PID/stat" > "$dir/server.rss" 2>/dev/null || true
    echo "server_alive=1" >> "$dir/meta"
    kill "$SRV_PID" 2>/dev/null || true
  else
    echo "server_alive=0" >> "$dir/meta"
  fi
  wait "$SRV_PID" 2>/dev/null || true
  SRV_PID=""
}

start_rsync_daemon() { # DIR: sets SRV_WRAP_PID (time) and SRV_PID (the daemon), SRV_PORT
  local dir=$1
  SRV_PORT=$RSYNC_PORT
  "${SRV_NS[@]}" /usr/bin/time -f '%e %U %S %M' -o "$dir/server.rss" \
    rsync --daemon --no-detach --config="$RSYNC_CONF" --address="$SRV_HOST" --port="$SRV_PORT" \
    --log-file="$dir/server.log" > "$dir/server.out" 2>&1 < /dev/null &
  SRV_WRAP_PID=$!
  SRV_PID=""
  for _ in $(seq 100); do
    SRV_PID=$(pgrep -P "$SRV_WRAP_PID" -x rsync || true)
    [[ -n "$SRV_PID" ]] && break
    sleep 0.02
  done
  [[ -n "$SRV_PID" ]] || { cat "$dir/server.out" >&2; die "rsync daemon did not start"; }
  wait_port "$SRV_PORT" || { cat "$dir/server.out" "$dir/server.log" >&2; die "rsync daemon does not listen on $SRV_PORT"; }
}

stop_rsync_daemon() { # DIR: /usr/bin/time has written the peak RSS of the daemon tree to DIR/server.rss
  local dir=$1
  # let the per-connection children finish and be reaped by the daemon, so that
  # their peak RSS is folded into the daemon's (wait4 reports the max of the tree)
  for _ in $(seq 200); do
    pgrep -P "$SRV_PID" >/dev/null || break
    sleep 0.05
  done
  if kill -0 "$SRV_PID" 2>/dev/null; then echo "server_alive=1" >> "$dir/meta"; else echo "server_alive=0" >> "$dir/meta"; fi
  kill "$SRV_PID" 2>/dev/null || true
  wait "$SRV_WRAP_PID" 2>/dev/null || true
  SRV_PID="" SRV_WRAP_PID=""
}

# ---------------------------------------------------------------- one run
ORDER=0
variants_of() {
  case "$1" in
    4) echo "pareco -c 4KiB|pareco -c 1MiB|rsync" ;;
    6) echo "pareco TLS|pareco|rsync" ;;
    *) echo "pareco|rsync" ;;
  esac
}

# ---------------------------------------------------------------- guest memory
# On a VM whose kernel hands free memory back to the host (free page reporting,
# as on the Firecracker VM of benches/README.md), the first touch of a page handed
# back costs a fault in the host: writing 1 GiB into the page cache took 1.7 s
# of system time instead of 0.35 s when the freed memory had had 15 s to be
# reported (dd, measured). Which run meets such pages is luck, and the cost
# lands on whichever process writes. So before every run WARM_MIB of memory is
# touched and freed: the run's allocations reuse those pages, which are handed
# back only a few seconds after they are freed.
warm_memory() {
  [[ $WARM_MIB -gt 0 ]] || return 0
  local f=/dev/shm/pareco-bench-warm.$$
  head -c "$((WARM_MIB << 20))" /dev/zero > "$f" 2>/dev/null || log "warning: could not warm $WARM_MIB MiB in /dev/shm"
  rm -f "$f"
}

do_run() { # SCENARIO VARIANT RUN
  local scen=$1 variant=$2 run=$3
  ORDER=$((ORDER + 1))
  local tag="s$scen-${variant//[^a-zA-Z0-9]/_}"
  local dir; dir=$RESULTS/runs/$(printf %04d "$ORDER")-$LINK-$tag-r$run
  mkdir -p "$dir"
  local tool=${variant%% *}
  local src bytes dest rel mode=up
  case $scen in
    1|6) src=$DATA/big; bytes=$BIG_BYTES ;;
    2) src=$DATA/small; bytes=$SMALL_BYTES ;;
    3) src=$DATA/big; bytes=$BIG_BYTES ;;
    4) src=$DATA/delta/new; bytes=$DELTA_BYTES ;;
    5) src=$DATA/big; bytes=$BIG_BYTES; mode=down ;;
  esac
  # fresh destination state
  if [[ $mode == up ]]; then rel=${DST_PREFIX}dst/$tag; else rel=${DST_PREFIX}local/$tag; fi
  dest=$WORK/$rel
  rm -rf "$dest"
  case $scen in
    3) cp -a "$src" "$dest" ;;                       # already identical
    4) mkdir -p "$dest"; cp -a "$DATA/delta/old/file.bin" "$dest/file.bin" ;;  # the old version
  esac
  sync
  warm_memory

  local tls=0
  [[ "$variant" == "pareco TLS" ]] && tls=1
  if [[ $tool == pareco ]]; then start_pareco_server "$dir" $tls; else start_rsync_daemon "$dir"; fi

  local cmd=()
  if [[ $tool == pareco ]]; then
    local scheme=pareco opts=(--json)
    case "$variant" in
      "pareco -c 4KiB") opts+=(-c 4KiB) ;;
      "pareco -c 1MiB") opts+=(-c 1MiB) ;;
      "pareco TLS") opts+=(--tls --ca-cert "$CERT") ;;
    esac
    if [[ $mode == up ]]; then
      cmd=("$PARECO" send "${opts[@]}" "$src" "$scheme://$SRV_HOST:$SRV_PORT/$rel")
    else
      cmd=("$PARECO" recv "${opts[@]}" "$scheme://$SRV_HOST:$SRV_PORT/data/$PROFILE/big" "$dest")
    fi
  else
    local opts=(--stats)
    case $scen in
      1|5|6) opts+=(-a -W) ;;
      2) opts+=(-a) ;;
      3) opts+=(-a --checksum) ;;
      4) opts+=(-a --no-W) ;;
    esac
    if [[ $mode == up ]]; then
      cmd=(rsync "${opts[@]}" "$src/" "rsync://$SRV_HOST:$SRV_PORT/bench/$rel/")
    else
      cmd=(rsync "${opts[@]}" "rsync://$SRV_HOST:$SRV_PORT/bench/data/$PROFILE/big/" "$dest/")
    fi
  fi
  printf '%q ' "${CLI_NS[@]}" "${cmd[@]}" > "$dir/command"

  local rc=0 t0 t1 load1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  t0=$EPOCHREALTIME
  "${CLI_NS[@]}" timeout -k 10 "$TIMEOUT" /usr/bin/time -f '%e %U %S %M' -o "$dir/client.time" \
    "${cmd[@]}" > "$dir/client.stdout" 2> "$dir/client.stderr" < /dev/null || rc=$?
  t1=$EPOCHREALTIME
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')

  if [[ $tool == pareco ]]; then stop_pareco_server "$dir"; else stop_rsync_daemon "$dir"; fi

  local verify="not checked"
  if [[ $rc == 0 ]]; then
    local want=$src
    verify=$(python3 "$HELPERS/verify.py" "$want" "$dest" || true)
  fi
  [[ $rc == 124 || $rc == 137 ]] && verify="timeout after ${TIMEOUT}s"
  {
    echo "order=$ORDER"
    echo "scenario=$scen"
    echo "link=$LINK"
    echo "tool=$tool"
    echo "variant=$variant"
    echo "run=$run"
    echo "seconds=$secs"
    echo "exit=$rc"
    echo "source_bytes=$bytes"
    echo "verify=$verify"
    echo "load1=$load1"
  } >> "$dir/meta"
  rm -rf "$dest"
  log "$(printf '%-8s s%s %-15s run %s/%s: %8.2f s  exit %s  verify %s' "$LINK" "$scen" "$variant" "$run" "$LINK_RUNS" "$secs" "$rc" "$verify")"
  if [[ $rc != 0 ]]; then
    sed 's/^/    | /' "$dir/client.stderr" | tail -8 >&2
  fi
}

run_scenario() { # SCENARIO
  local scen=$1 run v
  local IFS_SAVE=$IFS
  local variants; IFS='|' read -r -a variants <<<"$(variants_of "$scen")"
  IFS=$IFS_SAVE
  for run in $(seq "$LINK_RUNS"); do
    for v in "${variants[@]}"; do do_run "$scen" "$v" "$run"; done
  done
}

# ---------------------------------------------------------------- links
iperf_measure() { # records the link's own capacity: iperf3 -P 1 and -P 8, IPERF_SECS each, receiver Mbit/s
  local port p out res=()
  port=$(free_port)
  "${SRV_NS[@]}" iperf3 -s -p "$port" > "$RESULTS/iperf-$LINK-server.log" 2>&1 < /dev/null &
  IPERF_PID=$!
  wait_port "$port" || die "iperf3 server did not start"
  for p in 1 8; do
    out=$RESULTS/iperf-$LINK-P$p.json
    "${CLI_NS[@]}" iperf3 -c "$SRV_HOST" -p "$port" -t "$IPERF_SECS" -P "$p" -J > "$out" 2>&1 || true
    res+=("$(python3 -c 'import json,sys
try: print("%.1f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e6))
except Exception: print("")' "$out")")
  done
  kill "$IPERF_PID" 2>/dev/null || true
  wait "$IPERF_PID" 2>/dev/null || true
  IPERF_PID=""
  printf '%s\t%s\t%s\n' "$LINK" "${res[0]}" "${res[1]}" >> "$RESULTS/iperf.tsv"
  log "$LINK: iperf3 -P 1 ${res[0]:-?} Mbit/s, -P 8 ${res[1]:-?} Mbit/s"
}

wan_possible() {
  [[ $EUID -eq 0 ]] || { echo "not root"; return 1; }
  command -v ip >/dev/null || { echo "no ip(8)"; return 1; }
  [[ -x "$NETNS" || -f "$NETNS" ]] || { echo "no $NETNS"; return 1; }
  return 0
}

setup_link() { # LINK: returns 1 when the link cannot be set up
  LINK=$1
  case "$LINK" in
    loopback)
      SRV_NS=() CLI_NS=() SRV_HOST=127.0.0.1
      printf '%s\t%s\n' "$LINK" "127.0.0.1, client and server on the same host" >> "$RESULTS/links.tsv"
      ;;
    wan-*)
      local why
      if ! why=$(wan_possible); then
        log "SKIPPING link $LINK: the emulated WAN cannot be set up ($why)"
        printf '%s\t%s\n' "$LINK" "SKIPPED: $why" >> "$RESULTS/links.tsv"
        return 1
      fi
      local opts=(--delay 25ms --rate 1gbit)
      [[ $LINK == wan-loss || $LINK == wan-loss-cubic ]] && opts+=(--loss 0.1%)
      [[ $LINK == wan-loss-cubic ]] && opts+=(--cc cubic)
      # shellcheck disable=SC2206
      [[ -n "$WAN_EXTRA" ]] && opts+=($WAN_EXTRA)
      if [[ -e /run/netns/$NS_A || -e /run/netns/$NS_B ]]; then
        log "namespaces $NS_A/$NS_B exist: taking them down to set them up afresh"
        bash "$NETNS" down > /dev/null 2>&1 || true
      fi
      log "$LINK: netns.sh up ${opts[*]}"
      if ! bash "$NETNS" up "${opts[@]}" > "$RESULTS/netns-$LINK.log" 2>&1; then
        cat "$RESULTS/netns-$LINK.log" >&2
        log "SKIPPING link $LINK: netns.sh up failed"
        printf '%s\t%s\n' "$LINK" "SKIPPED: netns.sh up failed" >> "$RESULTS/links.tsv"
        bash "$NETNS" down > /dev/null 2>&1 || true
        return 1
      fi
      WAN_UP=1
      SRV_NS=(ip netns exec "$NS_B") CLI_NS=(ip netns exec "$NS_A") SRV_HOST=10.201.0.2
      local cc; cc=$(ip netns exec "$NS_A" sysctl -n net.ipv4.tcp_congestion_control)
      printf '%s\t%s\n' "$LINK" "\`netns.sh up ${opts[*]}\`: $NS_A 10.201.0.1 → $NS_B 10.201.0.2 through delaypipe, 50 ms RTT, TCP congestion control $cc" >> "$RESULTS/links.tsv"
      iperf_measure
      ;;
  esac
  RSYNC_PORT=$(free_port)
  return 0
}

teardown_link() {
  if [[ $LINK == wan-* && $WAN_UP == 1 ]]; then
    bash "$NETNS" down > /dev/null 2>&1 || true
    WAN_UP=0
  fi
}

STARTED=$SECONDS
for link in ${LINKS//,/ }; do
  LINK_RUNS=$RUNS
  case $link in
    loopback) scen_list=$LAN_SCENARIOS ;;
    wan-loss-cubic) scen_list=$CUBIC_SCENARIOS; LINK_RUNS=$CUBIC_RUNS ;;
    *) scen_list=$WAN_SCENARIOS ;;
  esac
  setup_link "$link" || continue
  for scen in ${scen_list//,/ }; do
    run_scenario "$scen"
  done
  teardown_link
done
log "all runs done in $(( (SECONDS - STARTED) / 60 )) min $(( (SECONDS - STARTED) % 60 )) s"
echo "- load average (1, 5, 15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg); all runs took $(( (SECONDS - STARTED) / 60 )) min $(( (SECONDS - STARTED) % 60 )) s" >> "$RESULTS/header.txt"

# ---------------------------------------------------------------- report
echo
sed 's/^### //; s/^- //; s/`//g' "$RESULTS/header.txt"
echo
python3 "$HELPERS/report.py" "$RESULTS"
echo
echo "results (Markdown): $RESULTS/results.md"
echo "raw runs:           $RESULTS/runs/"
