#!/usr/bin/env bash
# Screenshot of a `balcon report` page as a browser shows it (the README's picture).
#   bash benchmarks/report_screenshot.sh OUT.png HEIGHT RUN_DIR [RUN_DIR ...]
# Writes OUT.html beside OUT.png. Needs Debian's chromium (apt-get install chromium).
# The README's docs/report-cifar10-lt.png: the 15-epoch CIFAR-10-LT runs of BENCHMARKS.md,
#   bash benchmarks/report_screenshot.sh docs/report-cifar10-lt.png 1500 runs/ce runs/la-s0 ...
set -euo pipefail
out=$1; height=$2; shift 2
command -v chromium >/dev/null || { echo "report_screenshot.sh: chromium not found; install it: apt-get install chromium" >&2; exit 2; }
html="${out%.png}.html"
balcon report "$@" --out "$html"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1200,"$height" --screenshot="$out" "file://$(realpath "$html")" 2>/dev/null
echo "wrote $out"
