#!/bin/bash
# mtls-k8s.sh: the encrypted hop for endpoints that come from Kubernetes
# (docs/discovery.md, "Identities"; docs/mtls.md, "Modes"). node-a's
# shoald takes its services from the stand-in API server, mtls strict
# with the namespace legacy permissive; node-b's from a file, as in
# mtls.sh. The endpoints' EndpointSlices name their pods (targetRef), the
# pods their service accounts, and the pods their node's address
# (status.hostIP): node-a's config has no mtls.nodes, as in a cluster,
# and learns node-b's address from the pods on it (docs/mtls.md, "Node
# addresses").
#  1. a1 -> web: the slice's pod default/web-0 (service account web) on
#     node-b: the call goes through the tunnel, and node-b's tunnel logs
#     it as default/client calling, served as default/web; node-b's
#     address came from its pods (shoal_discovery_k8s_nodes); a pod whose
#     hostIP is not an address is logged by name and changes nothing;
#  2. an endpoint whose pod is not known has no identity: strict refuses
#     the call (counted, logged with the service), and
#     shoal_discovery_endpoints_no_identity says so; the same in the
#     permissive namespace legacy goes in plaintext; a Service of legacy
#     annotated shoal.io/mtls-mode: strict is refused again, and so is
#     legacy/old while the Namespace legacy carries the annotation; a caller
#     with no identity is refused by the policy layer (mtls-strict) for a
#     service of a strict namespace, served for one of legacy;
#  3. the pod is replaced with another service account: the endpoint's
#     identity follows (the endpoint is now default/admin, which node-b
#     has no certificate for: refused in the handshake); the pod deleted: refused
#     (no identity); back with account web: through the tunnel again;
#  4. every pod of node-b gone: node-b's address is forgotten.
# shellcheck shell=bash disable=SC2034
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_require openssl
e2e_init
e2e_topology
backend_start b1 9080

MTLS_PORT=15008
NODE_B_ADDR=10.77.2.1
PIN_ROOT_B=/sys/fs/bpf/$RUN-b
state_add "pin $PIN_ROOT_B"
mkdir "$TEST_CG/node-b" "$TEST_CG/node-b/agent"
ID=$LOGDIR/id
mkdir -p "$ID/a" "$ID/b"
B1=${POD_IP4[b1]}

# ---- certificates (as mtls.sh) --------------------------------------------------
TD=cluster.local
ossl() { openssl "$@" >>"$LOGDIR/openssl.log" 2>&1 || fatal "openssl $1 failed (see $LOGDIR/openssl.log)"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ID/ca.key" \
	-out "$ID/ca.crt" -days 2 -subj /CN=shoal-e2e-root \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
leaf() {
	local out=$1 uri=$2
	printf 'subjectAltName=URI:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
		"$uri" >"$out.ext"
	ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$out.key" -out "$out.csr" \
		-subj "/CN=$(basename "$out")"
	ossl x509 -req -in "$out.csr" -CA "$ID/ca.crt" -CAkey "$ID/ca.key" -CAcreateserial -days 1 \
		-out "$out.crt" -extfile "$out.ext"
}
leaf "$ID/a/default_client" "spiffe://$TD/ns/default/sa/client"
leaf "$ID/b/default_web" "spiffe://$TD/ns/default/sa/web"
cp "$ID/ca.crt" "$ID/a/anchors.pem"
cp "$ID/ca.crt" "$ID/b/anchors.pem"

# ---- node-b: a file, its tunnel serves b1 as default/web --------------------------
CONFIG_B=$LOGDIR/shoald-b.yaml
cat >"$CONFIG_B" <<EOF
node: {address_v4: $NODE_B_ADDR, proxy_port: $PROXY_PORT}
bpf: {pin_root: $PIN_ROOT_B, cgroup: $TEST_CG/node-b, shortcut: true, failopen_after_ms: $FAILOPEN_AFTER_MS}
proxy: {workers: 1}
identity: {source: files, dir: "$ID/b"}
mtls: {mode: strict, node_name: node-b}
services:
  - name: web
    namespace: default
    vips: [10.96.0.10]
    ports: [{port: 80, target_port: 8080, protocol: tcp}]
    endpoints: [{address: $B1, node: node-b, identity: default/web}]
EOF
node_b_start "$CONFIG_B" "$LOGDIR/shoald-b.log" --log-level debug

# ---- the API server's objects -----------------------------------------------------
# svc NS NAME VIP [ANNOTATIONS_JSON]: port 80 -> 8080, named "hello"
# (detected; the banner protocol speaks first, so it ends opaque).
svc() {
	local ann=${4:-}
	[[ -n $ann ]] || ann='{}'
	printf '{"type":"ADDED","object":{"kind":"Service","apiVersion":"v1","metadata":{"name":"%s","namespace":"%s","annotations":%s},"spec":{"type":"ClusterIP","clusterIP":"%s","clusterIPs":["%s"],"ports":[{"name":"hello","protocol":"TCP","port":80,"targetPort":8080}]}}}' \
		"$2" "$1" "$ann" "$3" "$3"
}
# slice NS SERVICE POD [UID]: one endpoint, b1 on node-b, of pod POD.
slice() {
	local uid=""
	[[ -n ${4:-} ]] && uid=",\"uid\":\"$4\""
	printf '{"type":"MODIFIED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"%s-1","namespace":"%s","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4","endpoints":[{"addresses":["%s"],"conditions":{"ready":true},"nodeName":"node-b","targetRef":{"kind":"Pod","namespace":"%s","name":"%s"%s}}],"ports":[{"name":"hello","protocol":"TCP","port":8080}]}}' \
		"$2" "$1" "$2" "$B1" "$1" "$3" "$uid"
}
# slice_local NS SERVICE: one endpoint, a2 on node-a (no pod named).
slice_local() {
	printf '{"type":"MODIFIED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"%s-1","namespace":"%s","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4","endpoints":[{"addresses":["%s"],"conditions":{"ready":true},"nodeName":"node-a"}],"ports":[{"name":"hello","protocol":"TCP","port":8080}]}}' \
		"$2" "$1" "$2" "${POD_IP4[a2]}"
}
# pod TYPE NS NAME UID SERVICE_ACCOUNT [HOST_IP [NODE]]: running on node-b
# (or NODE), whose address (hostIP) is node-b's underlay one.
pod() {
	local host=${6:-$NODE_B_ADDR}
	printf '{"type":"%s","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"%s","namespace":"%s","uid":"%s"},"spec":{"nodeName":"%s","serviceAccountName":"%s","containers":[{"name":"c","image":"x"}]},"status":{"phase":"Running","hostIP":"%s","hostIPs":[{"ip":"%s"}],"podIP":"%s","podIPs":[{"ip":"%s"}]}}}' \
		"$1" "$3" "$2" "$4" "${7:-node-b}" "$5" "$host" "$host" "$B1" "$B1"
}

k8s_apiserver_start --start-rv 100 --bookmark-every 2
k8s_apply "[$(svc default web 10.96.0.10),$(slice default web web-0 u-web-0),$(pod ADDED default web-0 u-web-0 web),
$(svc default orphan 10.96.0.40),$(slice default orphan orphan-0),
$(svc legacy old 10.96.0.50),$(slice legacy old old-0),
$(svc legacy locked 10.96.0.60 '{"shoal.io/mtls-mode":"strict"}'),$(slice legacy locked locked-0),
$(svc default local 10.96.0.70),$(slice_local default local),$(svc legacy local 10.96.0.80),$(slice_local legacy local),
$(pod ADDED kube-system other-0 u-other web)]"

ADMIN_PORT=15021
{
	config_head
	cat <<EOF
identity: {source: files, dir: "$ID/a"}
mtls:
  mode: strict
  node_name: node-a
  workloads: [{address: ${POD_IP4[a1]}, identity: default/client}]
  namespaces: [{name: legacy, mode: permissive}]
kubernetes:
  api_server: https://127.0.0.1:$API_PORT
  ca_file: $K8S_DIR/ca.crt
  token_file: $K8S_DIR/token
  backoff_max_ms: 1000
policy: {default: allow}
services: []
EOF
} >"$CONFIG"
shoald_start --admin "127.0.0.1:$ADMIN_PORT"
enroll a1

metric_a() { metric_in "$NS_A" "$1" "127.0.0.1:$ADMIN_PORT"; }
# through_tunnel WHAT SECS: a1 -> web answered by b1 seeing node-b's tunnel, within SECS.
through_tunnel() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		if hello a1 10.96.0.10:80 --timeout-ms 2000 && [[ $HELLO_BACKEND == b1 && $HELLO_SEEN == "$NODE_B_ADDR" ]]; then
			pass "$1: a1 -> web went through the tunnel (b1 saw $HELLO_SEEN)"
			return 0
		fi
		sleep 0.1
	done
	fail "$1: a1 -> web did not go through the tunnel: '$HELLO_OUT'"
	return 1
}
# refused_within WHAT TARGET SECS: calls to TARGET fail (every try for 1 s), within SECS.
refused_within() {
	local i j ok
	for ((i = 0; i < $3 * 10; i++)); do
		ok=1
		for ((j = 0; j < 3; j++)); do
			if hello a1 "$2" --timeout-ms 1500; then
				ok=0
				break
			fi
		done
		if ((ok)); then
			pass "$1: a1 -> $2 refused"
			return 0
		fi
		sleep 0.1
	done
	fail "$1: a1 -> $2 still answered: '$HELLO_OUT'"
	return 1
}

# ---- 1. an identity from the pod -----------------------------------------------------
tunneled0=$(metric_a shoal_proxy_mtls_tunneled_total)
through_tunnel "pod default/web-0 (service account web) on node-b" 15
tunneled=$(metric_a shoal_proxy_mtls_tunneled_total)
((tunneled > tunneled0)) && pass "node-a counted tunneled connections ($tunneled0 -> $tunneled)" ||
	fail "shoal_proxy_mtls_tunneled_total went $tunneled0 -> $tunneled"
if wait_log "$LOGDIR/shoald-b.log" "default/client -> $B1:8080 (as default/web)" 5; then
	pass "node-b's tunnel: default/client calling $B1:8080, served as default/web"
else
	fail "node-b's log lacks 'default/client -> $B1:8080 (as default/web)': $(grep 'tunnel: stream' "$LOGDIR/shoald-b.log" | tail -3)"
fi
pods=$(metric_a shoal_discovery_k8s_pods)
((pods == 2)) && pass "node-a keeps the 2 pods of the cluster (shoal_discovery_k8s_pods)" ||
	fail "shoal_discovery_k8s_pods is $pods (want 2)"
nodes=$(metric_a shoal_discovery_k8s_nodes)
((nodes == 1)) && pass "node-b's address learned from its pods, with no mtls.nodes (shoal_discovery_k8s_nodes 1)" ||
	fail "shoal_discovery_k8s_nodes is $nodes (want 1: node-b)"
# A pod whose hostIP is no address: logged by name, kept for its identity, no node learned.
k8s_apply "$(pod ADDED kube-system bad-0 u-bad web not-an-ip node-c)"
if wait_log "$SHOALD_LOG" 'kubernetes: pod kube-system/bad-0: status.hostIP: "not-an-ip" is not an IP address' 5; then
	pass "a pod with hostIP not-an-ip is logged by name"
else
	fail "no log line for kube-system/bad-0's hostIP: $(grep 'kubernetes: pod' "$SHOALD_LOG" | tail -2)"
fi
refused_host=$(metric_a shoal_discovery_k8s_host_refused_total)
nodes=$(metric_a shoal_discovery_k8s_nodes)
((refused_host >= 1 && nodes == 1)) && pass "counted (shoal_discovery_k8s_host_refused_total $refused_host), node-c not learned" ||
	fail "shoal_discovery_k8s_host_refused_total $refused_host, shoal_discovery_k8s_nodes $nodes (want >= 1, 1)"
# Its status updates repeat the refusal: counted each time, logged at most once per 10 s.
warned=$(grep -c 'kubernetes: pod kube-system/bad-0: status.hostIP' "$SHOALD_LOG" || true)
k8s_apply "[$(pod MODIFIED kube-system bad-0 u-bad web not-an-ip node-c),$(pod MODIFIED kube-system bad-0 u-bad web not-an-ip node-c),$(pod MODIFIED kube-system bad-0 u-bad web not-an-ip node-c)]"
for ((i = 0; i < 50; i++)); do
	now_refused=$(metric_a shoal_discovery_k8s_host_refused_total)
	((now_refused >= refused_host + 3)) && break
	sleep 0.1
done
warned_after=$(grep -c 'kubernetes: pod kube-system/bad-0: status.hostIP' "$SHOALD_LOG" || true)
((now_refused >= refused_host + 3 && warned_after == warned)) &&
	pass "3 status updates of bad-0 counted ($refused_host -> $now_refused), no new warning within 10 s" ||
	fail "after 3 updates of bad-0: shoal_discovery_k8s_host_refused_total $refused_host -> $now_refused (want +3), warnings $warned -> $warned_after (want no new one)"
k8s_apply "$(pod DELETED kube-system bad-0 u-bad web not-an-ip node-c)"
through_tunnel "after the bad pod" 5

# ---- 2. no pod, no identity: strict vs permissive ------------------------------------
noid=$(metric_a shoal_discovery_endpoints_no_identity)
((noid == 3)) && pass "3 endpoints have no identity (shoal_discovery_endpoints_no_identity)" ||
	fail "shoal_discovery_endpoints_no_identity is $noid (want 3: orphan, old, locked)"
refused0=$(metric_a shoal_proxy_mtls_refused_total)
refused_within "strict (mtls.mode), an endpoint of node-b without identity" 10.96.0.40:80 3
refused=$(metric_a shoal_proxy_mtls_refused_total)
((refused > refused0)) && pass "counted in shoal_proxy_mtls_refused_total ($refused0 -> $refused)" ||
	fail "shoal_proxy_mtls_refused_total went $refused0 -> $refused"
grep -q "mtls: strict for default/orphan: a call to an endpoint on node node-b refused: the endpoint has no identity" "$SHOALD_LOG" &&
	pass "the refusal is logged with the service and the reason" ||
	fail "no log line for the refusal of default/orphan: $(grep 'mtls: strict' "$SHOALD_LOG" | tail -2)"
if hello a1 10.96.0.50:80 --timeout-ms 3000 && [[ $HELLO_BACKEND == b1 && $HELLO_SEEN != "$NODE_B_ADDR" ]]; then
	pass "permissive namespace legacy: the same endpoint answers in plaintext (b1 saw $HELLO_SEEN)"
else
	fail "permissive namespace legacy: a1 -> legacy/old: '$HELLO_OUT'"
fi
refused_within "legacy/locked (shoal.io/mtls-mode: strict in a permissive namespace)" 10.96.0.60:80 3
# The Namespace's annotation raises legacy to strict, and lowers nothing when gone.
nsobj() { # TYPE ANNOTATIONS_JSON
	printf '{"type":"%s","object":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"legacy","annotations":%s}}}' "$1" "$2"
}
k8s_apply "$(nsobj ADDED '{"shoal.io/mtls-mode":"strict"}')"
refused_within "Namespace legacy annotated shoal.io/mtls-mode: strict: legacy/old" 10.96.0.50:80 5
k8s_apply "$(nsobj MODIFIED '{}')"
ok=0
for ((i = 0; i < 50; i++)); do
	if hello a1 10.96.0.50:80 --timeout-ms 2000 && [[ $HELLO_BACKEND == b1 ]]; then
		ok=1
		break
	fi
	sleep 0.1
done
((ok)) && pass "the annotation removed: legacy/old answers in plaintext again" ||
	fail "legacy/old after the Namespace's annotation went: '$HELLO_OUT'"

# The policy layer's strict refusal of callers with no identity is the
# destination's mode too: a3 (meshed, no identity) calls a same-node
# endpoint (no hop) of a strict and of a permissive namespace.
enroll a3
if hello a3 10.96.0.70:80 --timeout-ms 2000; then
	fail "a3 (no identity) -> default/local (strict): answered '$HELLO_OUT'"
else
	pass "a3 (no identity) -> default/local (strict): refused by the policy layer"
fi
# (A log line may be held back by the per-worker rate limit: the counter says.)
series=$(in_ns "$NS_A" curl -sS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
	grep '^shoal_policy_decisions_total{' | grep 'namespace="default",service="local"' || true)
grep -q 'policy="mtls-strict",decision="deny"} [1-9]' <<<"$series" &&
	pass "counted as denied by mtls-strict (shoal_policy_decisions_total)" ||
	fail "no mtls-strict denial of default/local counted: '$series'"
if hello a3 10.96.0.80:80 --timeout-ms 2000 && [[ $HELLO_BACKEND == a2 ]]; then
	pass "a3 (no identity) -> legacy/local (permissive namespace): a2 answered"
else
	fail "a3 (no identity) -> legacy/local (permissive): '$HELLO_OUT'"
fi
unenroll a3

# ---- 3. the pod replaced, deleted, back ------------------------------------------------
k8s_apply "$(pod MODIFIED default web-0 u-web-0 admin)"
refused_within "pod web-0 now runs as admin (node-b holds default/web's certificate only)" 10.96.0.10:80 5
grep -q "tunnel: outbound connection to default/admin closed: TLS handshake failed" "$SHOALD_LOG" &&
	pass "node-a asked node-b for default/admin, which node-b could not prove" ||
	fail "no handshake to default/admin in node-a's log: $(grep 'tunnel: ' "$SHOALD_LOG" | tail -3)"
k8s_apply "$(pod DELETED default web-0 u-web-0 admin)"
refused_within "pod web-0 deleted (no identity)" 10.96.0.10:80 5
# A new pod of the same name: not the slice's (uid) until the slice says so.
k8s_apply "$(pod ADDED default web-0 u-web-0b web)"
sleep 1
refused_within "a new web-0 the slice does not name yet (uid)" 10.96.0.10:80 1
k8s_apply "$(slice default web web-0 u-web-0b)"
through_tunnel "the slice names the new web-0 (service account web)" 10

# ---- 4. node-b's last pod gone: its address forgotten ----------------------------------
k8s_apply "$(pod DELETED kube-system other-0 u-other web)"
k8s_apply "$(pod DELETED default web-0 u-web-0b web)"
for ((i = 0; i < 50; i++)); do
	nodes=$(metric_a shoal_discovery_k8s_nodes)
	((nodes == 0)) && break
	sleep 0.1
done
((nodes == 0)) && pass "node-b's pods all gone: its address forgotten (shoal_discovery_k8s_nodes 0)" ||
	fail "shoal_discovery_k8s_nodes is $nodes after node-b's last pod went (want 0)"

stop_pid "$SHOALD_B_PID"
finish
