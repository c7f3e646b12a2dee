#!/bin/bash
# resilience-breaker.sh: circuit breaking through interception. Service
# "cb" (10.96.0.43:80, http): a2, a3 and b1. After a warm-up, a2 starts
# resetting every request (/_ctl/mode reset=1). GETs then go one at a
# time from a1. Checks, each with its figure:
#  - a2 is ejected within 10 requests that reached it (the log line at
#    info names it), and the client sees no failure (each reset is retried
#    elsewhere);
#  - a2 recovers (reset=0) at once; while ejected it takes no request: the
#    first one it gets is the probe, after the backoff the log announced;
#  - it is readmitted within its backoff (1 s, jitter +-50 %: at most
#    1.5 s), on that probe, and takes traffic again.
# The balancer's failure penalty is off for "cb" (failure_penalty_ms: 0):
# with it, P2C starves a failing endpoint by itself (resilience-retry.sh),
# and the breaker would have nothing left to show. Here the breaker alone
# must take it out.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=resilience-lib.sh
source "$(dirname "$0")/resilience-lib.sh"

http_topology a2 a3 b1
write_config "
$(http_service cb 10.96.0.43 9080 10.77.1.3 10.77.1.5 10.77.2.2)
    resilience:
      balancer: {failure_penalty_ms: 0}
      breaker: {consecutive_failures: 7, backoff_min_ms: 1000, jitter_pct: 50}"
shoald_start
enroll a1
URL=http://10.96.0.43/

# One connection at a time: each worker then pools at most one idle
# connection to a2, and a reset on a pooled connection is first taken for
# a stale one (resent once on a fresh connection, not the endpoint's
# failure): at most 2 extra requests reach a2 before its 7th failure.
# The warm-up lasts 3 s, longer than the balancer's exploration interval
# (resilience.balancer.explore_after_ms, 1 s): an endpoint whose first
# answer was slow is measured again and takes its share before a2 starts
# failing. A burst of 300 in 50 ms could leave a2 with one slow sample,
# and then with one request a second, too few for 7 failures in a row.
out=$(load "$URL" 300 --rate 100)
say "warm-up: $out"
a2_warm=$(json_get "$out" backends.a2)
((a2_warm >= 30)) && pass "warm-up: a2 took its share ($a2_warm of 300)" ||
	fail "warm-up: a2 took $a2_warm of 300 requests (want >= 30: every healthy endpoint measured)"

backend_ctl a2 9080 /_ctl/mode "reset=1"
base=$(backend_stat a2 9080 resets)
client_fail=0
# Until it is ejected, or 20 s. A2 may be no dearer than its peers, and
# then about a third of the requests reach it; or, its last answers a
# little slower, the dearest of three, which P2C never picks: then only
# the balancer's explorations reach it, one a second
# (resilience.balancer.explore_after_ms), and 7 failures take 7 s.
ends=$(($(date +%s) + 20))
for ((i = 1; $(date +%s) < ends; i++)); do
	# The ejection happens during this request, so not before t_eject.
	t_eject=$(date +%s%N)
	code=$(pod_run a1 curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL") || code=000
	[[ $code == 200 ]] || client_fail=$((client_fail + 1))
	grep -q "endpoint 10.77.1.3 ejected" "$SHOALD_LOG" && break
done
hits=$(($(backend_stat a2 9080 resets) - base))
line=$(grep -m1 "endpoint 10.77.1.3 ejected" "$SHOALD_LOG" || true)
if [[ -n $line ]]; then
	say "log: $line"
	say "figure: a2 was ejected after $hits requests reached it ($i client requests, $client_fail of them failed)"
	((hits <= 10)) && pass "ejected within 10 requests ($hits)" ||
		fail "ejected only after $hits requests reached it (want <= 10)"
else
	fail "a2 not ejected after $i requests in 20 s ($hits reached it)"
fi
((client_fail == 0)) && pass "the client saw no failure: each reset was retried elsewhere" ||
	fail "$client_fail client requests failed"

# Recovery: a2 answers again at once; GETs go on at 50/s for 3 s, each
# answer timed by the load driver. With a2 healthy, any request it got
# shows in the timeline: the first must be the probe, not before the
# backoff the ejection log line announced.
backend_ctl a2 9080 /_ctl/mode "reset=0"
backoff_ms=$(sed -n 's/.*endpoint 10.77.1.3 ejected.*probing again in \([0-9]*\) ms.*/\1/p' "$SHOALD_LOG" | head -1)
out=$(load "$URL" 150 --rate 50 --timeline)
# load_ms: when the load driver sent its first request, after the
# ejection; on a loaded machine its start-up can outlast the backoff, and
# then the probe is due at once: it must be the first request a2 gets
# after max(backoff, load start).
read -r first_ms after_probe load_ms < <(python3 -c '
import json, sys
o = json.loads(sys.argv[1])
t = [ms for ms, be in o["timeline"] if be == "a2"]
t0 = int(sys.argv[2]) // 1000000
print(int(o["start_unix_ms"] + t[0] - t0) if t else -1, max(len(t) - 1, 0), int(o["start_unix_ms"] - t0))' "$out" "$t_eject")
readmit=$(grep -m1 'endpoint 10.77.1.3 readmitted' "$SHOALD_LOG" || true)
if [[ -n $readmit && $first_ms -ge 0 ]]; then
	say "log: $readmit"
	say "figure: backoff drawn ${backoff_ms} ms; a2's first request after the ejection (the probe) came $first_ms ms after it; readmitted on its success"
	((first_ms >= backoff_ms - 2)) && pass "no traffic while ejected: nothing reached a2 before its backoff ended" ||
		fail "a2 got a request $first_ms ms after the ejection, before its ${backoff_ms} ms backoff"
	due_ms=$((backoff_ms > load_ms ? backoff_ms : load_ms))
	((backoff_ms <= 1500 && first_ms <= due_ms + 100)) &&
		pass "readmitted within its backoff (1 s +- 50 %: ${backoff_ms} ms, load from $load_ms ms, probed at $first_ms ms)" ||
		fail "readmitted late: backoff ${backoff_ms} ms, load from $load_ms ms, probe at $first_ms ms"
else
	fail "a2 was not readmitted: $out"
fi
say "a2 served $after_probe requests after its probe"
((after_probe > 5)) && pass "a2 takes traffic again after its readmission" ||
	fail "a2 got only $after_probe requests after the probe"
finish
