#!/bin/bash
# resilience-breaker.sh: circuit breaking through interception. Service
# "cb" (10.96.0.43:80, http): a2, a3 and b1. After a warm-up, a2 starts
# resetting every request (/_ctl/mode reset=1). GETs then go one at a
# time from a1. Checks, each with its figure:
#  - a2 is ejected within 10 requests that reached it (the log line at
#    info names it), and the client sees no failure (each reset is retried
#    elsewhere);
#  - a2 recovers (reset=0) at once; while ejected it takes no request but
#    the one probe;
#  - it is readmitted within its backoff (1 s, jitter +-50 %: at most
#    1.5 s, plus the probe's own round trip).
# The balancer's failure penalty is off for "cb" (failure_penalty_ms: 0):
# with it, P2C starves a failing endpoint by itself (resilience-retry.sh),
# and the breaker would have nothing left to show. Here the breaker alone
# must take it out.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=resilience-lib.sh
source "$(dirname "$0")/resilience-lib.sh"

http_require
e2e_init
e2e_topology
backend_start a2 9080
backend_start a3 9080
backend_start b1 9080
write_config "
  - name: cb
    vips: [10.96.0.43]
    ports: [{port: 80, target_port: 9080, protocol: http}]
    endpoints: [{address: 10.77.1.3}, {address: 10.77.1.5}, {address: 10.77.2.2}]
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
out=$(load "$URL" 300)
say "warm-up: $out"

backend_ctl a2 9080 /_ctl/mode "reset=1"
base=$(backend_stat a2 9080 resets)
client_fail=0
for ((i = 1; i <= 200; i++)); do
	code=$(pod_run a1 curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL") || code=000
	[[ $code == 200 ]] || client_fail=$((client_fail + 1))
	grep -q "endpoint 10.77.1.3 ejected" "$SHOALD_LOG" && break
done
t_eject=$(date +%s%N)
hits=$(($(backend_stat a2 9080 resets) - base))
line=$(grep -m1 "endpoint 10.77.1.3 ejected" "$SHOALD_LOG" || true)
if [[ -n $line ]]; then
	say "log: $line"
	say "figure: a2 was ejected after $hits requests reached it ($i client requests, $client_fail of them failed)"
	((hits <= 10)) && pass "ejected within 10 requests ($hits)" ||
		fail "ejected only after $hits requests reached it (want <= 10)"
else
	fail "a2 not ejected after 200 requests ($hits reached it)"
fi
((client_fail == 0)) && pass "the client saw no failure: each reset was retried elsewhere" ||
	fail "$client_fail client requests failed"

# Recovery: a2 answers again; traffic goes on at ~50 requests/s.
backend_ctl a2 9080 /_ctl/mode "reset=0"
served0=$(backend_stat a2 9080 requests)
resets0=$(backend_stat a2 9080 resets)
readmit=""
out=$(pod_run a1 python3 "$LOAD" "$URL" 150 --rate 50 2>&1 &
	for ((k = 0; k < 200; k++)); do
		if grep -q "endpoint 10.77.1.3 readmitted" "$SHOALD_LOG"; then
			echo "readmitted $(date +%s%N) $(backend_stat a2 9080 requests) $(backend_stat a2 9080 resets)"
			break
		fi
		sleep 0.02
	done
	wait)
read -r _ t_readmit served1 resets1 < <(grep '^readmitted' <<<"$out" || true)
if [[ -n ${t_readmit:-} ]]; then
	ms=$(((t_readmit - t_eject) / 1000000))
	during=$((served1 + resets1 - served0 - resets0))
	say "log: $(grep -m1 'endpoint 10.77.1.3 readmitted' "$SHOALD_LOG")"
	say "figure: readmitted $ms ms after the ejection; a2 took $during request(s) in between (the probe)"
	((ms <= 1700)) && pass "readmitted within its backoff ($ms ms <= 1.5 s + slack)" ||
		fail "readmitted only after $ms ms"
	((during <= 1)) && pass "no traffic while ejected but the probe ($during)" ||
		fail "a2 took $during requests while ejected"
else
	fail "a2 was not readmitted within 4 s: $out"
fi
after=$(backend_stat a2 9080 requests)
say "a2 served $((after - served0)) requests after its recovery"
((after - served0 > 5)) && pass "a2 takes traffic again after its readmission" ||
	fail "a2 got only $((after - served0)) requests after recovering"
finish
