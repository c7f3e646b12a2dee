#!/bin/bash
# intercept.sh: an enrolled pod's connection to a service VIP goes through
# the node proxy to a real endpoint, and the pod cannot tell.
#  - a1 (enrolled) -> 10.96.0.10:80, [fd96::10]:80 and, over an IPv6
#    socket, ::ffff:10.96.0.10:80: an endpoint (a2 or b1) answers, not the
#    direct path; the endpoint sees the proxy's address, not a1's; and
#    getpeername() on a1's socket still returns the VIP;
#  - service "remote" (VIP 10.96.0.11), whose only endpoint is b1 on
#    node-b, proves the proxy's path from node-a to node-b. (Which of web's
#    two endpoints answers is the latency-aware balancer's choice: the
#    resilience-balance test covers it.)
#  - a1's connections to non-service addresses are left alone;
#  - the counters connect_intercepted, handoff_stored and the service's
#    "intercepted" grew.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

e2e_init
e2e_topology
e2e_topology_check
write_config "  - name: remote
    vips: [10.96.0.11, \"fd96::11\"]
    ports: [{port: 80, target_port: 8080, protocol: tcp}]
    endpoints: [{address: 10.77.2.2}]"
shoald_start
enroll a1
pass "a1 enrolled"

intercepted0=$(counter connect_intercepted)
handoff0=$(counter handoff_stored)
svc0=$(service_counter default/web intercepted)

expect_proxied a1 10.96.0.10:80 10.96.0.10:80
expect_proxied a1 '[fd96::10]:80' '[fd96::10]:80'
expect_proxied a1 10.96.0.10:80 10.96.0.10:80 --family mapped

declare -A seen=()
for i in $(seq 1 10); do
	expect_proxied a1 10.96.0.10:80 10.96.0.10:80 >/dev/null
	if ((EXPECT_OK)); then
		seen[$HELLO_BACKEND]=$((${seen[$HELLO_BACKEND]:-0} + 1))
	fi
done
say "10 hellos to web: a2 answered ${seen[a2]:-0}, b1 answered ${seen[b1]:-0}"
((${seen[a2]:-0} + ${seen[b1]:-0} == 10)) && pass "all 10 hellos to web reached one of its endpoints" ||
	fail "hellos to web: only $((${seen[a2]:-0} + ${seen[b1]:-0})) of 10 reached an endpoint"

for to in 10.96.0.11:80 '[fd96::11]:80'; do
	if expect_proxied a1 "$to" "$to" >/dev/null && ((EXPECT_OK)) && [[ $HELLO_BACKEND == b1 ]]; then
		pass "a1 -> $to (service remote): proxied from node-a to b1 on node-b (b1 saw $HELLO_SEEN)"
	else
		fail "a1 -> $to (service remote): expected b1 on node-b through the proxy, got '$HELLO_OUT'"
	fi
done

if hello a1 "${POD_IP4[b1]}:8080" && [[ $HELLO_OUT == *"banner=b1 ${POD_IP4[a1]}" ]]; then
	pass "a1 -> b1's pod address directly: untouched (b1 saw a1's own address)"
else
	fail "a1 -> ${POD_IP4[b1]}:8080 should be untouched, got '$HELLO_OUT'"
fi

n=15 # hellos to the VIPs above
expect_grew connect_intercepted "$intercepted0" "$n"
expect_grew handoff_stored "$handoff0" "$n"
svc1=$(service_counter default/web intercepted)
n_web=13 # of them to web
if ((svc1 - svc0 >= n_web)); then
	pass "service default/web intercepted grew by $((svc1 - svc0))"
else
	fail "service default/web intercepted went $svc0 -> $svc1, expected >= +$n_web"
fi
finish
