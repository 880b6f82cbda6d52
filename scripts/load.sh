#!/usr/bin/env bash
# Honest load on one pareco server, longer than the `load` integration
# test: ROUNDS rounds of SESSIONS concurrent clients (half `send`, half
# `recv`, CONNECTIONS connections each), each on its own tree of SMALL
# small files (0-4 KiB) and LARGE_COUNT files of about LARGE_KIB KiB. Every
# round uploads into fresh places and downloads into fresh directories,
# then checks every mirror with diff -r. Prints per round: wall time, the
# server's peak RSS so far (VmHWM) and its RSS after the round, its open
# descriptors before, at peak (sampled every 0.1 s) and after (once back
# to idle, or after DRAIN seconds), and the connections the clients had to
# make again (their --json `reconnects`). Then the server's warnings,
# counted by kind. Fails if a client fails or is late, a mirror differs,
# or descriptors stay above idle.
#
#   scripts/load.sh                       # 3 rounds of 64 sessions
#   ROUNDS=10 LARGE_KIB=8192 scripts/load.sh
#
# Settings (environment): SESSIONS (64), ROUNDS (3), CONNECTIONS (8),
# CHUNK (256KiB), SMALL (200), LARGE_COUNT (2), LARGE_KIB (2048),
# DEADLINE (seconds a round may take, 300), DRAIN (seconds for the
# descriptors to return to idle, 15), CLIENT_FLAGS (more client options,
# -q; e.g. -vv), BIN (a pareco binary; default: build
# target/release/pareco, under $CARGO_TARGET_DIR if set), KEEP (set: keep
# the temporary directory, with the server's and clients' logs).
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-64}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-8}
CHUNK=${CHUNK:-256KiB}
SMALL=${SMALL:-200}
LARGE_COUNT=${LARGE_COUNT:-2}
LARGE_KIB=${LARGE_KIB:-2048}
DEADLINE=${DEADLINE:-300}
DRAIN=${DRAIN:-15}
CLIENT_FLAGS=${CLIENT_FLAGS:--q}

if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet --bin pareco
    BIN=${CARGO_TARGET_DIR:-target}/release/pareco
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pareco-load.XXXXXX")
server=
clients=()
cleanup() {
    local pid
    for pid in "${clients[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -n $server ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    if [[ -n ${KEEP:-} ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fds() { find "/proc/$server/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
now_ms() { date +%s%3N; }
ms_to_s() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
status_kib() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$server/status"; }

# One tree: SMALL small files (random text) in 10 directories, LARGE_COUNT
# large ones (random bytes).
make_tree() {
    local dir=$1 j
    mkdir -p "$dir"/d{0..9}
    awk -v dir="$dir" -v n="$SMALL" -v seed="$RANDOM" 'BEGIN {
        srand(seed)
        for (j = 0; j < n; j++) {
            path = dir "/d" (j % 10) "/f" j
            len = int(rand() * 4097)
            line = ""
            for (k = 0; k < len; k++) line = line sprintf("%c", 33 + int(rand() * 94))
            printf "%s", line > path
            close(path)
        }
    }'
    for ((j = 0; j < LARGE_COUNT; j++)); do
        head -c $((LARGE_KIB * 1024 + RANDOM)) /dev/urandom > "$dir/large$j.bin"
    done
}

mkdir -p "$work/root" "$work/src" "$work/logs"
echo "load: $ROUNDS rounds of $SESSIONS sessions x $CONNECTIONS connections, chunk $CHUNK;" \
    "per tree $SMALL small files + $LARGE_COUNT x $LARGE_KIB KiB"
echo "making $SESSIONS trees in $work ..."
# Even sessions upload src/i; odd ones download the server's down/i.
for ((i = 0; i < SESSIONS; i++)); do
    if ((i % 2 == 0)); then make_tree "$work/src/$i"; else make_tree "$work/root/down/$i"; fi
done
echo "data per round: $(du -sh "$work/src" "$work/root/down" | awk '{ print $1 }' | paste -sd+) (up+down)"

"$BIN" listen --bind 127.0.0.1:0 --root "$work/root" --max-sessions "$SESSIONS" 2> "$work/server.log" &
server=$!
for _ in $(seq 100); do grep -qs '^listening on' "$work/server.log" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/server.log")
[[ -n $addr ]] || { echo "server did not start:"; cat "$work/server.log"; exit 1; }
idle=$(fds)
echo "server pid $server on $addr: idle RSS $(status_kib VmRSS) KiB, $idle descriptors"
printf '%-6s %8s %14s %14s %10s %10s %10s %7s %10s\n' \
    round wall_s peak_rss_kib rss_after_kib fds_before fds_peak fds_after drain_s reconnects

failed=0
for ((round = 1; round <= ROUNDS; round++)); do
    before=$(fds)
    start=$(now_ms)
    clients=()
    # CLIENT_FLAGS unquoted on purpose: several options, or none.
    # shellcheck disable=SC2086
    for ((i = 0; i < SESSIONS; i++)); do
        log="$work/logs/$round-$i"
        if ((i % 2 == 0)); then
            "$BIN" send "$work/src/$i" "pareco://$addr/up/$round/$i" \
                -n "$CONNECTIONS" -c "$CHUNK" --json $CLIENT_FLAGS > "$log.json" 2> "$log" &
        else
            mkdir -p "$work/dst/$round/$i"
            "$BIN" recv "pareco://$addr/down/$i" "$work/dst/$round/$i" \
                -n "$CONNECTIONS" -c "$CHUNK" --json $CLIENT_FLAGS > "$log.json" 2> "$log" &
        fi
        clients+=($!)
    done
    # Sample the descriptors while the clients run; give up at DEADLINE.
    peak=$before
    while :; do
        now=$(fds)
        ((now > peak)) && peak=$now
        running=0
        for pid in "${clients[@]}"; do kill -0 "$pid" 2>/dev/null && running=$((running + 1)); done
        ((running == 0)) && break
        if (($(now_ms) - start > DEADLINE * 1000)); then
            echo "round $round: $running client(s) still running after ${DEADLINE}s; killed"
            for pid in "${clients[@]}"; do kill "$pid" 2>/dev/null || true; done
            failed=1
            break
        fi
        sleep 0.1
    done
    bad=0
    for ((i = 0; i < SESSIONS; i++)); do
        if ! wait "${clients[$i]}"; then
            echo "round $round: client $i failed: $(tail -n 3 "$work/logs/$round-$i")"
            bad=$((bad + 1))
        fi
    done
    clients=()
    wall=$(ms_to_s $(($(now_ms) - start)))
    drain_start=$(now_ms)
    after=$(fds)
    while ((after != idle)) && (($(now_ms) - drain_start < DRAIN * 1000)); do
        sleep 0.1
        after=$(fds)
    done
    drain=$(ms_to_s $(($(now_ms) - drain_start)))
    reconnects=$(awk -F'"reconnects":' 'NF > 1 { n += $2 + 0 } END { print n + 0 }' \
        "$work/logs/$round"-*.json)
    printf '%-6s %8s %14s %14s %10s %10s %10s %7s %10s\n' \
        "$round" "$wall" "$(status_kib VmHWM)" "$(status_kib VmRSS)" "$before" "$peak" "$after" "$drain" "$reconnects"
    for ((i = 0; i < SESSIONS; i++)); do
        if ((i % 2 == 0)); then
            a=$work/src/$i b=$work/root/up/$round/$i
        else
            a=$work/root/down/$i b=$work/dst/$round/$i
        fi
        diff -r "$a" "$b" > /dev/null || { echo "round $round: session $i: $b differs from $a"; bad=$((bad + 1)); }
    done
    ((after == idle)) || { echo "round $round: $after descriptors, $idle idle: leak?"; failed=1; }
    ((bad == 0)) || failed=1
    # Free the disk for the next round.
    rm -rf "$work/root/up/$round" "$work/dst/$round"
done
echo "server warnings and errors (count, kind):"
{ grep -E '^ *(WARN|ERROR) ' "$work/server.log" || true; } |
    sed -E 's/127\.0\.0\.1:[0-9]+/ADDR/g; s/session [0-9a-f]{16}/session ID/g' | sort | uniq -c | sort -rn
if ((failed)); then echo "load: FAILED"; exit 1; fi
echo "load: all $ROUNDS rounds complete; peak RSS $(status_kib VmHWM) KiB; descriptors back to $idle"
