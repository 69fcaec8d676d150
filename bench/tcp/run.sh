#!/bin/sh
# Service kind tcp bench: edged vs HAProxy (mode tcp, send-proxy-v2) with wrk through the same
# namespaces to the same nginx backend; prints req/s, conn/s, Gbit/s and CPU per connection / per
# GB with edged/haproxy ratios. Needs root, nginx-light, haproxy, wrk (tests/run.sh or
# deploy/install-deps.sh installs them; this script installs nothing).
# Usage: bench/tcp/run.sh [build-dir]   env: BENCH_SECS per workload and peer (default 10)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
for tool in wrk haproxy nginx; do
  command -v "$tool" >/dev/null || { echo "$tool missing: run deploy/install-deps.sh" >&2; exit 1; }
done
[ -d "$build" ] || meson setup "$build" "$root"
ninja -C "$build" -j2 edge/edged edge/edgectl >/dev/null
EDGE_BUILD=$(cd "$build" && pwd) exec /usr/bin/python3 "$here/tcp_bench.py"
