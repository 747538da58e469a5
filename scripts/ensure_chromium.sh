#!/usr/bin/env bash
# Make sure a Chromium binary (and a sans font for Streamlit pages) is available
# for the real-browser tests. `playwright install` cannot download browsers here,
# so the tests drive the system Chromium instead.
set -euo pipefail

find_chromium() {
    # An explicit CHROMIUM wins; otherwise look on PATH.
    if [[ -n "${CHROMIUM:-}" ]]; then
        [[ -x "$CHROMIUM" ]] && { echo "$CHROMIUM"; return 0; }
        echo "CHROMIUM=$CHROMIUM is not an executable file" >&2
        return 1
    fi
    command -v chromium || command -v chromium-browser
}

report() {
    local bin=$1
    echo "Chromium: $bin"
    # --version needs no display; a hang here would mean a broken install.
    timeout 30 "$bin" --version
    if command -v fc-match >/dev/null 2>&1; then
        echo "Sans font: $(fc-match sans-serif)"
    fi
}

if bin=$(find_chromium 2>/dev/null); then
    report "$bin"
    exit 0
fi

if [[ -n "${CHROMIUM:-}" ]]; then
    find_chromium || true  # re-run to print why CHROMIUM was rejected
    exit 1
fi

if [[ ${EUID} -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "Chromium not found; installing it with apt-get..."
    apt-get update
    # fonts-liberation/fonts-dejavu-core: Streamlit renders blank boxes without a sans font.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        chromium fonts-liberation fonts-dejavu-core
    if bin=$(find_chromium 2>/dev/null); then
        report "$bin"
        exit 0
    fi
    echo "apt-get install finished but no chromium binary is on PATH" >&2
    exit 1
fi

{
    echo "Chromium is required for the browser tests but was not found."
    echo "Install Chromium: sudo apt-get install chromium fonts-liberation (Debian/Ubuntu),"
    echo "or set CHROMIUM=/path/to/chrome to use an existing Chromium/Chrome binary."
} >&2
exit 1
