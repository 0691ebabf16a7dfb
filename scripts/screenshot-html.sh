#!/usr/bin/env bash
# Opens the HTML page of `tcplab lab` in headless Chromium and saves a screenshot, to
# check the page in a real browser. Not part of `cargo test`: it needs Chromium
# (apt-get install chromium), which a fresh machine does not have.
#
#   scripts/screenshot-html.sh [SCENARIO] [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-echo}
out=${2:-target/lab-$scenario.png}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "screenshot-html: no Chromium found (apt-get install chromium)" >&2
  exit 1
fi
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
./target/release/tcplab lab "$scenario" --html "$dir/lab.html" > /dev/null
# Wide enough for the ladder (1100 px) and the state diagram (680 px) side by side, tall
# enough for the whole ladder plus the title and path table above it.
ladder_h=$(grep -o 'class="ladder" width="[0-9]*" height="[0-9]*"' "$dir/lab.html" | grep -o '[0-9]*"$' | tr -d '"')
height=$(( ${ladder_h:-1000} + 320 ))
# The flags keep Chromium off the network: the page must render offline.
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run \
  --user-data-dir="$dir/profile" --window-size=1900,"$height" \
  --screenshot="$(realpath -m "$out")" "file://$dir/lab.html" 2> "$dir/chromium.log" || {
  cat "$dir/chromium.log" >&2
  exit 1
}
echo "screenshot-html: wrote $out"
