#!/usr/bin/env bash
# A headless Chromium for the browser tests (the Makefile's `test` target uses it).
#
#   scripts/chromium.sh     print the path of a usable Chromium on stdout and exit 0.
#
# Uses /usr/bin/chromium (Debian's package) when it is there, else installs the `chromium`
# package with apt-get (needs root; a few minutes on a bare machine). A browser on PATH
# (chromium, chromium-browser, google-chrome) is taken as it is. "Usable" means that
# `chromium --version` answers. On failure: one line on stderr, exit status 1, nothing on
# stdout. Only the path goes to stdout.
set -euo pipefail

die() {
    echo "chromium.sh: $*" >&2
    exit 1
}

# The first candidate that answers --version (within 30 s: a broken install can hang).
find_chromium() {
    local c path
    for c in /usr/bin/chromium chromium chromium-browser google-chrome; do
        path=$(command -v "$c" 2>/dev/null) || continue
        if timeout 30 "$path" --version >/dev/null 2>&1; then
            echo "$path"
            return 0
        fi
    done
    return 1
}

install_chromium() {
    [[ $EUID -eq 0 ]] || die "Chromium is not installed and installing it needs root"
    command -v apt-get >/dev/null 2>&1 || die "Chromium is not installed and apt-get is missing"
    echo "chromium.sh: installing Debian's chromium package..." >&2
    local log
    log=$(mktemp)
    if ! { timeout 300 apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq chromium; } \
        >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        rm -f "$log"
        die "apt-get install chromium failed"
    fi
    rm -f "$log"
}

[[ $# -eq 0 ]] || die "usage: $0 (no arguments; prints the path of a usable Chromium)"

if ! find_chromium; then
    install_chromium
    find_chromium || die "chromium was installed but $(command -v chromium || echo /usr/bin/chromium) --version does not answer"
fi
