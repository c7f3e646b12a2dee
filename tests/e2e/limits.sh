#!/bin/bash
# limits.sh: the proxy's budgets and HTTP connection limits through
# interception (docs/proxy.md, "Budgets" and "Timeouts"), with
# proxy.max_connections_per_client: 3, proxy.http.response_head_timeout_ms:
# 500 and proxy.http.max_requests_per_connection: 2.
#  - pod a1 holds 3 keep-alive HTTP connections: its 4th gets a 503
#    (x-shoal-error: limit-client, the knob named in the body), and an
#    opaque TCP connection from it is reset; pod a3 is served meanwhile;
#    shoal_proxy_refused_total{cap="client"} counts both, and the log
#    names the cap; once a1 lets go, it is served again;
#  - a POST to an endpoint that answers after 3 s gets a 504 at the head
#    timeout (about 500 ms), not after the 5 min idle timeout;
#  - three requests on one curl connection: the second response says
#    connection: close, and curl opens a new connection for the third;
#  - restarted with one worker and proxy.max_connections: 2, a1 holds 2
#    connections: a3's HTTP connection gets a 503 at once
#    (x-shoal-error: limit-connections, the knob named in the body) and
#    its opaque one a reset, counted under cap="connections" and named in
#    the log; once a1 lets go, a3 is served.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_topology a2

{
	config_node
	cat <<EOF
proxy:
  workers: 2
  connect_timeout_ms: 500
  connect_deadline_ms: 2000
  max_connections_per_client: 3
  http: {response_head_timeout_ms: 500, max_requests_per_connection: 2}
services:
EOF
	web_service
	cat <<EOF
  - name: api
    vips: [10.96.0.20]
    ports: [{port: 80, target_port: 9080, protocol: http}]
    endpoints: [{address: 10.77.1.3}]
EOF
} >"$CONFIG"
shoald_start
enroll a1
enroll a3

API=http://10.96.0.20
REFUSED='shoal_proxy_refused_total{cap="client"}'

cfgjson=$(in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN_ADDR/debug/config") || true
if python3 -c '
import json, sys
p = json.loads(sys.argv[1])["proxy"]
sys.exit(not (p["max_connections_per_client"] == 3 and p["max_buffer_memory_mib"] == 256 and
              p["http"]["response_head_timeout_ms"] == 500 and
              p["http"]["max_requests_per_connection"] == 2))' "$cfgjson"; then
	pass "/debug/config shows the caps and limits in force"
else
	fail "/debug/config: $cfgjson"
fi

# hold_connections N LOG: a1 opens N keep-alive connections to the api
# service, each served once, and holds them for 60 s (HOLDER is its PID).
hold_connections() {
	local n=$1 log=$LOGDIR/$2.log i
	pod_spawn a1 "$log" python3 -c '
import socket, sys, time
conns = []
for i in range(int(sys.argv[1])):
    s = socket.create_connection(("10.96.0.20", 80), timeout=5)
    s.sendall(b"GET /hold HTTP/1.1\r\nHost: api\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
    print("held", i, got.split(b"\r\n")[0].decode(), flush=True)
    conns.append(s)
time.sleep(60)
' "$n"
	HOLDER=$LAST_PID
	for ((i = 0; i < 50; i++)); do
		[[ $(grep -c '^held .* 200' "$log") == "$n" ]] && return 0
		sleep 0.1
	done
	fatal "a1 could not open its $n connections: $(cat "$log")"
}

# ---- connections per client -------------------------------------------------

# a1 opens 3 keep-alive connections, each served once, and holds them.
hold_connections 3 holder
pass "a1 holds 3 served keep-alive connections (the cap)"

out=$(pod_curl a1 -D - "$API/fourth") || true
if [[ $(head -1 <<<"$out") == "HTTP/1.1 503"* && $(header x-shoal-error <<<"$out") == limit-client &&
	$out == *proxy.max_connections_per_client* ]]; then
	pass "a1's 4th HTTP connection: 503 limit-client, the body names proxy.max_connections_per_client"
else
	fail "a1's 4th HTTP connection: expected 503 limit-client, got: $(tr '\r\n' '  ' <<<"$out")"
fi

# The reset may come as the connect completes (the datapath hands the
# connection over as it is accepted) or at the first read.
out=$(pod_run a1 python3 -c '
import socket
try:
    s = socket.create_connection(("10.96.0.10", 80), timeout=5)
    print("read", len(s.recv(100)))
except ConnectionResetError:
    print("reset")
' 2>&1) || true
[[ $out == reset ]] && pass "a1's opaque TCP connection past the cap: reset" ||
	fail "a1's opaque TCP connection past the cap: expected a reset, got '$out'"

out=$(pod_curl a3 -o /dev/null -w '%{http_code}' "$API/other") || true
[[ $out == 200 ]] && pass "pod a3 is served while a1 is at its cap" ||
	fail "pod a3 while a1 is at its cap: got '$out'"

n=$(proxy_metric "$REFUSED")
[[ $n == 2 ]] && pass "$REFUSED is 2" || fail "$REFUSED is '$n', want 2"
grep -q 'cap client (proxy.max_connections_per_client) reached' "$SHOALD_LOG" &&
	pass "the log names the cap" || fail "no log line names the cap: $(grep refused "$SHOALD_LOG")"

stop_pid "$HOLDER" KILL
ok=""
for ((i = 0; i < 20; i++)); do
	out=$(pod_curl a1 -o /dev/null -w '%{http_code}' "$API/again") || true
	[[ $out == 200 ]] && ok=1 && break
	sleep 0.1
done
[[ -n $ok ]] && pass "a1 is served again once its connections closed" ||
	fail "a1 after its connections closed: got '$out'"

# ---- response head timeout --------------------------------------------------

t0=$(date +%s%N)
out=$(pod_curl a3 -D - -o /dev/null -d x "$API/slow?delay_ms=3000") || true
ms=$((($(date +%s%N) - t0) / 1000000))
if [[ $(head -1 <<<"$out") == "HTTP/1.1 504"* && $(header x-shoal-error <<<"$out") == timeout ]] &&
	((ms >= 450 && ms < 2500)); then
	pass "a POST with no response head: 504 timeout after $ms ms (head timeout 500 ms)"
else
	fail "a POST with no response head: after $ms ms got $(head -1 <<<"$out" | tr -d '\r')"
fi

# ---- maximum requests per connection ----------------------------------------

out=$(pod_curl a3 -v -D - -o /dev/null "$API/r1" -o /dev/null "$API/r2" -o /dev/null "$API/r3" \
	2>"$LOGDIR/maxreq.err") || fail "max requests: curl failed: $(tail -3 "$LOGDIR/maxreq.err")"
closes=$(tr -d '\r' <<<"$out" | grep -ci '^connection: close$')
connects=$(grep -c 'Connected to' "$LOGDIR/maxreq.err")
if [[ $(grep -c '^HTTP/1.1 200' <<<"$out") == 3 && $closes == 1 && $connects == 2 ]]; then
	pass "max_requests_per_connection 2: the 2nd response says connection: close, curl reconnected for the 3rd"
else
	fail "max requests: $closes connection: close, $connects connects: $(tr '\r\n' '  ' <<<"$out")"
fi

# ---- connections per worker -------------------------------------------------

shoald_stop TERM
sed -i 's/^  workers: 2$/  workers: 1\n  max_connections: 2/' "$CONFIG"
grep -q '^  max_connections: 2$' "$CONFIG" || fatal "could not set max_connections in $CONFIG"
shoald_start
CONNS='shoal_proxy_refused_total{cap="connections"}'

hold_connections 2 holder2

# --max-time 3: a connection left in the accept queue would hang to it.
out=$(pod_curl a3 --max-time 3 -D - "$API/third") || true
if [[ $(head -1 <<<"$out") == "HTTP/1.1 503"* &&
	$(header x-shoal-error <<<"$out") == limit-connections &&
	$out == *"proxy.max_connections)"* ]]; then
	pass "a3's HTTP connection at max_connections: 503 limit-connections, the body names the knob"
else
	fail "a3 at max_connections: expected 503 limit-connections, got: $(tr '\r\n' '  ' <<<"$out")"
fi
out=$(pod_run a3 python3 -c '
import socket
try:
    s = socket.create_connection(("10.96.0.10", 80), timeout=3)
    print("read", len(s.recv(100)))
except ConnectionResetError:
    print("reset")
except OSError as e:
    print("error", e)
' 2>&1) || true
[[ $out == reset ]] && pass "a3's opaque TCP connection at max_connections: reset" ||
	fail "a3's opaque TCP connection at max_connections: expected a reset, got '$out'"
n=$(proxy_metric "$CONNS")
[[ $n == 2 ]] && pass "$CONNS is 2" || fail "$CONNS is '$n', want 2"
grep -q 'cap connections (proxy.max_connections) reached' "$SHOALD_LOG" &&
	pass "the log names proxy.max_connections" ||
	fail "no log line names proxy.max_connections: $(grep refused "$SHOALD_LOG")"

stop_pid "$HOLDER" KILL
ok=""
for ((i = 0; i < 20; i++)); do
	out=$(pod_curl a3 -o /dev/null -w '%{http_code}' "$API/again") || true
	[[ $out == 200 ]] && ok=1 && break
	sleep 0.1
done
[[ -n $ok ]] && pass "a3 is served once a1's connections closed" ||
	fail "a3 after a1's connections closed: got '$out'"

finish
