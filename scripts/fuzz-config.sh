#!/bin/sh
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# Fuzz the config parser (config_parse) with libFuzzer, ASan and UBSan.
#
#   scripts/fuzz-config.sh [SECONDS [SEED_DIR]]
#
# SECONDS defaults to 30. Seeds come from SEED_DIR (default
# tests/fuzz/corpus/config/) and stay untouched; what the
# fuzzer learns goes to build-fuzz/config-corpus/ (override the directory
# with FUZZ_OUT), so runs build on each other. Exits non-zero when the
# fuzzer finds a crash, a leak, undefined behaviour or a timeout; the
# input that did it is saved in $FUZZ_OUT/ as config-crash-*, config-leak-* or config-timeout-*.
set -eu

. "$(dirname "$0")/lib/fuzz.sh"
fuzz_init "$@"
seeds=${2:-$root/tests/fuzz/corpus/config}
mkdir -p "$out/config-corpus"

# log.c calls into libbpf (log_route_libbpf), hence -lbpf.
fuzz_build_config config \
	"$root/tests/fuzz/config_fuzz.c" \
	"$root/agent/common/addr.c" \
	"$root/agent/common/log.c" \
	-lyaml -lbpf

# The schema's keys, read from its field tables (every {"key", FIELD_...}
# entry), so that a knob added to a table is in the dictionary without a
# list to keep in step; then the words its values are made of.
grep -ho '{"[a-z0-9_]*", FIELD_' "$root/agent/config/config_node.c" \
	"$root/agent/config/config_services.c" "$root/agent/config/config_policy.c" \
	"$root/agent/config/config_mtls.c" |
	sed 's/^{\("[a-z0-9_]*"\).*/\1/' | sort -u >"$out/config.dict"
for key in '"services"' '"upgrade_protocols"' '"proxy_url"' '"service_account"' '"namespaces"'; do
	grep -qx "$key" "$out/config.dict" || {
		echo "$0: no $key in the field tables: has their format changed?" >&2
		exit 1
	}
done
cat >>"$out/config.dict" <<'DICT'
"tcp"
"http"
"h2c"
"http2"
"grpc"
"kubernetes.io/h2c"
"kubernetes.io/ws"
"kubernetes.io/wss"
"client"
"server"
"websocket"
"true"
"false"
"yes"
"off"
"null"
"~"
"[]"
"{}"
"0.5"
"4294967295"
"65536"
"http://"
"https://"
"socks4://"
"socks4a://"
"socks5://"
"socks5h://"
"user:pw@"
"https://10.0.0.1:6443"
"127.0.0.1:15020"
"[::1]:15020"
"*."
"GET"
"default/"
"allow"
"deny"
"same-namespace"
"permissive"
"strict"
"unauthenticated"
"spiffe://cluster.local/ns/a/sa/b"
"prefix"
"exact"
"/api/"
"0x"
"10.96.0.10"
"fd00::1"
"::ffff:1.2.3.4"
": "
"\x0a  - "
"\x0a    "
"---"
"&a"
"*a"
"!!str"
"${"
"}"
"$$"
":-"
"${SHOAL_FUZZ_V4}"
"${SHOAL_FUZZ_PORT}"
"${SHOAL_FUZZ_EMPTY:-"
"${SHOAL_FUZZ_BIG}"
"${SHOAL_FUZZ_UNSET}"
DICT

fuzz_run config 16384 config_parse "$out/config-corpus" "$seeds"
