#!/bin/bash
# h2-budget.sh: HTTP/2 memory is charged to proxy.max_buffer_memory_mib.
# shoald with a budget of 8 MiB ($H2_BUDGET_MIB) in front of an HTTP/2
# endpoint on b1 that reads every frame and answers nothing (h2-grpc.py
# hang), so that every stream stays open and its head stays in the
# proxy; a raw client in a1 (h2-budget.py) opens 8 connections of 100
# streams, each with a 48 KiB header field (and the first streams a body),
# about 38 MiB of header fields in all:
#  - most streams are refused (RST_STREAM REFUSED_STREAM), counted in
#    shoal_proxy_refused_total{cap="memory"};
#  - shoal_proxy_buffer_memory_bytes stays within the budget, nghttp2's
#    slack and the workers' credit, and shoald's RSS grows by less than
#    24 MiB while they are held (with no budget it takes them all:
#    H2_BUDGET_MIB=0 shows it; not under ASan, whose quarantine keeps
#    what was freed);
#  - once the client is gone and the streams it left timed out (the
#    route's timeout_ms), shoal_proxy_buffer_memory_bytes is back within
#    1 MiB of where it was, and gRPC calls through the same proxy succeed
#    (python3-grpcio server on a2).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
"$PY" -c 'import grpc' 2>/dev/null || skip "missing python3-grpcio for $PY (scripts/setup.sh installs it)"
GRPC_PY=$(dirname "$0")/h2-grpc.py
CLIENT=$(cd "$(dirname "$0")" && pwd)/h2-budget.py
BUDGET=${H2_BUDGET_MIB:-8}

e2e_init
e2e_topology
pod_spawn a2 "$LOGDIR/grpc-a2.log" "$PY" "$GRPC_PY" server a2 50051
pod_spawn b1 "$LOGDIR/hang-b1.log" "$PY" "$GRPC_PY" hang 50061
wait_listen "${POD_NS[a2]}" 50051
wait_listen "${POD_NS[b1]}" 50061
write_config "
  - name: grpc
    vips: [10.96.0.40]
    ports: [{port: 50051, protocol: grpc}]
    endpoints: [{address: 10.77.1.3}]
  - name: hang
    vips: [10.96.0.42]
    ports: [{port: 50051, target_port: 50061, protocol: grpc}]
    endpoints: [{address: 10.77.2.2}]
    routes:
      - name: held
        match: {path: {prefix: /}}
        timeout_ms: 5000"
sed -i "s/^proxy: {/proxy: {max_buffer_memory_mib: $BUDGET, /" "$CONFIG"
grep -q "max_buffer_memory_mib: $BUDGET" "$CONFIG" || fatal "cannot set proxy.max_buffer_memory_mib"
shoald_start
enroll a1

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SHOALD_PID/status"; }
metric() { proxy_metric "$1"; }
refused_mem() { proxy_metric 'shoal_proxy_refused_total{cap="memory"}'; }

# Warm up: one call, so that the baseline has the sessions' fixed costs.
out=$(pod_run a1 timeout 20 "$PY" "$GRPC_PY" balance 10.96.0.40:50051 6 2>&1)
[[ $(awk '{ s += $2 } END { print s + 0 }' <<<"$out") == 6 ]] || fatal "warm-up calls: '$out'"
rss0=$(rss_kib)
mem0=$(metric shoal_proxy_buffer_memory_bytes)
ref0=$(refused_mem)
pod_spawn a1 "$LOGDIR/client.log" "$PY" "$CLIENT" 10.96.0.42 50051 8 100 48 16 4
CLIENT_PID=$LAST_PID
for ((i = 0; i < 100; i++)); do
	grep -q '^sent' "$LOGDIR/client.log" 2>/dev/null && break
	sleep 0.1
done
sleep 1 # the proxy reads what was sent
rss1=$(rss_kib)
mem1=$(metric shoal_proxy_buffer_memory_bytes)
wait "$CLIENT_PID" 2>/dev/null || true
res=$(grep '^refused' "$LOGDIR/client.log")
say "client: $res; RSS $rss0 -> $rss1 KiB; buffer memory $mem0 -> $mem1 bytes (budget $BUDGET MiB)"
read -r _ refused _ reset _ answered _ goaway <<<"$res"
grow=$(((rss1 - rss0) / 1024))
say "figure: 800 streams of 48 KiB heads held: RSS +$grow MiB at a budget of $BUDGET MiB, $refused refused"
if ((${refused:-0} >= 400)); then
	pass "$refused of 800 streams refused with REFUSED_STREAM ($reset other resets, $answered answered, GOAWAY $goaway)"
else
	fail "want >= 400 of 800 streams refused, got '$res'"
fi
ref1=$(refused_mem)
if ((${ref1%.*} - ${ref0%.*} >= ${refused:-1})); then
	pass "shoal_proxy_refused_total{cap=\"memory\"} grew by $((${ref1%.*} - ${ref0%.*}))"
else
	fail "shoal_proxy_refused_total{cap=\"memory\"} went $ref0 -> $ref1 for $refused refusals"
fi
# What the proxy counts: the budget, nghttp2's 2 MiB slack, two 64 KiB
# chunks of credit per worker.
cap=$(((BUDGET + 2) * 1048576 + 4 * 65536))
if ((BUDGET == 0 || mem1 <= cap)); then
	pass "buffer memory $mem1 bytes while held (at most $cap: budget, slack, credit)"
else
	fail "buffer memory $mem1 bytes while held, past $cap"
fi
# ASan keeps freed memory in its quarantine: RSS says nothing there.
if [[ ${SHOAL_SANITIZED:-0} == 1 ]]; then
	say "RSS not checked under ASan (its quarantine holds what was freed): +$grow MiB"
elif ((grow < 24)); then
	pass "shoald's RSS grew by $grow MiB holding them (budget $BUDGET MiB, under 24 MiB)"
else
	fail "shoald's RSS grew by $grow MiB (want < 24 MiB at a budget of $BUDGET MiB)"
fi

# The client is gone: once the streams it left time out (the route's 5 s),
# their memory is given back, and calls go on.
for ((i = 0; i < 100; i++)); do
	mem2=$(metric shoal_proxy_buffer_memory_bytes)
	((mem2 <= mem0 + 1048576)) && break
	sleep 0.1
done
if ((mem2 <= mem0 + 1048576)); then
	pass "buffer memory back to $mem2 bytes after the client left ($mem0 before, $mem1 while held)"
else
	fail "buffer memory $mem2 bytes after the client left, $mem0 before"
fi
out=$(pod_run a1 timeout 20 "$PY" "$GRPC_PY" balance 10.96.0.40:50051 30 2>&1)
n=$(awk '{ s += $2 } END { print s + 0 }' <<<"$out")
((n == 30)) && pass "after it, 30 gRPC calls through the same proxy succeed" ||
	fail "after the client, 30 calls gave '$out'"
if grep -qiE 'AddressSanitizer|runtime error' "$SHOALD_LOG"; then
	fail "shoald's log has a sanitizer report"
fi
finish
