#!/bin/sh
# Example-only certificate and key for deploy/examples/https-waf.yaml (self-signed, P-256,
# CN/SAN www.example.test) and a session-ticket key file (one 80-byte key), mode 0600 as edged
# demands. Never serve these: point the example at your own files before any real use.
# Makes them once; --renew replaces them. Safe to run concurrently (the tests do).
set -eu
dir=$(dirname "$0")
exec 9>"$dir/.make-certs.lock"
flock 9
if [ "${1:-}" != --renew ] && [ -s "$dir/example.key" ] && [ -s "$dir/example.crt" ] && [ -s "$dir/ticket.key" ]; then
  exit 0
fi
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj /CN=www.example.test -addext subjectAltName=DNS:www.example.test \
  -keyout "$dir/example.key" -out "$dir/example.crt" 2>/dev/null
head -c 80 /dev/urandom > "$dir/ticket.key"
chmod 600 "$dir/example.key" "$dir/ticket.key"
chmod 644 "$dir/example.crt"
