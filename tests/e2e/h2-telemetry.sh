#!/bin/bash
# h2-telemetry.sh: what shoal records of HTTP/2 and gRPC calls, with a
# python3-grpcio server on a2 (service "grpc", 10.96.0.40:50051, declared
# grpc, routes naming /shoal.Echo/Echo, /Trace and /Fail exactly) and a
# python3-grpcio client in a1, tracing on (sample_rate 1) to
# tests/tools/otlp-receiver.py:
#  - golden metrics per gRPC method: shoal_grpc_requests_total counts the
#    calls per (service, method, grpc_status): 20 Echo OK, 5 Fail
#    NOT_FOUND (5), 10 calls to two methods no route names as one
#    "other" UNIMPLEMENTED (12) series, 4 calls to a service without
#    endpoints as UNAVAILABLE (14) from shoal; the latency histogram per
#    method counts 20 Echo calls; no method label but the routes' paths
#    and "other"; promtool accepts the scrape;
#  - tracing: a call carrying a traceparent reaches the server with one
#    traceparent, the proxy's child in place of the client's (same trace,
#    a new span id), and the collector gets that span with the
#    incoming span as its parent, service, route, endpoint, HTTP status
#    and rpc.grpc.status_code;
#  - the dashboard's callers table counts a1's HTTP/2 calls to
#    default/grpc.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
"$PY" -c 'import grpc' 2>/dev/null || skip "missing python3-grpcio for $PY (scripts/setup.sh installs it)"
command -v promtool >/dev/null || skip "missing tool: promtool (scripts/setup.sh)"
RECEIVER=$(cd "$(dirname "$0")/../tools" && pwd)/otlp-receiver.py
COLLECTOR_PORT=4318

e2e_init
e2e_topology

# The server: Echo answers "ok", Trace answers the traceparent values it
# got (comma-joined), Fail aborts with NOT_FOUND; other methods get
# UNIMPLEMENTED from grpcio itself.
cat >"$LOGDIR/server.py" <<'PY'
import sys
from concurrent import futures
import grpc

def echo(req, ctx):
    return b"ok"

def trace(req, ctx):
    return ",".join(v for k, v in ctx.invocation_metadata() if k == "traceparent").encode()

def fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

h = {n: grpc.unary_unary_rpc_method_handler(f) for n, f in
     (("Echo", echo), ("Trace", trace), ("Fail", fail))}
srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shoal.Echo", h),))
srv.add_insecure_port("0.0.0.0:50051")
srv.start()
print("serving", flush=True)
srv.wait_for_termination()
PY
pod_spawn a2 "$LOGDIR/server.log" "$PY" "$LOGDIR/server.py"
wait_listen "${POD_NS[a2]}" 50051

write_config "
  - name: grpc
    vips: [10.96.0.40]
    ports: [{port: 50051, protocol: grpc}]
    endpoints: [{address: 10.77.1.3}]
    routes:
      - name: echo
        match: {path: {exact: /shoal.Echo/Echo}}
      - name: trace
        match: {path: {exact: /shoal.Echo/Trace}}
      - name: fail
        match: {path: {exact: /shoal.Echo/Fail}}
      - name: rest
        match: {path: {prefix: /shoal.Echo}}
  - name: nothing
    vips: [10.96.0.41]
    ports: [{port: 50051, protocol: grpc}]
    endpoints: []
tracing:
  enabled: true
  collector_url: http://127.0.0.1:$COLLECTOR_PORT/v1/traces
  sample_rate: 1.0
  batch_delay_ms: 100
  timeout_ms: 500"

spawn_in "$TEST_CG/agent" "$NS_A" "$LOGDIR/receiver.log" python3 "$RECEIVER" --port "$COLLECTOR_PORT"
wait_listen "$NS_A" "$COLLECTOR_PORT"
shoald_start
enroll a1

TRACE=4bf92f3577b34da6a3ce929d0e0e4736
PARENT=00f067aa0ba902b7
# The client: every call on one channel each; prints "CODE COUNT" per
# method and, last, "trace <what the server saw>".
out=$(pod_run a1 timeout 60 "$PY" -c "
import grpc
def calls(target, method, n, md=None):
    ch = grpc.insecure_channel(target)
    call = ch.unary_unary(method)
    codes = {}
    for _ in range(n):
        try:
            call(b'x', timeout=5, metadata=md)
            c = 'OK'
        except grpc.RpcError as e:
            c = e.code().name
        codes[c] = codes.get(c, 0) + 1
    print(method, ' '.join('%s=%d' % kv for kv in sorted(codes.items())))
calls('10.96.0.40:50051', '/shoal.Echo/Echo', 20)
calls('10.96.0.40:50051', '/shoal.Echo/Fail', 5)
calls('10.96.0.40:50051', '/shoal.Echo/Nope', 7)
calls('10.96.0.40:50051', '/other.Svc/Call', 3)
calls('10.96.0.41:50051', '/shoal.Echo/Echo', 4)
ch = grpc.insecure_channel('10.96.0.40:50051')
seen = ch.unary_unary('/shoal.Echo/Trace')(b'x', timeout=5, metadata=[
    ('traceparent', '00-$TRACE-$PARENT-01'), ('tracestate', 'vendor=x')])
print('trace', seen.decode())
" 2>"$LOGDIR/client.err") || fail "client failed: $(tail -3 "$LOGDIR/client.err")"
say "client: $(tr '\n' ';' <<<"$out")"
want="/shoal.Echo/Echo OK=20;/shoal.Echo/Fail NOT_FOUND=5;/shoal.Echo/Nope UNIMPLEMENTED=7;/other.Svc/Call UNIMPLEMENTED=3;/shoal.Echo/Echo UNAVAILABLE=4;"
[[ $(head -5 <<<"$out" | tr '\n' ';') == "$want" ]] && pass "the calls got the codes they should" ||
	fail "client codes: want '$want'"

# ---- metrics --------------------------------------------------------------------

metrics=$(in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN_ADDR/metrics")
printf '%s\n' "$metrics" >"$LOGDIR/metrics.txt"
# sample SERIES: the value of one exact series line, or "missing".
sample() { awk -v s="$1" '$1 == s { print $2; f = 1 } END { if (!f) print "missing" }' <<<"$metrics"; }
check() {
	local got
	got=$(sample "$1")
	[[ $got == "$2" ]] && pass "$1 = $got" || fail "$1 = $got, want $2"
}
check 'shoal_grpc_requests_total{service="default/grpc",method="/shoal.Echo/Echo",grpc_status="0"}' 20
check 'shoal_grpc_requests_total{service="default/grpc",method="/shoal.Echo/Fail",grpc_status="5"}' 5
check 'shoal_grpc_requests_total{service="default/grpc",method="other",grpc_status="12"}' 10
check 'shoal_grpc_requests_total{service="default/nothing",method="other",grpc_status="14"}' 4
check 'shoal_grpc_requests_total{service="default/grpc",method="/shoal.Echo/Trace",grpc_status="0"}' 1
check 'shoal_grpc_response_latency_seconds_count{service="default/grpc",method="/shoal.Echo/Echo"}' 20
check 'shoal_grpc_response_latency_seconds_bucket{service="default/grpc",method="/shoal.Echo/Echo",le="+Inf"}' 20
methods=$(grep -o '^shoal_grpc_[a-z_]*{[^}]*method="[^"]*"' <<<"$metrics" | sed 's/.*method="//;s/"$//' | sort -u | tr '\n' ' ')
[[ $methods == "/shoal.Echo/Echo /shoal.Echo/Fail /shoal.Echo/Trace other " ]] &&
	pass "method labels are the routes' exact paths and other only: $methods" ||
	fail "method labels: $methods"
# The HTTP families keep counting gRPC calls, their failures as HTTP would see them.
check 'shoal_http_responses_total{service="default/nothing",route="",backend="default/nothing",endpoint="",status_code="503",class="5xx"}' 4
if promtool check metrics <<<"$metrics" >"$LOGDIR/promtool.out" 2>&1; then
	pass "promtool accepts the scrape with the shoal_grpc_* families"
else
	fail "promtool: $(cat "$LOGDIR/promtool.out")"
fi

# ---- tracing --------------------------------------------------------------------

seen=$(sed -n 's/^trace //p' <<<"$out")
IFS=- read -r _ tid span flags <<<"$seen"
if [[ $seen != *,* && $tid == "$TRACE" && $span =~ ^[0-9a-f]{16}$ && $span != "$PARENT" && $flags == 01 ]]; then
	pass "the gRPC server got one child traceparent ($seen)"
else
	fail "the gRPC server saw traceparent '$seen'"
fi
got=""
for ((i = 0; i < 50; i++)); do
	got=$(in_ns "$NS_A" curl -sS --max-time 5 "http://127.0.0.1:$COLLECTOR_PORT/spans" | python3 -c '
import json, sys
for s in json.load(sys.stdin)["spans"]:
    if s["spanId"] == sys.argv[1]:
        a = s["attributes"]
        print(s["traceId"], s.get("parentSpanId") or "-", a.get("shoal.service"), a.get("shoal.route", "-"),
              a.get("shoal.endpoint"), a.get("http.method"), a.get("http.status_code"), a.get("rpc.system"),
              a.get("rpc.grpc.status_code"), a.get("error", False))' "$span")
	[[ -n $got ]] && break
	sleep 0.1
done
if [[ $got == "$TRACE $PARENT default/grpc trace 10.77.1.3:50051 POST 200 grpc 0 False" ]]; then
	pass "the collector got the gRPC call's span: $got"
else
	fail "span of $span: '$got'"
fi

# ---- callers --------------------------------------------------------------------

state=$(in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN_ADDR/dashboard/state")
edge=$(python3 -c '
import json, sys
st = json.loads(sys.argv[1])
for e in st["caller_edges"]:
    if e["caller"] == sys.argv[2] and e["service"] == "default/grpc":
        print(e["requests"], e["errors"])' "$state" "${POD_IP4[a1]}")
if [[ $edge == "36 0" ]]; then
	pass "callers: a1 -> default/grpc counts its 36 HTTP/2 calls, no 5xx"
else
	fail "callers: a1 -> default/grpc is '$edge', want '36 0'"
fi

if grep -qiE 'AddressSanitizer|runtime error' "$SHOALD_LOG"; then
	fail "shoald's log has a sanitizer report"
fi
finish
