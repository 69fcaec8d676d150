#!/bin/sh
# Generates the TLS test PKI into $1 (created if missing). Nothing private is committed: tests,
# fuzz targets and benches call this at run time into a temporary or build directory.
set -eu
# Private keys and ticket keys: 0600, as edged refuses key files that group or others can read.
umask 077
out=${1:?usage: gen.sh OUTDIR}
mkdir -p "$out"
cd "$out"
days=3650
ossl() { openssl "$@" 2>/dev/null; }

ec_key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
rsa_key() { ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

# leaf NAME KEYFILE CN SAN CA
leaf() {
  ossl req -new -key "$2" -subj "/CN=$3/O=edge-test" -out "$1.csr"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nauthorityInfoAccess=OCSP;URI:http://ocsp.invalid/\n' "$4" > "$1.ext"
  ossl x509 -req -in "$1.csr" -CA "$5.pem" -CAkey "$5.key" -CAcreateserial -days $days -sha256 \
    -extfile "$1.ext" -out "$1.pem"
  rm -f "$1.csr" "$1.ext"
}

# Server CA and client CA (separate, as a deployment would have them), plus a CA nobody trusts.
for ca in ca client-ca rogue-ca; do
  ec_key $ca.key
  ossl req -x509 -new -key $ca.key -subj "/CN=edge test $ca/O=edge-test" -days $days -sha256 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out $ca.pem
done

# example.test: ECDSA P-256 and RSA-2048 on the same names.
ec_key ecdsa.key;  leaf ecdsa ecdsa.key example.test "DNS:example.test,DNS:www.example.test" ca
rsa_key rsa.key;   leaf rsa rsa.key example.test "DNS:example.test,DNS:www.example.test" ca
# A wildcard name, and the default certificate (no SNI / unknown names).
ec_key wild.key;    leaf wild wild.key "*.wild.test" "DNS:*.wild.test" ca
ec_key default.key; leaf default default.key default.test "DNS:default.test" ca
# RSA-only name (clients without ECDSA still get a certificate).
rsa_key rsaonly.key; leaf rsaonly rsaonly.key rsa.test "DNS:rsa.test" ca

# Client certificates: one from the trusted client CA, one from the rogue CA.
ec_key client.key;       leaf client client.key client1 "DNS:client1.edge.test" client-ca
ec_key rogue-client.key; leaf rogue-client rogue-client.key rogue "DNS:rogue.edge.test" rogue-ca

# OCSP response (good) for the ECDSA example.test certificate, signed by its CA.
serial=$(openssl x509 -in ecdsa.pem -noout -serial | cut -d= -f2)
subject=$(openssl x509 -in ecdsa.pem -noout -subject -nameopt compat | sed 's/^subject=//')
printf 'V\t391231235959Z\t\t%s\tunknown\t%s\n' "$serial" "$subject" > ocsp-index.txt
ossl ocsp -issuer ca.pem -cert ecdsa.pem -no_nonce -reqout ocsp-req.der
ossl ocsp -index ocsp-index.txt -rsigner ca.pem -rkey ca.key -CA ca.pem -reqin ocsp-req.der \
  -respout ecdsa.ocsp -ndays 3650
rm -f ocsp-req.der

# Session ticket keys (80 bytes each: name, AES-256 key, HMAC key): two files for rotation tests.
head -c 80 /dev/urandom > ticket1.key
head -c 80 /dev/urandom > ticket2.key
cat ticket2.key ticket1.key > ticket21.key   # rotated: 2 encrypts, 1 still decrypts
rm -f ./*.srl
chmod 600 ./*.key  # also when OUTDIR held files from an older run
echo ok > done
