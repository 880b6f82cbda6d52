# benches/lib.sh: what the end-to-end benchmark scripts share. Sourced by
# auto.sh, faults.sh and tls.sh after they set BENCH (their name, for
# messages) and REPO; each function says which of the script's variables it
# reads and sets.

die() { echo "$BENCH: error: $*" >&2; exit 1; }
log() { echo "$BENCH: $(date -u +%H:%M:%S) $*" >&2; }

# Builds the committed HEAD (git archive, so nobody's uncommitted edits are
# measured) with cargo build --release into CARGO_TARGET_DIR and copies the
# binary into WORK. Sets GIT_REV, PARECO and BIN_NOTE (how the binary was
# made, for the results' header). With PARECO already set (--pareco), only
# checks it and describes it.
build_head() {
  GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ -n "$PARECO" ]]; then
    [[ -x "$PARECO" ]] || die "no pareco binary at $PARECO"
    PARECO=$(readlink -f "$PARECO")
    BIN_NOTE="given with --pareco ($PARECO, $(date -u -r "$PARECO" '+%Y-%m-%d %H:%M UTC')); HEAD is $GIT_REV"
    return 0
  fi
  command -v cargo >/dev/null || die "cargo not found (or use --pareco BIN)"
  local src=$WORK/src-$GIT_REV
  rm -rf "$src"; mkdir -p "$src"
  git -C "$REPO" archive HEAD | tar -x -C "$src"
  log "building pareco at commit $GIT_REV (release) into $CARGO_TARGET_DIR"
  (cd "$src" && cargo build --release --quiet --bin pareco)
  PARECO=$WORK/pareco-$GIT_REV
  cp "$CARGO_TARGET_DIR/release/pareco" "$PARECO"
  rm -rf "$src"
  BIN_NOTE="built by this run from commit $GIT_REV exactly (git archive HEAD, uncommitted changes left out)"
}

# The destination file system: a fresh ext4 with its journal in a sparse
# image of MIB MiB at LOOP_IMG, loop-mounted at LOOP_MNT, every block written
# once (benches/README.md says why: first writes into never-written blocks
# of the image cost the writer extra CPU). Sets LOOP_MOUNTED; loopfs_down
# (from the script's cleanup) undoes it.
LOOP_MOUNTED=0
loopfs_up() { # LABEL MIB
  if mountpoint -q "$LOOP_MNT" 2>/dev/null; then log "unmounting $LOOP_MNT left by an interrupted run"; umount "$LOOP_MNT"; fi
  rm -f "$LOOP_IMG"
  truncate -s "${2}M" "$LOOP_IMG"
  mkfs.ext4 -q -F -L "$1" "$LOOP_IMG"
  mkdir -p "$LOOP_MNT"
  mount -o loop,nodiscard "$LOOP_IMG" "$LOOP_MNT"
  LOOP_MOUNTED=1
  log "filling the $2 MiB image once"
  dd if=/dev/zero of="$LOOP_MNT/.fill" bs=4M status=none 2>/dev/null || true
  sync; rm -f "$LOOP_MNT/.fill"; sync
}
loopfs_down() {
  [[ $LOOP_MOUNTED == 1 ]] || return 0
  for _ in $(seq 20); do umount "$LOOP_MNT" 2>/dev/null && { LOOP_MOUNTED=0; break; }; sleep 0.5; done
  [[ $LOOP_MOUNTED == 0 ]] || { log "could not unmount $LOOP_MNT: detaching it lazily"; umount -l "$LOOP_MNT" || true; LOOP_MOUNTED=0; }
  rm -f "$LOOP_IMG"; rmdir "$LOOP_MNT" 2>/dev/null || true
}

# Writes WARM_MIB MiB to /dev/shm and frees them (benches/README.md: memory
# the balloon took back is handed out again before a run, not during it).
# The script's cleanup removes WARM_FILE, in case it was interrupted there.
WARM_FILE=/dev/shm/pareco-${BENCH%.sh}-warm.$$
warm_memory() {
  [[ $WARM_MIB -gt 0 ]] || return 0
  head -c "$((WARM_MIB << 20))" /dev/zero > "$WARM_FILE" 2>/dev/null || log "warning: could not warm $WARM_MIB MiB"
  rm -f "$WARM_FILE"
}

# The machine's busy CPU time (jiffies) from /proc/stat, with builtins only
# (no fork).
busy_jiffies() {
  local _c u n sy idle iow irq sirq st _r
  read -r _c u n sy idle iow irq sirq st _r < /proc/stat
  echo $((u + n + sy + irq + sirq + st))
}

# The link emulator's process while the namespaces are up (WAN_UP=1), from
# the pid file netns.sh writes for namespaces NS_A and NS_B.
delaypipe_pid() {
  [[ $WAN_UP == 1 ]] || return 0
  cat "${WAN_RUNDIR:-${TMPDIR:-/tmp}/wan-netns-$NS_A-$NS_B}/delaypipe.pid" 2>/dev/null || pgrep -x delaypipe | head -1 || true
}

# A fresh `pareco listen --bind SRV_HOST:0 ARGS...` in the server's namespace
# (SRV_NS, a command prefix), its output in DIR/server.log. Sets SRV_PID and
# SRV_PORT (the port it printed), or dies with its log.
start_server() { # DIR ARGS...
  local dir=$1; shift
  "${SRV_NS[@]}" "$PARECO" listen --bind "$SRV_HOST:0" "$@" > "$dir/server.log" 2>&1 < /dev/null &
  SRV_PID=$! SRV_PORT=""
  for _ in $(seq 200); do
    SRV_PORT=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$dir/server.log" || true)
    [[ -n "$SRV_PORT" ]] && return 0
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$dir/server.log" >&2; die "pareco listen did not start"
}

# Stops the server; with a META file, first appends its CPU seconds there
# (server_cpu_s, server_user_s, server_sys_s), or server_alive=0 if it had
# died.
stop_server() { # [META]
  if [[ -n "${1:-}" ]]; then
    if kill -0 "$SRV_PID" 2>/dev/null; then
      awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "server_cpu_s=%.2f\nserver_user_s=%.2f\nserver_sys_s=%.2f\n", ($12 + $13) / t, $12 / t, $13 / t }' \
        "/proc/$SRV_PID/stat" >> "$1" || true
    else
      echo "server_alive=0" >> "$1"
    fi
  fi
  kill "$SRV_PID" 2>/dev/null || true
  wait "$SRV_PID" 2>/dev/null || true
  SRV_PID=""
}
