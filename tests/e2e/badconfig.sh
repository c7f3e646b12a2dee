#!/bin/bash
# shoald refuses to start on a bad config, naming file, line and field,
# before it touches the kernel. Needs no root: nothing is loaded.
set -euo pipefail
[[ -x ${SHOALD:-} ]] || { echo "[badconfig] SKIP: shoald not built ($SHOALD)"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failed=0
check() { # name yaml expected-substring
	local out rc=0
	printf '%s\n' "$2" >"$dir/$1.yaml"
	out=$("$SHOALD" -c "$dir/$1.yaml" 2>&1) || rc=$?
	if ((rc == 2)) && [[ $out == *"$dir/$1.yaml:"*"$3"* ]]; then
		echo "[badconfig] ok: $1: exit 2, '$(head -n1 <<<"$out")'"
	else
		echo "[badconfig] FAIL: $1: exit $rc, expected 2 and '$dir/$1.yaml:$3' in: $out" >&2
		failed=1
	fi
}
check typo $'node:\n  adress_v4: 10.0.0.1' "2: node.adress_v4: unknown field"
check port $'node: {address_v4: 10.0.0.1}\nservices:\n  - name: web\n    vips: [10.96.0.10]\n    ports:\n      - port: 70000' "6: services[0].ports[0].port:"
check vip $'node: {address_v4: 10.0.0.1}\nservices:\n  - name: web\n    vips: [10.96.0.300]\n    ports: [{port: 80}]' "4: services[0].vips[0]:"
check syntax $'node:\n  address_v4: "10.0.0.1' ": yaml: "
# $'...' leaves ${...} alone: shoald is the one to find the variable unset.
check envunset $'node:\n  address_v4: ${SHOAL_E2E_UNSET_NODE_IP}' "2: node.address_v4: environment variable SHOAL_E2E_UNSET_NODE_IP is not set"
out=$("$SHOALD" -c "$dir/missing.yaml" 2>&1) && rc=0 || rc=$?
if ((rc == 2)) && [[ $out == *"$dir/missing.yaml: cannot read"* ]]; then
	echo "[badconfig] ok: missing file: exit 2, '$(head -n1 <<<"$out")'"
else
	echo "[badconfig] FAIL: missing file: exit $rc: $out" >&2
	failed=1
fi
exit $failed
