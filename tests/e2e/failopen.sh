#!/bin/bash
# failopen.sh: a crashed shoald fails open, and a restarted one adopts its
# pins.
#  - a long-lived connection from unenrolled a3 to the VIP's direct path
#    ("hold") keeps working through the crash and the restart;
#  - after SIGKILL, once the heartbeat is older than failopen_after_ms,
#    enrolled a1's new connections reach the VIP's direct path untouched,
#    connect_failed_open grew, and status says "proxy stale";
#  - shoald restarted with the same config says it adopted the pins, the
#    set of shoal links is unchanged (same IDs, as `bpftool link show`
#    lists them), and a1 is proxied again without being enrolled again.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

e2e_init
e2e_topology
write_config
shoald_start
enroll a1
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
((EXPECT_OK)) || fatal "interception does not work; nothing to fail open from"

links_before=$(our_link_ids)
nlinks_before=$(grep -c . <<<"$links_before" || true)
say "shoal links before the crash: $(tr '\n' ' ' <<<"$links_before")"
((nlinks_before > 0)) || fail "bpftool link show lists no link running a shoal_ program of this test"

hold_start a3 10.96.0.10:80
sleep 0.5
grep -q '^banner=direct ' "$HOLD_LOG" || fatal "hold did not reach the direct path: $(cat "$HOLD_LOG")"
hold_alive "before the crash" "the established direct connection"

failed_open0=$(counter connect_failed_open)
say "SIGKILL shoald (pid $SHOALD_PID); links stay pinned and attached"
shoald_stop KILL
sleep "$(awk -v ms="$FAILOPEN_AFTER_MS" 'BEGIN { print ms / 1000 + 1.5 }')"

if ctl status | grep -qx 'proxy stale'; then
	pass "status says 'proxy stale' after the heartbeat aged"
else
	fail "status after the crash: $(ctl status | tr '\n' ';'), expected 'proxy stale'"
fi
expect_direct a1 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[a1]}"
expect_direct a1 '[fd96::10]:80' '[fd96::10]:80' "${POD_IP6[a1]}"
expect_grew connect_failed_open "$failed_open0" 2
hold_alive "with shoald dead" "the established direct connection"

say "restart shoald with the same config"
shoald_start
if grep -qi 'adopt' "$SHOALD_LOG"; then
	pass "the restarted shoald says it adopted the pins: $(grep -i -m1 'adopt' "$SHOALD_LOG")"
else
	fail "the restarted shoald's log does not mention adopting the pins"
fi
links_after=$(our_link_ids)
nlinks_after=$(grep -c . <<<"$links_after" || true)
if ((nlinks_after == nlinks_before)) && [[ $links_after == "$links_before" ]]; then
	pass "bpftool link show: the same $nlinks_after shoal links (same IDs) after the restart"
else
	fail "shoal links before: [$(tr '\n' ' ' <<<"$links_before")] after: [$(tr '\n' ' ' <<<"$links_after")]"
fi
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
expect_proxied a1 '[fd96::10]:80' '[fd96::10]:80'
hold_alive "after the restart" "the established direct connection"

stop_pid "$HOLD_PID" TERM
grep -q '^shoal-peer' "$HOLD_LOG" && fail "hold reported: $(grep '^shoal-peer' "$HOLD_LOG")"
finish
