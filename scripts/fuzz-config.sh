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
# input that did it is saved in $FUZZ_OUT/ as crash-*, leak-* or timeout-*.
set -eu

duration=${1:-30}
case $duration in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS [SEED_DIR]]" >&2
	exit 2
	;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
out=${FUZZ_OUT:-$root/build-fuzz}
seeds=${2:-$root/tests/fuzz/corpus/config}
cc=${CC_FUZZ:-clang-14}

mkdir -p "$out/config-corpus"

# Not built by meson: libFuzzer needs clang, and the regular build may use gcc.
# log.c calls into libbpf (log_route_libbpf), hence -lbpf.
"$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-I"$root/include" -I"$root/agent" \
	"$root/tests/fuzz/config_fuzz.c" \
	"$root/agent/config/config.c" \
	"$root/agent/common/addr.c" \
	"$root/agent/common/log.c" \
	-lyaml -lbpf -o "$out/config_fuzz"

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
DICT

echo "fuzzing config_parse for ${duration}s (corpus $out/config-corpus)"
# -timeout: one input taking seconds is a bug (quadratic scan, runaway loop).
exec "$out/config_fuzz" \
	-max_total_time="$duration" \
	-timeout=10 \
	-max_len=16384 \
	-dict="$out/config.dict" \
	-artifact_prefix="$out/" \
	-print_final_stats=1 \
	"$out/config-corpus" "$seeds"
