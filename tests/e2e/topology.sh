#!/bin/bash
# topology.sh: the harness itself, with no shoald. Two nodes, five pods:
# every pod reaches the others across nodes over IPv4 and IPv6, and the
# VIPs reach the kube-proxy stand-in "direct" from any pod. If this fails,
# every other e2e failure is suspect.
E2E_NEEDS_AGENT=0
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

e2e_init
e2e_topology
e2e_topology_check

out=$(pod_run a1 "$SHOAL_PEER" hello --to 10.96.0.10:80 --family mapped 2>&1) ||
	fatal "a1 -> 10.96.0.10:80 (mapped) failed: $out"
[[ $out == "peername=10.96.0.10:80 banner=direct ${POD_IP4[a1]}" ]] ||
	fatal "a1 -> 10.96.0.10:80 (mapped) answered '$out'"
pass "a1 reaches the VIP's direct path over an IPv4-mapped IPv6 socket"

out=$(pod_run b1 "$SHOAL_PEER" hello --to "${POD_IP4[a2]}:8080" 2>&1) ||
	fatal "b1 -> a2 failed: $out"
[[ $out == *"banner=a2 ${POD_IP4[b1]}" ]] || fatal "b1 -> a2 answered '$out'"
pass "node-b's pod b1 reaches node-a's pod a2, which sees b1's own address"

# Every process of the test lives in the test cgroup.
for pid in $(cgroup_pids "$TEST_CG"); do
	pid_in_cgroup "$pid" "$TEST_CG" || fail "pid $pid listed in $TEST_CG but not in it"
done
n=$(cgroup_pids "$TEST_CG" | wc -l)
((n >= 3)) && pass "the $n test processes all run inside $TEST_CG" ||
	fail "expected the three servers in $TEST_CG, found $n processes"
finish
