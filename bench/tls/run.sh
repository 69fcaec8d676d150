#!/bin/sh
# In-process TLS bench against the crypto bound of this machine, measured in the same run.
# usage: bench/tls/run.sh [BUILD_DIR] [HANDSHAKES]   (build the tls_bench target first)
# The peer comparison (edged vs HAProxy and nginx over the network) is bench/tls/peer_run.sh.
# Prints the raw figures, then server CPU per handshake as a multiple of one private-key signature
# (`openssl speed` sign/s, one core) and bulk server CPU throughput as a fraction of AES-128-GCM.
set -eu
build=${1:-build}
n=${2:-2000}
here=$(cd "$(dirname "$0")" && pwd)
bench="$build/bench/tls/tls_bench"
[ -x "$bench" ] || { echo "missing $bench (ninja -C $build bench/tls/tls_bench)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sh "$here/../../tests/certs/gen.sh" "$tmp/certs" >/dev/null

openssl speed -seconds 3 ecdsap256 rsa2048 2>/dev/null >"$tmp/speed.txt"
openssl speed -seconds 3 -evp aes-128-gcm -bytes 16384 2>/dev/null >>"$tmp/speed.txt"
ecdsa=$(awk '/ecdsa \(nistp256\)/ {print $7}' "$tmp/speed.txt")
rsa=$(awk '/^rsa 2048 bits/ {print $6}' "$tmp/speed.txt")
gcm=$(awk '/^AES-128-GCM/ {v=$2; sub("k","",v); print v/1000}' "$tmp/speed.txt")
echo "openssl_speed ecdsap256_sign_per_s $ecdsa rsa2048_sign_per_s $rsa aes128gcm_16k_MB_per_s $gcm"

"$bench" "$tmp/certs" "$n" | tee "$tmp/bench.txt"

awk -v e="$ecdsa" -v r="$rsa" -v g="$gcm" '
  /_server_us / {
    bound = ($1 ~ /rsa/) ? 1e6 / r : 1e6 / e
    printf "ratio %-40s %7.1f us = %5.1f x one %s signature (%.1f us)\n", $1, $2, $2 / bound,
           ($1 ~ /rsa/) ? "RSA-2048" : "P-256", bound
  }
  /_MB_per_cpu_s / { printf "ratio %-40s %7.0f MB/s = %4.2f of AES-128-GCM (%.0f MB/s)\n", $1, $2, $2 / g, g }
' "$tmp/bench.txt"
