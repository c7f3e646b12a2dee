#!/bin/bash
# http-hostile.sh: hostile HTTP/1 input through interception. Each raw
# request is written with socat from the enrolled pod a1 to an http
# service whose only endpoint is shoal-backend on a2. For each:
#  - the proxy answers the expected status (400, 414, 431, 501, 505) with
#    x-shoal-error, and closes the connection (socat returns well before
#    its own timeout);
#  - the backend got nothing (its /_ctl/stats request count is unchanged);
# covering the smuggling set (CL+TE, differing CLs, a CL list of equal
# values, chunked with a parameter, a non-chunked final coding, bad chunk
# sizes (one over 2^31-1 too), malformed chunk extensions, a Connection
# naming Content-Length, space before the colon, bare CR, bare LF,
# obs-fold, NUL). Then the timeouts, with proxy.idle_timeout_ms at 1.5 s:
# a slowloris head gets 408, an idle keep-alive connection is closed, and
# a backend slower than that gets the client a 504.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_topology a2
write_config "
$(http_service api 10.96.0.40 9080 10.77.1.3)"
sed -i 's/^proxy: {/proxy: {idle_timeout_ms: 1500, /' "$CONFIG"
shoald_start
enroll a1

# raw_case NAME WANT_STATUS PRINTF_FORMAT [ARGS]: send the bytes, check the
# answer, the close and that the backend saw nothing.
raw_case() {
	local name=$1 want=$2 before after out t0 ms status stage
	shift 2
	before=$(backend_requests a2 9080)
	t0=$(date +%s%N)
	# shellcheck disable=SC2059
	out=$(printf "$@" | pod_run a1 timeout 10 socat -t 4 - TCP:10.96.0.40:80 | tr -d '\r') || true
	ms=$((($(date +%s%N) - t0) / 1000000))
	after=$(backend_requests a2 9080)
	status=$(head -1 <<<"$out" | awk '{ print $2 }')
	stage=$(header x-shoal-error <<<"$out")
	if [[ $status != "$want" || -z $stage ]]; then
		fail "$name: expected $want with x-shoal-error, got '$(head -1 <<<"$out")' (x-shoal-error '$stage')"
	elif ((after != before)); then
		fail "$name: the backend served $((after - before)) request(s); it should have got nothing"
	elif ((ms >= 3000)); then
		fail "$name: the proxy did not close the connection ($ms ms)"
	else
		pass "$name: $want ($stage), closed after $ms ms, backend got nothing"
	fi
}

H='Host: x\r\n'
raw_case "Content-Length with Transfer-Encoding" 400 \
	"POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
raw_case "two differing Content-Lengths" 400 \
	"POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
raw_case "Content-Length list with differing values" 400 \
	"POST / HTTP/1.1\r\n${H}Content-Length: 5, 6\r\n\r\nhello!"
raw_case "final transfer coding not chunked (chunked, gzip)" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"
raw_case "final transfer coding not chunked (gzip)" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nxxxx"
raw_case "unknown transfer coding" 501 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n"
raw_case "chunk size not hex" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
raw_case "chunk size with a sign" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"
raw_case "chunk size overflowing 64 bits" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n"
raw_case "Content-Length list of equal values (5, 5)" 400 \
	"POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello"
raw_case "chunked with a parameter (chunked;x=y)" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked;x=y\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
raw_case "chunk size over 2^31-1" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n80000000\r\nhello\r\n0\r\n\r\n"
raw_case "chunk extension without a name" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;=x\r\nhello\r\n0\r\n\r\n"
raw_case "chunk extension with an unterminated quote" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;a=\"x\r\nhello\r\n0\r\n\r\n"
raw_case "Connection naming Content-Length" 400 \
	"POST / HTTP/1.1\r\n${H}Connection: content-length\r\nContent-Length: 5\r\n\r\nhello"
raw_case "chunk data longer than its size" 400 \
	"POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
raw_case "space before a header colon" 400 \
	"GET / HTTP/1.1\r\nHost : x\r\n\r\n"
raw_case "bare CR in a header value" 400 \
	"GET / HTTP/1.1\r\n${H}X-A: b\rc\r\n\r\n"
raw_case "bare LF line ends" 400 \
	"GET / HTTP/1.1\nHost: x\n\n"
raw_case "obs-fold" 400 \
	"GET / HTTP/1.1\r\n${H}X-A: b\r\n c\r\n\r\n"
raw_case "NUL in a header value" 400 \
	"GET / HTTP/1.1\r\n${H}X-A: b\0c\r\n\r\n"
raw_case "HTTP/1.1 without Host" 400 \
	"GET / HTTP/1.1\r\nX-A: b\r\n\r\n"
raw_case "HTTP/3.0 request line" 505 \
	"GET / HTTP/3.0\r\n${H}\r\n"
raw_case "request line over 8192 bytes" 414 \
	"GET /%09000d HTTP/1.1\r\n${H}\r\n" 0
raw_case "101 header fields" 431 \
	"GET / HTTP/1.1\r\n${H}$(for i in $(seq 1 101); do printf 'X-H%d: v\\r\\n' "$i"; done)\r\n"
raw_case "a 20 KiB header (over the 16 KiB buffer)" 431 \
	"GET / HTTP/1.1\r\n${H}X-Big: %020000d\r\n\r\n" 0

# After a rejected request nothing else on the connection is read: a
# smuggled second request must not reach the backend either.
raw_case "a request smuggled behind CL+TE" 400 \
	"POST / HTTP/1.1\r\n${H}Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n"

# ---- timeouts (proxy.idle_timeout_ms: 1500) -----------------------------------

cat >"$LOGDIR/slow.py" <<'PY'
import select, socket, sys, time
mode = sys.argv[1]
s = socket.create_connection(("10.96.0.40", 80), timeout=10)
t0 = time.time()
if mode == "slowloris":
    # A byte every 300 ms keeps the connection busy but never ends the head;
    # stop sending once the proxy answers.
    data = b""
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
        if select.select([s], [], [], 0.3)[0]:
            break
        s.sendall(bytes([b]))
    data = s.recv(4096)
    print("%s %.1f" % (data.split(b"\r\n")[0].decode().split(" ")[1], time.time() - t0))
elif mode == "idle":
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
    t0 = time.time()
    s.settimeout(10)
    print("closed" if s.recv(4096) == b"" else "data", "%.1f" % (time.time() - t0))
PY
read -r status secs <<<"$(pod_run a1 python3 "$LOGDIR/slow.py" slowloris 2>&1)"
if [[ $status == 408 ]] && awk -v s="$secs" 'BEGIN { exit !(s < 5) }'; then
	pass "slowloris: 408 after ${secs} s (head timeout capped by idle_timeout_ms)"
else
	fail "slowloris: got status '$status' after '$secs' s"
fi
read -r what secs <<<"$(pod_run a1 python3 "$LOGDIR/slow.py" idle 2>&1)"
if [[ $what == closed ]] && awk -v s="$secs" 'BEGIN { exit !(s >= 1.2 && s < 4) }'; then
	pass "idle keep-alive client connection closed after ${secs} s"
else
	fail "idle keep-alive: '$what' after '$secs' s"
fi
out=$(pod_curl a1 -D - -o /dev/null "http://10.96.0.40/slow?delay_ms=4000") || fail "504: curl failed"
if [[ $out == "HTTP/1.1 504"* && $(header x-shoal-error <<<"$out") == timeout ]]; then
	pass "a backend silent for longer than idle_timeout_ms: 504 with x-shoal-error: timeout"
else
	fail "slow backend: got $out"
fi
finish
