#!/bin/sh
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# Fuzz what reads an identity from hostile bytes (tests/fuzz/identity_fuzz.c):
# SPIFFE IDs (with the parse/format round trip), certificate requests as
# shoal-identity checks them, a leaf's subjectAltName. libFuzzer, ASan, UBSan.
#
#   scripts/fuzz-identity.sh [SECONDS [SEED_DIR]]
#
# SECONDS defaults to 30. Seeds are made here with openssl (a CSR and a
# certificate of the right shape, a few IDs) unless SEED_DIR is given;
# what the fuzzer learns goes to build-fuzz/identity-corpus/ (FUZZ_OUT).
# Exits non-zero on a crash, a leak, undefined behaviour or a timeout; the
# input is saved in $FUZZ_OUT/ as identity-crash-* and the like.
set -eu

. "$(dirname "$0")/lib/fuzz.sh"
fuzz_init "$@"
mkdir -p "$out/identity-corpus" "$out/identity-seeds"

fuzz_build identity -I"$root/shoal-identity" \
	"$root/tests/fuzz/identity_fuzz.c" \
	"$root/shoal-identity/issue.c" \
	"$root/agent/identity/spiffe.c" \
	"$root/agent/identity/verify.c" \
	-lssl -lcrypto

seeds=${2:-}
if [ -z "$seeds" ]; then
	seeds=$out/identity-seeds
	for id in spiffe://cluster.local/ns/default/sa/web spiffe://a/ns/b/sa/c.d \
		SPIFFE://x/ns/a/sa/b spiffe://td/ns//sa/b spiffe://td/ns/a/sa/%41; do
		{ printf '\000'; printf '%s' "$id"; } >"$seeds/id-$(printf '%s' "$id" | cksum | cut -d' ' -f1)"
	done
	tmp=$(mktemp -d)
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/k" \
		-subj / -addext "subjectAltName=URI:spiffe://cluster.local/ns/shop/sa/web" \
		-outform DER -out "$tmp/csr" 2>/dev/null
	{ printf '\001'; cat "$tmp/csr"; } >"$seeds/csr"
	openssl req -x509 -new -key "$tmp/k" -days 1 -subj / \
		-addext "subjectAltName=URI:spiffe://cluster.local/ns/shop/sa/web,DNS:web" \
		-outform DER -out "$tmp/crt" 2>/dev/null
	{ printf '\002'; cat "$tmp/crt"; } >"$seeds/crt"
	rm -rf "$tmp"
fi

cat >"$out/identity.dict" <<'DICT'
"spiffe://"
"/ns/"
"/sa/"
"cluster.local"
"%2F"
".."
DICT

fuzz_run identity 4096 "SPIFFE IDs, CSRs and SANs" "$out/identity-corpus" "$seeds"
