#!/bin/sh
# Make a throw-away CA, a broker certificate and one client certificate, for tests and lab
# gateways. Production certificates come from the operator's PKI, not from this script.
#
#   make-test-ca.sh OUT_DIR [BROKER_HOST] [CLIENT_CN]
#
# OUT_DIR/ca.crt ca.key server.crt server.key client.crt client.key. The broker certificate names
# BROKER_HOST (default: this host's name), localhost and 127.0.0.1, so the agent can connect over
# loopback with host-name verification on. DAYS (default 825: the CA/Browser Forum ceiling for TLS
# leaf certificates from 2018 to 2020) sets the lifetime.
set -eu

out=${1:?usage: make-test-ca.sh OUT_DIR [BROKER_HOST] [CLIENT_CN]}
host=${2:-$(hostname)}
client=${3:-gw-17}
days=${DAYS:-825}

mkdir -p "$out"
umask 077
cd "$out"

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -subj "/CN=pdm-edge test CA" -keyout ca.key -out ca.crt 2>/dev/null

openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$host" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$host" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days "$days" \
    -extfile server.ext -out server.crt 2>/dev/null

openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$client" -keyout client.key -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days "$days" \
    -extfile client.ext -out client.crt 2>/dev/null

rm -f server.csr server.ext client.csr client.ext ca.srl
chmod 644 ca.crt server.crt client.crt
echo "wrote $out: ca.crt server.crt/.key (CN=$host, localhost, 127.0.0.1) client.crt/.key (CN=$client)"
