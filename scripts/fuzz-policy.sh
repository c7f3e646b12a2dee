#!/bin/sh
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# Fuzz the AuthorizationPolicy decoder (agent/policy/policy_crd.c) and what
# an accepted object goes through next (policy_compile, policy_decide):
# tests/fuzz/policy_fuzz.c, with libFuzzer, ASan and UBSan. The config
# file's policy: section is scripts/fuzz-config.sh's.
#
#   scripts/fuzz-policy.sh [SECONDS [SEED_DIR]]
#
# SECONDS defaults to 30. Seeds are the objects of
# tests/k8s/fixtures/authorizationpolicies.{good,bad}.yaml, one JSON file
# each (python3 with yaml converts them), unless SEED_DIR is given; what
# the fuzzer learns goes to build-fuzz/policy-corpus/ (FUZZ_OUT). Exits
# non-zero on a crash, a leak, undefined behaviour or a timeout; the input
# is saved in $FUZZ_OUT/ as policy-crash-* and the like.
set -eu

. "$(dirname "$0")/lib/fuzz.sh"
fuzz_init "$@"
mkdir -p "$out/policy-corpus" "$out/policy-seeds"

fuzz_build policy -I/usr/include/json-c \
	"$root/tests/fuzz/policy_fuzz.c" \
	"$root/agent/policy/policy_crd.c" \
	"$root/agent/policy/policy.c" \
	"$root/agent/identity/spiffe.c" \
	-ljson-c

seeds=${2:-}
if [ -z "$seeds" ]; then
	seeds=$out/policy-seeds
	python3 - "$seeds" "$root"/tests/k8s/fixtures/authorizationpolicies.good.yaml \
		"$root"/tests/k8s/fixtures/authorizationpolicies.bad.yaml <<'PY'
import json, os, sys, yaml
out = sys.argv[1]
for path in sys.argv[2:]:
    base = os.path.basename(path).replace('.yaml', '')
    for i, d in enumerate(yaml.safe_load_all(open(path))):
        if d is not None:
            with open(os.path.join(out, '%s.%d.json' % (base, i)), 'w') as f:
                json.dump(d, f)
PY
fi

cat >"$out/policy.dict" <<'DICT'
"\"apiVersion\":\"shoal.io/v1alpha1\""
"\"kind\":\"AuthorizationPolicy\""
"\"metadata\":"
"\"namespace\":"
"\"name\":"
"\"resourceVersion\":"
"\"spec\":"
"\"service\":"
"\"ports\":"
"\"action\":"
"\"allow\""
"\"deny\""
"\"default\":"
"\"same-namespace\""
"\"from\":"
"\"serviceAccount\":"
"\"identity\":"
"\"*\""
"\"unauthenticated\""
"\"to\":"
"\"methods\":"
"\"path\":"
"\"prefix\":"
"\"exact\":"
"\"grpc\":"
"\"method\":"
"\"spiffe://\""
"/ns/"
"/sa/"
"null"
"true"
"false"
"[]"
"{}"
DICT

fuzz_run policy 8192 "the AuthorizationPolicy decoder" "$out/policy-corpus" "$seeds"
