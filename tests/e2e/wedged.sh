#!/bin/bash
# wedged.sh: a proxy worker whose event loop stops turning fails the node
# open, and the node is meshed again once it turns.
#  - shoald runs with SHOALD_TEST_STALL_MS (test only): SIGUSR1 makes proxy
#    worker 0 sleep that long in its loop, as a wedged worker would, while
#    the main thread goes on;
#  - within WORKER_STALL_MS (2 s) + failopen_after_ms (1 s) + margin, the
#    heartbeat has stopped: status says "proxy stale", shoald logs which
#    worker has not turned, and enrolled a1's new connections reach the
#    VIP's direct path untouched;
#  - once the worker turns again, the heartbeat resumes and a1 is proxied.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

STALL_MS=8000
e2e_init
e2e_topology
write_config
export SHOALD_TEST_STALL_MS=$STALL_MS
shoald_start
enroll a1
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
((EXPECT_OK)) || fatal "interception does not work; nothing to fail open from"

say "SIGUSR1: proxy worker 0 stalls for $STALL_MS ms"
t0=$(date +%s%N)
kill -USR1 "$SHOALD_PID"
# Stale by 2 s (stall bound) + 1 s (failopen_after_ms) + a beat; 4 s is margin.
for ((i = 0; i < 50; i++)); do
	ctl status | grep -qx 'proxy stale' && break
	sleep 0.1
done
ms=$((($(date +%s%N) - t0) / 1000000))
if ctl status | grep -qx 'proxy stale'; then
	pass "heartbeat stale $ms ms into the stall"
else
	fail "status $ms ms into the stall: $(ctl status | tr '\n' ';'), expected 'proxy stale'"
fi
if ((ms < 2000)); then
	fail "stale after $ms ms: sooner than the 2 s stall bound"
fi
expect_direct a1 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[a1]}"
grep -q "proxy worker 0 has not turned" "$SHOALD_LOG" && pass "shoald logged the wedged worker" ||
	fail "no 'proxy worker 0 has not turned' in the log"

# The stall ends at STALL_MS; the heartbeat resumes at the next beat.
while (($(date +%s%N) - t0 < (STALL_MS + 1500) * 1000000)); do sleep 0.2; done
if ctl status | grep -qx 'proxy alive'; then
	pass "heartbeat alive again after the stall"
else
	fail "status after the stall: $(ctl status | tr '\n' ';'), expected 'proxy alive'"
fi
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
grep -q "heartbeat resumed" "$SHOALD_LOG" && pass "shoald logged the resumed heartbeat" ||
	fail "no 'heartbeat resumed' in the log"
finish
