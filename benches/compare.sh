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
                          (default: 1-10 on loopback, and the two below on the WAN links)
  --wan-scenarios LIST    on wan-loss and wan-clean           [PARECO_BENCH_WAN_SCENARIOS, default 1,2,5]
  --cubic-scenarios LIST  on wan-loss-cubic                   [PARECO_BENCH_CUBIC_SCENARIOS, default 1]
  --links LIST            loopback, wan-loss, wan-clean, wan-loss-cubic
                          [PARECO_BENCH_LINKS, default all four]
  --runs N                runs per tool and scenario          [PARECO_BENCH_RUNS, default 3]
  --cubic-runs N          the same on wan-loss-cubic          [PARECO_BENCH_CUBIC_RUNS, default 1,
                          or --runs when only that is given]. rsync moves ~10 Mbit/s there,
                          ~15 min per GiB, so the default is one run of scenario 1.
  --quick                 scale the data down (64 MiB, 2 000 and 5 000 files) for development [PARECO_BENCH_QUICK=1]
  --work DIR              data, destinations, results         [PARECO_BENCH_WORK, default /tmp/pareco-bench]
  --cache-base DIR        pareco's digest caches, a fresh directory per run and side (--cache-dir
                          of the client and of listen); outside the work dir, which is listen's
                          --root [PARECO_BENCH_CACHE, default WORK-caches; each invocation
                          works in a directory of its own there, deleted at exit]
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

Scenarios (pareco's digest cache is on, in a fresh directory per run, unless a row says
--no-cache; in the re-syncs 3, 7, 8b and 9 it is warmed by an untimed run first):
  1 cold copy, upload: 8 files x 128 MiB (rsync -a -W)
  2 cold copy, upload: 20 000 files x 4 KiB in 200 directories (rsync -a)
  3 re-sync of scenario 1's tree, nothing changed, digests on: pareco with a warm cache and
    pareco --no-cache; rsync -a --checksum
  4 one 1 GiB file, 1 % of its 4 KiB pages rewritten, destination holds the old version
    (pareco -c 4KiB and -c 1MiB; rsync -a --no-W, its delta algorithm)
  5 scenario 1 as a download (pareco recv; rsync pulling from the daemon)
  6 scenario 1 over TLS (pareco over TLS and plain; rsync plain for reference: its daemon has no TLS)
  7 re-sync of scenario 2's tree, nothing changed: pareco with a warm cache and --no-cache;
    rsync -a (its quick check) and rsync -a --checksum
  8 100 000 files of 100-4096 bytes in 1 000 directories: 8a cold copy (rsync -a), then
    8b its re-sync, nothing changed, the rows of scenario 7 (8 means both; 8a, 8b one)
  9 a database of 16 files x 64 MiB; 2 of them have 1 % of their 4 KiB pages rewritten in place,
    the destination holds the old version and both caches are warm. Page cache dropped before
    each run (root); bytes read per side from /proc/PID/io. pareco, pareco --inplace,
    pareco --no-cache; rsync -a --no-W
 10 the cost of the cache in a cold copy: scenario 1, pareco against pareco --no-cache

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
CACHE_BASE=${PARECO_BENCH_CACHE:-}
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
    --cache-base) CACHE_BASE=${2:?}; shift 2 ;;
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
LAN_SCENARIOS=${SCENARIOS:-1,2,3,4,5,6,7,8,9,10}
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
  [[ "$s" =~ ^([1-9]|10|8a|8b)$ ]] || die "unknown scenario '$s' (1-10, 8a, 8b)"
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
  GEN_ARGS=(--big-size $((8 << 20)) --small-files 2000 --small-dirs 20 --delta-size $((64 << 20))
    --many-files 5000 --many-dirs 50 --db-size $((4 << 20)))
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
MANY_BYTES=$(manifest many_bytes)
MANY_FILES=$(manifest many_files)
DB_BYTES=$(manifest db_bytes)

# pareco's digest caches: never in $HOME, never inside the work dir (which is the
# servers' root: listen refuses a --cache-dir inside its --root). Each run gets
# fresh directories CACHES/RUN/client and CACHES/RUN/server, deleted after the
# run; CACHES is a directory of this invocation's own in CACHE_BASE, deleted at exit.
CACHE_BASE=${CACHE_BASE:-$WORK-caches}
mkdir -p "$CACHE_BASE"
CACHE_BASE=$(readlink -f "$CACHE_BASE")
case "$CACHE_BASE/" in "$WORK"/*) die "--cache-base $CACHE_BASE is inside the work dir $WORK (the servers' root)" ;; esac
CACHES=$(mktemp -d "$CACHE_BASE/compare.XXXXXX")

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
  [[ -n "${CACHES:-}" ]] && rm -rf "$CACHES"
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
  # scenario 4 file); 3x all the data plus 512 MiB is ample (the many small files
  # of scenario 8 counted at a 4 KiB block each, twice). Sparse: truncate.
  local mib=$(( (3 * (BIG_BYTES + SMALL_BYTES + DELTA_BYTES + DB_BYTES) + 2 * MANY_FILES * 4096 >> 20) + 512 ))
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

# TLS certificate for scenario 6, made at run time the usual way (openssl
# marks it CA:TRUE; the client pins it, being exactly the server's).
TLSDIR=$RESULTS/tls
mkdir -p "$TLSDIR"
CERT=$TLSDIR/cert.pem
KEY=$TLSDIR/key.pem
openssl req -x509 -newkey rsa:3072 -nodes -days 2 -subj "/CN=pareco-bench" \
  -addext "subjectAltName=IP:127.0.0.1,IP:10.201.0.2" \
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
  echo "- page cache: nothing is dropped (sources are read from RAM), \`sync\` before every run; except scenario 9: \`sync; echo 3 > /proc/sys/vm/drop_caches\` before every run, then the binaries and their libraries are read back"
  echo "- pareco's digest cache: on (\`--cache-dir\`, client and server each their own, fresh for every run, in \`$CACHES\`) unless the row says \`--no-cache\` (then client and server); in the re-syncs (3, 7, 8b, 9) an untimed pareco run with the same options fills it first, ≥ 2.1 s after the destination was copied"
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

# Bytes read, from /proc/PID/io: rchar (every byte read(2) and its kin returned,
# from files, sockets and pipes alike, page cache or not) and read_bytes (what the
# process made the block layer fetch from the disk). A process's figures include
# those of the children it has reaped, so this shell's own figures before and
# after a client run give that run's (timeout, time and the client, which read
# nothing else). Sets IO_RCHAR and IO_READ.
proc_io() { # PID (self: $BASHPID; the builtins only, no subshell, which would count too)
  local k v
  IO_RCHAR="" IO_READ=""
  [[ -r /proc/$1/io ]] || return 0
  while read -r k v; do
    case $k in rchar:) IO_RCHAR=$v ;; read_bytes:) IO_READ=$v ;; esac
  done < "/proc/$1/io"
}
SRV_IO0=()
server_io_start() { proc_io "$SRV_PID"; SRV_IO0=("$IO_RCHAR" "$IO_READ"); }
server_io_end() { # DIR: the server's bytes read since server_io_start, into DIR/meta
  proc_io "$SRV_PID"
  if [[ -n "$IO_RCHAR" && -n "${SRV_IO0[0]:-}" ]]; then
    echo "server_rchar=$((IO_RCHAR - SRV_IO0[0]))" >> "$1/meta"
    echo "server_read_bytes=$((IO_READ - SRV_IO0[1]))" >> "$1/meta"
  fi
}

start_pareco_server() { # DIR TLS(0/1) [OPTION...]: sets SRV_PID, SRV_PORT
  local dir=$1 tls=$2
  shift 2
  local args=(listen --bind "$SRV_HOST:0" --root "$WORK" "$@")
  [[ $tls == 1 ]] && args+=(--tls-cert "$CERT" --tls-key "$KEY")
  : > "$dir/server.log"
  printf '%q ' "${SRV_NS[@]}" "$PARECO" "${args[@]}" > "$dir/server.command"
  "${SRV_NS[@]}" "$PARECO" "${args[@]}" > "$dir/server.log" 2>&1 < /dev/null &
  SRV_PID=$!
  SRV_PORT=""
  for _ in $(seq 100); do
    SRV_PORT=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$dir/server.log" || true)
    if [[ -n "$SRV_PORT" ]]; then server_io_start; return 0; fi
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
    server_io_end "$dir"
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
  server_io_start
}

stop_rsync_daemon() { # DIR: /usr/bin/time has written the peak RSS of the daemon tree to DIR/server.rss
  local dir=$1
  # let the per-connection children finish and be reaped by the daemon, so that
  # their peak RSS is folded into the daemon's (wait4 reports the max of the tree),
  # and their bytes read into the daemon's /proc/PID/io
  for _ in $(seq 200); do
    pgrep -P "$SRV_PID" >/dev/null || break
    sleep 0.05
  done
  if kill -0 "$SRV_PID" 2>/dev/null; then
    server_io_end "$dir"
    echo "server_alive=1" >> "$dir/meta"
  else
    echo "server_alive=0" >> "$dir/meta"
  fi
  kill "$SRV_PID" 2>/dev/null || true
  wait "$SRV_WRAP_PID" 2>/dev/null || true
  SRV_PID="" SRV_WRAP_PID=""
}

# ---------------------------------------------------------------- one run
ORDER=0
variants_of() {
  case "$1" in
    3) echo "pareco|pareco --no-cache|rsync" ;;
    4) echo "pareco -c 4KiB|pareco -c 1MiB|rsync" ;;
    6) echo "pareco TLS|pareco|rsync" ;;
    7|8b) echo "pareco|pareco --no-cache|rsync|rsync --checksum" ;;
    9) echo "pareco|pareco --inplace|pareco --no-cache|rsync" ;;
    10) echo "pareco|pareco --no-cache" ;;
    *) echo "pareco|rsync" ;;
  esac
}
is_resync() { [[ $1 == 3 || $1 == 7 || $1 == 8b || $1 == 9 ]]; }

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

# ---------------------------------------------------------------- page cache (scenario 9)
# Scenario 9 counts the bytes each side reads from the disk, so the page cache is
# dropped before each run. The programs a run starts (pareco, rsync, timeout,
# time, and their libraries) are read back right away, so that their own pages
# are not counted as the tool's reads.
PREWARM=()
for f in "$PARECO" "$(command -v rsync)" "$(command -v timeout)" /usr/bin/time; do
  [[ -n "$f" && -e "$f" ]] || continue
  PREWARM+=("$f")
  while read -r lib; do [[ -e "$lib" ]] && PREWARM+=("$lib"); done < <(ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
done
drop_page_cache() {
  sync
  echo 3 > /proc/sys/vm/drop_caches
  cat "${PREWARM[@]}" > /dev/null
}
# Every other scenario reads its source from the page cache: the data is read
# once before the first run and again after scenario 9 has dropped it.
cache_sources() {
  log "reading the data into the page cache"
  find "$DATA" -type f -print0 | xargs -0 cat > /dev/null
}
cache_sources

# ---------------------------------------------------------------- digest cache warm-up
# An untimed pareco run of the same source, destination and options, with the
# caches of the timed run, against a server of its own (the caches are SQLite
# files: the timed run's fresh server opens them again). pareco remembers a
# file only when its mtime and ctime are >= 2 s older than the moment it was
# hashed, so the caller waits that long after copying the destination. The
# server commits what the session taught its cache when the session ends, after
# the client has exited: the warm-up waits for that line in the server's log.
warm_up() { # DIR SRC REL N SERVER_OPT(N of them)... CLIENT_OPT...: an upload of SRC to REL
  local dir=$1 src=$2 rel=$3 nsrv=$4
  shift 4
  local srv=("${@:1:nsrv}") cli=("${@:nsrv+1}")
  local wdir=$dir/warmup rc=0 t0 t1
  mkdir -p "$wdir"
  start_pareco_server "$wdir" 0 "${srv[@]}"
  local cmd=("$PARECO" send "${cli[@]}" "$src" "pareco://$SRV_HOST:$SRV_PORT/$rel")
  printf '%q ' "${CLI_NS[@]}" "${cmd[@]}" > "$wdir/command"
  t0=$EPOCHREALTIME
  "${CLI_NS[@]}" timeout -k 10 "$TIMEOUT" "${cmd[@]}" > "$wdir/client.stdout" 2> "$wdir/client.stderr" < /dev/null || rc=$?
  t1=$EPOCHREALTIME
  for _ in $(seq 100); do
    grep -q 'closed by the client' "$wdir/server.log" && break
    sleep 0.05
  done
  sleep 0.5
  stop_pareco_server "$wdir"
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  local summary; summary=$(grep -o 'digest cache: .*' "$wdir/client.stderr" | tail -1 || true)
  echo "warmup=exit $rc, $secs s${summary:+, $summary}" >> "$dir/meta"
  [[ $rc == 0 ]] || { log "warning: the warm-up run failed (exit $rc):"; tail -5 "$wdir/client.stderr" >&2; }
}

wait_since() { # T SECONDS: sleep until SECONDS have passed since $EPOCHREALTIME was T
  local left; left=$(awk -v t="$1" -v now="$EPOCHREALTIME" -v s="$2" 'BEGIN { l = t + s - now; if (l < 0) l = 0; printf "%.3f", l }')
  [[ $left == 0.000 ]] || sleep "$left"
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
    1|6|10) src=$DATA/big; bytes=$BIG_BYTES ;;
    2|7) src=$DATA/small; bytes=$SMALL_BYTES ;;
    3) src=$DATA/big; bytes=$BIG_BYTES ;;
    4) src=$DATA/delta/new; bytes=$DELTA_BYTES ;;
    5) src=$DATA/big; bytes=$BIG_BYTES; mode=down ;;
    8a|8b) src=$DATA/many; bytes=$MANY_BYTES ;;
    9) src=$WORK/src/$tag; bytes=$DB_BYTES ;;
  esac
  # pareco's digest cache: fresh directories for this run, or none
  local cached=0 ccache=() scache=() cdir=$CACHES/${dir##*/}
  if [[ $tool == pareco ]]; then
    if [[ $variant == *--no-cache* ]]; then
      ccache=(--no-cache) scache=(--no-cache)
    else
      cached=1 ccache=(--cache-dir "$cdir/client") scache=(--cache-dir "$cdir/server")
      rm -rf "$cdir"
    fi
  fi
  # pareco's options of this variant (besides the cache)
  local popts=(--json)
  case "$variant" in
    "pareco -c 4KiB") popts+=(-c 4KiB) ;;
    "pareco -c 1MiB") popts+=(-c 1MiB) ;;
    "pareco TLS") popts+=(--tls --ca-cert "$CERT") ;;
    "pareco --inplace") popts+=(--inplace) ;;
  esac
  # -v: the client's last line says what the cache answered (a re-sync logs nothing per file)
  is_resync "$scen" && popts+=(-v)

  # fresh destination state
  if [[ $mode == up ]]; then rel=${DST_PREFIX}dst/$tag; else rel=${DST_PREFIX}local/$tag; fi
  dest=$WORK/$rel
  rm -rf "$dest"
  local copied=""
  case $scen in
    3|7|8b) cp -a "$src" "$dest"; copied=$EPOCHREALTIME ;;   # already identical
    4) mkdir -p "$dest"; cp -a "$DATA/delta/old/file.bin" "$dest/file.bin" ;;  # the old version
    9) # source and destination: the old version, as both were after the last sync
      rm -rf "$src"; mkdir -p "${src%/*}"
      cp -a "$DATA/db/old" "$src"; cp -a "$DATA/db/old" "$dest"; copied=$EPOCHREALTIME ;;
  esac
  sync
  if is_resync "$scen"; then
    # files younger than 2 s are not remembered by pareco's cache: wait, for every variant alike
    wait_since "$copied" 2.1
    [[ $cached == 1 ]] && warm_up "$dir" "$src" "$rel" "${#scache[@]}" "${scache[@]}" "${popts[@]}" "${ccache[@]}"
  fi
  [[ $scen == 9 ]] && python3 "$HELPERS/dbpatch.py" "$DATA/db" "$src"   # the database writes its pages
  if [[ $scen == 9 ]]; then drop_page_cache; echo "page_cache=dropped" >> "$dir/meta"; else sync; fi
  warm_memory

  local tls=0
  [[ "$variant" == "pareco TLS" ]] && tls=1
  if [[ $tool == pareco ]]; then start_pareco_server "$dir" $tls "${scache[@]}"; else start_rsync_daemon "$dir"; fi

  local cmd=()
  if [[ $tool == pareco ]]; then
    local scheme=pareco
    if [[ $mode == up ]]; then
      cmd=("$PARECO" send "${popts[@]}" "${ccache[@]}" "$src" "$scheme://$SRV_HOST:$SRV_PORT/$rel")
    else
      cmd=("$PARECO" recv "${popts[@]}" "${ccache[@]}" "$scheme://$SRV_HOST:$SRV_PORT/data/$PROFILE/big" "$dest")
    fi
  else
    local opts=(--stats)
    case $scen in
      1|5|6) opts+=(-a -W) ;;
      2|8a) opts+=(-a) ;;
      3) opts+=(-a --checksum) ;;
      4|9) opts+=(-a --no-W) ;;
      7|8b) opts+=(-a); [[ $variant == "rsync --checksum" ]] && opts+=(--checksum) ;;
    esac
    if [[ $mode == up ]]; then
      cmd=(rsync "${opts[@]}" "$src/" "rsync://$SRV_HOST:$SRV_PORT/bench/$rel/")
    else
      cmd=(rsync "${opts[@]}" "rsync://$SRV_HOST:$SRV_PORT/bench/data/$PROFILE/big/" "$dest/")
    fi
  fi
  printf '%q ' "${CLI_NS[@]}" "${cmd[@]}" > "$dir/command"

  local rc=0 t0 t1 load1 io0
  load1=$(cut -d' ' -f1 /proc/loadavg)
  proc_io "$BASHPID"; io0=("$IO_RCHAR" "$IO_READ")
  t0=$EPOCHREALTIME
  "${CLI_NS[@]}" timeout -k 10 "$TIMEOUT" /usr/bin/time -f '%e %U %S %M' -o "$dir/client.time" \
    "${cmd[@]}" > "$dir/client.stdout" 2> "$dir/client.stderr" < /dev/null || rc=$?
  t1=$EPOCHREALTIME
  proc_io "$BASHPID"
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  if [[ -n "$IO_RCHAR" && -n "${io0[0]}" ]]; then
    echo "client_rchar=$((IO_RCHAR - io0[0]))" >> "$dir/meta"
    echo "client_read_bytes=$((IO_READ - io0[1]))" >> "$dir/meta"
  fi

  if [[ $tool == pareco ]]; then stop_pareco_server "$dir"; else stop_rsync_daemon "$dir"; fi

  local verify="not checked"
  if [[ $rc == 0 ]]; then
    local want=$src
    verify=$(python3 "$HELPERS/verify.py" "$want" "$dest" || true)
  fi
  [[ $rc == 124 || $rc == 137 ]] && verify="timeout after ${TIMEOUT}s"
  if [[ $cached == 1 ]]; then
    local c s
    c=$(du -sb "$cdir/client" 2>/dev/null | cut -f1 || true)
    s=$(du -sb "$cdir/server" 2>/dev/null | cut -f1 || true)
    echo "cache_bytes=${c:-0} ${s:-0}" >> "$dir/meta"
    rm -rf "$cdir"
  fi
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
  [[ $scen == 9 ]] && rm -rf "$src"
  log "$(printf '%-8s s%-2s %-17s run %s/%s: %8.2f s  exit %s  verify %s' "$LINK" "$scen" "$variant" "$run" "$LINK_RUNS" "$secs" "$rc" "$verify")"
  if [[ $rc != 0 ]]; then
    sed 's/^/    | /' "$dir/client.stderr" | tail -8 >&2
  fi
}

run_scenario() { # SCENARIO (8 is 8a then 8b)
  local scen=$1 run v
  if [[ $scen == 8 ]]; then run_scenario 8a; run_scenario 8b; return; fi
  if [[ $scen == 9 && $EUID -ne 0 ]]; then
    log "SKIPPING scenario 9: dropping the page cache needs root"
    return
  fi
  local IFS_SAVE=$IFS
  local variants; IFS='|' read -r -a variants <<<"$(variants_of "$scen")"
  IFS=$IFS_SAVE
  for run in $(seq "$LINK_RUNS"); do
    for v in "${variants[@]}"; do do_run "$scen" "$v" "$run"; done
  done
  if [[ $scen == 9 ]]; then cache_sources; fi
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
