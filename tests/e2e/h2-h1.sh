#!/bin/bash
# h2-h1.sh: HTTP/2 clients (curl --http2-prior-knowledge, nghttp, h2load)
# in a1 to a service whose endpoints speak HTTP/1.1 only (port declared
# h2c with upstream_protocol: http1): two HTTP/1.1-only servers
# (h2-h1-backend.py, which answers an HTTP/2 preface with a 400) on a2 and
# a3, all on node-a, through interception.
#  - an undeclared port with upstream_protocol: http1 translates its
#    HTTP/2 clients and passes its HTTP/1.1 ones through;
#  - GET, HEAD, POST with Content-Length (1 MiB, checksum) and chunked
#    (no Content-Length) with the client's trailers forwarded in the last
#    chunk; the request line and Host the server saw;
#  - chunked response trailers and a 103 reach the client as HTTP/2;
#  - keep-alive: 400 h2load requests on ONE client connection (4 streams
#    at a time) take far fewer HTTP/1.1 connections than requests, and
#    balancing is still per request: each endpoint gets >= 10 % (a
#    connection pinned to one endpoint would give the other none; PeakEWMA
#    may favour the faster one, so not an even split; a service of its
#    own, so that no earlier slow request weighs on one endpoint);
#  - a pooled connection the server closes unanswered as the request
#    arrives (its idle close crossing it): the request goes again on a
#    fresh connection and is answered;
#  - flow control: a client reading 256 KiB/s from a 256 MiB response
#    holds the server back (its bytes sent stay bounded) and shoald's
#    RSS grows by less than 24 MiB; a full-speed 16 MiB response arrives
#    intact;
#  - hostile responses: both Content-Length and Transfer-Encoding, or a
#    bad first chunk size, is a 502 bad-response; a bad chunk size after
#    data went to the client resets the stream; shoald serves on;
#  - a route's timeout_ms on a request the server never answers: a 504
#    timeout in time, and the server's connection is closed;
#  - a route's idle_timeout_ms: a stream the server never answers is a
#    504 after it, while a stream on the same client connection is
#    answered;
#  - retries on the other endpoint: a 503 from one HTTP/1.1-only endpoint
#    (a PUT with a 40 KiB body, replayed) and a refused connect (a port
#    nothing listens on at a3) are retried on a2 and answered 200;
#  - gRPC to such a port is UNAVAILABLE naming grpc-over-http1;
#  - and on the HTTP/2 upstream path (an h2c endpoint, h2-up-server.py on
#    python3-h2): the client's request trailers reach the endpoint, with
#    and without content-length, its 103 and 100 reach the client
#    before the 200, and a route's idle_timeout_ms cuts a stream the
#    endpoint never answers while another on the same connections is
#    answered.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

BACKEND_PY=$(dirname "$0")/h2-h1-backend.py
H2_PY=$(dirname "$0")/h2-up-server.py
for tool in curl h2load nghttp python3 sha256sum; do
	command -v "$tool" >/dev/null || skip "missing tool: $tool (scripts/setup.sh installs it)"
done
# Debian's python3-h2 is Debian's python3's (as h2.sh does for grpcio).
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
"$PY" -c 'import h2.connection' 2>/dev/null || skip "missing python3-h2 for $PY (scripts/setup.sh installs it)"

e2e_init
e2e_topology
for pod in a2 a3; do
	pod_spawn "$pod" "$LOGDIR/backend-$pod.log" python3 "$BACKEND_PY" "$pod" 8090
done
pod_spawn a2 "$LOGDIR/h2-up-a2.log" "$PY" "$H2_PY" a2 8091
# Only a2 listens on 8092: a3 refuses the connects of api-retry.
pod_spawn a2 "$LOGDIR/backend-a2-8092.log" python3 "$BACKEND_PY" a2 8092
for pod in a2 a3; do wait_listen "${POD_NS[$pod]}" 8090; done
wait_listen "${POD_NS[a2]}" 8091
wait_listen "${POD_NS[a2]}" 8092

write_config "
  - name: api
    vips: [10.96.0.50]
    ports:
      - {port: 80, target_port: 8090, protocol: h2c, upstream_protocol: http1}
      - {port: 81, target_port: 8090, protocol: grpc, upstream_protocol: http1}
      - {port: 82, target_port: 8090, upstream_protocol: http1}
    endpoints: [{address: 10.77.1.3}, {address: 10.77.1.5}]
    routes:
      - name: hang
        match: {path: {exact: /hang}}
        timeout_ms: 300
      - name: hang-idle
        match: {path: {exact: /hang-idle}}
        idle_timeout_ms: 300
  - name: api-one
    vips: [10.96.0.54]
    ports: [{port: 80, target_port: 8090, protocol: h2c, upstream_protocol: http1}]
    endpoints: [{address: 10.77.1.3}]
  - name: api-lb
    vips: [10.96.0.53]
    ports: [{port: 80, target_port: 8090, protocol: h2c, upstream_protocol: http1}]
    endpoints: [{address: 10.77.1.3}, {address: 10.77.1.5}]
  - name: api-503
    vips: [10.96.0.56]
    ports: [{port: 80, target_port: 8090, protocol: h2c, upstream_protocol: http1}]
    endpoints: [{address: 10.77.1.3}, {address: 10.77.1.5}]
  - name: api-retry
    vips: [10.96.0.55]
    ports: [{port: 80, target_port: 8092, protocol: h2c, upstream_protocol: http1}]
    endpoints: [{address: 10.77.1.3}, {address: 10.77.1.5}]
  - name: api2
    vips: [10.96.0.52]
    ports: [{port: 80, target_port: 8091, protocol: h2c}]
    endpoints: [{address: 10.77.1.3}]
    routes:
      - name: hang-idle
        match: {path: {exact: /hang}}
        idle_timeout_ms: 300"
shoald_start
enroll a1

# stat POD KEY: a counter of POD's backend, read over its own loopback.
stat() {
	in_ns "${POD_NS[$1]}" curl -sS --max-time 5 "http://127.0.0.1:8090/_stats" |
		python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}
h2curl() { pod_run a1 curl -sS --max-time 20 --http2-prior-knowledge "$@"; }
URL=http://10.96.0.50

# ---- requests and their translation -------------------------------------------

out=$(h2curl -D "$LOGDIR/get.h" "$URL/hello") || fail "GET: curl failed"
grep -q '^HTTP/2 200' "$LOGDIR/get.h" || fail "GET: not an HTTP/2 200: $(head -1 "$LOGDIR/get.h")"
[[ $out =~ ^hello\ from\ a[23]$ ]] || fail "GET: body '$out'"
grep -qi '^keep-alive:\|^connection:' "$LOGDIR/get.h" && fail "GET: a hop-by-hop field reached the client"
for pod in a2 a3; do
	head=$(stat "$pod" last_head)
	[[ -z $head ]] && continue
	grep -q '^GET /hello HTTP/1.1$' <<<"$head" || fail "GET: request line at $pod: $head"
	grep -q '^host: 10.96.0.50$' <<<"$head" || fail "GET: no Host from :authority at $pod: $head"
done
pass "GET: HTTP/2 200 from '$out', sent as HTTP/1.1 with Host from :authority"

# An undeclared port: the HTTP/2 preface is detected and translated, and
# an HTTP/1.1 client on the same port goes through as HTTP/1.1.
h0=$(proxy_metric shoal_proxy_h2_to_h1_requests_total)
out=$(h2curl -D "$LOGDIR/detect.h" "$URL:82/hello") || fail "detect: curl failed"
grep -q '^HTTP/2 200' "$LOGDIR/detect.h" || fail "detect: not an HTTP/2 200: $(head -1 "$LOGDIR/detect.h")"
[[ $out =~ ^hello\ from ]] || fail "detect: body '$out'"
out=$(pod_run a1 curl -sS --max-time 10 --http1.1 -D "$LOGDIR/detect1.h" "$URL:82/hello") || fail "detect: HTTP/1.1 curl failed"
grep -q '^HTTP/1.1 200' "$LOGDIR/detect1.h" || fail "detect: HTTP/1.1 client: $(head -1 "$LOGDIR/detect1.h")"
(($(proxy_metric shoal_proxy_h2_to_h1_requests_total) - h0 == 1)) ||
	fail "detect: translated $(($(proxy_metric shoal_proxy_h2_to_h1_requests_total) - h0)) requests, want 1 (the HTTP/2 one)"
pass "an undeclared port: the HTTP/2 client is translated, the HTTP/1.1 one goes through as HTTP/1.1"

h2curl -I "$URL/hello" >"$LOGDIR/head.h" || fail "HEAD: curl failed"
grep -q '^HTTP/2 200' "$LOGDIR/head.h" || fail "HEAD: $(head -1 "$LOGDIR/head.h")"
pass "HEAD: 200, no body awaited"

head -c $((1 << 20)) /dev/urandom >"$LOGDIR/body.bin"
want="$((1 << 20)) $(sha256sum "$LOGDIR/body.bin" | cut -d' ' -f1)"
out=$(h2curl -D "$LOGDIR/post.h" --data-binary @"$LOGDIR/body.bin" "$URL/echo") ||
	fail "POST: curl failed"
[[ $out == "$want" ]] || fail "POST (Content-Length): server got '$out', want '$want'"
[[ $(header x-request-framing <"$LOGDIR/post.h") == length ]] ||
	fail "POST: not sent with Content-Length: $(header x-request-framing <"$LOGDIR/post.h")"
pass "POST 1 MiB with Content-Length: the server got it whole ($want)"

pod_run a1 timeout 20 nghttp -v --no-content-length --trailer 'x-sum: 42' -d "$LOGDIR/body.bin" \
	"$URL/echo" >"$LOGDIR/chunked.out" 2>&1 || fail "POST chunked: nghttp failed: $(tail -3 "$LOGDIR/chunked.out")"
grep -q "$want" "$LOGDIR/chunked.out" || fail "POST chunked: body not whole: $(grep -v '^\[' "$LOGDIR/chunked.out" | tail -2)"
grep -q 'x-request-framing: chunked' "$LOGDIR/chunked.out" || fail "POST chunked: not chunked upstream"
grep -q 'x-got-trailers: x-sum=42' "$LOGDIR/chunked.out" ||
	fail "POST chunked: the request trailer did not reach the server: $(grep x-got-trailers "$LOGDIR/chunked.out")"
pass "POST without Content-Length: chunked upstream, whole, trailer x-sum forwarded"

pod_run a1 timeout 20 nghttp -v "$URL/trail" >"$LOGDIR/trail.out" 2>&1 || fail "trailers: nghttp failed"
grep -q 'hello world' "$LOGDIR/trail.out" || fail "trailers: body missing"
grep -q 'x-checksum: abc123' "$LOGDIR/trail.out" || fail "trailers: x-checksum missing: $(tail -5 "$LOGDIR/trail.out")"
grep -q 'x-count: 2' "$LOGDIR/trail.out" || fail "trailers: x-count missing"
pass "chunked response trailers reach the client as HTTP/2 trailers"

pod_run a1 timeout 20 nghttp -v "$URL/hints" >"$LOGDIR/hints.out" 2>&1 || fail "103: nghttp failed"
grep -q ':status: 103' "$LOGDIR/hints.out" || fail "103: not forwarded: $(grep ':status' "$LOGDIR/hints.out")"
grep -q 'link: </style.css>; rel=preload' "$LOGDIR/hints.out" || fail "103: its link field is missing"
grep -q ':status: 200' "$LOGDIR/hints.out" || fail "103: no final 200 after it"
pass "a 103 Early Hints reaches the client before the 200"

# ---- keep-alive and per-request balancing --------------------------------------

c0=$(($(stat a2 conns) + $(stat a3 conns)))
r2=$(stat a2 requests) r3=$(stat a3 requests)
pool0=$(proxy_metric shoal_proxy_pool_reused_total)
N=400
# A service of its own: its endpoints' estimates have seen only these
# requests (api's 1 MiB uploads would keep one costly for seconds).
pod_run a1 timeout 60 h2load -n $N -c 1 -m 4 "http://10.96.0.53/hello" >"$LOGDIR/h2load.out" 2>&1 ||
	fail "h2load failed: $(tail -5 "$LOGDIR/h2load.out")"
grep -q "status codes: $N 2xx" "$LOGDIR/h2load.out" ||
	fail "h2load: not all 2xx: $(grep -E 'requests:|status codes' "$LOGDIR/h2load.out")"
conns=$(($(stat a2 conns) + $(stat a3 conns) - c0))
d2=$(($(stat a2 requests) - r2)) d3=$(($(stat a3 requests) - r3))
pool=$(($(proxy_metric shoal_proxy_pool_reused_total) - pool0))
say "h2load $N requests: a2 $d2, a3 $d3, HTTP/1.1 connections $conns, pooled reuses $pool"
((conns * 8 <= N)) || fail "keep-alive: $conns connections for $N requests (want <= $((N / 8)))"
((d2 * 10 >= N && d3 * 10 >= N)) || fail "balance: a2 $d2, a3 $d3 of $N on one connection (want >= 10 % each)"
pass "keep-alive: $N requests on $conns HTTP/1.1 connections; one client connection balanced per request: a2 $d2 / a3 $d3"

# A pooled connection the server closes as the next request arrives: sent
# again on a fresh one (two requests on one client connection, so one
# worker and its pool; one endpoint).
retries0=$(proxy_metric shoal_proxy_http_retries_total)
# (h2load one at a time: curl 7.88 fails to reuse a prior-knowledge connection.)
pod_run a1 timeout 20 h2load -n 2 -c 1 -m 1 "http://10.96.0.54/flaky" >"$LOGDIR/stale.out" 2>&1 ||
	fail "stale: h2load failed: $(tail -3 "$LOGDIR/stale.out")"
grep -q "status codes: 2 2xx" "$LOGDIR/stale.out" ||
	fail "stale: $(grep -E 'requests:|status codes' "$LOGDIR/stale.out" | tr '\n' ' ')"
[[ $(stat a2 flaky_dropped) == 1 ]] || fail "stale: the server dropped $(stat a2 flaky_dropped) requests, want 1"
retries=$(($(proxy_metric shoal_proxy_http_retries_total) - retries0))
((retries == 1)) || fail "stale: http_retries grew by $retries, want 1"
pass "a reused connection closed under the request: sent again on a fresh one, answered"

# ---- flow control: a slow reader holds the server back -------------------------

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$SHOALD_PID/status"; }
rss0=$(rss) sent0=$(($(stat a2 big_sent) + $(stat a3 big_sent)))
BIG=$((256 << 20))
pod_spawn a1 "$LOGDIR/slow.out" curl -sS --http2-prior-knowledge --limit-rate 256k \
	-o /dev/null "$URL/big?n=$BIG"
SLOW=$LAST_PID
rss_max=$rss0
for ((i = 0; i < 40; i++)); do
	sleep 0.1
	r=$(rss)
	((r > rss_max)) && rss_max=$r
done
sent=$(($(stat a2 big_sent) + $(stat a3 big_sent) - sent0))
stop_pid "$SLOW"
say "slow reader: server sent $((sent >> 20)) MiB of $((BIG >> 20)) in 4 s; shoald RSS $((rss0 >> 10)) -> $((rss_max >> 10)) MiB"
((sent < BIG / 4)) || fail "flow control: the server sent $((sent >> 20)) MiB to a client reading 256 KiB/s"
(((rss_max - rss0) < 24 * 1024)) || fail "flow control: shoald grew by $(((rss_max - rss0) >> 10)) MiB"
pass "flow control: a slow reader held the server to $((sent >> 20)) MiB, shoald grew $(((rss_max - rss0) >> 10)) MiB"

want=$(python3 -c "
import hashlib; b = bytes(range(256)) * 256; n = 16 << 20; h = hashlib.sha256()
while n: k = min(n, len(b)); h.update(b[:k]); n -= k
print(h.hexdigest())")
got=$(h2curl "$URL/big?n=$((16 << 20))" | sha256sum | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "16 MiB response: checksum $got, want $want"
pass "a 16 MiB chunked response arrives intact at full speed"

# ---- hostile responses ---------------------------------------------------------

h2curl -D "$LOGDIR/smuggle.h" -o /dev/null "$URL/smuggle" || true
grep -q '^HTTP/2 502' "$LOGDIR/smuggle.h" || fail "smuggle: not a 502: $(head -1 "$LOGDIR/smuggle.h")"
[[ $(header x-shoal-error <"$LOGDIR/smuggle.h") == bad-response ]] || fail "smuggle: x-shoal-error"
pass "Content-Length with Transfer-Encoding from the server: 502 bad-response"

h2curl -D "$LOGDIR/badchunk.h" -o /dev/null "$URL/badchunk" || true
grep -q '^HTTP/2 502' "$LOGDIR/badchunk.h" || fail "bad chunk: not a 502: $(head -1 "$LOGDIR/badchunk.h")"
[[ $(header x-shoal-error <"$LOGDIR/badchunk.h") == bad-response ]] || fail "bad chunk: x-shoal-error"
pass "a bad first chunk size (in the bytes that came with the head): 502 bad-response"

if h2curl -o /dev/null "$URL/badchunk-late" 2>"$LOGDIR/badchunk.err"; then
	fail "bad chunk after data: curl saw a complete response"
fi
say "bad chunk after data: curl: $(tail -1 "$LOGDIR/badchunk.err")"
out=$(h2curl "$URL/hello") || fail "after the hostile responses: GET failed"
pass "a bad chunk size after data went out resets the stream; shoald serves on ($out)"

# ---- the deadline -----------------------------------------------------------------

t0=$(date +%s%N)
h2curl -D "$LOGDIR/hang.h" -o /dev/null "$URL/hang" || fail "deadline: curl failed"
ms=$((($(date +%s%N) - t0) / 1000000))
grep -q '^HTTP/2 504' "$LOGDIR/hang.h" || fail "deadline: not a 504: $(head -1 "$LOGDIR/hang.h")"
[[ $(header x-shoal-error <"$LOGDIR/hang.h") == timeout ]] || fail "deadline: x-shoal-error"
((ms >= 300 && ms < 1500)) || fail "deadline: answered after $ms ms (route timeout_ms 300)"
for ((i = 0; i < 20; i++)); do
	(($(stat a2 hang_closed) + $(stat a3 hang_closed) >= 1)) && break
	sleep 0.1
done
(($(stat a2 hang_closed) + $(stat a3 hang_closed) >= 1)) || fail "deadline: the server's connection stayed open"
pass "deadline: a route's timeout_ms 300 is a 504 timeout after $ms ms, and the HTTP/1.1 connection is closed"

# ---- a route's idle timeout, per stream --------------------------------------------

# Two streams on one client connection (nghttp multiplexes its URIs): the
# silent one is cut after idle_timeout_ms, the other is answered.
hc0=$(($(stat a2 hang_closed) + $(stat a3 hang_closed)))
t0=$(date +%s%N)
pod_run a1 timeout 20 nghttp -v "$URL/hang-idle" "$URL/hello" >"$LOGDIR/idle.out" 2>&1 || true
ms=$((($(date +%s%N) - t0) / 1000000))
grep -q ':status: 504' "$LOGDIR/idle.out" || fail "idle: no 504: $(grep ':status' "$LOGDIR/idle.out" | tr '\n' ' ')"
grep -q ':status: 200' "$LOGDIR/idle.out" || fail "idle: the other stream got no 200: $(grep ':status' "$LOGDIR/idle.out" | tr '\n' ' ')"
grep -q 'x-shoal-error: timeout' "$LOGDIR/idle.out" || fail "idle: the 504 is not the proxy's timeout"
grep -q '^hello from a[23]$' "$LOGDIR/idle.out" || fail "idle: the other stream's body is missing"
[[ $(grep -c 'recv HEADERS frame' "$LOGDIR/idle.out") -ge 2 ]] || fail "idle: not two streams answered"
((ms >= 300 && ms < 1500)) || fail "idle: done after $ms ms (route idle_timeout_ms 300)"
for ((i = 0; i < 20; i++)); do
	(($(stat a2 hang_closed) + $(stat a3 hang_closed) > hc0)) && break
	sleep 0.1
done
(($(stat a2 hang_closed) + $(stat a3 hang_closed) > hc0)) || fail "idle: the server's connection stayed open"
pass "idle: a route's idle_timeout_ms 300 cut the silent stream (504 timeout after $ms ms) and its HTTP/1.1 connection; the other stream on the connection got its 200"

# ---- retries on another HTTP/1.1-only endpoint ------------------------------------

# A 503 from a3 (PUT, idempotent; 40 KiB, within retries.max_body_bytes):
# tried again on a2 with the whole body, until a3 was picked at least once.
# A service of its own: the failures above (502s, timeouts) may have
# ejected an endpoint of api, and a retry with no other candidate goes
# back to the one it tried.
head -c $((40 << 10)) /dev/urandom >"$LOGDIR/put.bin"
want="$((40 << 10)) $(sha256sum "$LOGDIR/put.bin" | cut -d' ' -f1) from a2"
r0=$(proxy_metric shoal_proxy_http_retries_total) u0=$(stat a3 unavailable)
for ((i = 0; i < 20; i++)); do
	out=$(h2curl -D "$LOGDIR/put.h" -X PUT --data-binary @"$LOGDIR/put.bin" "http://10.96.0.56/only-a2") ||
		fail "retry 503: curl failed"
	grep -q '^HTTP/2 200' "$LOGDIR/put.h" || fail "retry 503: $(head -1 "$LOGDIR/put.h") (request $i)"
	[[ $out == "$want" ]] || fail "retry 503: a2 got '$out', want '$want'"
	(($(stat a3 unavailable) > u0)) && ((i >= 3)) && break
done
u=$(($(stat a3 unavailable) - u0)) r=$(($(proxy_metric shoal_proxy_http_retries_total) - r0))
((u >= 1)) || fail "retry 503: a3 was never picked in $((i + 1)) requests"
((r >= u)) || fail "retry 503: $u answers 503 from a3, $r retries"
pass "retry: $u of $((i + 1)) PUTs met a3's 503 and were retried on a2 with their 40 KiB body: all 200"

# A refused connect (nothing on 8092 at a3): the stream goes on to a2.
r0=$(proxy_metric shoal_proxy_http_retries_total)
pod_run a1 timeout 30 h2load -n 20 -c 1 -m 4 "http://10.96.0.55/hello" >"$LOGDIR/refused.out" 2>&1 ||
	fail "retry connect: h2load failed: $(tail -3 "$LOGDIR/refused.out")"
grep -q "status codes: 20 2xx" "$LOGDIR/refused.out" ||
	fail "retry connect: $(grep -E 'requests:|status codes' "$LOGDIR/refused.out" | tr '\n' ' ')"
r=$(($(proxy_metric shoal_proxy_http_retries_total) - r0))
((r >= 1)) || fail "retry connect: no retry counted (a3 never picked?)"
pass "retry: streams whose connect to a3 was refused went on to a2 ($r retries): 20 of 20 2xx"

# ---- gRPC is refused -------------------------------------------------------------

h2curl -D "$LOGDIR/grpc.h" -o /dev/null -H 'content-type: application/grpc' -H 'te: trailers' \
	--data-binary '' "http://10.96.0.50:81/pkg.Svc/Method" || fail "gRPC: curl failed"
[[ $(header grpc-status <"$LOGDIR/grpc.h") == 14 ]] || fail "gRPC: grpc-status $(header grpc-status <"$LOGDIR/grpc.h")"
[[ $(header grpc-message <"$LOGDIR/grpc.h") == "shoal: grpc-over-http1" ]] ||
	fail "gRPC: grpc-message '$(header grpc-message <"$LOGDIR/grpc.h")'"
pass "gRPC to HTTP/1.1-only endpoints: UNAVAILABLE, shoal: grpc-over-http1"

# ---- the HTTP/2 upstream path: request trailers and 1xx ---------------------------

URL2=http://10.96.0.52
pod_run a1 timeout 20 nghttp -v --no-content-length --trailer 'x-sum: 42' -d "$LOGDIR/body.bin" \
	"$URL2/echo" >"$LOGDIR/h2-trailers.out" 2>&1 || fail "h2 trailers: nghttp failed: $(tail -3 "$LOGDIR/h2-trailers.out")"
grep -q 'x-got-trailers: x-sum=42' "$LOGDIR/h2-trailers.out" ||
	fail "h2 trailers: the endpoint got $(grep -o 'x-got-trailers: .*' "$LOGDIR/h2-trailers.out")"
grep -q "^$((1 << 20))\$" "$LOGDIR/h2-trailers.out" || fail "h2 trailers: the body did not arrive whole"
pod_run a1 timeout 20 nghttp -v --trailer 'x-sum: 7' -d "$LOGDIR/body.bin" \
	"$URL2/echo" >"$LOGDIR/h2-trailers-cl.out" 2>&1 || fail "h2 trailers (content-length): nghttp failed"
grep -q 'x-got-trailers: x-sum=7' "$LOGDIR/h2-trailers-cl.out" ||
	fail "h2 trailers (content-length): the endpoint got $(grep -o 'x-got-trailers: .*' "$LOGDIR/h2-trailers-cl.out")"
pass "HTTP/2 endpoint: the client's request trailers arrive, with and without content-length"

pod_run a1 timeout 20 nghttp -v "$URL2/hints" >"$LOGDIR/h2-hints.out" 2>&1 || fail "h2 1xx: nghttp failed"
grep -q ':status: 103' "$LOGDIR/h2-hints.out" || fail "h2 1xx: no 103: $(grep ':status' "$LOGDIR/h2-hints.out")"
grep -q 'link: </h2.css>; rel=preload' "$LOGDIR/h2-hints.out" || fail "h2 1xx: the 103's link is missing"
grep -q ':status: 100' "$LOGDIR/h2-hints.out" || fail "h2 1xx: no 100"
[[ $(grep -o ':status: [0-9]*' "$LOGDIR/h2-hints.out" | tr '\n' ' ') == ":status: 103 :status: 100 :status: 200 " ]] ||
	fail "h2 1xx: statuses in order: $(grep -o ':status: [0-9]*' "$LOGDIR/h2-hints.out" | tr '\n' ' ')"
grep -q '^hinted$' "$LOGDIR/h2-hints.out" || fail "h2 1xx: the final body is missing"
pass "HTTP/2 endpoint: its 103 and 100 reach the client before the 200"

t0=$(date +%s%N)
pod_run a1 timeout 20 nghttp -v "$URL2/hang" "$URL2/echo" >"$LOGDIR/h2-idle.out" 2>&1 || true
ms=$((($(date +%s%N) - t0) / 1000000))
grep -q ':status: 504' "$LOGDIR/h2-idle.out" || fail "h2 idle: no 504: $(grep ':status' "$LOGDIR/h2-idle.out" | tr '\n' ' ')"
grep -q ':status: 200' "$LOGDIR/h2-idle.out" || fail "h2 idle: the other stream got no 200"
grep -q 'x-shoal-error: timeout' "$LOGDIR/h2-idle.out" || fail "h2 idle: the 504 is not the proxy's timeout"
((ms >= 300 && ms < 1500)) || fail "h2 idle: done after $ms ms (route idle_timeout_ms 300)"
pass "HTTP/2 endpoint: a route's idle_timeout_ms 300 cut the stream it never answered (504 after $ms ms); the other stream on the same connections got its 200"

(($(stat a2 h2_preface) + $(stat a3 h2_preface) == 0)) || fail "a server saw an HTTP/2 preface"
[[ $(proxy_metric shoal_proxy_h2_to_h1_requests_total) -gt $N ]] ||
	fail "h2_to_h1_requests: $(proxy_metric shoal_proxy_h2_to_h1_requests_total)"
finish
