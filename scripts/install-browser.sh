#!/bin/sh
# Install the headless browser the web-page test drives (tests/test_serve_browser.py): Debian's
# chromium at /usr/bin/chromium. Playwright launches it directly, so `playwright install` (which
# downloads its own browser) is never needed.
#
# Idempotent: does nothing when /usr/bin/chromium exists. Without root or apt-get it says so and
# exits 0; the browser test then skips with the reason.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get here; install chromium yourself (the browser test will skip)" >&2
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: not root; run 'sudo apt-get install chromium' (the browser test will skip)" >&2
    exit 0
fi
echo "install-browser: installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/dev/null; then
    echo "install-browser: apt-get could not install chromium (the browser test will skip)" >&2
    exit 0
fi
