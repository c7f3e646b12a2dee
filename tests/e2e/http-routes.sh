#!/bin/bash
# http-routes.sh: HTTP routes through interception. Service "front"
# (10.96.0.30:80, http) has four routes, first match wins:
#   path prefix /v2          -> service v2 (b1 only)
#   header x-canary: yes     -> service v2
#   path prefix /slow        -> front itself, timeout_ms 300
#   path prefix /split       -> v1 (a2 only) weight 90, v2 weight 10
# and anything else goes to front's own endpoint (a2).
# Checks: each route sends where it says, a near-miss (/v2x) does not
# match the prefix, encoded and dotted paths match normalised, an
# absolute-form target is routed by its path, a route's timeout_ms turns a slow answer into a 504,
# and the 90/10 split over 2000 requests on keep-alive connections lands
# within +-3 %.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_topology a2 b1
write_config "
$(http_service front 10.96.0.30 9080 10.77.1.3)
    routes:
      - name: v2-path
        match: {path: {prefix: /v2}}
        backends: [{service: v2}]
      - name: canary
        match: {headers: {x-canary: \"yes\"}}
        backends: [{service: v2}]
      - name: slow
        match: {path: {prefix: /slow}}
        timeout_ms: 300
      - name: split
        match: {path: {prefix: /split}}
        backends:
          - {service: v1, weight: 90}
          - {service: v2, weight: 10}
$(http_service v1 10.96.0.31 9080 10.77.1.3)
$(http_service v2 10.96.0.32 9080 10.77.2.2)"
shoald_start
enroll a1

FRONT=http://10.96.0.30

# backends_of ARGS... : the x-backend of each response of one curl run
# (one connection), as "name count" lines.
backends_of() {
	pod_curl a1 -w 'backend=%header{x-backend}\n' "$@" | sed -n 's/^backend=//p' | sort | uniq -c |
		awk '{ print $2, $1 }'
}

out=$(backends_of "$FRONT/v2/a" "$FRONT/v2" "$FRONT/v2/b/c" "$FRONT/v2/?q=1")
[[ $out == "b1 4" ]] && pass "path prefix /v2: all 4 requests went to service v2 (b1)" ||
	fail "path prefix /v2: backends '$out'"

out=$(backends_of "$FRONT/v2x" "$FRONT/v2x" "$FRONT/v2x" "$FRONT/v2x")
[[ $out == "a2 4" ]] && pass "/v2x is not under the /v2 prefix: front's own endpoint (a2)" ||
	fail "/v2x: backends '$out'"

# Normalised before matching (RFC 3986 6.2.2): encoded unreserved bytes
# and dot-segments cannot dodge a route; curl --path-as-is sends them raw.
out=$(backends_of --path-as-is "$FRONT/%76%32/a" "$FRONT/x/../v2/b" "$FRONT/./v2" "$FRONT/v2/c/..")
[[ $out == "b1 4" ]] && pass "normalised paths (/%76%32/a, /x/../v2/b, /./v2, /v2/c/..): all 4 to v2 (b1)" ||
	fail "normalised paths: backends '$out'"
# An absolute-form target is routed by its path (curl -x sends GET http://...).
out=$(backends_of -x "$FRONT:80" "http://front.example/v2/abs" "http://front.example/v2x")
[[ $out == "a2 1
b1 1" ]] && pass "absolute-form targets: /v2/abs to v2 (b1), /v2x to front (a2)" ||
	fail "absolute-form targets: backends '$out'"

out=$(backends_of -H 'x-canary: yes' "$FRONT/other" "$FRONT/other" "$FRONT/other" "$FRONT/other")
[[ $out == "b1 4" ]] && pass "header x-canary: yes: all 4 requests went to v2 (b1)" ||
	fail "header match: backends '$out'"
out=$(backends_of -H 'x-canary: no' "$FRONT/other" "$FRONT/other" "$FRONT/other" "$FRONT/other")
[[ $out == "a2 4" ]] && pass "header x-canary: no: no route, front's own endpoint (a2)" ||
	fail "header mismatch: backends '$out'"

t0=$(date +%s%N)
out=$(pod_curl a1 -D - -o /dev/null "$FRONT/slow?delay_ms=3000") || fail "route timeout: curl failed"
ms=$((($(date +%s%N) - t0) / 1000000))
if [[ $out == "HTTP/1.1 504"* && $(header x-shoal-error <<<"$out") == timeout ]] && ((ms < 2000)); then
	pass "route timeout_ms 300 against a 3 s backend: 504 (x-shoal-error: timeout) after $ms ms"
else
	fail "route timeout: after $ms ms got $out"
fi

n=2000
cfg=$LOGDIR/split.curl
for ((i = 0; i < n; i++)); do
	printf 'url = "%s/split/%d"\noutput = "/dev/null"\n' "$FRONT" "$i"
done >"$cfg"
out=$(pod_run a1 curl -sS --max-time 120 -K "$cfg" -w '%header{x-backend}\n' | sort | uniq -c)
a2=$(awk '$2 == "a2" { print $1 }' <<<"$out")
b1=$(awk '$2 == "b1" { print $1 }' <<<"$out")
a2=${a2:-0} b1=${b1:-0}
say "split over $n requests: v1 (a2) $a2, v2 (b1) $b1"
if ((a2 + b1 == n && a2 >= n * 87 / 100 && a2 <= n * 93 / 100)); then
	pass "90/10 split: v1 got $((a2 * 1000 / n / 10)).$((a2 * 1000 / n % 10)) % of $n requests (within +-3 %)"
else
	fail "90/10 split: a2 $a2, b1 $b1 of $n"
fi
finish
