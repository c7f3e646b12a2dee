#!/bin/bash
# resilience-retry.sh: retries, and the budget that bounds them, through
# interception. Service "flaky" (10.96.0.41:80, http): a2, a3 and b1, a3
# answering 503 to half its requests (--fail-rate 0.5 --fail-status 503).
#  1. 300 POSTs first: a POST is never retried, so the backends together
#     count exactly as many POSTs as the client sent (some get a3's 503);
#     the same against "down-posts", where every POST gets a 503;
#  2. 3000 GETs: a 503 is retried on another endpoint (and a3 soon
#     ejected), so at least 99.9 % succeed; shoal_endpoint_outcomes_total
#     still shows a3's 503s as failures (every attempt counts there).
# Service "down" (10.96.0.42:80): every backend answers 503. 500 GETs at
# 100/s: retries stay within the budget, 20 % of the requests plus the
# 10/s floor over a 10 s window, i.e. at most 0.2 x 500 + 100 = 200
# (without a budget, 2 retries each would make 1000).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=resilience-lib.sh
source "$(dirname "$0")/resilience-lib.sh"

http_topology a2 b1
backend_start a3 9080 --fail-rate 0.5 --fail-status 503 --seed 7
backend_start a2 9081 --status 503
backend_start a3 9081 --status 503
backend_start b1 9081 --status 503
write_config "
$(http_service flaky 10.96.0.41 9080 10.77.1.3 10.77.1.5 10.77.2.2)
$(http_service down 10.96.0.42 9081 10.77.1.3 10.77.1.5 10.77.2.2)
$(http_service down-posts 10.96.0.48 9081 10.77.1.3 10.77.1.5 10.77.2.2)"
shoald_start
enroll a1

# ---- POSTs are never sent twice ------------------------------------------
out=$(load http://10.96.0.41/ 300 --method POST --body-bytes 100 --concurrency 2)
say "300 POSTs: $out"
sent=$(( $(json_get "$out" statuses.200) + $(json_get "$out" statuses.503) ))
seen=0
for pod in a2 a3 b1; do
	seen=$((seen + $(backend_stat "$pod" 9080 by_method.POST)))
done
say "figure: the client got $sent POST answers ($(json_get "$out" statuses.503) of them 503); the backends counted $seen POSTs"
if ((sent == 300 && seen == 300)); then
	pass "no POST was sent twice (300 sent, 300 counted by the backends)"
else
	fail "POSTs: client answers $sent, backend count $seen (want 300 and 300)"
fi

# Where every endpoint fails, a retry would be certain for a GET: a POST
# still reaches a backend exactly once, and its 503 goes to the client.
# (Service "down-posts" has the same endpoints as "down", and its own
# budget: these 300 requests must not add to the budget measured below.)
out=$(load http://10.96.0.48/ 300 --method POST --body-bytes 100 --concurrency 2)
seen=0
for pod in a2 a3 b1; do
	seen=$((seen + $(backend_stat "$pod" 9081 by_method.POST)))
	backend_ctl "$pod" 9081 /_ctl/stats/reset
done
say "figure: 300 POSTs to a service answering only 503: the client got $(json_get "$out" statuses.503) 503s, the backends counted $seen POSTs"
if (($(json_get "$out" statuses.503) == 300 && seen == 300)); then
	pass "no failed POST was retried (300 sent, 300 counted)"
else
	fail "POSTs to an all-503 service: $seen counted by the backends, want 300: $out"
fi

# ---- GETs succeed despite a3 ---------------------------------------------
out=$(load http://10.96.0.41/ 3000 --concurrency 4)
say "3000 GETs: $out"
ok=$(json_get "$out" statuses.200)
say "figure: $ok of 3000 GETs succeeded ($((ok * 1000 / 3000)) per mille); a3 answered $(json_get "$(backend_stats a3 9080)" by_status.503) 503s in all"
if ((ok * 1000 >= 2997)); then
	pass "at least 99.9 % of GETs succeeded ($ok of 3000)"
else
	fail "only $ok of 3000 GETs succeeded (want >= 2997)"
fi
grep -q "endpoint 10.77.1.5 ejected" "$SHOALD_LOG" &&
	say "a3 was ejected: $(grep -m1 'endpoint 10.77.1.5 ejected' "$SHOALD_LOG")"

# The client saw (almost) no failure, but the endpoint's own outcomes must
# show a3's 503s: every attempt counts there, not just a request's last.
a3_503=$(json_get "$(backend_stats a3 9080)" by_status.503)
a3_failed=$(proxy_metric 'shoal_endpoint_outcomes_total{service="default/flaky",endpoint="10.77.1.5",outcome="failure"}')
a2_failed=$(proxy_metric 'shoal_endpoint_outcomes_total{service="default/flaky",endpoint="10.77.1.3",outcome="failure"}')
say "figure: a3's failure outcomes $a3_failed (it answered $a3_503 503s in all), a2's $a2_failed"
if ((a3_failed > 0 && a3_failed <= a3_503 && a2_failed == 0)); then
	pass "per-endpoint outcomes count a3's retried 503s ($a3_failed of its $a3_503), none for a2"
else
	fail "per-endpoint outcomes: a3 failure $a3_failed (its 503s: $a3_503), a2 failure $a2_failed"
fi

# ---- no retry storm: the budget ------------------------------------------
out=$(load http://10.96.0.42/ 500 --rate 100 --concurrency 4)
say "500 GETs at 100/s to a service whose every endpoint answers 503: $out"
total=0
for pod in a2 a3 b1; do
	total=$((total + $(backend_stat "$pod" 9081 requests)))
done
retries=$((total - 500))
say "figure: the backends got $total requests for 500 client requests: $retries retries (budget: 0.2 x 500 + 10/s x 10 s = 200; without it up to 1000)"
if ((retries >= 0 && retries <= 200 + 4)); then
	pass "retries stayed within the budget ($retries <= 200, plus one per worker racing)"
else
	fail "$retries retries for 500 requests (budget 200)"
fi
if ((retries >= 100)); then
	pass "the budget's floor was used: at least 100 retries were made"
else
	fail "only $retries retries: the budget's floor allows 100"
fi
finish
