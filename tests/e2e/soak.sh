#!/bin/bash
# soak.sh: everything at once, for SOAK_SECONDS (default 60; scripts/soak
# runs the long version), against whichever shoald the build gives (the
# ASan build too). In network namespaces (lib.sh's topology), pod a1 runs:
#  - keep-alive HTTP load, three GETs to one POST, to service "soak"
#    (10.96.0.11:9080, http; shoal-backend on a2, b1 and, every other
#    config, a3);
#  - opaque TCP streams, 1-4 MiB each, echoed and compared, to service
#    "web" (10.96.0.10:80, tcp; shoal-peer's echo on a2 and b1);
#  - 8 slowloris connections and an oversized head every second, to "soak".
# Meanwhile the config file is rewritten every second (a3 in or out of
# "soak", a service added and removed), a3's listener flaps every 3 s
# (refuse=1/0: new connections fail, open ones keep working), and shoald
# is restarted three times (SIGTERM, then a new agent on the same pins).
# A connection that fails open during a restart lands on pod "direct",
# which owns the VIPs (shoal-backend on 9080, shoal-peer on 80).
#
# Asserted (soak-report.py): no GET failed outside the restart windows; no
# POST reached the backends twice; every stream outside the windows
# arrived intact; hostile clients never got a 2xx, and oversized heads
# their 431; RSS (not under ASan) and open fds flat after warm-up in each
# agent lifetime; every agent exited 0 (under ASan: no leak) and no log
# holds a sanitizer report.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=resilience-lib.sh
source "$(dirname "$0")/resilience-lib.sh"

SOAK_SECONDS=${SOAK_SECONDS:-60}
# RSS and fds are judged from this long after each agent start: pools,
# buffers and the allocator fill up first.
SOAK_WARMUP_S=${SOAK_WARMUP_S:-5}
SOAK_RATE=${SOAK_RATE:-60}
CLIENTS=$(dirname "$0")/soak-clients.py
REPORT=$(dirname "$0")/soak-report.py

http_require
((SOAK_SECONDS >= 40)) || skip "SOAK_SECONDS=$SOAK_SECONDS: three restarts need at least 40 s"
e2e_init
e2e_topology
ip -n "${POD_NS[direct]}" addr add 10.96.0.11/32 dev lo
ip -n "$NS_A" route add 10.96.0.11/32 via "${POD_IP4[direct]}"
for pod in a2 b1 a3 direct; do
	backend_start "$pod" 9080
done

STOP=$LOGDIR/stop
WINDOWS=$LOGDIR/windows
SAMPLES=$LOGDIR/samples
AGENT_PID_FILE=$LOGDIR/agent.pid
rm -f "$STOP"
# Whatever ends the test, the background loops below see STOP and end.
trap 'rc=$?; touch "$STOP"; (exit $rc); e2e_cleanup' EXIT
: >"$WINDOWS"
: >"$SAMPLES"

# soak_config VERSION: the config of churn step VERSION, written by rename.
soak_config() {
	local v=$1 eps="{address: ${POD_IP4[a2]}}, {address: ${POD_IP4[b1]}}" extra=""
	((v % 2)) && eps="$eps, {address: ${POD_IP4[a3]}}"
	((v % 3 == 1)) && extra="
  - name: churn-$v
    vips: [10.96.1.$((v % 200 + 1))]
    ports: [{port: 80, target_port: 9080, protocol: http}]
    endpoints: [{address: ${POD_IP4[a2]}}]"
	{ config_node; cat <<EOF; } >"$CONFIG.tmp"
proxy: {workers: 2, connect_timeout_ms: 500, connect_deadline_ms: 2000, idle_timeout_ms: 3000}
services:
  - name: web
    namespace: default
    vips: [10.96.0.10]
    ports: [{port: 80, target_port: 8080, protocol: tcp}]
    endpoints: [{address: ${POD_IP4[a2]}}, {address: ${POD_IP4[b1]}}]
  - name: soak
    namespace: default
    vips: [10.96.0.11]
    ports: [{port: 9080, target_port: 9080, protocol: http}]
    endpoints: [$eps]
$extra
EOF
	mv -f "$CONFIG.tmp" "$CONFIG"
}

now_ms() { date +%s%3N; }

AGENT_EXITS=()
# Stops the running agent with SIGTERM and keeps its exit status.
agent_stop() {
	local rc=0
	pid_in_cgroup "$SHOALD_PID" "$TEST_CG" && kill -TERM "$SHOALD_PID"
	wait "$SHOALD_PID" || rc=$?
	AGENT_EXITS+=("$rc")
	SHOALD_PID=""
}

soak_config 0
shoald_start
enroll a1
echo "$SHOALD_PID" >"$AGENT_PID_FILE"
T0=$(now_ms)
say "soaking for $SOAK_SECONDS s: HTTP at $SOAK_RATE req/s, TCP streams, hostile clients, config churn every 1 s, flaps every 3 s, 3 restarts"

# ---- background: samples, churn, flaps ------------------------------------
# Both loops run with set +e: a sample taken while an agent exits (its
# /proc entry gone between two reads) must not end the sampling.
(
	set +e
	while [[ ! -e $STOP ]]; do
		pid=$(cat "$AGENT_PID_FILE")
		if [[ -r /proc/$pid/status ]]; then
			rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
			fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
			[[ -n $rss ]] && echo "$(now_ms) $pid $rss $fds" >>"$SAMPLES"
		fi
		sleep 1
	done
) &
SAMPLER=$!
(
	set +e
	v=0
	while [[ ! -e $STOP ]]; do
		sleep 1
		v=$((v + 1))
		soak_config "$v"
	done
) &
CHURNER=$!
# a3's flaps, over its own loopback (never through shoal)
in_ns "${POD_NS[a3]}" python3 "$CLIENTS" flap "$LOGDIR/flap.jsonl" $((SOAK_SECONDS + 5)) "$STOP" \
	127.0.0.1 9080 >"$LOGDIR/flap.log" 2>&1 &
FLAPPER=$!

# ---- the clients, in enrolled pod a1 ----------------------------------------
CLIENT_PIDS=()
pod_spawn a1 "$LOGDIR/client-http.log" python3 "$CLIENTS" http "$LOGDIR/http.jsonl" \
	$((SOAK_SECONDS + 5)) "$STOP" 10.96.0.11 9080 --rate "$SOAK_RATE" --conns 6
CLIENT_PIDS+=("$LAST_PID")
pod_spawn a1 "$LOGDIR/client-tcp.log" python3 "$CLIENTS" tcp "$LOGDIR/tcp.jsonl" \
	$((SOAK_SECONDS + 5)) "$STOP" 10.96.0.10 80
CLIENT_PIDS+=("$LAST_PID")
pod_spawn a1 "$LOGDIR/client-hostile.log" python3 "$CLIENTS" hostile "$LOGDIR/hostile.jsonl" \
	$((SOAK_SECONDS + 5)) "$STOP" 10.96.0.11 9080
CLIENT_PIDS+=("$LAST_PID")

# ---- three restarts, at 1/4, 2/4 and 3/4 of the run ---------------------------
for k in 1 2 3; do
	while (($(now_ms) - T0 < SOAK_SECONDS * 1000 * k / 4)); do sleep 0.2; done
	stop_ms=$(now_ms)
	agent_stop
	shoald_start
	enroll a1
	echo "$SHOALD_PID" >"$AGENT_PID_FILE"
	# The window closes once the new agent serves and the datapath has
	# seen its first heartbeat, plus a second for requests that started
	# on the old path.
	echo "$stop_ms $(($(now_ms) + 1000))" >>"$WINDOWS"
	say "restart $k: agent pid $SHOALD_PID, window $(($(now_ms) - stop_ms)) ms"
done
while (($(now_ms) - T0 < SOAK_SECONDS * 1000)); do sleep 0.2; done

# ---- wind down ---------------------------------------------------------------
touch "$STOP"
for pid in "${CLIENT_PIDS[@]}"; do
	for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	stop_pid "$pid"
done
wait "$SAMPLER" "$CHURNER" "$FLAPPER" 2>/dev/null || true
posts=0
for pod in a2 b1 a3 direct; do
	posts=$((posts + $(backend_stat "$pod" 9080 by_method.POST)))
done
agent_stop

rc=0
python3 "$REPORT" "$LOGDIR" "$posts" "$(grep -q libasan <<<"$(ldd "$SHOALD" 2>/dev/null)" && echo 1 || echo 0)" \
	"$SOAK_WARMUP_S" || rc=$?
if ((rc == 0)); then
	pass "soak assertions held (soak-report.py)"
else
	fail "soak assertions failed (soak-report.py above)"
fi
for i in "${!AGENT_EXITS[@]}"; do
	if [[ ${AGENT_EXITS[$i]} != 0 ]]; then
		fail "agent #$((i + 1)) exited with status ${AGENT_EXITS[$i]} on SIGTERM (a sanitizer or leak report?)"
	fi
done
((${#AGENT_EXITS[@]} == 4)) && [[ " ${AGENT_EXITS[*]} " != *" "[1-9]* ]] &&
	pass "4 agents, each exited 0 on SIGTERM"
if grep -lE 'AddressSanitizer|LeakSanitizer|runtime error:' "$LOGDIR"/shoald.*.log >/dev/null 2>&1; then
	fail "sanitizer report in $(grep -lE 'AddressSanitizer|LeakSanitizer|runtime error:' "$LOGDIR"/shoald.*.log | tr '\n' ' ')"
else
	pass "no sanitizer report in the agents' logs"
fi
finish
