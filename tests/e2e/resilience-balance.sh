#!/bin/bash
# resilience-balance.sh: latency-aware balancing through interception.
# Service "lb" (10.96.0.40:80, http) has three shoal-backend endpoints:
# a2 and b1 answer at once, a3 20 ms later (--delay-ms 20). 3000 GETs
# over 4 keep-alive connections from a1: P2C over PeakEWMA must send at
# least 80 % of them to the two fast endpoints (round robin would send
# 33 % to the slow one). Prints the split.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

LOAD=$(dirname "$0")/resilience-load.py
http_topology a2 b1
backend_start a3 9080 --delay-ms 20
write_config "
$(http_service lb 10.96.0.40 9080 10.77.1.3 10.77.1.5 10.77.2.2)"
shoald_start
enroll a1

out=$(pod_run a1 python3 "$LOAD" http://10.96.0.40/ 3000 --concurrency 4) ||
	fatal "load driver failed: $out"
say "3000 GETs: $out"
slow=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["backends"].get("a3", 0))' "$out")
ok=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["statuses"].get("200", 0))' "$out")
avoid_pct=$(((3000 - slow) * 100 / 3000))
say "figure: $((3000 - slow)) of 3000 requests (${avoid_pct} %) avoided the 20 ms slower endpoint (a3 got $slow)"
if ((ok == 3000)); then
	pass "all 3000 requests answered 200"
else
	fail "only $ok of 3000 requests answered 200"
fi
if ((slow * 100 <= 20 * 3000)); then
	pass "at least 80 % avoided the slow endpoint ($avoid_pct %)"
else
	fail "only $avoid_pct % avoided the slow endpoint (want >= 80 %)"
fi
finish
