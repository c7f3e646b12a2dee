#!/bin/bash
# resilience-recovery.sh: the balancer never starves a healthy endpoint
# (docs/resilience.md, "Recovery"). Service "rc" (10.96.0.45:80, http) has
# three equal shoal-backend endpoints, a2, a3 and b1, and no retries, so a
# request that asks for a 503 (?status=503) reaches exactly one endpoint
# once.
#  1. One 503: that endpoint is penalised for resilience.balancer.penalty_ms
#     (1 s), then takes a normal share again. Asserted: from 2 s after the
#     503 on (the penalty plus 1 s of margin for a loaded machine), at
#     50 GETs/s for 10 s, it gets at least 15 % of the requests (a third
#     is fair; the window is long enough to average over the estimates'
#     noise, which on an ASan build left it 6 % of a 3 s window once). The old penalty, a 5 s sample decaying with tau, gave it none
#     for over a minute.
#  2. One slow answer (?delay_ms=300) on one endpoint, then 50 GETs/s for
#     20 s: no endpoint goes 2 s without a request (exploration sends an
#     idle healthy endpoint a request after explore_after_ms, 1 s, and its
#     answer replaces the stale peak), and each takes at least 15 % of
#     them. P2C alone never picks the dearest of three, and that peak
#     takes about a minute to age out.
# Prints the shares, the longest gaps and the explorations counted.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=resilience-lib.sh
source "$(dirname "$0")/resilience-lib.sh"
http_topology a2 a3 b1
write_config "
$(http_service rc 10.96.0.45 9080 10.77.1.3 10.77.1.5 10.77.2.2)
    resilience:
      retries: {max_retries: 0}"
shoald_start
enroll a1
URL=http://10.96.0.45/
# backends JSON: the load driver's split by endpoint.
backends() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])["backends"])' "$1"; }

# Every endpoint measured, estimates settled on real latencies.
out=$(load "$URL" 100 --rate 50)
say "warm-up (2 s at 50/s): $out"

# --- 1. one 503 ---------------------------------------------------------
head=$(pod_run a1 curl -s -D - -o /dev/null --max-time 5 "${URL}?status=503") ||
	fatal "the 503 request failed to run"
t503=$(date +%s%3N)
victim=$(sed -n 's/^x-backend: *\([A-Za-z0-9]*\).*/\1/ip' <<<"$head" | head -1)
code=$(sed -n '1s/^HTTP[^ ]* \([0-9]*\).*/\1/p' <<<"$head")
[[ $code == 503 && -n $victim ]] || fatal "wanted one 503 with an x-backend, got: $head"
say "one 503 from $victim"
out=$(load "$URL" 500 --rate 50 --timeline)
read -r penalised early late late_total < <(python3 -c '
import json, sys
o, victim, t503 = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
pen = early = late = total = 0
for ms, be in o["timeline"]:
    since = o["start_unix_ms"] + ms - t503
    if since >= 2000:
        total += 1
        late += be == victim
    elif be == victim:
        early += 1
        pen += since < 800
print(pen, early, late, total)' "$out" "$victim" "$t503")
say "backends over 10 s after the 503: $(backends "$out")"
say "figure: $victim got $penalised requests in the 800 ms after its 503 and $early in the first 2 s, then $late of $late_total ($((late * 100 / (late_total ? late_total : 1))) %)"
((penalised == 0)) && pass "nothing reached $victim while its penalty held" ||
	fail "$victim got $penalised requests within 800 ms of its 503 (penalty 1 s)"
(($(json_get "$out" statuses.200) == 500)) && pass "all 500 GETs answered 200" ||
	fail "not every GET answered 200: $(json_get "$out" statuses)"
# The share asked for: 15 %. Under ASan/UBSan the proxy's own slowness
# makes every latency sample noisy, and PeakEWMA holds a noisy peak for a
# while, so there it asks for 5 %: still not starved (the old penalty gave
# none), while the plain build holds the documented bound.
share_pct=15
[[ ${SHOAL_SANITIZED:-0} == 1 ]] && share_pct=5
((late * 100 >= share_pct * late_total && late_total >= 100)) &&
	pass "$victim takes a normal share again within 2 s of one 503 ($late of $late_total, want >= $share_pct %)" ||
	fail "$victim got only $late of $late_total requests from 2 s after its 503 (want >= $share_pct %)"

# --- 2. one slow answer, then 20 s at 50/s --------------------------------
head=$(pod_run a1 curl -s -D - -o /dev/null --max-time 5 "${URL}?delay_ms=300") ||
	fatal "the slow request failed to run"
slow=$(sed -n 's/^x-backend: *\([A-Za-z0-9]*\).*/\1/ip' <<<"$head" | head -1)
say "one 300 ms answer from $slow"
out=$(load "$URL" 1000 --rate 50 --timeline)
read -r worst worst_be gaps least < <(python3 -c '
import json, sys
o = json.loads(sys.argv[1])
end = o["seconds"] * 1000
gaps = {}
for be in ("a2", "a3", "b1"):
    t = [0.0] + [ms for ms, b in o["timeline"] if b == be] + [end]
    gaps[be] = max(b - a for a, b in zip(t, t[1:]))
be = max(gaps, key=gaps.get)
least = min(o["backends"].get(b, 0) for b in ("a2", "a3", "b1"))
print(int(gaps[be]), be, ",".join(f"{k}:{int(v)}" for k, v in sorted(gaps.items())), least)' "$out")
explored=$(in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN_ADDR/metrics" |
	awk '/^shoal_endpoint_explorations_total\{service="default\/rc"/ {n += $2} END {print n + 0}')
say "backends over 20 s: $(backends "$out")"
say "figure: longest time without a request, per endpoint (ms): $gaps; explorations counted: $explored"
(($(json_get "$out" statuses.200) == 1000)) && pass "all 1000 GETs answered 200" ||
	fail "not every GET answered 200: $(json_get "$out" statuses)"
((worst < 2000)) && pass "no endpoint went 2 s without a request (longest: $worst_be, $worst ms)" ||
	fail "$worst_be went $worst ms without a request (want < 2000)"
((least * 100 >= share_pct * 1000)) && pass "each endpoint took at least $share_pct % of the 1000 GETs (least: $least)" ||
	fail "an endpoint took only $least of the 1000 GETs (want >= $share_pct %)"
# One exploration per endpoint per second at most: 3 endpoints x ~27 s.
((explored <= 90)) && pass "exploration stayed within its bound ($explored requests)" ||
	fail "$explored explorations, more than one per endpoint per second"
finish
