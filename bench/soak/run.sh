#!/bin/sh
# Soak bench: edged's RSS over time under a steady mixed load (WAF'd keep-alive and close loops
# with wrk, a TLS handshake loop with curl); prints the slope after warm-up and end / warm-up RSS.
# Needs root, nginx-light, wrk, curl (deploy/install-deps.sh installs them).
# Usage: bench/soak/run.sh [build-dir]   env: SOAK_SECS (default 1800), BENCH_JSON
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null || { echo "$tool missing: run deploy/install-deps.sh" >&2; exit 1; }
done
[ -d "$build" ] || meson setup "$build" "$root"
ninja -C "$build" -j2 edge/edged edge/edgectl >/dev/null
EDGE_BUILD=$(cd "$build" && pwd) exec /usr/bin/python3 "$here/soak.py"
