#!/bin/bash
# Tracing end to end: shoald with tracing: enabled (sample_rate 1) in front
# of shoal-backend (which echoes the traceparent it got as
# x-seen-traceparent), exporting to tests/tools/otlp-receiver.py:
#  - an incoming W3C traceparent: the backend sees a child (same trace id,
#    a new span id, sampled), and the collector gets the span with the
#    incoming span as its parent and service, route, endpoint and status;
#  - a second hop: a call made with the context the backend saw (what an
#    instrumented backend would send on) continues the same trace, its
#    span the child of the first hop's; and the same through real pods:
#    a1 -> shoal -> relay on a2 (enrolled, passes the context on) -> shoal
#    -> shoal-backend on b1;
#  - no incoming context: a new trace, a root span; B3 in, the trace id kept;
#  - the collector down: spans are dropped and counted, and the median
#    request latency stays where it was with the collector up;
#  - the admin endpoint where the config's admin.listen says, and shoalctl
#    -c finding it there.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

RECEIVER=$(cd "$(dirname "$0")/../tools" && pwd)/otlp-receiver.py
COLLECTOR_PORT=4318
ADMIN=127.0.0.1:15029 # admin.listen below, not the default

http_topology a2 b1
# The relay: an application on a2 that calls the service "back" for every
# request, passing on the traceparent it got (as instrumented code would),
# and answers "<traceparent it got> <traceparent back's backend saw>".
cat >"$LOGDIR/relay.py" <<'PY'
import http.server, urllib.request
class Relay(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        tp = self.headers.get("traceparent", "")
        req = urllib.request.Request("http://10.96.0.26/hop2", headers={"traceparent": tp})
        with urllib.request.urlopen(req, timeout=5) as r:
            seen = r.headers.get("x-seen-traceparent", "")
        body = f"{tp} {seen}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 9090), Relay).serve_forever()
PY
pod_spawn a2 "$LOGDIR/relay.log" env -u http_proxy -u HTTP_PROXY python3 "$LOGDIR/relay.py"
wait_listen "${POD_NS[a2]}" 9090
write_config "
$(http_service front 10.96.0.25 9090 10.77.1.3)
$(http_service back 10.96.0.26 9080 10.77.2.2)
$(http_service api 10.96.0.20 9080 10.77.1.3)
    routes:
      - name: traced
        match: {path: {prefix: /t}}
tracing:
  enabled: true
  collector_url: http://127.0.0.1:$COLLECTOR_PORT/v1/traces
  sample_rate: 1.0
  batch_delay_ms: 100
  timeout_ms: 500
admin:
  listen: $ADMIN"

spawn_in "$TEST_CG/agent" "$NS_A" "$LOGDIR/receiver.log" python3 "$RECEIVER" --port "$COLLECTOR_PORT"
receiver_pid=$LAST_PID
wait_listen "$NS_A" "$COLLECTOR_PORT"
shoald_start
enroll a1
enroll a2

# seen_tp ARGS...: the traceparent the backend saw for a GET with ARGS.
seen_tp() { pod_curl a1 -o /dev/null -D - "$@" | header x-seen-traceparent; }
# spans_json: what the collector holds.
spans_json() { in_ns "$NS_A" curl -sS --max-time 5 "http://127.0.0.1:$COLLECTOR_PORT/spans"; }
# span_of SPAN_ID: one span as "trace parent service route endpoint status error", or "".
span_of() {
	spans_json | python3 -c '
import json, sys
for s in json.load(sys.stdin)["spans"]:
    if s["spanId"] == sys.argv[1]:
        a = s["attributes"]
        print(s["traceId"], s.get("parentSpanId") or "-", a.get("shoal.service"), a.get("shoal.route", "-"),
              a.get("shoal.endpoint"), a.get("http.status_code"), a.get("error", False))' "$1"
}
# wait_span SPAN_ID: span_of, once the exporter has sent it (up to 5 s).
wait_span() {
	local out="" i
	for ((i = 0; i < 50; i++)); do
		out=$(span_of "$1")
		[[ -n $out ]] && break
		sleep 0.1
	done
	echo "$out"
}

TRACE=4bf92f3577b34da6a3ce929d0e0e4736
PARENT=00f067aa0ba902b7
tp=$(seen_tp -H "traceparent: 00-$TRACE-$PARENT-01" -H "tracestate: vendor=x" "http://10.96.0.20/t/one")
IFS=- read -r _ tid hop1 flags <<<"$tp"
if [[ $tid == "$TRACE" && $hop1 =~ ^[0-9a-f]{16}$ && $hop1 != "$PARENT" && $flags == 01 ]]; then
	pass "hop 1: the backend got a child traceparent (trace $TRACE, span $hop1, sampled)"
else
	fail "hop 1: the backend saw traceparent '$tp'"
fi
span=$(wait_span "$hop1")
if [[ $span == "$TRACE $PARENT default/api traced 10.77.1.3:9080 200 False" ]]; then
	pass "hop 1: the collector got the span, parent $PARENT, service, route, endpoint and status"
else
	fail "hop 1: span '$span' (collector: $(spans_json | head -c 600))"
fi

# The second hop carries what the first backend received, as an instrumented
# backend calling the next service through its own node proxy would.
tp2=$(seen_tp -H "traceparent: $tp" "http://10.96.0.20/t/two")
IFS=- read -r _ tid2 hop2 _ <<<"$tp2"
span2=$(wait_span "$hop2")
if [[ $tid2 == "$TRACE" && $hop2 != "$hop1" && $span2 == "$TRACE $hop1 "* ]]; then
	pass "hop 2: same trace, and its span is the child of hop 1's span ($hop1 -> $hop2)"
else
	fail "hop 2: backend saw '$tp2', span '$span2'"
fi

# Two real hops: a1 -> shoal -> relay (a2) -> shoal -> b1.
out=$(pod_curl a1 -H "traceparent: 00-$TRACE-$PARENT-01" "http://10.96.0.25/")
read -r relay_tp b1_tp <<<"$out"
IFS=- read -r _ t1 s1 _ <<<"$relay_tp"
IFS=- read -r _ t2 s2 _ <<<"$b1_tp"
sp1=$(wait_span "$s1")
sp2=$(wait_span "$s2")
if [[ $t1 == "$TRACE" && $t2 == "$TRACE" && $sp1 == "$TRACE $PARENT default/front "* &&
	$sp2 == "$TRACE $s1 default/back - 10.77.2.2:9080 200 False" ]]; then
	pass "two real hops: one trace; the relay's call to back is a child of front's span ($PARENT -> $s1 -> $s2)"
else
	fail "two real hops: relay answered '$out'; spans '$sp1' / '$sp2'"
fi

tp3=$(seen_tp "http://10.96.0.20/other?status=503")
IFS=- read -r _ tid3 span3id flags3 <<<"$tp3"
span3=$(wait_span "$span3id")
if [[ $tid3 =~ ^[0-9a-f]{32}$ && $tid3 != "$TRACE" && $flags3 == 01 &&
	$span3 == "$tid3 - default/api - 10.77.1.3:9080 503 True" ]]; then
	pass "no incoming context: a new trace, a root span, no route, 503 marked as an error"
else
	fail "new trace: backend saw '$tp3', span '$span3'"
fi

B3TRACE=80f198ee56343ba864fe8b2a57d3eff7
tp4=$(seen_tp -H "b3: $B3TRACE-e457b5a2e4d86bd1-1" "http://10.96.0.20/t/b3")
[[ $tp4 == 00-$B3TRACE-*-01 ]] && pass "B3 in: the backend gets a W3C traceparent with the B3 trace id" ||
	fail "B3: backend saw traceparent '$tp4'"

metrics=$(in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN/metrics")
exported=$(awk '$1 == "shoal_trace_exported_total" { print $2 }' <<<"$metrics")
((${exported:-0} >= 3)) && pass "shoal_trace_exported_total = $exported" ||
	fail "shoal_trace_exported_total is '${exported:-missing}'"
if promtool check metrics <<<"$metrics" >"$LOGDIR/promtool.out" 2>&1; then
	pass "promtool accepts the scrape with the shoal_trace_* families"
else
	fail "promtool: $(cat "$LOGDIR/promtool.out")"
fi

# times N: N request times (ms, curl's time_total) through shoal, one a line.
times() {
	local i
	for ((i = 0; i < $1; i++)); do
		pod_curl a1 -o /dev/null -w '%{time_total}\n' "http://10.96.0.20/t/lat"
	done | awk '{ printf "%.3f\n", $1 * 1000 }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f\n", v[int((NR + 1) / 2)] }'; }
# Up and down in turns, so that the load of the machine weighs on both alike.
: >"$LOGDIR/lat-up"
: >"$LOGDIR/lat-down"
for round in 1 2 3; do
	times 15 >>"$LOGDIR/lat-up"
	stop_pid "$receiver_pid"
	times 15 >>"$LOGDIR/lat-down"
	if ((round < 3)); then
		spawn_in "$TEST_CG/agent" "$NS_A" "$LOGDIR/receiver.$round.log" python3 "$RECEIVER" --port "$COLLECTOR_PORT"
		receiver_pid=$LAST_PID
		wait_listen "$NS_A" "$COLLECTOR_PORT"
	fi
done
up=$(median <"$LOGDIR/lat-up")
down=$(median <"$LOGDIR/lat-down")
sleep 1 # one exporter round: the drops are counted
metrics=$(in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN/metrics")
dropped=$(awk '$1 == "shoal_trace_dropped_unreachable_total" { print $2 }' <<<"$metrics")
# Loopback requests take ~1 ms: allow 2 ms plus half again for noise.
if awk -v u="$up" -v d="$down" 'BEGIN { exit !(d <= u * 1.5 + 2) }'; then
	pass "collector down: p50 $down ms vs $up ms with it up, 45 requests each in 3 turns (no added latency)"
else
	fail "collector down: p50 $down ms vs $up ms with it up"
fi
((${dropped:-0} > 0)) && pass "collector down: spans dropped and counted (shoal_trace_dropped_unreachable_total = $dropped)" ||
	fail "shoal_trace_dropped_unreachable_total is '${dropped:-missing}'"
n=$(in_ns "$NS_A" timeout 20 "$SHOALCTL" -c "$CONFIG" --json services |
	python3 -c 'import json, sys; print([s["http"]["requests"] for s in json.load(sys.stdin)["services"] if s["name"] == "api"][0])' 2>&1)
((${n:-0} >= 84)) && pass "admin.listen from the config: shoalctl -c finds the agent on $ADMIN (api: $n requests)" ||
	fail "shoalctl -c $CONFIG --json services: $n"
finish
