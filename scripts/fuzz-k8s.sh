#!/bin/sh
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# Fuzz the Kubernetes decoder (watch framing, events, Service and
# EndpointSlice decoding, the model build, enrollment's Pod and Namespace
# decoding) with libFuzzer, ASan and UBSan.
#
#   scripts/fuzz-k8s.sh [SECONDS [SEED_DIR]]
#
# SECONDS defaults to 30. Seeds are built from tests/k8s/fixtures/ (the
# API's own shapes) unless SEED_DIR is given; what the fuzzer learns goes
# to build-fuzz/k8s-corpus/ (override the directory with FUZZ_OUT). Exits
# non-zero when the fuzzer finds a crash, a leak, undefined behaviour or a
# timeout; the input that did it is saved in $FUZZ_OUT/ as k8s-crash-*,
# leak-* or timeout-*.
set -eu

. "$(dirname "$0")/lib/fuzz.sh"
fuzz_init "$@"
mkdir -p "$out/k8s-corpus" "$out/k8s-seeds"

# log.c calls into libbpf (log_route_libbpf), hence -lbpf.
fuzz_build_config k8s -I/usr/include/json-c \
	"$root/tests/k8s/k8s_fuzz.c" \
	"$root/agent/discovery/k8s_decode.c" \
	"$root/agent/discovery/model.c" \
	"$root/agent/enroll/pods.c" \
	"$root/agent/common/addr.c" \
	"$root/agent/common/log.c" \
	-ljson-c -lyaml -lbpf

# Seeds: each fixture file as a stream, prefixed with the harness's two
# control bytes (chunk size, kind mod 3: Service, EndpointSlice, Pods and
# Namespaces).
seeds=${2:-}
if [ -z "$seeds" ]; then
	seeds=$out/k8s-seeds
	for f in "$root"/tests/k8s/fixtures/*.ndjson "$root"/tests/k8s/fixtures/*.json; do
		case $f in *services*) kind='\000' ;; *pods* | *namespaces*) kind='\002' ;; *) kind='\001' ;; esac
		for chunk in '\007' '\077'; do
			{ printf "$chunk$kind"; cat "$f"; } >"$seeds/$(basename "$f").$(printf "$chunk" | od -An -tu1 | tr -d ' ')"
		done
	done
fi

cat >"$out/k8s.dict" <<'DICT'
"\"type\":"
"\"ADDED\""
"\"MODIFIED\""
"\"DELETED\""
"\"BOOKMARK\""
"\"ERROR\""
"\"object\":"
"\"metadata\":"
"\"name\":"
"\"namespace\":"
"\"resourceVersion\":"
"\"labels\":"
"\"kubernetes.io/service-name\":"
"\"spec\":"
"\"clusterIP\":"
"\"clusterIPs\":"
"\"None\""
"\"ports\":"
"\"port\":"
"\"targetPort\":"
"\"protocol\":"
"\"appProtocol\":"
"\"addressType\":"
"\"IPv6\""
"\"FQDN\""
"\"endpoints\":"
"\"addresses\":"
"\"conditions\":"
"\"ready\":"
"\"serving\":"
"\"terminating\":"
"\"zone\":"
"\"nodeName\":"
"\"kind\":\"Status\""
"\"kind\":\"Pod\""
"\"kind\":\"Namespace\""
"\"uid\":"
"\"hostNetwork\":"
"\"serviceAccountName\":"
"\"podIP\":"
"\"hostIP\":"
"\"hostIPs\":"
"\"Running\""
"\"podIPs\":"
"\"ip\":"
"\"phase\":"
"\"shoal.io/mesh\":"
"\"annotations\":"
"\"shoal.io/mtls-mode\":"
"\"strict\""
"\"permissive\""
"\"targetRef\":"
"\"Pod\""
"\"enabled\""
"\"disabled\""
"\"code\":410"
"null"
"true"
"false"
"\x0a"
DICT
# The appProtocol values and port-name prefixes the decoder maps, read from
# its tables ({"value", CONFIG_PROTO_...}), as JSON strings.
grep -ho '{"[^"]*", CONFIG_PROTO_' "$root/agent/discovery/k8s_decode.c" |
	sed 's/^{"\([^"]*\)".*/"\\"\1\\""/' | sort -u >>"$out/k8s.dict"

fuzz_run k8s 16384 "the Kubernetes decoder" "$out/k8s-corpus" "$seeds"
