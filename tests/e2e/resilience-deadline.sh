#!/bin/bash
# resilience-deadline.sh: deadlines through interception. Service "slow"
# (10.96.0.44:80, http), one endpoint a2 answering after 2 s.
#  - a client deadline of 200 ms (x-shoal-timeout-ms: 200) gets a 504
#    (x-shoal-error: timeout) in 200 +- 50 ms, and the backend sees the
#    connection go at that moment (nothing more is sent to it);
#  - the service's own request deadline (resilience.timeouts.request_ms:
#    400) does the same at 400 ms, and a longer client header cannot
#    extend it;
#  - a per-try timeout (per_try_ms: 150 on route /try) retries a GET on
#    the other endpoint b1, which answers at once.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=resilience-lib.sh
source "$(dirname "$0")/resilience-lib.sh"

http_require
e2e_init
e2e_topology
backend_start a2 9080 --delay-ms 2000
backend_start b1 9080
write_config "
$(http_service slow 10.96.0.44 9080 10.77.1.3)
$(http_service bounded 10.96.0.45 9080 10.77.1.3)
    resilience:
      timeouts: {request_ms: 400}
$(http_service pertry 10.96.0.46 9080 10.77.1.3 10.77.2.2)
    routes:
      - name: try
        match: {path: {prefix: /try}}
        timeout_ms: 1500
        per_try_timeout_ms: 150"
shoald_start
enroll a1

# timed URL [CURL ARGS]: "status ms x-shoal-error" of one GET from a1.
timed() {
	local url=$1
	shift
	pod_run a1 curl -s -o /dev/null -D "$LOGDIR/head" --max-time 5 \
		-w '%{http_code} %{time_total}\n' "$@" "$url" |
		awk -v e="$(true)" '{ printf "%s %d", $1, $2 * 1000 }'
	echo " $(header x-shoal-error <"$LOGDIR/head")"
}

worst=0
for i in 1 2 3 4 5; do
	read -r code ms err < <(timed http://10.96.0.44/ -H 'x-shoal-timeout-ms: 200')
	say "figure: x-shoal-timeout-ms: 200 against a 2 s backend: $code in $ms ms ($err)"
	[[ $code == 504 && $err == timeout ]] || fail "want 504 timeout, got $code $err"
	((ms >= 150 && ms <= 250)) || fail "answered in $ms ms, want 200 +- 50"
	d=$((ms > 200 ? ms - 200 : 200 - ms))
	((d > worst)) && worst=$d
done
pass "5 requests with a 200 ms client deadline: 504 each, at most $worst ms off 200 ms"

read -r code ms err < <(timed http://10.96.0.45/)
say "figure: service request_ms 400: $code in $ms ms ($err)"
[[ $code == 504 ]] && ((ms >= 350 && ms <= 450)) && pass "the service's deadline: 504 at $ms ms" ||
	fail "service deadline: $code at $ms ms (want 504 at 400 +- 50)"
read -r code ms err < <(timed http://10.96.0.45/ -H 'x-shoal-timeout-ms: 5000')
say "figure: service request_ms 400 with x-shoal-timeout-ms: 5000: $code in $ms ms"
[[ $code == 504 ]] && ((ms <= 450)) && pass "a client header cannot extend the deadline" ||
	fail "the header extended the deadline: $code at $ms ms"
read -r code ms err < <(timed http://10.96.0.45/ -H 'x-shoal-timeout-ms: nonsense')
[[ $code == 504 ]] && ((ms >= 350 && ms <= 450)) && pass "a malformed header is ignored" ||
	fail "malformed header: $code at $ms ms"

# Per-try: the first try may land on slow a2 (150 ms, then a retry on b1)
# or on b1 at once; either way 200 well before a2's 2 s.
bad=0
for i in $(seq 1 10); do
	read -r code ms err < <(timed http://10.96.0.46/try)
	[[ $code == 200 ]] && ((ms < 1000)) || bad=$((bad + 1))
	last="$code in $ms ms"
done
say "figure: 10 GETs on a route with per_try_timeout_ms 150 over a2 (2 s) and b1: $((10 - bad)) answered 200 in < 1 s (last: $last)"
((bad == 0)) && pass "per-try timeouts retried on the other endpoint" || fail "$bad of 10 per-try requests were slow or failed"
finish
