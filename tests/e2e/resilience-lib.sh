#!/bin/bash
# resilience-lib.sh: helpers shared by the resilience-*.sh e2e tests
# (sourced after lib.sh; not a test itself).

LOAD=$(dirname "${BASH_SOURCE[0]}")/resilience-load.py

# json_get JSON PATH: a value of JSON by a dotted path (0 when absent).
json_get() {
	python3 -c 'import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v.get(k, {}) if isinstance(v, dict) else {}
print(v if not isinstance(v, dict) else 0)' "$1" "$2"
}

# backend_stats POD PORT: the /_ctl/stats JSON of POD's shoal-backend,
# asked over its own loopback (never through shoal).
backend_stats() {
	in_ns "${POD_NS[$1]}" curl -sS --max-time 5 "http://127.0.0.1:$2/_ctl/stats" ||
		fatal "cannot read /_ctl/stats of $1:$2"
}

# backend_stat POD PORT PATH: one value of backend_stats (e.g. by_method.POST).
backend_stat() { json_get "$(backend_stats "$1" "$2")" "$3"; }

# backend_ctl POD PORT PATH [FORM]: POST to a control endpoint of POD's backend.
backend_ctl() {
	in_ns "${POD_NS[$1]}" curl -sS --max-time 5 -X POST ${4:+--data "$4"} \
		"http://127.0.0.1:$2$3" >/dev/null || fatal "POST $3 to $1:$2 failed"
}

# load URL COUNT [ARGS]: the load driver in pod a1 (through interception);
# prints its JSON.
load() {
	local out
	out=$(pod_run a1 python3 "$LOAD" "$@") || fatal "load driver failed: $out"
	echo "$out"
}
