#!/bin/sh
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# tests/k8s/mkcerts.sh DIR: a throw-away CA and a server certificate for
# the stand-in API server, signed by it, valid for 127.0.0.1, ::1 and
# localhost. Writes DIR/ca.crt, DIR/server.crt, DIR/server.key (and the
# CA's key, which nothing else needs). Generated at test time, never
# committed: a test must not depend on a key that anyone could reuse.
set -eu
dir=${1:?usage: mkcerts.sh DIR}
mkdir -p "$dir"
cd "$dir"
# EC P-256: fast to generate, accepted by every TLS library.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout ca.key -out ca.crt -days 2 -subj "/CN=shoal test CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout server.key -out server.csr -subj "/CN=kubernetes" 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes.default.svc" \
	"basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
	-out server.crt -days 2 -extfile server.ext 2>/dev/null
rm -f server.csr server.ext ca.srl
