#!/bin/sh
# Example-only certificate and key for deploy/examples/https-waf.yaml (self-signed, P-256,
# CN/SAN www.example.test) and a session-ticket key file (one 80-byte key). Never serve these:
# run this script again (or point the example at your own files) before any real use.
set -eu
dir=$(dirname "$0")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj /CN=www.example.test -addext subjectAltName=DNS:www.example.test \
  -keyout "$dir/example.key" -out "$dir/example.crt" 2>/dev/null
head -c 80 /dev/urandom > "$dir/ticket.key"
chmod 600 "$dir/example.key" "$dir/ticket.key"
