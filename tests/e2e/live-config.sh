#!/bin/bash
# live-config.sh: keep-alive connections follow config changes
# (docs/discovery.md, "Snapshots"). Under keep-alive wrk load on service
# live (10.96.0.40:80, http), the config file is rewritten so that every
# endpoint is replaced (a2, b1 -> a3, direct). Once shoald logs the
# change applied (and the requests in flight then have finished):
#  - the removed backends get no further request: their request counters
#    stop; the new ones serve the load;
#  - the removed backends are then stopped, and wrk still sees no
#    non-2xx answer and no socket error over the whole run.
# Before the fix, wrk's connections kept the snapshot they were accepted
# with and went on sending to a2 and b1.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_require wrk
e2e_init
e2e_topology

OLD_PODS=(a2 b1)
NEW_PODS=(a3 direct)
OLD_PIDS=()
for pod in "${OLD_PODS[@]}"; do
	backend_start "$pod" 9080
	OLD_PIDS+=("$LAST_PID")
done
for pod in "${NEW_PODS[@]}"; do
	backend_start "$pod" 9080
done

# live_config ENDPOINTS: service live with these endpoints, written through
# a temp file and rename(2), as editors do.
live_config() {
	{ config_head; cat <<EOC; } >"$CONFIG.tmp"
services:
  - name: live
    namespace: default
    vips: [10.96.0.40]
    ports: [{port: 80, target_port: 9080, protocol: http}]
    endpoints: [$1]
EOC
	mv -f "$CONFIG.tmp" "$CONFIG"
}

# requests_of PODS...: requests their backends served, summed.
requests_of() {
	local pod n sum=0
	for pod in "$@"; do
		n=$(backend_requests "$pod" 9080)
		[[ $n =~ ^[0-9]+$ ]] || fatal "no request count from $pod's backend"
		sum=$((sum + n))
	done
	echo "$sum"
}

applied_count() { grep -c 'discovery: configuration applied' "$SHOALD_LOG" || true; }

live_config "{address: ${POD_IP4[a2]}}, {address: ${POD_IP4[b1]}}"
shoald_start
enroll a1
pod_curl a1 -o /dev/null http://10.96.0.40/warm || fatal "live: the first request failed"

# 8 keep-alive connections for 9 s: wrk opens them at its start and keeps
# them (it reconnects only after an error or a close).
WRK_LOG=$LOGDIR/wrk.txt
pod_spawn a1 "$WRK_LOG" wrk -c 8 -t 2 -d 9 --latency http://10.96.0.40/
WRK_PID=$LAST_PID
sleep 2
old_before=$(requests_of "${OLD_PODS[@]}")
((old_before > 100)) || fail "the load did not reach a2 and b1 first ($old_before requests)"

say "every endpoint replaced under load: a2, b1 -> a3, direct"
applied=$(applied_count)
live_config "{address: ${POD_IP4[a3]}}, {address: ${POD_IP4[direct]}}"
for ((i = 0; i < 250; i++)); do
	(($(applied_count) > applied)) && break
	sleep 0.02
done
(($(applied_count) > applied)) || fatal "shoald did not log the change applied within 5 s"
# Requests already in flight at that moment finish where they went.
sleep 0.3
old_at=$(requests_of "${OLD_PODS[@]}")
new_at=$(requests_of "${NEW_PODS[@]}")
sleep 2
old_after=$(requests_of "${OLD_PODS[@]}")
new_after=$(requests_of "${NEW_PODS[@]}")
if ((old_after == old_at)); then
	pass "no request reached a removed endpoint in the 2 s after the change ($old_at before, $old_after after)"
else
	fail "removed endpoints still got $((old_after - old_at)) requests in the 2 s after the change was applied"
fi
if ((new_after - new_at > 100)); then
	pass "the new endpoints served $((new_after - new_at)) requests in those 2 s"
else
	fail "the new endpoints served only $((new_after - new_at)) requests in those 2 s"
fi

say "the removed backends go away (the rolling update ends)"
for pid in "${OLD_PIDS[@]}"; do
	stop_pid "$pid"
done

wait "$WRK_PID" || fail "wrk exited with an error: $(cat "$WRK_LOG")"
rps=$(awk '/^Requests\/sec/ { print $2 }' "$WRK_LOG")
total=$(awk '/requests in/ { print $1; exit }' "$WRK_LOG")
if [[ -z $rps ]] || grep -q 'Socket errors\|Non-2xx' "$WRK_LOG"; then
	fail "wrk saw failures: $(tr '\n' ' ' <<<"$(cat "$WRK_LOG")")"
else
	pass "wrk: $total requests ($rps/s) on 8 keep-alive connections, no non-2xx, no socket error"
fi
finish
