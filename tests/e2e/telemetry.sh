#!/bin/bash
# Telemetry end to end: shoald's admin endpoint on node-a's loopback serves
# /healthz, /readyz and /metrics (plain and gzip); the exposition passes
# promtool; the kernel's counters move with real traffic; HTTP traffic
# through an http service shows in the golden metrics (requests, status
# classes, latency buckets) and opaque TCP in the tcp_* ones; and a real
# Prometheus server, on the same loopback, scrapes shoald and answers
# queries with the service's intercepted-connect and HTTP request counts.
source "$(dirname "$0")/lib.sh"

ADMIN=127.0.0.1:15020
PROM=127.0.0.1:9090

command -v promtool >/dev/null || skip "promtool missing (Debian package prometheus; scripts/setup.sh installs it)"
command -v prometheus >/dev/null || skip "prometheus missing (scripts/setup.sh installs it)"

http_topology a2 b1
# api: two endpoints, a named route for /slow, the rest on no route.
write_config "
$(http_service api 10.96.0.20 9080 10.77.1.3 10.77.2.2)
    routes:
      - name: slow
        match: {path: {prefix: /slow}}"
shoald_start
enroll a1

admin_get() { in_ns "$NS_A" curl -sS --max-time 5 "$@"; }

[[ $(admin_get "http://$ADMIN/healthz") == ok ]] && pass "/healthz answers ok" || fail "/healthz"
[[ $(admin_get "http://$ADMIN/readyz") == ready ]] && pass "/readyz answers ready" || fail "/readyz"
code=$(admin_get -o /dev/null -w '%{http_code}' -X POST "http://$ADMIN/metrics")
[[ $code == 405 ]] && pass "POST /metrics is refused (405)" || fail "POST /metrics gave $code"
if in_ns "$NS_A" ss -Hltn "sport = :15020" | grep -q "127.0.0.1:15020"; then
	pass "admin listens on loopback only"
else
	fail "admin listener: $(in_ns "$NS_A" ss -Hltn "sport = :15020")"
fi

for i in 1 2 3 4 5; do
	hello a1 10.96.0.10:80 || fail "hello $i through the proxy failed: $HELLO_OUT"
done

# HTTP: 10 x 200, 3 x 503, 2 x 404 on no route, 2 slow (150 ms) on route slow.
for i in $(seq 10); do pod_curl a1 -o /dev/null "http://10.96.0.20/ok/$i" || fail "GET /ok/$i"; done
for i in 1 2 3; do pod_curl a1 -o /dev/null "http://10.96.0.20/bad?status=503" || fail "GET 503"; done
for i in 1 2; do pod_curl a1 -o /dev/null "http://10.96.0.20/missing?status=404" || fail "GET 404"; done
for i in 1 2; do pod_curl a1 -o /dev/null "http://10.96.0.20/slow?delay_ms=150" || fail "GET /slow"; done

metrics=$LOGDIR/metrics.txt
admin_get "http://$ADMIN/metrics" >"$metrics"
if promtool check metrics <"$metrics" >"$LOGDIR/promtool.out" 2>&1; then
	pass "promtool check metrics accepts a live scrape ($(wc -l <"$metrics") lines)"
else
	fail "promtool check metrics: $(cat "$LOGDIR/promtool.out")"
fi
value() { awk -v m="$1" '$1 == m { print $2 }' "$metrics"; }
n=$(value 'shoal_datapath_service_intercepted_total{service="default/web"}')
((${n:-0} >= 5)) && pass "shoal_datapath_service_intercepted_total{service=\"default/web\"} = $n after 5 calls" ||
	fail "service intercepted metric is '${n:-missing}', expected >= 5"
[[ $(value shoal_datapath_up) == 1 ]] && pass "shoal_datapath_up 1" || fail "shoal_datapath_up is not 1"
acc=$(value shoal_proxy_accepted_total)
((${acc:-0} >= 5)) && pass "shoal_proxy_accepted_total = $acc" || fail "shoal_proxy_accepted_total is '${acc:-missing}'"

# sum_samples REGEX: the sum of every sample whose name{labels} matches REGEX.
sum_samples() { awk -v re="$1" '$1 ~ re { s += $2 } END { print s + 0 }' "$metrics"; }
api='service="default/api"'
n=$(sum_samples "^shoal_http_requests_total[{]$api,")
((n == 17)) && pass "shoal_http_requests_total for default/api sums to 17 over routes and endpoints" ||
	fail "shoal_http_requests_total for default/api is $n, expected 17: $(grep '^shoal_http_requests_total' "$metrics")"
ok=$(sum_samples "^shoal_http_responses_total[{]$api,.*class=\"2xx\"")
e5=$(sum_samples "^shoal_http_responses_total[{]$api,.*status_code=\"503\",class=\"5xx\"")
e4=$(sum_samples "^shoal_http_responses_total[{]$api,.*status_code=\"404\",class=\"4xx\"")
[[ "$ok $e5 $e4" == "12 3 2" ]] && pass "responses by class: 12 x 2xx, 3 x 503 (5xx), 2 x 404 (4xx)" ||
	fail "responses by class: 2xx=$ok 503=$e5 404=$e4, expected 12 3 2"
eps=$(grep -c "^shoal_http_requests_total[{]$api,route=\"\",backend=\"default/api\",endpoint=\"10.77.[12].[23]\"}" "$metrics" || true)
((eps == 2)) && pass "requests are labelled per endpoint (both endpoints of api have a series)" ||
	fail "endpoint series: $(grep '^shoal_http_requests_total' "$metrics")"
slow_le01=$(sum_samples "^shoal_http_response_latency_seconds_bucket[{]$api,route=\"slow\",.*le=\"0.1\"")
slow_le02=$(sum_samples "^shoal_http_response_latency_seconds_bucket[{]$api,route=\"slow\",.*le=\"0.2\"")
slow_inf=$(sum_samples "^shoal_http_response_latency_seconds_count[{]$api,route=\"slow\",")
[[ "$slow_le01 $slow_le02 $slow_inf" == "0 2 2" ]] &&
	pass "latency histogram: the 2 requests of 150 ms are in le=0.2, not in le=0.1 (route slow)" ||
	fail "latency buckets of route slow: le=0.1 $slow_le01, le=0.2 $slow_le02, count $slow_inf"
web='service="default/web"'
opened=$(sum_samples "^shoal_tcp_open_total[{]$web}")
closed=$(sum_samples "^shoal_tcp_close_total[{]$web}")
rd=$(sum_samples "^shoal_tcp_read_bytes_total[{]$web}")
wr=$(sum_samples "^shoal_tcp_write_bytes_total[{]$web}")
# hello's server speaks first and the client sends nothing: bytes flow one way.
((opened >= 5 && closed >= 5 && wr > 0)) &&
	pass "opaque TCP to web: $opened opened, $closed closed, $rd bytes read, $wr written" ||
	fail "tcp metrics of web: open $opened close $closed read $rd write $wr"
n=$(grep -cE '^shoal_endpoint_latency_estimate_seconds[{]service="default/api",endpoint="10\.77\.[12]\.[23]"} [0-9.]+$' "$metrics" || true)
m=$(grep -cE '^shoal_endpoint_ejected[{]service="default/api",endpoint="[0-9.]+"} [01]$' "$metrics" || true)
((n == 2 && m == 2)) && pass "per-endpoint balancer state: estimate and ejected for both endpoints of api" ||
	fail "endpoint state metrics: $(grep '^shoal_endpoint_' "$metrics")"
[[ $(sum_samples '^shoal_http_series_overflow_total$') == 0 ]] && pass "no HTTP series overflow" ||
	fail "HTTP series overflow: $(grep '^shoal_http_series' "$metrics")"

# The /debug pages: JSON with the same figures. (The 503s may have opened
# a breaker: any state is fine, it must be there.)
admin_get "http://$ADMIN/debug/services" >"$LOGDIR/services.json"
admin_get "http://$ADMIN/debug/endpoints" >"$LOGDIR/endpoints.json"
admin_get "http://$ADMIN/debug/config" >"$LOGDIR/config.json"
got=$(python3 - "$LOGDIR" <<'PY'
import json, sys
d = sys.argv[1]
svc = {s["name"]: s for s in json.load(open(d + "/services.json"))["services"]}
eps = [e for e in json.load(open(d + "/endpoints.json"))["endpoints"] if e["service"] == "api"]
cfg = json.load(open(d + "/config.json"))
api = svc["api"]
print(api["http"]["requests"], api["http"]["responses"]["2xx"], api["http"]["responses"]["5xx"],
      sum(e["http"]["requests"] for e in eps), len(eps), all(e.get("breaker") in ("closed", "open", "half-open") for e in eps),
      "estimate_ms" in eps[0] and "in_flight" in eps[0], svc["web"]["tcp"]["opened"] >= 5,
      cfg["admin"]["listen"], [s["name"] for s in cfg["services"]])
PY
)
if [[ $got == "17 12 3 17 2 True True True 127.0.0.1:15020 ['web', 'api']" ]]; then
	pass "/debug/services, /debug/endpoints and /debug/config: the same counts, breaker state and estimate per endpoint, the config"
else
	fail "/debug pages: $got"
fi

gz=$(admin_get -H 'Accept-Encoding: gzip' -D - -o "$LOGDIR/metrics.gz" "http://$ADMIN/metrics")
if grep -qi '^content-encoding: gzip' <<<"$gz" && grep -q '^shoal_build_info' <<<"$(gunzip -c "$LOGDIR/metrics.gz")"; then
	pass "/metrics is gzipped when the scraper asks"
else
	fail "gzip: headers were: $gz"
fi

bpf_out=$(ctl bpf)
links=$(grep -cE '^(connect[46]|getpeername[46]|sockops|sk_msg) ' <<<"$bpf_out" || true)
if ((links == 6)) && grep -q 'shoal_sk_msg .* map shoal_shortcut' <<<"$bpf_out" &&
	grep -qE '^shoal_services +[0-9]+ +hash +3 ' <<<"$bpf_out"; then
	pass "shoalctl bpf lists the 6 links with their programs and the maps with entry counts (shoal_services: 3 keys, web's v4 and v6 VIP, api's v4)"
else
	fail "shoalctl bpf: $bpf_out"
fi

# A real Prometheus, scraping every second.
# It loads the shipped rules (dashboards/prometheus/, docs/dashboards.md),
# so that their recording rules are checked against the live series.
cat >"$LOGDIR/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$(cd "$(dirname "$0")/../.." && pwd)/dashboards/prometheus/shoal-rules.yaml"]
scrape_configs:
  - job_name: shoald
    static_configs: [{targets: ["$ADMIN"]}]
EOF
spawn_in "$TEST_CG/agent" "$NS_A" "$LOGDIR/prometheus.log" prometheus \
	--config.file="$LOGDIR/prometheus.yml" --storage.tsdb.path="$LOGDIR/tsdb" \
	--web.listen-address="$PROM"
prom_pid=$LAST_PID
query='shoal_datapath_service_intercepted_total{service="default/web"}'
got=""
for ((i = 0; i < 60; i++)); do
	got=$(admin_get -G "http://$PROM/api/v1/query" --data-urlencode "query=$query" 2>/dev/null |
		python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true)
	[[ -n $got ]] && break
	sleep 0.5
done
if [[ -n $got ]] && ((got >= 5)); then
	pass "Prometheus scraped shoald: $query = $got"
else
	fail "Prometheus query returned '${got:-nothing}' (log: $LOGDIR/prometheus.log)"
fi
query='sum(shoal_http_requests_total{service="default/api"})'
got=""
for ((i = 0; i < 60; i++)); do
	got=$(admin_get -G "http://$PROM/api/v1/query" --data-urlencode "query=$query" 2>/dev/null |
		python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true)
	[[ $got == 17 ]] && break
	sleep 0.5
done
[[ $got == 17 ]] && pass "Prometheus: $query = 17" ||
	fail "Prometheus query $query returned '${got:-nothing}'"
query='sum(rate(shoal_http_response_latency_seconds_count{service="default/api"}[1m])) >= 0'
got=$(admin_get -G "http://$PROM/api/v1/query" --data-urlencode "query=$query" 2>/dev/null |
	python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["status"])' 2>/dev/null || true)
[[ $got == success ]] && pass "Prometheus evaluates a rate over the latency histogram" ||
	fail "Prometheus histogram query: '$got'"

# shoalctl on the live agent: it reads the admin endpoint on node-a's loopback.
actl() { in_ns "$NS_A" timeout 20 "$SHOALCTL" --pin-root "$PIN_ROOT" "$@"; }
out=$(actl services)
if awk '$1 == "default/api" && $2 == "10.96.0.20" && $3 == 2 && $4 == 17 { ok = 1 } END { exit !ok }' <<<"$out"; then
	pass "shoalctl services: default/api, its VIP, 2 endpoints, 17 requests"
else
	fail "shoalctl services: $out"
fi
out=$(actl endpoints)
n=$(awk '$1 == "default/api" && $2 ~ /^10\.77\.[12]\.[23]$/ && $6 ~ /^[0-9]+$/ && $7 ~ /^(closed|open|half-open)$/' <<<"$out" | wc -l)
((n == 2)) && pass "shoalctl endpoints: both endpoints of api with estimate, in-flight and breaker state" ||
	fail "shoalctl endpoints: $out"
bad=""
for cmd in status counters bpf services endpoints; do
	actl --json "$cmd" | python3 -c 'import json, sys; json.load(sys.stdin)' 2>/dev/null || bad="$bad $cmd"
done
[[ -z $bad ]] && pass "shoalctl --json: status, counters, bpf, services and endpoints print valid JSON" ||
	fail "shoalctl --json gave invalid JSON for:$bad"
[[ $(actl --json status | python3 -c 'import json, sys; print(json.load(sys.stdin)["proxy"])') == alive ]] &&
	pass "shoalctl --json status: proxy alive" || fail "shoalctl --json status: $(actl --json status)"
# top while traffic flows: 2 frames of 1 s each.
(for i in $(seq 60); do pod_curl a1 -o /dev/null "http://10.96.0.20/top/$i" || true; sleep 0.03; done) &
traffic=$!
out=$(actl top --interval 1 --count 2)
wait "$traffic"
last=$(awk '/^shoal top/ { frame = "" } { frame = frame $0 "\n" } END { printf "%s", frame }' <<<"$out")
if awk '$1 == "default/api" && NF == 4 && $2 + 0 > 1 && $3 ~ /%$/ && $4 ~ /^[0-9.]+$/ { ok = 1 } END { exit !ok }' <<<"$last" &&
	[[ $(grep -c '^shoal top' <<<"$out") == 2 ]]; then
	pass "shoalctl top: 2 frames, default/api with requests/s, success rate and p99 ($(awk '$1 == "default/api" && NF == 4' <<<"$last"))"
else
	fail "shoalctl top: $out"
fi
# The shipped recording rules, evaluated on the live series, with the
# GETs that top just sent (all 200) in their 1-minute window: api's
# success ratio is 1 and its request rate above 0.
query='service:shoal_http_success:ratio_rate1m{service="default/api"}'
got=""
for ((i = 0; i < 60; i++)); do
	got=$(admin_get -G "http://$PROM/api/v1/query" --data-urlencode "query=$query" 2>/dev/null |
		python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true)
	[[ -n $got && $got != NaN ]] && break
	sleep 0.5
done
rate=$(admin_get -G "http://$PROM/api/v1/query" --data-urlencode 'query=service:shoal_http_requests:rate1m{service="default/api"} > 0' 2>/dev/null |
	python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true)
if [[ $got == 1 && -n $rate ]]; then
	pass "the shipped recording rules: $query = 1, request rate $rate/s"
else
	fail "shipped recording rules: $query = '${got:-nothing}', request rate '${rate:-nothing}' (log: $LOGDIR/prometheus.log)"
fi
stop_pid "$prom_pid"
finish
