#!/usr/bin/env bash
# Installs what the console's browser tests need, when missing: Debian's Chromium (driven by
# Playwright through executable_path — never `playwright install`: intranet builds have no
# download site) and the Noto CJK fonts (without them Chinese renders as boxes in screenshots).
# Called by `make test`. Without root or sudo it only warns: the browser tests then skip, except
# under CI=true, where they fail.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "browser tests: chromium/fonts-noto-cjk missing and no root to install them" >&2
        exit 0
    fi
fi
$SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk \
    || echo "browser tests: installing chromium/fonts-noto-cjk failed" >&2
exit 0
