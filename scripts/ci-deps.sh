#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain when it is
# missing: Chromium and chromedriver for the browser test of `pareco ui`
# (tests/it/ui_browser.rs; without them that test says it skipped).
# Debian/Ubuntu, as root (CI) or through sudo.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "ci-deps: no apt-get; install chromium and chromedriver by hand to run the browser test" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
fi
echo "== installing chromium and chromium-driver"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
