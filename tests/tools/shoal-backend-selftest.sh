#!/bin/bash
# shoal-backend's own test: HTTP/1.1 framing, per-request controls, /_ctl,
# the two upgrade tunnels and hostile input, with curl, socat and a python3
# stdlib WebSocket client. Loopback only, no root, no mesh: the L7 e2e tests
# trust this backend, so it is checked on its own first.
set -uo pipefail
T=shoal-backend-selftest
[[ -x ${SHOAL_BACKEND:-} ]] || { echo "[$T] SKIP: SHOAL_BACKEND not built (${SHOAL_BACKEND:-unset})"; exit 77; }
for tool in curl socat python3 timeout; do
	command -v "$tool" >/dev/null || { echo "[$T] SKIP: $tool missing (scripts/setup.sh installs it)"; exit 77; }
done

dir=$(mktemp -d)
pid=
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

# Port 0: the backend picks a free port and prints it, so parallel runs and
# leftovers from other tests cannot collide with us.
# A second listener on [::1] when the host has IPv6 loopback.
v6=()
grep -qs '00000000000000000000000000000001' /proc/net/if_inet6 && v6=(--listen '[::1]:0')
"$SHOAL_BACKEND" --listen 127.0.0.1:0 "${v6[@]}" --name selftest --seed 1 \
	--stats-file "$dir/stats.json" >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 50); do
	(($(grep -c 'listening on' "$dir/out") == 1 + ${#v6[@]} / 2)) && break
	sleep 0.1
done
addr=$(sed -n 's/.* listening on //p' "$dir/out" | head -n1)
[[ -n $addr ]] || { echo "[$T] FAIL: backend did not start: $(cat "$dir/err")" >&2; exit 1; }
port=${addr##*:}
url=http://127.0.0.1:$port
echo "[$T] backend pid $pid on $addr"

failed=0
ok() { echo "[$T] ok: $*"; }
bad() { echo "[$T] FAIL: $*" >&2; failed=1; }
expect() { # name actual wanted
	if [[ $2 == "$3" ]]; then ok "$1: $2"; else bad "$1: got '$2', wanted '$3'"; fi
}
expect_match() { # name text glob
	# shellcheck disable=SC2053
	if [[ $2 == $3 ]]; then ok "$1"; else bad "$1: '$3' not in: $(head -c 600 <<<"$2")"; fi
}
raw() { # send stdin to the backend, print what comes back (2 s at most)
	timeout 5 socat -t 2 - "TCP:127.0.0.1:$port" 2>/dev/null
}

if ((${#v6[@]})); then
	addr6=$(sed -n 's/.* listening on \(\[.*\)/\1/p' "$dir/out")
	out=$(curl -s -D - -o /dev/null "http://$addr6/v6")
	expect_match "IPv6 listener $addr6" "$out" "*x-seen-peer: ::1*x-seen-host: \\[::1\\]:${addr6##*:}*"
else
	echo "[$T] skip: no IPv6 loopback, [::1] listener not checked"
fi

# keep-alive: two URLs, one connection.
out=$(curl -sv "$url/one" "$url/two" 2>&1)
expect_match "keep-alive reuses the connection" "$out" "*Re-using existing connection*x-seen-path: /two*"
expect_match "x-backend and x-request-count" "$out" "*x-backend: selftest*x-request-count: *"

# chunked upload, discarded (counted) and echoed.
head -c 300000 /dev/urandom >"$dir/body"
out=$(curl -s -o /dev/null -D - -H 'Transfer-Encoding: chunked' --data-binary @"$dir/body" "$url/up")
expect_match "chunked upload read whole" "$out" "*x-seen-body-bytes: 300000*"
curl -s -H 'Transfer-Encoding: chunked' --data-binary @"$dir/body" "$url/up?echo=1" -o "$dir/echoed"
if cmp -s "$dir/body" "$dir/echoed"; then ok "chunked upload echoed intact"; else bad "chunked echo differs"; fi
curl -s --data-binary @"$dir/body" "$url/up?echo=1" -o "$dir/echoed"
if cmp -s "$dir/body" "$dir/echoed"; then ok "Content-Length upload echoed intact"; else bad "CL echo differs"; fi

# ?headers=1: the body is the request head byte for byte.
out=$(printf 'GET /h?headers=1 HTTP/1.1\r\nHost: x\r\nX-A:  1\r\nConnection: close\r\n\r\n' | raw | tr -d '\r')
expect_match "headers=1 returns the head as sent" "$out" "*

GET /h?headers=1 HTTP/1.1
Host: x
X-A:  1
Connection: close"

# Expect: 100-continue on a large POST.
out=$(curl -sv -H 'Expect: 100-continue' --data-binary @"$dir/body" "$url/expect" 2>&1)
expect_match "Expect: 100-continue answered" "$out" "*HTTP/1.1 100 Continue*x-seen-body-bytes: 300000*"

# HEAD: headers with the GET's Content-Length, no body (the next pipelined
# response must start right after the head).
out=$(printf 'HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /after-head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | raw)
expect_match "HEAD has Content-Length and no body" "$out" \
	$'*x-seen-method: HEAD*Content-Length: 9\r\n\r\nHTTP/1.1 200 OK*x-seen-path: /after-head*selftest'

# pipelining: two requests in one write, answered in order.
out=$(printf 'GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | raw)
expect_match "pipelined requests answered in order" "$out" "*x-seen-path: /p1*x-seen-path: /p2*x-seen-path: /p3*"

# HTTP/1.0: closes unless keep-alive is asked for.
out=$(printf 'GET /old HTTP/1.0\r\n\r\n' | raw)
expect_match "HTTP/1.0 gets Connection: close" "$out" "*Connection: close*"
out=$(printf 'GET /old1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /old2 HTTP/1.0\r\n\r\n' | raw)
expect_match "HTTP/1.0 keep-alive honoured" "$out" "*Connection: keep-alive*x-seen-path: /old2*"

# per-request controls
expect "?status=503" "$(curl -s -o /dev/null -w '%{http_code}' "$url/?status=503")" 503
expect "?status=204 has no body" "$(curl -s -w '%{http_code}:%{size_download}' -o /dev/null "$url/?status=204")" "204:0"
# The body is 'a'..'z' repeated, so a proxy test can check it byte for byte.
python3 -c "import sys; sys.stdout.write(''.join(chr(97 + i % 26) for i in range(100000)))" >"$dir/pattern"
for q in "body_bytes=100000" "body_bytes=100000&chunked=1"; do
	curl -s "$url/?$q" -o "$dir/got"
	if cmp -s "$dir/pattern" "$dir/got"; then ok "?$q: pattern intact"; else bad "?$q: body differs"; fi
done
out=$(printf 'GET /?status=304 HTTP/1.1\r\nHost: x\r\n\r\nGET /after-304 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | raw)
expect_match "304: would-be Content-Length, no body" "$out" \
	$'HTTP/1.1 304 *Content-Length: 9\r\n\r\nHTTP/1.1 200 OK*x-seen-path: /after-304*'
out=$(curl -s -D - -o /dev/null "$url/?chunked=1")
expect_match "?chunked=1 is chunked" "$out" "*Transfer-Encoding: chunked*"
t=$(curl -s -o /dev/null -w '%{time_total}' "$url/?delay_ms=300")
if python3 -c "import sys; sys.exit(not 0.29 <= $t < 1.5)"; then ok "?delay_ms=300 took ${t}s"; else bad "?delay_ms=300 took ${t}s"; fi
curl -s -o /dev/null "$url/?reset=1"; rc=$?
expect "?reset=1 resets (curl exit)" "$rc" 56
curl -s -o /dev/null "$url/?reset_after_headers=1&body_bytes=100000"; rc=$?
expect "?reset_after_headers=1 resets mid-response (curl exit)" "$rc" 56
out=$(curl -sv "$url/?close=1" 2>&1)
expect_match "?close=1 sends Connection: close" "$out" "*Connection: close*"
out=$(for _ in $(seq 200); do curl -s -o /dev/null -w '%{http_code}\n' "$url/?fail_rate=0.5&fail_status=502"; done | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
expect_match "?fail_rate=0.5 fails some: $out" "$out" "* 200 * 502 *"
out=$(curl -s -D - -o /dev/null -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' "$url/t")
expect_match "traceparent echoed" "$out" "*x-seen-traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01*"

# /_ctl/stats counts requests by method and status (and not /_ctl itself).
curl -s -X POST -o /dev/null "$url/_ctl/stats/reset"
curl -s "$url/s1" "$url/s2" "$url/s3?status=503" >/dev/null
curl -s -d x "$url/s4" "$url/s5" >/dev/null
out=$(curl -s "$url/_ctl/stats")
expect_match "/_ctl/stats counts" "$out" '*"requests":5,*"by_method":{"GET":3,"POST":2}*"by_status":{"200":4,"503":1}*'

# /_ctl/mode: runtime defaults, refuse and re-bind.
curl -s -o /dev/null -d 'status=418&delay_ms=0' "$url/_ctl/mode"
expect "mode status=418 applies" "$(curl -s -o /dev/null -w '%{http_code}' "$url/m")" 418
expect "query still overrides mode" "$(curl -s -o /dev/null -w '%{http_code}' "$url/m?status=200")" 200
curl -s -o /dev/null -d 'status=200&reset=1' "$url/_ctl/mode"
curl -s -o /dev/null "$url/m"; rc=$?
expect "mode reset=1 resets every request" "$rc" 56
# The control connection is opened before refuse=1 and kept: connections
# already accepted keep working, which is how refuse=0 gets through.
ctl() { # form: POST it to /_ctl/mode over fd 3, print the JSON answer
	local line
	printf 'POST /_ctl/mode HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s' "${#1}" "$1" >&3
	while read -t 5 -r line <&3; do
		[[ $line == "{"* ]] && { echo "$line"; return; }
	done
}
exec 3<>"/dev/tcp/127.0.0.1/$port"
expect_match "mode refuse=1 answered" "$(ctl 'reset=0&refuse=1')" '*"refuse":1*'
curl -s -o /dev/null "$url/r"; rc=$?
expect "refuse=1: connection refused (curl exit)" "$rc" 7
expect_match "refuse=0 over the kept connection" "$(ctl 'refuse=0')" '*"refuse":0*'
exec 3>&-
expect "refuse=0: accepts again" "$(curl -s -o /dev/null -w '%{http_code}' "$url/r")" 200
out=$(curl -s -d 'bogus=1' -w '%{http_code}' "$url/_ctl/mode")
expect_match "bad mode field is 400 naming it" "$out" "*bogus*400"

# WebSocket: handshake Accept, a masked text frame echoed, ping -> pong, close.
out=$(python3 - "$port" <<'EOF' 2>&1
import base64, hashlib, os, socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    d = s.recv(4096)
    if not d:
        sys.exit("eof in handshake")
    buf += d
head, buf = buf.split(b"\r\n\r\n", 1)
want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
assert head.startswith(b"HTTP/1.1 101 "), head
assert ("Sec-WebSocket-Accept: " + want).encode() in head, head
def send(op, payload):
    mask = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126 else
          bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536 else
          bytes([0x80 | 127]) + struct.pack("!Q", n))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
def need(n):
    global buf
    while len(buf) < n:
        d = s.recv(65536)
        if not d:
            sys.exit("eof in frame")
        buf += d
def recv():
    global buf
    need(2)
    op, n = buf[0] & 15, buf[1] & 127
    off = 2
    if n == 126:
        need(4); n = struct.unpack("!H", buf[2:4])[0]; off = 4
    elif n == 127:
        need(10); n = struct.unpack("!Q", buf[2:10])[0]; off = 10
    need(off + n)
    p, buf = buf[off:off + n], buf[off + n:]
    return op, p
send(1, b"hello shoal")
assert recv() == (1, b"hello shoal")
big = os.urandom(200000)
send(2, big)
assert recv() == (2, big)
send(9, b"pp")
assert recv() == (10, b"pp")
send(8, struct.pack("!H", 1000))
assert recv() == (8, struct.pack("!H", 1000))
print("websocket ok accept=" + want)
EOF
)
expect_match "websocket handshake, echo, ping, close" "$out" "websocket ok*"

# Raw tunnel: Upgrade: shoal-echo to /echo, then bytes come back until EOF.
out=$(printf 'GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: shoal-echo\r\nConnection: Upgrade\r\n\r\nraw bytes through' | raw)
expect_match "shoal-echo tunnel" "$out" $'HTTP/1.1 101 Switching Protocols*Upgrade: shoal-echo*\r\n\r\nraw bytes through'

# Hostile input: never crash, answer 4xx and close.
big=$(head -c 32768 /dev/zero | tr '\0' a)
out=$(curl -s -o /dev/null -w '%{http_code}' -H "x-big: $big" "$url/big")
expect "32 KiB header -> 431" "$out" 431
out=$( { printf 'GET /many HTTP/1.1\r\nHost: x\r\n'; for i in $(seq 200); do printf 'x-h%d: v\r\n' "$i"; done; printf '\r\n'; } | raw | head -n1)
expect "200 header fields -> 431" "$out" $'HTTP/1.1 431 Request Header Fields Too Large\r'
check_status() { # name request status
	local got
	got=$(printf '%b' "$2" | raw | head -n1 | cut -d' ' -f2)
	expect "$1" "$got" "$3"
}
check_status "garbage" 'hello there\r\n\r\n' 400
check_status "CL and TE together" 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' 400
check_status "differing Content-Length" 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd' 400
check_status "non-chunked final coding" 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n' 400
check_status "bad chunk size" 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n' 400
check_status "space before colon" 'GET / HTTP/1.1\r\nHost : x\r\n\r\n' 400
check_status "obs-fold" 'GET / HTTP/1.1\r\nHost: x\r\nx-a: b\r\n c\r\n\r\n' 400
check_status "bare CR" 'GET / HTTP/1.1\r\nHost: x\rx\r\n\r\n' 400
check_status "NUL byte" 'GET / HTTP/1.1\r\nHost: x\0\r\n\r\n' 400
check_status "HTTP/2.0 request line" 'GET / HTTP/2.0\r\nHost: x\r\n\r\n' 505
check_status "missing Host" 'GET / HTTP/1.1\r\n\r\n' 400
head -c 100000 /dev/urandom | raw >/dev/null
expect "still serving after hostile input" "$(curl -s -o /dev/null -w '%{http_code}' "$url/alive")" 200

# Many concurrent keep-alive connections: 600 sockets, each with 2 requests.
out=$(python3 - "$port" <<'EOF' 2>&1
import socket, sys
port = int(sys.argv[1])
socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(600)]
for rnd in range(2):
    for s in socks:
        s.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
    for s in socks:
        buf = b""
        while not buf.endswith(b"selftest\n"):
            d = s.recv(4096)
            if not d:
                sys.exit("eof")
            buf += d
        assert buf.startswith(b"HTTP/1.1 200"), buf
print("600 ok")
EOF
)
expect "600 concurrent keep-alive connections" "$out" "600 ok"

if kill -0 "$pid" 2>/dev/null; then ok "backend still running"; else bad "backend died: $(cat "$dir/err")"; fi
# --stats-file is written on SIGUSR1 (and on SIGTERM, at exit).
kill -USR1 "$pid"
sleep 0.3
expect_match "SIGUSR1 writes --stats-file" "$(cat "$dir/stats.json" 2>/dev/null)" '*"name":"selftest"*"by_status":*'
kill -TERM "$pid"
wait "$pid"; rc=$?
pid=
expect "SIGTERM exits 0" "$rc" 0
if [[ -s $dir/err ]]; then bad "backend stderr: $(cat "$dir/err")"; else ok "backend stderr empty"; fi
exit $failed
