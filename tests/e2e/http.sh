#!/bin/bash
# http.sh: the node proxy speaks HTTP/1.1 through interception, with real
# clients (curl, socat, python3) against shoal-backend on a2 and b1:
#  - keep-alive on both sides: two URLs on one client connection share one
#    upstream connection, and later client connections reuse pooled ones;
#  - chunked upload (echoed back intact), Expect: 100-continue with a large
#    POST, HEAD, 204 and 304 (no body, the connection stays usable),
#    HTTP/1.0 (curl -0), read-until-close is not needed by shoal-backend;
#  - two pipelined requests in one write, answered in order;
#  - WebSocket echo and the raw shoal-echo tunnel after 101 (shoal-echo
#    allowed by proxy.http.upgrade_protocols, websocket by default);
#  - what the proxy changes in a head, as the backend saw it (?headers=1):
#    hop-by-hop fields and x-shoal-* removed, TE: trailers kept,
#    X-Forwarded-For appended with a1's address, X-Forwarded-Proto,
#    a generated x-request-id (a client's kept), an absolute-form target
#    sent in origin form with its authority as Host, and an h2c upgrade
#    removed (the request answered as plain HTTP/1.1);
#  - the proxy's own errors: no endpoints (503) and an upstream reset (502),
#    each with x-shoal-error;
#  - detection on undeclared ports: HTTP is parsed (x-shoal-error shows),
#    the HTTP/2 preface goes to the HTTP/2 kind, and a server-speaks-first backend's
#    banner arrives in well under 1 s;
#  - wrk -c 10 -d 3 through the proxy: no errors, no non-2xx.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_require wrk
e2e_init
e2e_topology
backend_start a2 9080
backend_start b1 9080

# api: both endpoints. port 80 declared http, 81 undeclared (detected as
# HTTP), 82 undeclared in front of shoal-peer's banner (server speaks first).
# one: a single endpoint, so connection reuse is visible. empty: none.
write_config "
  - name: api
    vips: [10.96.0.20]
    ports:
      - {port: 80, target_port: 9080, protocol: http}
      - {port: 81, target_port: 9080}
      - {port: 82, target_port: 8080}
    endpoints: [{address: 10.77.1.3}, {address: 10.77.2.2}]
  - name: one
    vips: [10.96.0.21, "fd96::21"]
    ports: [{port: 80, target_port: 9080, protocol: http}]
    endpoints: [{address: 10.77.1.3}]
  - name: empty
    vips: [10.96.0.22]
    ports:
      - {port: 80, target_port: 9080, protocol: http}
      - {port: 81, target_port: 9080}
    endpoints: []"
# The raw tunnel test below upgrades to shoal-echo: allow it next to the default.
sed -i 's/^proxy: {/proxy: {http: {upgrade_protocols: [websocket, shoal-echo]}, /' "$CONFIG"
shoald_start
enroll a1

API=http://10.96.0.20
ONE=http://10.96.0.21

# ---- keep-alive and pooling -------------------------------------------------

reused0=$(proxy_metric shoal_proxy_pool_reused_total)
out=$(pod_curl a1 -v -o /dev/null -D - "$ONE/first" -o /dev/null -D - "$ONE/second" 2>"$LOGDIR/ka.err") ||
	fail "keep-alive: curl failed: $(cat "$LOGDIR/ka.err")"
ports=$(header x-seen-peer-port <<<"$out")
ports="$ports $(tr -d '\r' <<<"$out" | awk -F': ' 'tolower($1) == "x-seen-peer-port" { n++ } n == 2 { print $2; exit }')"
if grep -q 'Re-using existing connection' "$LOGDIR/ka.err" &&
	[[ $(grep -c '^HTTP/1.1 200' <<<"$out") == 2 ]]; then
	pass "keep-alive: curl sent two requests on one client connection, both 200"
else
	fail "keep-alive: expected two 200s on one connection: $out"
fi
read -r p1 p2 <<<"$ports"
if [[ -n $p1 && $p1 == "$p2" ]]; then
	pass "keep-alive: both requests reached a2 on one upstream connection (port $p1)"
else
	fail "keep-alive: upstream source ports differ: '$p1' '$p2'"
fi
# Each worker pools its own upstream connections, and the kernel spreads
# new client connections over the 2 workers: 8 sequential client
# connections must then use at most 2 upstream connections.
ports=""
for i in 1 2 3 4 5 6 7 8; do
	out=$(pod_curl a1 -o /dev/null -D - "$ONE/n$i") || fail "pool: curl $i failed"
	ports="$ports $(header x-seen-peer-port <<<"$out")"
done
distinct=$(tr ' ' '\n' <<<"$ports" | sed '/^$/d' | sort -u | wc -l)
if ((distinct <= 2)); then
	pass "pool: 8 new client connections were served over $distinct upstream connection(s) (one pool per worker)"
else
	fail "pool: 8 new client connections used $distinct upstream connections:$ports"
fi
reused1=$(proxy_metric shoal_proxy_pool_reused_total)
if ((reused1 - reused0 >= 7)); then
	pass "pool: shoal_proxy_pool_reused_total grew by $((reused1 - reused0))"
else
	fail "pool: shoal_proxy_pool_reused_total went $reused0 -> $reused1"
fi

# ---- bodies -----------------------------------------------------------------

head -c 300000 /dev/urandom >"$LOGDIR/upload.bin"
want=$(sha256sum <"$LOGDIR/upload.bin" | cut -d' ' -f1)
got=$(pod_curl a1 -H 'Transfer-Encoding: chunked' --data-binary @"$LOGDIR/upload.bin" \
	"$API/up?echo=1" | sha256sum | cut -d' ' -f1)
[[ $got == "$want" ]] && pass "chunked upload of 300000 bytes echoed back intact" ||
	fail "chunked upload: echo differs ($got != $want)"

head -c 2000000 /dev/urandom >"$LOGDIR/big.bin"
out=$(pod_curl a1 -v -H 'Expect: 100-continue' --data-binary @"$LOGDIR/big.bin" -D - -o /dev/null \
	"$API/big" 2>"$LOGDIR/expect.err") || fail "Expect: curl failed: $(tail -3 "$LOGDIR/expect.err")"
if grep -q '^HTTP/1.1 100' <<<"$out" && [[ $(header x-seen-body-bytes <<<"$out") == 2000000 ]]; then
	pass "Expect: 100-continue: the interim 100 came through, the backend read 2000000 bytes"
else
	fail "Expect: 100-continue: got $(tr '\r\n' '  ' <<<"$out")"
fi

# Large responses stream through the fixed buffers; the pattern is 'a'..'z'.
for mode in "" "&chunked=1"; do
	sizes=$(pod_curl a1 -o /dev/null "$ONE/dl?body_bytes=20000000$mode" \
		-o "$LOGDIR/dl.bin" "$ONE/dl?body_bytes=1000$mode" -w '%{size_download} ') ||
		fail "download${mode}: curl failed"
	want=$(python3 -c 'import sys; print(sys.stdin.buffer.read() == (b"abcdefghijklmnopqrstuvwxyz" * 40)[:1000])' <"$LOGDIR/dl.bin")
	if [[ $sizes == "20000000 1000 " && $want == True ]]; then
		pass "download${mode:+ (chunked)}: 20000000 bytes, then 1000 intact bytes on the same connection"
	else
		fail "download${mode}: sizes '$sizes', second body intact: $want"
	fi
done

out=$(pod_curl a1 -g -D - -o /dev/null "http://[fd96::21]/v6") || fail "IPv6 VIP: curl failed"
[[ $out == "HTTP/1.1 200"* && $(header x-seen-path <<<"$out") == /v6 ]] &&
	pass "IPv6 VIP: HTTP through [fd96::21]:80" || fail "IPv6 VIP: got $out"

out=$(pod_curl a1 -I "$API/h") || fail "HEAD: curl failed"
[[ $out == "HTTP/1.1 200"* && -n $(header content-length <<<"$out") ]] &&
	pass "HEAD: 200 with a Content-Length and no body" || fail "HEAD: got $out"

out=$(pod_curl a1 -v -D - -o /dev/null "$ONE/s?status=204" -D - -o /dev/null "$ONE/s?status=304" \
	-D - -o /dev/null "$ONE/after" 2>"$LOGDIR/204.err") || fail "204/304: curl failed"
codes=$(grep -o '^HTTP/1.1 [0-9]*' <<<"$out" | awk '{ print $2 }' | tr '\n' ' ')
if [[ $codes == "204 304 200 " ]] && (($(grep -c 'Re-using existing connection' "$LOGDIR/204.err") == 2)); then
	pass "204 and 304 carry no body; the same connection then served a 200"
else
	fail "204/304: statuses '$codes'"
fi

out=$(pod_curl a1 -0 -D - "$API/old") || fail "HTTP/1.0: curl -0 failed"
if [[ $out == "HTTP/1.1 200"* || $out == "HTTP/1.0 200"* ]] && grep -qx 'a2\|b1' <<<"$(tr -d '\r' <<<"$out" | tail -1)"; then
	pass "HTTP/1.0 client (curl -0) answered: $(head -1 <<<"$out" | tr -d '\r')"
else
	fail "HTTP/1.0: got $out"
fi

# ---- pipelining -----------------------------------------------------------------

out=$(printf 'GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' |
	pod_run a1 timeout 10 socat -t 5 - TCP:10.96.0.21:80 | tr -d '\r')
paths=$(awk -F': ' '$1 == "x-seen-path" { print $2 }' <<<"$out" | tr '\n' ' ')
if [[ $paths == "/p1 /p2 " && $(grep -c '^HTTP/1.1 200' <<<"$out") == 2 ]]; then
	pass "pipelining: two requests in one write answered in order (/p1, /p2)"
else
	fail "pipelining: got paths '$paths': $out"
fi

# ---- upgrades -------------------------------------------------------------------

cat >"$LOGDIR/ws.py" <<'PY'
import base64, os, socket, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=5)
def read_head():
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1)
        if not chunk:
            sys.exit("EOF before the 101")
        data += chunk
    return data.decode()
if mode == "ws":
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    head = read_head()
    if not head.startswith("HTTP/1.1 101"):
        sys.exit("no 101: " + head)
    payload = b"hello through shoal"
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask +
              bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    hdr = s.recv(2)
    n = hdr[1] & 0x7f
    got = b""
    while len(got) < n:
        got += s.recv(n - len(got))
    print("ws", hex(hdr[0]), got.decode())
else:
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: shoal-echo\r\nConnection: Upgrade\r\n\r\n")
    head = read_head()
    if not head.startswith("HTTP/1.1 101"):
        sys.exit("no 101: " + head)
    blob = os.urandom(100000)
    s.sendall(blob)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    print("echo", "intact" if got == blob else "differs (%d bytes)" % len(got))
PY
out=$(pod_run a1 python3 "$LOGDIR/ws.py" 10.96.0.20 80 ws 2>&1) || true
[[ $out == "ws 0x81 hello through shoal" ]] && pass "WebSocket: 101, then a text frame echoed" ||
	fail "WebSocket: $out"
out=$(pod_run a1 python3 "$LOGDIR/ws.py" 10.96.0.20 80 echo 2>&1) || true
[[ $out == "echo intact" ]] && pass "Upgrade: shoal-echo tunnel carried 100000 bytes both ways" ||
	fail "shoal-echo tunnel: $out"

# ---- what the proxy changes in a head -----------------------------------------

# The backend's ?headers=1 body is the request head exactly as it arrived.
seen=$(pod_curl a1 "$ONE/h?headers=1" -H 'Connection: keep-alive, X-Hop, TE' -H 'X-Hop: secret' \
	-H 'Keep-Alive: 300' -H 'Proxy-Connection: keep-alive' -H 'TE: trailers, deflate' \
	-H 'X-Forwarded-For: 192.0.2.7' -H 'X-Forwarded-Proto: https' \
	-H 'x-shoal-timeout-ms: 5000' -H 'X-Keep: 1' | tr -d '\r') || fail "head rewrite: curl failed"
printf '%s\n' "$seen" >"$LOGDIR/seen-head.txt"
field() { awk -v n="$(tr 'A-Z' 'a-z' <<<"$1")" -F': ' 'tolower($1) == n { sub(/^[^:]*: /, ""); print }' <<<"$seen"; }
bad=$(grep -ciE '^(x-hop|keep-alive|proxy-connection|x-shoal-[a-z-]*):' <<<"$seen" || true)
if [[ $bad == 0 && $(field connection) == keep-alive && $(field te) == trailers &&
	$(field x-keep) == 1 ]]; then
	pass "hop-by-hop: Connection's X-Hop, Keep-Alive, Proxy-Connection and x-shoal-* never reached the backend; TE: trailers and X-Keep did"
else
	fail "hop-by-hop: the backend saw: $(tr '\n' '|' <<<"$seen")"
fi
xff=$(field x-forwarded-for)
[[ $xff == "192.0.2.7, 10.77.1.2" && $(field x-forwarded-proto) == http ]] &&
	pass "X-Forwarded-For: '$xff' (the client's list, then a1), X-Forwarded-Proto: http" ||
	fail "forwarding fields: X-Forwarded-For '$xff', X-Forwarded-Proto '$(field x-forwarded-proto)'"
rid=$(field x-request-id)
[[ $rid =~ ^[0-9a-f]{32}$ ]] && pass "x-request-id generated: $rid" ||
	fail "x-request-id: got '$rid'"
seen=$(pod_curl a1 "$ONE/h?headers=1" -H 'X-Request-Id: from-client' | tr -d '\r') || true
[[ $(field x-request-id) == from-client ]] && pass "x-request-id: the client's own is kept" ||
	fail "x-request-id: the client's became '$(field x-request-id)'"

# Absolute form (curl through a "proxy" that is the VIP itself): origin form upstream.
seen=$(pod_curl a1 -x "$ONE:80" "http://web.example:8080/abs?headers=1" | tr -d '\r') || true
if [[ $(head -1 <<<"$seen") == "GET /abs?headers=1 HTTP/1.1" && $(field host) == web.example:8080 ]]; then
	pass "absolute-form target: the backend got 'GET /abs?headers=1' with Host web.example:8080"
else
	fail "absolute-form target: the backend saw: $(tr '\n' '|' <<<"$seen")"
fi

# h2c is not an allowed upgrade: the request goes on as plain HTTP/1.1.
out=$(pod_curl a1 -D - "$ONE/h?headers=1" -H 'Connection: Upgrade, HTTP2-Settings' \
	-H 'Upgrade: h2c' -H 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA' | tr -d '\r') || true
seen=$(sed '1,/^$/d' <<<"$out")
if [[ $(head -1 <<<"$out") == "HTTP/1.1 200 OK" ]] &&
	! grep -qiE '^(upgrade|http2-settings|connection):' <<<"$seen"; then
	pass "h2c upgrade removed: 200 over HTTP/1.1, the backend saw no Upgrade, HTTP2-Settings or Connection"
else
	fail "h2c upgrade: got $(tr '\n' '|' <<<"$out")"
fi

# ---- the proxy's own errors -------------------------------------------------------

out=$(pod_curl a1 -D - -o /dev/null "http://10.96.0.22/") || fail "no endpoints: curl failed"
if [[ $out == "HTTP/1.1 503"* && $(header x-shoal-error <<<"$out") == no-endpoints ]]; then
	pass "no endpoints: 503 with x-shoal-error: no-endpoints"
else
	fail "no endpoints: got $out"
fi
out=$(pod_curl a1 -D - -o /dev/null "$API/r?reset=1") || fail "upstream reset: curl failed"
if [[ $out == "HTTP/1.1 502"* && $(header x-shoal-error <<<"$out") == upstream-reset ]]; then
	pass "upstream reset: 502 with x-shoal-error: upstream-reset"
else
	fail "upstream reset: got $out"
fi

# ---- detection on undeclared ports --------------------------------------------------

det0=$(proxy_metric shoal_proxy_detect_http_total)
out=$(pod_curl a1 -D - "http://10.96.0.20:81/d") || fail "detect: curl failed"
[[ $out == "HTTP/1.1 200"* && -n $(header x-seen-path <<<"$out") ]] &&
	pass "detect: HTTP on an undeclared port is proxied" || fail "detect: got $out"
out=$(pod_curl a1 -D - -o /dev/null "http://10.96.0.22:81/") || fail "detect: curl failed"
if [[ $out == "HTTP/1.1 503"* && $(header x-shoal-error <<<"$out") == no-endpoints ]]; then
	pass "detect: an undeclared port carrying HTTP is parsed (503 x-shoal-error: no-endpoints)"
else
	fail "detect: undeclared port without endpoints gave $out"
fi
det1=$(proxy_metric shoal_proxy_detect_http_total)
((det1 - det0 >= 2)) && pass "detect: shoal_proxy_detect_http_total grew by $((det1 - det0))" ||
	fail "detect: shoal_proxy_detect_http_total went $det0 -> $det1"
h2d0=$(proxy_metric shoal_proxy_detect_h2_total)
# The preface and an empty SETTINGS: the proxy's HTTP/2 kind answers with
# its own SETTINGS frame (type 4, on stream 0) first; h2.sh tests the rest.
# od reads all that comes (not -N9): a reader that stops early makes socat
# fail on a broken pipe, and pipefail would end the test.
out=$(printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0' |
	pod_run a1 timeout 10 socat -t 1 - TCP:10.96.0.20:81 | od -An -tx1 | tr -d ' \n') || true
out=${out:0:18}
h2d1=$(proxy_metric shoal_proxy_detect_h2_total)
if ((h2d1 - h2d0 == 1)) && [[ ${out:6:2} == 04 && ${out:10:8} == 00000000 ]]; then
	pass "detect: the HTTP/2 preface goes to the HTTP/2 kind (its SETTINGS came back: $out)"
else
	fail "detect: HTTP/2 preface: detect_h2 $h2d0 -> $h2d1, first frame header '$out'"
fi
t0=$(date +%s%N)
if hello a1 10.96.0.20:82 && [[ $HELLO_BACKEND == a2 || $HELLO_BACKEND == b1 ]]; then
	ms=$((($(date +%s%N) - t0) / 1000000))
	if ((ms < 1000)); then
		pass "detect: server-speaks-first banner from $HELLO_BACKEND after $ms ms (opaque fallback)"
	else
		fail "detect: banner took $ms ms"
	fi
else
	fail "detect: no banner through an undeclared port: $HELLO_OUT"
fi

# ---- load -------------------------------------------------------------------------

pod_run a1 wrk -c 10 -t 2 -d 3 "$API/" >"$LOGDIR/wrk.txt" 2>&1 || fail "wrk failed: $(cat "$LOGDIR/wrk.txt")"
rps=$(awk '/^Requests\/sec/ { print $2 }' "$LOGDIR/wrk.txt")
if grep -q 'Socket errors\|Non-2xx' "$LOGDIR/wrk.txt" || [[ -z $rps ]]; then
	fail "wrk: errors: $(cat "$LOGDIR/wrk.txt")"
else
	pass "wrk -c 10 -d 3: $rps requests/s, no errors"
fi
finish
