#!/bin/bash
# discovery-k8s.sh: shoald takes its services from a Kubernetes API server
# (the stand-in, tests/k8s/apiserver.py, over TLS with a bearer token, in
# node-a's netns) and traffic follows it at runtime.
#  - a service and its EndpointSlice appear: the VIP (v4 and v6) is
#    intercepted and proxied to the slice's endpoint;
#  - the slice changes: traffic moves; a terminating-but-serving endpoint
#    is used only while no ready one is left;
#  - a service is deleted: its VIP is no longer intercepted;
#  - the API server dies: traffic goes on with the last known state, and
#    /readyz says discovery is out of sync;
#  - a new API server whose history starts later: the watch gets the
#    in-stream 410, shoald relists and follows the new state.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

e2e_init
command -v python3 >/dev/null || skip "python3 is missing (the stand-in API server)"
command -v openssl >/dev/null || skip "openssl is missing (the stand-in API server's CA)"
command -v curl >/dev/null || skip "curl is missing"
e2e_topology
e2e_topology_check

API_PID=""

# apiserver_start START_RV: the stand-in (lib.sh) with history from
# START_RV, on the port of the one before it, if any.
apiserver_start() {
	k8s_apiserver_start --start-rv "$1" --bookmark-every 2 ${API_PORT:+--port "$API_PORT"}
}

# The port is named "hello", with no appProtocol: detected (docs/discovery.md,
# "Protocols"); the banner protocol speaks first, so detection ends opaque.
svc() { # NAME VIPS_JSON PORT TARGET
	printf '{"type":"ADDED","object":{"kind":"Service","apiVersion":"v1","metadata":{"name":"%s","namespace":"shop"},"spec":{"type":"ClusterIP","clusterIP":%s,"clusterIPs":%s,"ports":[{"name":"hello","protocol":"TCP","port":%s,"targetPort":%s}]}}}' \
		"$1" "$(jq_first "$2")" "$2" "$3" "$4"
}
jq_first() { sed 's/^\[\([^,]*\).*/\1/; s/\]$//' <<<"$1"; }
svc_deleted() { # NAME
	printf '{"type":"DELETED","object":{"kind":"Service","apiVersion":"v1","metadata":{"name":"%s","namespace":"shop"}}}' "$1"
}
# slice NAME SERVICE ENDPOINTS_JSON
slice() {
	printf '{"type":"MODIFIED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"%s","namespace":"shop","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4","endpoints":%s,"ports":[{"name":"hello","protocol":"TCP","port":8080}]}}' \
		"$1" "$2" "$3"
}
ep() { # IP READY SERVING TERMINATING
	printf '{"addresses":["%s"],"conditions":{"ready":%s,"serving":%s,"terminating":%s},"nodeName":"node-a"}' "$@"
}


readyz() { in_ns "$NS_A" curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz" || true; }

apiserver_start 1000
k8s_apply "[$(svc web '["10.96.0.10","fd96::10"]' 80 '"hello"'),$(slice web-1 web "[$(ep "${POD_IP4[a2]}" true true false)]")]"

ADMIN_PORT=15021
{ config_head; cat <<EOF; } >"$CONFIG"
kubernetes:
  api_server: https://127.0.0.1:$API_PORT
  ca_file: $K8S_DIR/ca.crt
  token_file: $K8S_DIR/token
  backoff_max_ms: 1000
services: []
EOF
shoald_start --admin "127.0.0.1:$ADMIN_PORT"
enroll a1
expect_backend 10.96.0.10:80 a2 "service from the API server" 10
expect_backend '[fd96::10]:80' a2 "dual-stack clusterIPs" 10
for ((i = 0; i < 50; i++)); do [[ $(readyz) == 200 ]] && break; sleep 0.1; done
if [[ $(readyz) == 200 ]]; then pass "/readyz 200: discovery in sync"; else fail "/readyz is $(readyz) while in sync"; fi

say "the slice changes: a2 -> b1"
k8s_apply "$(slice web-1 web "[$(ep "${POD_IP4[b1]}" true true false)]")"
expect_backend 10.96.0.10:80 b1 "endpoint change" 10

say "terminating: b1 terminating (still serving), a2 not ready: b1 is the fallback"
k8s_apply "$(slice web-1 web "[$(ep "${POD_IP4[b1]}" false true true),$(ep "${POD_IP4[a2]}" false false false)]")"
expect_backend 10.96.0.10:80 b1 "serving+terminating used when nothing is ready" 10
say "a2 becomes ready: the terminating b1 is no longer picked"
k8s_apply "$(slice web-1 web "[$(ep "${POD_IP4[b1]}" false true true),$(ep "${POD_IP4[a2]}" true true false)]")"
expect_backend 10.96.0.10:80 a2 "ready endpoint preferred over terminating" 10

say "a second service appears, then is deleted"
k8s_apply "[$(svc api '["10.96.0.20"]' 81 8080),$(slice api-1 api "[$(ep "${POD_IP4[b1]}" true true false)]")]"
expect_backend 10.96.0.20:81 b1 "service added at runtime" 10
k8s_apply "$(svc_deleted api)"
gone=0
for ((i = 0; i < 50; i++)); do
	if ! hello a1 10.96.0.20:81 --timeout-ms 300; then gone=1; break; fi
	sleep 0.1
done
if ((gone)); then pass "deleted service no longer intercepted"; else fail "10.96.0.20:81 still answered after the delete"; fi

say "the API server dies: the last known state keeps serving"
stop_pid "$API_PID"
expect_backend 10.96.0.10:80 a2 "API server gone" 10
for ((i = 0; i < 50; i++)); do [[ $(readyz) == 503 ]] && break; sleep 0.1; done
if [[ $(readyz) == 503 ]]; then pass "/readyz 503 while the API server is away"; else fail "/readyz is $(readyz) with the API server gone"; fi

say "a new API server (history from 5000): the watch gets 410, shoald relists"
apiserver_start 5000
k8s_apply "[$(svc web '["10.96.0.10","fd96::10"]' 80 '"hello"'),$(slice web-1 web "[$(ep "${POD_IP4[b1]}" true true false)]")]"
expect_backend 10.96.0.10:80 b1 "after the relist" 10
if grep -q 'too old resource version' "$SHOALD_LOG"; then
	pass "the relist followed the in-stream 410"
else
	fail "no 410 relist in the log"
fi
for ((i = 0; i < 100; i++)); do [[ $(readyz) == 200 ]] && break; sleep 0.1; done
if [[ $(readyz) == 200 ]]; then pass "/readyz 200 again"; else fail "/readyz is $(readyz) after the relist"; fi
finish
