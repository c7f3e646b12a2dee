#!/bin/bash
# telemetry-live.sh: golden metrics, /debug and shoalctl follow the live
# config, not the start-up one (docs/metrics.md, "Series identity").
#  - Kubernetes alone (services: [] in the file): the services discovery
#    delivers have their HTTP series (requests, responses, latency) per
#    service and endpoint, a service added later has its TCP series, and
#    shoalctl services / endpoints list them. The HTTP service declares no
#    appProtocol and a plain port name, so it is detected as HTTP.
#  - The file alone: reordering the services in the file keeps every
#    series under its own service's name.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || skip "python3 is missing (the stand-in API server)"
command -v openssl >/dev/null || skip "openssl is missing (the stand-in API server's CA)"
http_topology a2 b1
A2=${POD_IP4[a2]} B1=${POD_IP4[b1]}
ADMIN=127.0.0.1:15020

k8s_apiserver_start --start-rv 1000
svc() { # NAME VIP PORT PORT_NAME TARGET
	printf '{"type":"ADDED","object":{"kind":"Service","apiVersion":"v1","metadata":{"name":"%s","namespace":"shop"},"spec":{"type":"ClusterIP","clusterIP":"%s","clusterIPs":["%s"],"ports":[{"name":"%s","protocol":"TCP","port":%s,"targetPort":%s}]}}}' \
		"$1" "$2" "$2" "$4" "$3" "$5"
}
slice() { # NAME SERVICE PORT_NAME PORT IP...
	local name=$1 service=$2 pname=$3 port=$4 eps="" ip
	shift 4
	for ip in "$@"; do
		eps+="${eps:+,}{\"addresses\":[\"$ip\"],\"conditions\":{\"ready\":true},\"nodeName\":\"node-a\"}"
	done
	printf '{"type":"ADDED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"%s","namespace":"shop","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4","endpoints":[%s],"ports":[{"name":"%s","protocol":"TCP","port":%s}]}}' \
		"$name" "$service" "$eps" "$pname" "$port"
}

admin_get() { in_ns "$NS_A" curl -sS --max-time 5 "$@"; }
actl() { in_ns "$NS_A" timeout 20 "$SHOALCTL" --pin-root "$PIN_ROOT" "$@"; }
metrics=$LOGDIR/metrics.txt
scrape() { admin_get "http://$ADMIN/metrics" >"$metrics" || fail "GET /metrics"; }
# sum_samples REGEX: the sum of every sample whose name{labels} matches REGEX.
sum_samples() { awk -v re="$1" '$1 ~ re { s += $2 } END { print s + 0 }' "$metrics"; }
# get N URL: N requests from a1, each answered 200.
get() {
	local n=$1 url=$2 i code
	for ((i = 0; i < n; i++)); do
		code=$(pod_curl a1 -o /dev/null -w '%{http_code}' "$url") || code=000
		[[ $code == 200 ]] || fail "GET $url: $code"
	done
}

say "phase 1: the Kubernetes source alone"
k8s_apply "[$(svc api 10.96.0.20 80 web 9080),$(slice api-1 api web 9080 "$A2" "$B1")]"
{ config_head; cat <<EOF; } >"$CONFIG"
admin: {listen: "$ADMIN"}
kubernetes:
  api_server: https://127.0.0.1:$API_PORT
  ca_file: $K8S_DIR/ca.crt
  token_file: $K8S_DIR/token
  backoff_max_ms: 1000
services: []
EOF
shoald_start
enroll a1
for ((i = 0; i < 100; i++)); do
	[[ $(admin_get -o /dev/null -w '%{http_code}' "http://$ADMIN/readyz") == 200 ]] && break
	sleep 0.1
done
get 6 http://10.96.0.20/ok
# A service that appears after the first scrape-worthy traffic, opaque TCP.
k8s_apply "[$(svc db 10.96.0.21 81 tcp-hello 8080),$(slice db-1 db tcp-hello 8080 "$A2")]"
ok=0
for ((i = 0; i < 50; i++)); do
	hello a1 10.96.0.21:81 --timeout-ms 1000 && [[ $HELLO_BACKEND == a2 ]] && { ok=1; break; }
	sleep 0.1
done
((ok)) || fail "the service added later (shop/db) did not answer through the proxy: $HELLO_OUT"
hello a1 10.96.0.21:81 || fail "hello 2 to shop/db: $HELLO_OUT"
hello a1 10.96.0.21:81 || fail "hello 3 to shop/db: $HELLO_OUT"

scrape
api='service="shop/api"'
rq=$(sum_samples "^shoal_http_requests_total[{]$api,route=\"\",backend=\"shop/api\",endpoint=\"($A2|$B1)\"}")
ok2=$(sum_samples "^shoal_http_responses_total[{]$api,.*status_code=\"200\",class=\"2xx\"}")
lat=$(sum_samples "^shoal_http_response_latency_seconds_count[{]$api,.*status_code=\"200\"}")
inf=$(sum_samples "^shoal_http_response_latency_seconds_bucket[{]$api,.*le=\"\\+Inf\"}")
[[ "$rq $ok2 $lat $inf" == "6 6 6 6" ]] &&
	pass "golden metrics of shop/api from discovery: 6 requests, 6 x 200, 6 latency samples" ||
	fail "shop/api series: requests $rq, 200s $ok2, latency count $lat, +Inf $inf: $(grep 'shop/api' "$metrics" | grep -v _bucket)"
n=$(grep -cE "^shoal_http_requests_total[{]$api,route=\"\",backend=\"shop/api\",endpoint=\"($A2|$B1)\"} [1-9]" "$metrics" || true)
((n == 2)) && pass "shop/api has a request series per endpoint ($A2, $B1)" ||
	fail "endpoint series of shop/api: $(grep '^shoal_http_requests_total' "$metrics")"
opened=$(sum_samples '^shoal_tcp_open_total[{]service="shop/db"}')
wr=$(sum_samples '^shoal_tcp_write_bytes_total[{]service="shop/db"}')
((opened >= 3 && wr > 0)) && pass "shop/db, added after start: $opened TCP connections, $wr bytes" ||
	fail "tcp series of shop/db: opened $opened written $wr: $(grep '^shoal_tcp_' "$metrics")"
n=$(grep -cE '^shoal_endpoint_latency_estimate_seconds[{]service="shop/api",endpoint=' "$metrics" || true)
((n == 2)) && pass "balancer state of both endpoints of shop/api" ||
	fail "endpoint state: $(grep '^shoal_endpoint_latency' "$metrics")"
[[ $(sum_samples '^shoal_metrics_service_overflow_total$') == 0 ]] && pass "no service without a series id" ||
	fail "$(grep '^shoal_metrics_service' "$metrics")"

out=$(actl services)
if awk '$1 == "shop/api" && $2 == "10.96.0.20" && $3 == 2 && $4 == 6 { a = 1 } $1 == "shop/db" { d = 1 } END { exit !(a && d) }' <<<"$out"; then
	pass "shoalctl services: shop/api (VIP, 2 endpoints, 6 requests) and shop/db"
else
	fail "shoalctl services: $out"
fi
out=$(actl endpoints)
n=$(awk -v a="$A2" -v b="$B1" '$1 == "shop/api" && ($2 == a || $2 == b)' <<<"$out" | wc -l)
d=$(awk -v a="$A2" '$1 == "shop/db" && $2 == a' <<<"$out" | wc -l)
((n == 2 && d == 1)) && pass "shoalctl endpoints: both endpoints of shop/api and the one of shop/db" ||
	fail "shoalctl endpoints: $out"
shoald_stop

say "phase 2: the file alone; the services are reordered while it runs"
# file_config NAMES...: services alpha (VIP .30, endpoint a2) and beta (VIP
# .31, endpoint b1), HTTP, in the order given; rename(2) as editors do.
file_config() {
	local name
	{
		config_head
		cat <<EOF
admin: {listen: "$ADMIN"}
services:
EOF
		for name in "$@"; do
			case $name in
			alpha) printf '  - {name: alpha, vips: [10.96.0.30], ports: [{port: 80, target_port: 9080, protocol: http}], endpoints: [{address: %s}]}\n' "$A2" ;;
			beta) printf '  - {name: beta, vips: [10.96.0.31], ports: [{port: 80, target_port: 9080, protocol: http}], endpoints: [{address: %s}]}\n' "$B1" ;;
			esac
		done
	} >"$CONFIG.tmp"
	mv -f "$CONFIG.tmp" "$CONFIG"
}
file_config alpha beta
shoald_start
enroll a1
get 3 http://10.96.0.30/a
get 2 http://10.96.0.31/b
file_config beta alpha
applied=0
for ((i = 0; i < 50; i++)); do
	order=$(admin_get "http://$ADMIN/debug/config" |
		python3 -c 'import json,sys; print(" ".join(s["name"] for s in json.load(sys.stdin)["services"]))' 2>/dev/null || true)
	[[ $order == "beta alpha" ]] && { applied=1; break; }
	sleep 0.1
done
((applied)) && pass "/debug/config shows the reordered file" || fail "/debug/config order is '$order' after the edit"
get 4 http://10.96.0.30/a
get 1 http://10.96.0.31/b
scrape
a=$(sum_samples "^shoal_http_requests_total[{]service=\"default/alpha\",route=\"\",backend=\"default/alpha\",endpoint=\"$A2\"}")
b=$(sum_samples "^shoal_http_requests_total[{]service=\"default/beta\",route=\"\",backend=\"default/beta\",endpoint=\"$B1\"}")
all=$(sum_samples '^shoal_http_requests_total[{]')
[[ "$a $b $all" == "7 3 10" ]] &&
	pass "after the reorder: default/alpha 7 requests to $A2, default/beta 3 to $B1, nothing mislabelled" ||
	fail "after the reorder: alpha $a, beta $b, all $all (want 7 3 10): $(grep '^shoal_http_requests_total' "$metrics")"
got=$(admin_get "http://$ADMIN/debug/services" |
	python3 -c 'import json,sys; print(" ".join("%s=%d" % (s["name"], s["http"]["requests"]) for s in json.load(sys.stdin)["services"]))' 2>/dev/null || true)
[[ $got == "beta=3 alpha=7" ]] && pass "/debug/services after the reorder: $got" || fail "/debug/services: $got"
finish
