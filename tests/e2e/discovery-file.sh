#!/bin/bash
# discovery-file.sh: shoald follows its config file while it runs.
#  - an edit saved by rename (the way editors write) is seen: traffic
#    moves to the new endpoints, and a new service is intercepted;
#  - a connection opened before the edit stays up on its old endpoint
#    (it drains; it is not cut);
#  - a bad edit is refused with file, line and field in the log, counted,
#    and the last good configuration keeps serving;
#  - a change to a field only a restart applies is logged, not applied;
#  - a service removed from the file is no longer intercepted.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

e2e_init
e2e_topology
e2e_topology_check

# edit_config WEB_ENDPOINTS [EXTRA_YAML] [PROXY_PORT]: rewrites the config
# through a temp file and rename(2), as editors do.
edit_config() {
	{
		config_head "${3:-$PROXY_PORT}"
		echo "services:"
		web_service "$1"
		printf '%s\n' "${2:-}"
	} >"$CONFIG.tmp"
	mv -f "$CONFIG.tmp" "$CONFIG"
}

API_SERVICE="  - name: api
    vips: [10.96.0.20]
    ports: [{port: 81, target_port: 8080}]
    endpoints: [{address: ${POD_IP4[a2]}}]"

edit_config "{address: ${POD_IP4[a2]}}"
shoald_start
enroll a1
expect_backend 10.96.0.10:80 a2 "start-up config"

hold_start a1 10.96.0.10:80 --timeout-ms 60000
sleep 0.5
grep -q '^banner=a2 ' "$HOLD_LOG" || fatal "hold did not reach a2 through the proxy: $(cat "$HOLD_LOG")"

say "edit by rename: web's endpoints a2 -> b1, and a new service api (10.96.0.20:81 -> a2)"
edit_config "{address: ${POD_IP4[b1]}}" "$API_SERVICE"
expect_backend 10.96.0.10:80 b1 "reload by rename"
expect_backend '[fd96::10]:80' b1 "reload by rename, IPv6 VIP"
expect_backend 10.96.0.20:81 a2 "a service added at runtime"
hold_alive "a2 left the endpoints" "the connection opened earlier"

say "a bad edit: it is refused and the last good configuration stays"
rejects_line=$(grep -c 'refused' "$SHOALD_LOG" || true)
cat >"$CONFIG.tmp" <<EOF
node: {address_v4: 10.77.1.1, address_v6: "fd77:1::1", proxy_port: $PROXY_PORT}
services:
  - name: web
    vips: [10.96.0.10]
    ports: [{port: 70000}]
EOF
mv -f "$CONFIG.tmp" "$CONFIG"
for ((i = 0; i < 50; i++)); do
	(($(grep -c 'refused' "$SHOALD_LOG" || true) > rejects_line)) && break
	sleep 0.1
done
if grep -q "$CONFIG:5: services\[0\].ports\[0\].port: must be 1..65535" "$SHOALD_LOG"; then
	pass "bad edit refused with file, line and field: $(grep -m1 "$CONFIG:5:" "$SHOALD_LOG" | sed 's/^.*warn: //')"
else
	fail "no 'FILE:5: services[0].ports[0].port' refusal in the log"
fi
expect_backend 10.96.0.10:80 b1 "after the bad edit"
expect_backend 10.96.0.20:81 a2 "after the bad edit, api"
hold_alive "after the bad edit" "the connection opened earlier"

say "a change outside services (node.proxy_port) needs a restart: logged, not applied"
edit_config "{address: ${POD_IP4[b1]}}" "$API_SERVICE" 15999
for ((i = 0; i < 50; i++)); do
	grep -q 'next restart' "$SHOALD_LOG" && break
	sleep 0.1
done
if grep -q 'next restart' "$SHOALD_LOG"; then
	pass "the log says the change applies at the next restart"
else
	fail "no warning about a field that needs a restart"
fi
expect_backend 10.96.0.10:80 b1 "proxy still on port $PROXY_PORT"

say "api removed from the file: no longer intercepted"
edit_config "{address: ${POD_IP4[b1]}}"
gone=0
for ((i = 0; i < 50; i++)); do
	if ! hello a1 10.96.0.20:81 --timeout-ms 300; then
		gone=1
		break
	fi
	sleep 0.1
done
if ((gone)); then
	pass "10.96.0.20:81 is left alone once api is gone (nothing routes it: $HELLO_OUT)"
else
	fail "10.96.0.20:81 still answered after api was removed: $HELLO_OUT"
fi
hold_alive "at the end" "the connection opened earlier"
stop_pid "$HOLD_PID"
finish
