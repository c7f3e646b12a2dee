#!/bin/bash
# bypass.sh: only enrolled pods are meshed, one at a time, and the proxy
# never intercepts itself.
#  - unenrolled pods reach the VIP's direct path (the kube-proxy stand-in),
#    which sees the pod's own address;
#  - enrolling and unenrolling a1 and a3 one at a time flips each between
#    proxied and direct, without touching the other;
#  - loop avoidance: with node-a's own netns (where shoald runs) enrolled
#    too, service "loop" (VIP 10.96.0.20:80) whose only endpoint is the
#    VIP 10.96.0.10:80 makes the proxy's upstream connect go to a VIP. It
#    must not come back to the proxy: a1 -> 10.96.0.20:80 reaches "direct",
#    which sees the proxy's address, and connect_skipped_mark grew.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

e2e_init
e2e_topology
write_config "$(tcp_service loop 10.96.0.20 80 80 10.96.0.10)"
shoald_start

# state A3 A1: expected path for each pod, "proxied" or "direct".
check_paths() {
	local pod want
	for pod in a1 a3; do
		if [[ $pod == a1 ]]; then want=$1; else want=$2; fi
		if [[ $want == proxied ]]; then
			expect_proxied "$pod" 10.96.0.10:80 10.96.0.10:80
			expect_proxied "$pod" '[fd96::10]:80' '[fd96::10]:80'
		else
			expect_direct "$pod" 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[$pod]}"
			expect_direct "$pod" '[fd96::10]:80' '[fd96::10]:80' "${POD_IP6[$pod]}"
		fi
	done
}

say "nothing enrolled"
check_paths direct direct
say "enroll a1"
enroll a1
check_paths proxied direct
say "enroll a3"
enroll a3
check_paths proxied proxied
say "unenroll a1"
unenroll a1
check_paths direct proxied
say "unenroll a3"
unenroll a3
check_paths direct direct

say "loop avoidance: enroll node-a's own netns (shoald's) and a1"
enroll node-a
enroll a1
skipped0=$(counter connect_skipped_mark)
if hello a1 10.96.0.20:80 --timeout-ms 5000 &&
	[[ $HELLO_BACKEND == direct && " $PROXY_SOURCES " == *" $HELLO_SEEN "* && $HELLO_PEER == 10.96.0.20:80 ]]; then
	pass "a1 -> loop VIP 10.96.0.20:80: the proxy's upstream to 10.96.0.10:80 went direct (direct saw $HELLO_SEEN)"
else
	fail "a1 -> loop VIP 10.96.0.20:80: expected 'peername=10.96.0.20:80 banner=direct <proxy address>', got '$HELLO_OUT'"
fi
expect_grew connect_skipped_mark "$skipped0" 1
# The ordinary service keeps working with the node enrolled.
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
finish
