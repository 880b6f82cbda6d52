#!/usr/bin/env bash
# Builds pareco, starts a local server on a temporary root, uploads a sample
# tree, changes one chunk, syncs again, and downloads it back: the whole
# product in half a minute, on one machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/pareco
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$work/root" "$work/sample/docs" "$work/sample/empty"
head -c 64M /dev/urandom > "$work/sample/database.bin"
for i in $(seq 1 200); do echo "note $i" > "$work/sample/docs/note-$i.txt"; done
ln -s docs/note-1.txt "$work/sample/latest"

token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export PARECO_TOKEN=$token
"$bin" listen --bind 127.0.0.1:0 --root "$work/root" 2> "$work/server.log" &
server=$!
for _ in $(seq 50); do grep -qs '^listening on' "$work/server.log" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/server.log")

echo "== first upload (everything travels)"
"$bin" send "$work/sample" "pareco://$addr/backup"
echo
echo "== 7 bytes of the database change; sync again (one chunk travels)"
printf 'changed' | dd of="$work/sample/database.bin" bs=1 seek=40000000 conv=notrunc status=none
"$bin" send "$work/sample" "pareco://$addr/backup"
echo
echo "== download it back and compare"
"$bin" recv "pareco://$addr/backup" "$work/restored" -q
diff -r "$work/sample" "$work/restored" && echo "restored tree is identical"
