#!/usr/bin/env bash
# Many rounds of the chaos test (tests/it/chaos.rs): a transfer of a
# changing tree, the client or the server killed with SIGKILL at a random
# moment, no torn file, an exact mirror after a rerun.
#
#   scripts/chaos.sh [ROUNDS] [SEED]      (defaults: 200, the time of day)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-200}"
seed="${2:-$(date +%s)}"
PARECO_CHAOS_ROUNDS="$rounds" PARECO_CHAOS_SEED="$seed" \
    cargo test --release --test it chaos:: -- --nocapture 2>&1 | grep -E '^chaos:|panicked|FAILED|test result' 
