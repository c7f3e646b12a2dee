#!/bin/bash
# h2-hostile.sh: hostile HTTP/2 clients against shoal (raw frames from
# h2-hostile.py), one python3-grpcio endpoint on a2 (port 50051, service
# "grpc"), one shoald worker so that every client shares its pooled
# upstream session. Each case asserts the GOAWAY code or close shoal
# answers with, that a counter moved, and that a normal gRPC client is
# served afterwards (tests/e2e/h2.sh has rapid reset, the CONTINUATION
# flood, an HPACK bomb and the SETTINGS flood):
#  - a PING flood whose acks are never read: GOAWAY ENHANCE_YOUR_CALM or
#    closed, shoald's RSS bounded, a gRPC client served meanwhile;
#  - stream ids out of order (even, decreasing, a closed one reused):
#    GOAWAY PROTOCOL_ERROR (STREAM_CLOSED for the reused one), also when
#    the bad frame comes with the preface on a detected port;
#  - a zero window forever (SETTINGS_INITIAL_WINDOW_SIZE 0, streaming
#    calls, no WINDOW_UPDATE): the endpoint is held back, another client
#    on the same upstream session is served meanwhile, the streams are
#    reset after proxy.http2.stall_timeout_ms and the connection, idle,
#    closes after proxy.idle_timeout_ms;
#  - a request that never ends (HEADERS without END_STREAM, then
#    silence): closed after proxy.idle_timeout_ms though a stream is open;
#  - MadeYouReset (CVE-2025-8671): requests whose WINDOW_UPDATEs make shoal
#    reset them itself end in a GOAWAY ENHANCE_YOUR_CALM past
#    proxy.http2.max_sent_resets;
#  - h2load: 100 streams on one connection, and 40 connections: 0 errors,
#    every response 2xx.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

GRPC_PY=$(dirname "$0")/h2-grpc.py
RAW_PY=$(dirname "$0")/h2-hostile.py
command -v h2load >/dev/null || skip "missing tool: h2load (nghttp2-client, scripts/setup.sh)"
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
"$PY" -c 'import grpc' 2>/dev/null || skip "missing python3-grpcio for $PY (scripts/setup.sh installs it)"

STALL_MS=1500
IDLE_MS=3000
SENT_RESETS=100

e2e_init
e2e_topology
pod_spawn a2 "$LOGDIR/grpc-a2.log" "$PY" "$GRPC_PY" server a2 50051
wait_listen "${POD_NS[a2]}" 50051
write_config "
  - name: grpc
    vips: [10.96.0.40]
    ports: [{port: 50051, protocol: grpc}, {port: 50052, target_port: 50051}]
    endpoints: [{address: 10.77.1.3}]"
# One worker: every client's streams share its pooled upstream session.
sed -i "s/^proxy: {workers: 2, /proxy: {workers: 1, idle_timeout_ms: $IDLE_MS, http2: {stall_timeout_ms: $STALL_MS, max_sent_resets: $SENT_RESETS}, /" "$CONFIG"
grep -q "stall_timeout_ms: $STALL_MS" "$CONFIG" || fatal "cannot set proxy.http2 in $CONFIG"
shoald_start
enroll a1

raw() { pod_run a1 timeout 30 "$PY" "$RAW_PY" "$@" 10.96.0.40 50051 2>&1 | tail -1; }
raw_args() { # CASE ARGS...: raw with arguments after host and port
	local c=$1
	shift
	pod_run a1 timeout 30 "$PY" "$RAW_PY" "$c" 10.96.0.40 50051 "$@" 2>&1 | tail -1
}
served() { # N: N gRPC calls answered on a fresh connection
	local out n
	out=$(pod_run a1 timeout 20 "$PY" "$GRPC_PY" balance 10.96.0.40:50051 "$1" 2>&1)
	n=$(awk '{ s += $2 } END { print s + 0 }' <<<"$out")
	((n == $1))
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SHOALD_PID/status"; }
code_of() { awk '$1 == "goaway" { print $2 }' <<<"$1"; }

served 6 || fatal "a plain gRPC client is not served before any hostile one"

# ---- PING flood -------------------------------------------------------------

pe0=$(proxy_metric shoal_proxy_h2_protocol_errors_total)
rss0=$(rss_kib)
pod_spawn a1 "$LOGDIR/ping-bystander.txt" "$PY" "$GRPC_PY" balance 10.96.0.40:50051 600
BYSTANDER=$LAST_PID
for i in 1 2 3 4; do
	pod_spawn a1 "$LOGDIR/ping-$i.txt" "$PY" "$RAW_PY" ping 10.96.0.40 50051 200000
	PINGS[i]=$LAST_PID
done
for i in 1 2 3 4; do wait "${PINGS[i]}" 2>/dev/null || true; done
rss1=$(rss_kib)
wait "$BYSTANDER" 2>/dev/null || true
bystander=$(awk '{ s += $2 } END { print s + 0 }' "$LOGDIR/ping-bystander.txt")
pe1=$(proxy_metric shoal_proxy_h2_protocol_errors_total)
for i in 1 2 3 4; do
	out=$(tail -1 "$LOGDIR/ping-$i.txt")
	say "ping flood $i: $out"
	code=$(code_of "$out")
	if [[ $out == closed* || $code == 11 ]]; then
		pass "ping: 200000 PINGs never read were cut off ($out)"
	else
		fail "ping: want a GOAWAY ENHANCE_YOUR_CALM (11) or a close, got '$out'"
	fi
done
((pe1 - pe0 >= 4)) && pass "ping: h2_protocol_errors grew by $((pe1 - pe0))" ||
	fail "ping: h2_protocol_errors went $pe0 -> $pe1, want +4"
# Four floods of 200000 PINGs (3.4 MB each) held at max_pending_acks (1000
# acks of 17 bytes) each: RSS must not grow by anything like a flood.
if ((rss1 - rss0 < 16384)); then
	pass "ping: shoald's RSS went $rss0 -> $rss1 KiB during 4 floods (< 16 MiB growth)"
else
	fail "ping: shoald's RSS grew from $rss0 to $rss1 KiB"
fi
((bystander == 600)) && pass "ping: a gRPC client served 600/600 calls during the floods" ||
	fail "ping: the bystander got $bystander of 600 calls: $(tail -3 "$LOGDIR/ping-bystander.txt")"

# ---- stream ids out of order --------------------------------------------------

for kind in even-id decreasing-id reuse-id; do
	pe0=$(proxy_metric shoal_proxy_h2_protocol_errors_total)
	out=$(raw "$kind")
	pe1=$(proxy_metric shoal_proxy_h2_protocol_errors_total)
	# A closed stream nghttp2 still knows gets STREAM_CLOSED (5), which
	# RFC 9113 5.1 allows too; the ids never opened PROTOCOL_ERROR (1).
	want=1
	[[ $kind == reuse-id ]] && want="1|5"
	if [[ $(code_of "$out") =~ ^($want)$ ]] && ((pe1 > pe0)); then
		pass "stream ids: $kind got GOAWAY $(code_of "$out") ($out), h2_protocol_errors $pe0 -> $pe1"
	else
		fail "stream ids: $kind: want GOAWAY $want and h2_protocol_errors up, got '$out', $pe0 -> $pe1"
	fi
done
# On a detected port the bad frame comes with the preface, in what
# detection read: the same GOAWAY (before, a silent close, uncounted).
pe0=$(proxy_metric shoal_proxy_h2_protocol_errors_total)
out=$(pod_run a1 timeout 30 "$PY" "$RAW_PY" decreasing-id-at-once 10.96.0.40 50052 2>&1 | tail -1)
pe1=$(proxy_metric shoal_proxy_h2_protocol_errors_total)
if [[ $(code_of "$out") == 1 ]] && ((pe1 > pe0)); then
	pass "stream ids: decreasing ids with the preface on a detected port got GOAWAY 1 ($out), h2_protocol_errors $pe0 -> $pe1"
else
	fail "stream ids: decreasing ids on a detected port: want GOAWAY 1 and h2_protocol_errors up, got '$out', $pe0 -> $pe1"
fi
served 6 && pass "stream ids: shoald serves on (6 calls)" || fail "stream ids: shoald no longer serves"

# ---- zero window forever ----------------------------------------------------------

st0=$(proxy_metric shoal_proxy_h2_stalled_total)
before=$(grep -c '^streamed' "$LOGDIR/grpc-a2.log" || true)
pod_spawn a1 "$LOGDIR/zero.txt" "$PY" "$RAW_PY" zero-window 10.96.0.40 50051 4 8
ZERO=$LAST_PID
sleep 0.5
# Meanwhile another client's calls share the upstream session with the
# four stuck streams (one worker, one endpoint): they must be served.
t0=$(date +%s%N)
served 30 && ok=1 || ok=0
took=$((($(date +%s%N) - t0) / 1000000))
wait "$ZERO" 2>/dev/null || true
out=$(tail -1 "$LOGDIR/zero.txt")
sent=$(($(grep -c '^streamed' "$LOGDIR/grpc-a2.log" || true) - before))
st1=$(proxy_metric shoal_proxy_h2_stalled_total)
say "zero window: $out; the endpoint streamed $sent 64-KiB messages"
if ((ok)) && ((took < STALL_MS)); then
	pass "zero window: another client got 30 calls in $took ms beside 4 stuck streams"
else
	fail "zero window: another client's 30 calls: ok=$ok in $took ms (stall timeout $STALL_MS ms)"
fi
data=$(sed -n 's/.* data=\([0-9]*\).*/\1/p' <<<"$out")
ms=$(sed -n 's/.* ms=\([0-9]*\).*/\1/p' <<<"$out")
rst=$(sed -n 's/.* rst=\([0-9]*\).*/\1/p' <<<"$out")
rst_ms=$(sed -n 's/.* rst_ms=\([0-9]*\).*/\1/p' <<<"$out")
rst_codes=$(sed -n 's/.* rst_codes=\([0-9,]*\).*/\1/p' <<<"$out")
# What the proxy may hold of them: 4 x stream_window_bytes (256 KiB), 16
# of the endpoint's 64-KiB messages, plus what gRPC itself buffers.
if [[ $data == 0 ]] && ((sent < 4 * 64)); then
	pass "zero window: no DATA sent into a zero window, the endpoint held to $sent of 4 x 320 messages"
else
	fail "zero window: data=$data to the client, the endpoint sent $sent of 4 x 320 messages"
fi
if [[ $rst == 4 && $rst_codes == 8 ]] && ((rst_ms >= STALL_MS - 100 && rst_ms < STALL_MS + 1500)) &&
	((st1 - st0 == 4)); then
	pass "zero window: the 4 streams reset (CANCEL) after $rst_ms ms (stall_timeout_ms $STALL_MS), h2_stalled $st0 -> $st1"
else
	fail "zero window: want 4 RST_STREAM CANCEL after ~$STALL_MS ms and h2_stalled +4: '$out', $st0 -> $st1"
fi
# Idle from the resets, the last bytes either way.
if [[ $out == "goaway 0 "* || $out == closed* ]] && ((ms >= rst_ms + IDLE_MS - 100 && ms < rst_ms + IDLE_MS + 1500)); then
	pass "zero window: then the connection, idle, closed after $ms ms (idle_timeout_ms $IDLE_MS after the resets)"
else
	fail "zero window: want the connection closed ~$IDLE_MS ms after the resets: '$out'"
fi
served 6 && pass "zero window: the upstream session serves on (6 calls)" ||
	fail "zero window: after the stall, 6 calls failed"

# ---- a request that never ends ----------------------------------------------------

# A HEADERS without END_STREAM, then silence: the stream is open, so no
# stream deadline applies (request_timeout_ms 0) and no bytes wait; the
# idle timeout must end it anyway.
out=$(raw_args silent 8)
ms=$(sed -n 's/.* ms=\([0-9]*\).*/\1/p' <<<"$out")
if [[ $out == "goaway 0 "* || $out == closed* ]] && ((ms >= IDLE_MS - 100 && ms < IDLE_MS + 1500)); then
	pass "silent: a request that never ends was closed after $ms ms (idle_timeout_ms $IDLE_MS): $out"
else
	fail "silent: want the connection closed after ~$IDLE_MS ms: '$out'"
fi

# ---- MadeYouReset ---------------------------------------------------------------------

pe0=$(proxy_metric shoal_proxy_h2_protocol_errors_total)
rs0=$(proxy_metric shoal_proxy_h2_resets_sent_total)
out=$(raw_args made-you-reset 1000)
pe1=$(proxy_metric shoal_proxy_h2_protocol_errors_total)
rs1=$(proxy_metric shoal_proxy_h2_resets_sent_total)
rst=$(sed -n 's/.* rst=\([0-9]*\).*/\1/p' <<<"$out")
# The limit acts when the resets go out: a batch of 10 may be queued past it.
if [[ $(code_of "$out") == 11 ]] && ((pe1 > pe0 && rst >= SENT_RESETS && rst <= SENT_RESETS + 20)); then
	pass "made-you-reset: GOAWAY ENHANCE_YOUR_CALM after $rst resets (max_sent_resets $SENT_RESETS; $out), h2_resets_sent $rs0 -> $rs1"
else
	fail "made-you-reset: want GOAWAY 11 after <= $SENT_RESETS resets, got '$out', h2_protocol_errors $pe0 -> $pe1"
fi
served 6 && pass "made-you-reset: shoald serves on (6 calls)" || fail "made-you-reset: shoald no longer serves"

# ---- h2load: no errors --------------------------------------------------------------

printf '\0\0\0\0\1x' >"$LOGDIR/one.grpc"
h2load_ok() { # WHAT N ARGS...: h2load through shoal, every request 2xx
	local what=$1 n=$2 out reqs codes okn failn errn
	shift 2
	out=$(pod_run a1 timeout 60 h2load -n "$n" "$@" -d "$LOGDIR/one.grpc" \
		-H 'content-type: application/grpc' -H 'te: trailers' \
		http://10.96.0.40:50051/shoal.Echo/Echo 2>&1)
	reqs=$(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2 \3/p' <<<"$out")
	codes=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
	read -r okn failn errn <<<"$reqs"
	if [[ $okn == "$n" && $failn == 0 && $errn == 0 && $codes == "$n" ]]; then
		pass "h2load: $what: $n requests, all 2xx, 0 failed, 0 errored ($(grep -m1 '^finished in' <<<"$out"))"
	else
		fail "h2load: $what: $(grep -E '^(requests|status codes|finished)' <<<"$out" | tr '\n' ' ')"
	fi
}
h2load_ok "1 connection x 100 streams" 3000 -c 1 -m 100
h2load_ok "40 connections x 2 streams" 3000 -c 40 -m 2

kill -0 "$SHOALD_PID" 2>/dev/null || fatal "shoald died"
if grep -qiE 'AddressSanitizer|runtime error' "$SHOALD_LOG"; then
	fail "shoald's log has a sanitizer report"
fi
finish
