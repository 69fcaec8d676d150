#!/bin/sh
# SYN flood bench: SYN-ACKs per CPU-second of edged's SYN cookies against the kernel's listener
# with tcp_syncookies=2, under the same hping3 flood (bench/limits/syn_flood.py says how the CPUs
# are split and what is counted). Needs root, 2+ CPUs, hping3 (tests/run.sh or
# deploy/install-deps.sh installs it; this script installs nothing).
# Usage: bench/limits/syn_run.sh [build-dir]   env: BENCH_SECS per defender (default 10), BENCH_PERF
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
for tool in hping3 nft taskset; do
  command -v "$tool" >/dev/null || { echo "$tool missing: run deploy/install-deps.sh" >&2; exit 1; }
done
[ -d "$build" ] || meson setup "$build" "$root"
ninja -C "$build" -j2 edge/edged edge/edgectl >/dev/null
EDGE_BUILD=$(cd "$build" && pwd) exec /usr/bin/python3 "$here/syn_flood.py"
