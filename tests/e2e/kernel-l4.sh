#!/bin/bash
# kernel-l4.sh: kernel mode (services[].ports[].mode: kernel): connect4/6
# pick the endpoint themselves, by P2C over the kernel's own RTT and
# connect-failure costs, and rewrite straight to it; no proxy in the path.
#  - "kl4" 10.96.0.50:80 -> :8080 on a2, a3, b1, where a3 is 20 ms
#    further away (netem on its veth p-a3, which this test made; on a
#    kernel without sch_netem, a3 is a netns of its own behind
#    delay-line.py, two TUN devices this test made): of 300
#    connections from enrolled a1, >= 80 % avoid a3 (random would send it
#    33 %); each answer shows a1's own address (no proxy) and getpeername
#    gives the VIP. Prints the split.
#  - "kl4-refuse" 10.96.0.51:80 -> :8080 on a2, b1 and "direct" (which
#    refuses :8080): of 100 connections, the refusing endpoint gets only
#    its first few (<= 3), then is skipped; with consecutive_failures: 1
#    the agent's breaker also ejects it (shoalctl endpoints, metrics).
#  - "kl4-hole" 10.96.0.53:80 -> a blackholed address: a connect still
#    waiting for its SYN-ACK already costs its endpoint after the first
#    retransmission timeout (1 s);
#  - SIGKILL of shoald: once its heartbeat is stale (the proxy-mode "web"
#    fails open to "direct"), "kl4" still balances over a2 and b1 and
#    avoids a3, 100 connections.
#  - a new shoald after it keeps the kernel's costs (counts, RTT) of endpoints that remain;
#  - a config change that drops b1 from "kl4": every connect goes to a2,
#    whose counts go on, and b1's cost entry goes;
#  - IPv6 (connect6) and v4-mapped connects of "kl4" go straight to a2/b1;
#  - 256 MiB each way through kernel-mode "kl4-bulk" 10.96.0.52:9000 -> a2
#    (tests/e2e/stream.sh's method): checksums match.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

BYTES=${SHOAL_E2E_STREAM_BYTES:-$((256 * 1024 * 1024))}
N_SLOW=300
N_REFUSE=100
N_DEAD=100

# kl4_service NAME VIP PORT TARGET ADDR...: a kernel-mode opaque service.
kl4_service() { tcp_service --mode kernel "$@"; }

# spread TARGET N: N hellos from a1 to TARGET; prints "name count" lines
# (failures as "FAILED"), and checks every answer for the kernel path:
# getpeername gave the VIP part of TARGET, the endpoint saw a1 itself.
spread() {
	local to=$1 n=$2 i
	declare -A seen=()
	for ((i = 0; i < n; i++)); do
		if hello a1 "$to"; then
			if [[ $HELLO_PEER != "$to" || $HELLO_SEEN != "${POD_IP4[a1]}" ]]; then
				fail "kernel path: $to answered '$HELLO_OUT' (want peername=$to, seen ${POD_IP4[a1]})"
			fi
			seen[$HELLO_BACKEND]=$((${seen[$HELLO_BACKEND]:-0} + 1))
		else
			seen[FAILED]=$((${seen[FAILED]:-0} + 1))
		fi
	done
	for i in "${!seen[@]}"; do echo "$i ${seen[$i]}"; done
}

count_of() { awk -v n="$2" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }' <<<"$1"; }

e2e_init
command -v tc >/dev/null || skip "missing tool: tc (iproute2)"
command -v python3 >/dev/null || skip "missing tool: python3"
e2e_topology
# The slow endpoint "a3", 20 ms further away than a2 and b1: netem on the
# node side of a3's veth where the kernel has sch_netem; else a netns of
# its own behind delay-line.py (two TUN devices, this test's).
if in_ns "$NS_A" tc qdisc add dev p-a3 root netem delay 20ms 2>/dev/null; then
	SLOW_IP=${POD_IP4[a3]}
	pod_spawn a3 "$LOGDIR/serve-a3.log" "$SHOAL_PEER" serve --listen 0.0.0.0:8080 --name a3
	wait_listen "${POD_NS[a3]}" 8080
	say "a3 ($SLOW_IP) is 20 ms further away: netem on p-a3"
else
	[[ -c /dev/net/tun ]] || skip "neither sch_netem nor /dev/net/tun: no way to delay an endpoint"
	SLOW_NS=$RUN-slow
	SLOW_IP=10.77.3.2
	netns_add "$SLOW_NS"
	mkdir "$TEST_CG/pod-slow"
	spawn_in "$TEST_CG/pod-slow" "$NS_A" "$LOGDIR/delay-line.log" \
		python3 "$(dirname "$0")/delay-line.py" kd0 "/run/netns/$SLOW_NS" kd1 20
	for ((i = 0; i < 50; i++)); do
		grep -qx ready "$LOGDIR/delay-line.log" 2>/dev/null && break
		sleep 0.1
	done
	grep -qx ready "$LOGDIR/delay-line.log" || fatal "delay-line.py did not start: $(cat "$LOGDIR/delay-line.log")"
	ip -n "$NS_A" link set kd0 up
	ip -n "$NS_A" route add "$SLOW_IP/32" dev kd0
	in_ns "$NS_A" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.kd0.rp_filter=0
	ip -n "$SLOW_NS" link set lo up
	ip -n "$SLOW_NS" link set kd1 up
	ip -n "$SLOW_NS" addr add "$SLOW_IP/32" dev kd1
	ip -n "$SLOW_NS" route add default dev kd1
	spawn_in "$TEST_CG/pod-slow" "$SLOW_NS" "$LOGDIR/serve-a3.log" "$SHOAL_PEER" serve --listen 0.0.0.0:8080 --name a3
	wait_listen "$SLOW_NS" 8080
	say "a3 ($SLOW_IP) is 20 ms further away: no sch_netem in this kernel, so behind delay-line.py"
fi
hello a1 "$SLOW_IP:8080" || fatal "topology: a1 cannot reach the slow endpoint $SLOW_IP:8080: $HELLO_OUT"

write_config "$(kl4_service kl4 '10.96.0.50, "fd96::50"' 80 8080 10.77.1.3 "$SLOW_IP" 10.77.2.2 '"fd77:1::3"' '"fd77:2::2"')
$(kl4_service kl4-refuse 10.96.0.51 80 8080 10.77.1.3 10.77.2.2 10.77.1.4)
    resilience: {breaker: {consecutive_failures: 1, backoff_min_ms: 60000}}
$(kl4_service kl4-bulk 10.96.0.52 9000 9000 10.77.1.3)
$(kl4_service kl4-hole 10.96.0.53 80 8080 10.77.9.9)"
# kl4-hole's one endpoint drops every packet (a blackhole route, no ICMP).
ip -n "$NS_A" route add blackhole 10.77.9.9/32
shoald_start
enroll a1

# ---- latency: 300 connections, one endpoint 20 ms further away ----
t0=$(date +%s%N)
out=$(spread 10.96.0.50:80 "$N_SLOW")
t1=$(date +%s%N)
slow=$(count_of "$out" a3)
failed=$(count_of "$out" FAILED)
avoid=$((N_SLOW - slow - failed))
say "figure: $N_SLOW connections in $(((t1 - t0) / 1000000)) ms: a2 $(count_of "$out" a2), b1 $(count_of "$out" b1), a3 (20 ms slower) $slow, failed $failed"
say "figure: $avoid of $N_SLOW connections ($((avoid * 100 / N_SLOW)) %) avoided the 20 ms slower endpoint"
((failed == 0)) && pass "all $N_SLOW connections answered" || fail "$failed of $N_SLOW connections failed"
if ((avoid * 100 >= 80 * N_SLOW)); then
	pass "at least 80 % avoided the slow endpoint ($((avoid * 100 / N_SLOW)) %)"
else
	fail "only $((avoid * 100 / N_SLOW)) % avoided the slow endpoint (want >= 80 %)"
fi
picked=$(counter kernel_picked)
((picked >= N_SLOW)) && pass "kernel_picked counted $picked connects" ||
	fail "kernel_picked is $picked after $N_SLOW kernel-mode connects"
intercepted=$(counter connect_intercepted)
((intercepted == 0)) && pass "no connect went to the proxy" ||
	fail "connect_intercepted is $intercepted: kernel-mode connects went to the proxy"

# ---- connect6: IPv6 endpoints for an IPv6 VIP, IPv4 ones for a v4-mapped VIP ----
bad=0
for ((i = 0; i < 10; i++)); do
	if ! hello a1 '[fd96::50]:80' || [[ $HELLO_BACKEND != a2 && $HELLO_BACKEND != b1 ]] ||
		[[ $HELLO_PEER != '[fd96::50]:80' || $HELLO_SEEN != "${POD_IP6[a1]}" ]]; then
		bad=$((bad + 1)) && say "IPv6: $HELLO_OUT"
	fi
	if ! hello a1 10.96.0.50:80 --family mapped || [[ $HELLO_BACKEND != a2 && $HELLO_BACKEND != b1 ]] ||
		[[ $HELLO_PEER != 10.96.0.50:80 || $HELLO_SEEN != "${POD_IP4[a1]}" ]]; then
		bad=$((bad + 1)) && say "v4-mapped: $HELLO_OUT"
	fi
done
((bad == 0)) && pass "connect6: 10 IPv6 and 10 v4-mapped connects went straight to a2/b1, getpeername gave the VIP" ||
	fail "connect6: $bad of 20 IPv6 / v4-mapped connects were not kernel-mode picks of a2 or b1"

# ---- an endpoint that refuses connections ----
out=$(spread 10.96.0.51:80 "$N_REFUSE")
refused=$(count_of "$out" FAILED)
say "figure: $N_REFUSE connections with one endpoint refusing: a2 $(count_of "$out" a2), b1 $(count_of "$out" b1), refused $refused"
if ((refused >= 1 && refused <= 3)); then
	pass "the refusing endpoint got only its first $refused connect(s), then was skipped"
elif ((refused == 0)); then
	fail "no connect reached the refusing endpoint (the test proves nothing: est 0 should try it first)"
else
	fail "$refused of $N_REFUSE connects went to the refusing endpoint (want <= 3)"
fi
costs=$(bpftool -j map dump pinned "$PIN_ROOT/maps/shoal_kl4_costs") || fatal "bpftool cannot dump shoal_kl4_costs"
fails_direct=$(python3 -c '
import json, sys, socket, struct
for e in json.loads(sys.argv[1]):
    k, v = e["formatted"]["key"], e["formatted"]["value"]
    ip = socket.inet_ntoa(struct.pack("<I", k["ip"]["ip6"][3]))
    if ip == "10.77.1.4":
        print(v["failures"])
' "$costs")
if [[ $fails_direct == "$refused" ]]; then
	pass "shoal_kl4_costs counted the $refused failed connect(s) to the refusing endpoint"
else
	fail "shoal_kl4_costs says ${fails_direct:-none} failures for the refusing endpoint, the clients saw $refused"
fi

# The same figures, as shoalctl and the metrics show them. kl4-refuse's
# breaker ejects at one failure (for 60 s): the agent publishes that at its
# next tick (the heartbeat's, 250 ms here).
sleep 1
eps=$(ctl endpoints 2>/dev/null) || fail "shoalctl endpoints failed"
say "shoalctl endpoints (kernel mode):"
sed -n '/^KERNEL-MODE ENDPOINT/,$p' <<<"$eps" | sed 's/^/    /'
row_field() { awk -v a="$1" -v c="$2" '$1 == a { print $c; exit }' <<<"$eps"; }
[[ $(row_field 10.77.1.4:8080 4) == "$refused" ]] &&
	pass "shoalctl endpoints: the refusing endpoint shows $refused failure(s)" ||
	fail "shoalctl endpoints: refusing endpoint row is '$(grep '^10.77.1.4:8080 ' <<<"$eps")', want $refused failures"
[[ $(row_field 10.77.1.4:8080 7) == yes && $(row_field 10.77.1.3:8080 7) == no ]] &&
	pass "shoalctl endpoints: the agent's breaker ejected the refusing endpoint (consecutive_failures: 1)" ||
	fail "shoalctl endpoints: refusing endpoint ejected '$(row_field 10.77.1.4:8080 7)', a2 '$(row_field 10.77.1.3:8080 7)' (want yes, no)"
m=$(proxy_metric "shoal_kernel_endpoint_ejected{endpoint=\"10.77.1.4:8080\"}")
[[ $m == 1 ]] && pass "metric shoal_kernel_endpoint_ejected of the refusing endpoint: 1" ||
	fail "metric shoal_kernel_endpoint_ejected{endpoint=\"10.77.1.4:8080\"} is '$m', want 1"
slow_rtt=$(row_field "$SLOW_IP:8080" 6)
fast_rtt=$(row_field 10.77.1.3:8080 6)
if awk -v s="$slow_rtt" -v f="$fast_rtt" 'BEGIN { exit !(s >= 10 && f < 5) }'; then
	pass "shoalctl endpoints: last RTT of a3 $slow_rtt ms, of a2 $fast_rtt ms"
else
	fail "shoalctl endpoints: last RTT of a3 '$slow_rtt' ms (want >= 10), of a2 '$fast_rtt' ms (want < 5)"
fi
m=$(proxy_metric "shoal_kernel_endpoint_connect_failures_total{endpoint=\"10.77.1.4:8080\"}")
[[ $m == "$refused" ]] && pass "metric shoal_kernel_endpoint_connect_failures_total of the refusing endpoint: $m" ||
	fail "metric shoal_kernel_endpoint_connect_failures_total{endpoint=\"10.77.1.4:8080\"} is '$m', want $refused"

# ---- a connect that times out: the SYN's first retransmission timeout
# (1 s) already costs the endpoint, before the connect gives up ----
pod_spawn a1 "$LOGDIR/hello-hole.log" "$SHOAL_PEER" hello --to 10.96.0.53:80 --timeout-ms 20000
hole_pid=$LAST_PID
sleep 2.5
eps=$(ctl endpoints 2>/dev/null) || fail "shoalctl endpoints failed"
hole_rtt=$(row_field 10.77.9.9:8080 5)
if [[ $(row_field 10.77.9.9:8080 2) == 1 && $(row_field 10.77.9.9:8080 4) == 0 ]] &&
	awk -v r="$hole_rtt" 'BEGIN { exit !(r >= 900) }'; then
	pass "a connect still in SYN_SENT after its first RTO already costs its endpoint $hole_rtt ms"
else
	fail "blackholed endpoint after 2.5 s: '$(grep '^10.77.9.9:8080 ' <<<"$eps")' (want 1 connect, 0 failures, RTT_EST >= 900 ms)"
fi
stop_pid "$hole_pid" TERM

# ---- agent dead: the kernel path goes on ----
shoald_stop KILL
sleep $(((FAILOPEN_AFTER_MS + 999) / 1000 + 1))
expect_direct a1 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[a1]}"
[[ $EXPECT_OK == 1 ]] && pass "proxy-mode web failed open with shoald dead (heartbeat stale)"
out=$(spread 10.96.0.50:80 "$N_DEAD")
slow=$(count_of "$out" a3)
failed=$(count_of "$out" FAILED)
say "figure: shoald SIGKILLed, $N_DEAD connections: a2 $(count_of "$out" a2), b1 $(count_of "$out" b1), a3 $slow, failed $failed"
if ((failed == 0 && $(count_of "$out" a2) > 0 && $(count_of "$out" b1) > 0 && slow * 100 <= 20 * N_DEAD)); then
	pass "with shoald dead, kernel mode still balances over a2 and b1 and avoids a3"
else
	fail "with shoald dead: a2 $(count_of "$out" a2), b1 $(count_of "$out" b1), a3 $slow, failed $failed"
fi

# ---- a new agent adopts the maps and keeps the costs of endpoints that remain ----
shoald_start
eps=$(ctl endpoints 2>/dev/null) || fail "shoalctl endpoints failed"
kept=$(row_field 10.77.1.3:8080 2)
slow_kept=$(row_field "$SLOW_IP:8080" 6)
if ((${kept:-0} >= 100)) && awk -v s="$slow_kept" 'BEGIN { exit !(s >= 10) }'; then
	pass "restarted shoald kept the kernel's costs: a2 $kept connects, a3 last RTT $slow_kept ms"
else
	fail "after the restart a2 shows '${kept}' connects (want >= 100, its count before) and a3 '${slow_kept}' ms"
fi

# ---- a config change: b1 leaves "kl4"; a2 keeps its cost, a3 stays avoided ----
applied_count() { grep -c 'discovery: configuration applied' "$SHOALD_LOG" || true; }
applied=$(applied_count)
write_config "$(kl4_service kl4 '10.96.0.50, "fd96::50"' 80 8080 10.77.1.3 "$SLOW_IP" '"fd77:1::3"')
$(kl4_service kl4-bulk 10.96.0.52 9000 9000 10.77.1.3)"
for ((i = 0; i < 250; i++)); do
	(($(applied_count) > applied)) && break
	sleep 0.02
done
(($(applied_count) > applied)) || fatal "shoald did not log the change applied within 5 s"
out=$(spread 10.96.0.50:80 30)
say "figure: after b1 left, 30 connections: a2 $(count_of "$out" a2), b1 $(count_of "$out" b1), a3 $(count_of "$out" a3), failed $(count_of "$out" FAILED)"
(($(count_of "$out" a2) == 30)) && pass "after the change every connect went to a2: b1 gone, a3 still avoided" ||
	fail "after the change: a2 $(count_of "$out" a2) of 30 (b1 $(count_of "$out" b1), a3 $(count_of "$out" a3))"
eps=$(ctl endpoints 2>/dev/null) || fail "shoalctl endpoints failed"
now_a2=$(row_field 10.77.1.3:8080 2)
((${now_a2:-0} >= kept + 30)) && pass "a2's counts went on across the change ($kept -> $now_a2 connects)" ||
	fail "a2 shows ${now_a2} connects after the change, want >= $((kept + 30))"
[[ -z $(row_field 10.77.2.2:8080 2) ]] && pass "b1's cost entry left with it" ||
	fail "b1 still has a cost entry after it left every kernel-mode set"

# ---- 256 MiB each way in kernel mode (stream.sh's method) ----
pod_spawn a2 "$LOGDIR/stream.server.log" "$SHOAL_PEER" stream-server --listen 0.0.0.0:9000 --bytes "$BYTES" --seed 44
spid=$LAST_PID
wait_listen "${POD_NS[a2]}" 9000
t0=$(date +%s%N)
rc=0
cout=$(pod_run a1 "$SHOAL_PEER" stream-client --to 10.96.0.52:9000 --bytes "$BYTES" --seed 44 \
	2>"$LOGDIR/stream.client.err") || rc=$?
t1=$(date +%s%N)
if ((rc)); then
	fail "kernel-mode stream: stream-client failed: $(cat "$LOGDIR/stream.client.err")"
	stop_pid "$spid" TERM
else
	wait "$spid" || rc=$?
	sout=$(grep '^sent=' "$LOGDIR/stream.server.log" || true)
	ms=$(((t1 - t0) / 1000000))
	say "figure: kernel mode: $((BYTES / 1048576)) MiB each way in $ms ms"
	if ((rc)) || [[ -z $sout ]]; then
		fail "kernel-mode stream: stream-server failed: $(cat "$LOGDIR/stream.server.log")"
	elif stream_intact "kernel-mode stream (a1 <-> a2)" "$cout" "$sout" "$BYTES" "$BYTES"; then
		pass "kernel-mode stream: both directions arrived intact ($BYTES bytes each, checksums match)"
	fi
fi
finish
