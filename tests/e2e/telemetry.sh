#!/bin/bash
# Telemetry end to end: shoald's admin endpoint on node-a's loopback serves
# /healthz, /readyz and /metrics (plain and gzip); the exposition passes
# promtool; the kernel's counters move with real traffic; and a real
# Prometheus server, on the same loopback, scrapes shoald and answers a
# query with the service's intercepted-connect count.
source "$(dirname "$0")/lib.sh"

ADMIN=127.0.0.1:15020
PROM=127.0.0.1:9090

command -v promtool >/dev/null || skip "promtool missing (Debian package prometheus; scripts/setup.sh installs it)"
command -v prometheus >/dev/null || skip "prometheus missing (scripts/setup.sh installs it)"

e2e_init
e2e_topology
write_config
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

gz=$(admin_get -H 'Accept-Encoding: gzip' -D - -o "$LOGDIR/metrics.gz" "http://$ADMIN/metrics")
if grep -qi '^content-encoding: gzip' <<<"$gz" && gunzip -c "$LOGDIR/metrics.gz" | grep -q '^shoal_build_info'; then
	pass "/metrics is gzipped when the scraper asks"
else
	fail "gzip: headers were: $gz"
fi

bpf_out=$(ctl bpf)
links=$(grep -cE '^(connect[46]|getpeername[46]|sockops|sk_msg) ' <<<"$bpf_out" || true)
if ((links == 6)) && grep -q 'shoal_sk_msg .* map shoal_shortcut' <<<"$bpf_out" &&
	grep -qE '^shoal_services +[0-9]+ +hash +2 ' <<<"$bpf_out"; then
	pass "shoalctl bpf lists the 6 links with their programs and the maps with entry counts (shoal_services: 2 keys, web's v4 and v6 VIP)"
else
	fail "shoalctl bpf: $bpf_out"
fi

# A real Prometheus, scraping every second.
cat >"$LOGDIR/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
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
stop_pid "$prom_pid"
finish
