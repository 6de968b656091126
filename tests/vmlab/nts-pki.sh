#!/usr/bin/env bash
# nts-pki.sh DIR ADDRESS -- a private CA and an NTS server certificate for ADDRESS (an IP SAN),
# made with the openssl CLI into DIR: ca.crt, ca.key, server.crt, server.key.
#
# Both certificates are valid from a day in the past: a client whose clock is seconds behind
# would otherwise find the server's certificate "not yet valid" and never authenticate it.
# OpenSSL 3.0's `req`/`x509` cannot set notBefore, `openssl ca -startdate` can (hence the
# minimal CA database below).
set -euo pipefail
dir=$1 address=$2
mkdir -p "$dir"
cd "$dir"
mkdir -p db
: > db/index.txt
echo 01 > db/serial
start=$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)
cat > ca.cnf <<CNF
[ca]
default_ca = test_ca
[test_ca]
dir = .
database = db/index.txt
serial = db/serial
new_certs_dir = db
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:$address
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
key server.key
openssl req -new -config ca.cnf -key ca.key -subj "/CN=clockprov test CA $RANDOM" -out ca.csr
openssl ca -batch -notext -config ca.cnf -selfsign -keyfile ca.key -in ca.csr -out ca.crt \
    -extensions v3_ca -startdate "$start" -days 30 2>/dev/null
openssl req -new -config ca.cnf -key server.key -subj "/CN=$address" -out server.csr
openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key -in server.csr \
    -out server.crt -extensions v3_server -startdate "$start" -days 30 2>/dev/null
openssl verify -CAfile ca.crt server.crt >/dev/null
rm -rf db ca.csr server.csr ca.cnf
