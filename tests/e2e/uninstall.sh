#!/bin/bash
# uninstall.sh: an explicit uninstall removes everything shoal made, and
# nothing is left attached.
#  - SIGTERM stops shoald cleanly and fails open at once: an enrolled pod's
#    next connection reaches the VIP's direct path without waiting for the
#    heartbeat to age;
#  - `shoalctl uninstall`: bpftool lists no link or program of this test
#    (names start with shoal_), the pin root is gone, `bpftool cgroup tree`
#    shows nothing attached under the test cgroup, and enrolled a1's
#    connection to the VIP goes direct;
#  - the same again with a new shoald and `shoald --uninstall -c FILE`.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

e2e_init
e2e_topology
write_config

# check_gone HOW: everything this test's shoald made is gone.
check_gone() {
	local how=$1 progs links attached
	local i
	# The kernel frees a program whose last reference went on a deferred
	# work item (bpf_prog_put): on a loaded machine that takes a moment.
	for ((i = 0; i < 30; i++)); do
		progs=$(still_present prog <<<"$INSTALLED_PROGS" | tr '\n' ' ')
		links=$(still_present link <<<"$INSTALLED_LINKS" | tr '\n' ' ')
		[[ -z ${progs// /}${links// /} ]] && break
		sleep 0.1
	done
	[[ -z ${progs// /} ]] && pass "$how: bpftool prog show lists none of this test's programs ($(tr '\n' ' ' <<<"$INSTALLED_PROGS"))" ||
		fail "$how: programs still loaded: $progs"
	[[ -z ${links// /} ]] && pass "$how: bpftool link show lists none of this test's links ($(tr '\n' ' ' <<<"$INSTALLED_LINKS"))" ||
		fail "$how: links still present: $links"
	[[ ! -e $PIN_ROOT ]] && pass "$how: pin root $PIN_ROOT is gone" ||
		fail "$how: pin root still there: $(find "$PIN_ROOT" | tr '\n' ' ')"
	attached=$(cgroup_attached "$TEST_CG")
	[[ -z $attached ]] && pass "$how: bpftool cgroup tree $TEST_CG shows nothing attached" ||
		fail "$how: still attached under the test cgroup: $attached"
	expect_direct a1 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[a1]}"
	expect_direct a1 '[fd96::10]:80' '[fd96::10]:80' "${POD_IP6[a1]}"
}

# install: start shoald, enroll a1, and check that something is there to remove.
install() {
	shoald_start
	enroll a1
	expect_proxied a1 10.96.0.10:80 10.96.0.10:80
	((EXPECT_OK)) || fatal "interception does not work; nothing to uninstall"
	INSTALLED_LINKS=$(our_link_ids)
	INSTALLED_PROGS=$(our_link_prog_ids)
	(($(grep -c . <<<"$INSTALLED_LINKS") == 6)) ||
		fail "shoalctl bpf lists $(grep -c . <<<"$INSTALLED_LINKS") links while shoald runs, expected 6"
	[[ -n $(still_present prog <<<"$INSTALLED_PROGS") ]] || fail "bpftool prog show lists none of the linked programs while shoald runs"
	[[ -n $(cgroup_attached "$TEST_CG") ]] || fail "bpftool cgroup tree $TEST_CG shows nothing while shoald runs"
	[[ -d $PIN_ROOT ]] || fail "no pin root $PIN_ROOT while shoald runs"
}

install
say "SIGTERM shoald: a clean stop fails open at once"
shoald_stop TERM
expect_direct a1 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[a1]}"
ctl uninstall || fail "shoalctl uninstall failed"
check_gone "shoalctl uninstall"

say "again, with shoald --uninstall"
install
shoald_stop TERM
timeout 20 "$SHOALD" --uninstall -c "$CONFIG" || fail "shoald --uninstall -c failed"
check_gone "shoald --uninstall"
finish
