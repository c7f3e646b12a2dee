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

# The schema's words, so the fuzzer reaches past "unknown field" quickly.
cat >"$out/config.dict" <<'DICT'
"node"
"address_v4"
"address_v6"
"proxy_port"
"bpf"
"pin_root"
"cgroup"
"shortcut"
"socket_mark"
"failopen_after_ms"
"proxy"
"workers"
"connect_timeout_ms"
"connect_deadline_ms"
"buffer_bytes"
"max_connections"
"services"
"name"
"namespace"
"vips"
"ports"
"port"
"target_port"
"protocol"
"endpoints"
"routes"
"match"
"hosts"
"path"
"exact"
"prefix"
"methods"
"headers"
"backends"
"service"
"weight"
"timeout_ms"
"per_try_timeout_ms"
"retryable"
"retry_statuses"
"detect_timeout_ms"
"opaque_ports"
"idle_timeout_ms"
"http"
"max_request_line"
"max_head_bytes"
"max_headers"
"pool_idle_timeout_ms"
"pool_max_idle_per_endpoint"
"address"
"tcp"
"http"
"h2c"
"true"
"off"
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
