#!/usr/bin/env bash
# make screenshot: the demo's HTML report as a PNG, rendered by headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
report=${1:-report/index.html}
[ -f "$report" ] || { echo "screenshot: no $report; run make demo first" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
  echo "screenshot: installing chromium (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq chromium >/dev/null; else sudo apt-get install -y -qq chromium >/dev/null; fi
fi
profile=$(mktemp -d)
# The flags keep Chromium off the network (this machine has none but package registries).
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --window-size=1400,1300 \
  --screenshot="${report%.html}.png" "file://$PWD/$report" >/dev/null 2>&1
rm -rf "$profile"
echo "screenshot: ${report%.html}.png"
