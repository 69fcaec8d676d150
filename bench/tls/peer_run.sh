#!/bin/sh
# TLS termination peer bench: edged (service kind tls, async offload on and off) vs HAProxy 2.6 and
# nginx stream (ssl_preread off), one at a time on the same namespaces, certificates, backend and
# load client (tls_load), with `openssl speed` bounds from the same run; prints server CPU per
# handshake (ECDSA, RSA, resumed) and per GB, and the ratios. Needs root, haproxy, nginx-light,
# libnginx-mod-stream (deploy/install-deps.sh installs them; this script installs nothing).
# Usage: bench/tls/peer_run.sh [build-dir]
#   env: BENCH_SECS per phase (8), BENCH_CONNS (32), BENCH_BULK_CONNS (4), BENCH_RATE (300),
#        BENCH_ROUNDS (1), BENCH_PIN (1),
#        BENCH_EDGED (1; 0 = peers and bound only), BENCH_PROFILE (0; 1 or phases, e.g. full-ecdsa,bulk = perf profile per server)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
for tool in haproxy nginx openssl taskset; do
  command -v "$tool" >/dev/null || { echo "$tool missing: run deploy/install-deps.sh" >&2; exit 1; }
done
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] ||
  { echo "nginx stream module missing: run deploy/install-deps.sh (libnginx-mod-stream)" >&2; exit 1; }
[ -d "$build" ] || meson setup "$build" "$root"
targets=bench/tls/tls_load
[ "${BENCH_EDGED:-1}" = 0 ] || targets="$targets edge/edged edge/edgectl"
ninja -C "$build" -j2 $targets >/dev/null
EDGE_BUILD=$(cd "$build" && pwd) exec /usr/bin/python3 "$here/peer_bench.py"
