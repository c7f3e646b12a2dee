#!/bin/bash
# The sockmap kill switch at start: shoald --no-shortcut (and the config's
# bpf.shortcut: false) leaves every socket on TCP, while interception
# still works. (The runtime switch is in stream.sh.)
source "$(dirname "$0")/lib.sh"

e2e_init
e2e_topology
write_config
shoald_start --no-shortcut
enroll a1
grep -qx 'shortcut off' <<<"$(ctl status)" && pass "--no-shortcut: status says shortcut off" ||
	fail "--no-shortcut: status does not say shortcut off"
inserted0=$(counter shortcut_inserted)
msgs0=$(counter redirect_msgs)
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
if (($(counter shortcut_inserted) == inserted0 && $(counter redirect_msgs) == msgs0)); then
	pass "--no-shortcut: no socket joined the SOCKHASH, nothing was redirected"
else
	fail "--no-shortcut: shortcut_inserted or redirect_msgs moved"
fi
shoald_stop TERM

sed -i 's/shortcut: true/shortcut: false/' "$CONFIG"
shoald_start
grep -qx 'shortcut off' <<<"$(ctl status)" && pass "bpf.shortcut: false: status says shortcut off" ||
	fail "bpf.shortcut: false: status does not say shortcut off"
inserted0=$(counter shortcut_inserted)
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
(($(counter shortcut_inserted) == inserted0)) && pass "bpf.shortcut: false: no socket joined the SOCKHASH" ||
	fail "bpf.shortcut: false: shortcut_inserted moved"
finish
