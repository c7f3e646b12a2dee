#!/bin/bash
# mtls-rotate.sh: certificate rotation under load, and shoal-identity
# down (docs/mtls.md, "A renewed certificate retires the pooled
# connection"; docs/identity.md, "Failure"). Two shoalds, one per node netns, mtls strict, their
# certificates issued by the real shoal-identity (the stand-in API
# server's TokenReview and pod list decide) with a 20 s life renewed at
# 30 % (every ~6 s). a1 on node-a (default/client) calls b1 on node-b
# (default/web) through the tunnel for 40 s: one HTTP/1.1 keep-alive
# connection, one new connection per request to the same HTTP service,
# and one new connection per request to an opaque TCP service (a new
# CONNECT stream each), every answer checked (200 from b1).
#  (a) a rotation under load loses no request: every request of the run
#      is answered; both nodes renew at least twice during it; each side
#      sees the other present several certificates, all issued by
#      shoal-identity (serials in the logs); every new handshake, on
#      either side, presents the newest certificate; after each renewal
#      node-a's next TLS connection carries the new one, and the pooled
#      connection it replaces is retired, not torn down.
#  (b) shoal-identity going down does not stop calls: it is killed 16 s
#      into the load and started again 8 s later (less than the held
#      certificates' remaining life, more than the renewal period, so
#      every account fails at least once); calls succeed meanwhile, both
#      agents log the failed renewal, count retries with back-off and
#      expire nothing, and renew once it is back.
#  (c) a keep-alive connection alone moves off a retired connection: its
#      pooled upstream gets no new request once a renewal retired the
#      TLS connection under it, so the retired one closes though the load
#      never stops.
# The tunnel's log lines (serials of both sides per handshake) and the
# identity source's ("issued, serial ...") are the evidence;
# tests/e2e/mtls-rotate-check.py reads them.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_require openssl
e2e_init
SHOAL_IDENTITY=${SHOAL_IDENTITY:-$(dirname "$SHOALD")/../shoal-identity/shoal-identity}
[[ -x $SHOAL_IDENTITY ]] || skip "shoal-identity not found (SHOAL_IDENTITY='$SHOAL_IDENTITY'); build it first"
e2e_topology
backend_start b1 9080
# A gRPC server on b1, for a long-lived HTTP/2 session in phase (c).
GRPC_PY=$(dirname "$0")/h2-grpc.py
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3 # Debian's, with python3-grpcio
HAVE_GRPC=0
if "$PY" -c 'import grpc' 2>/dev/null; then
	HAVE_GRPC=1
	pod_spawn b1 "$LOGDIR/grpc-b1.log" "$PY" "$GRPC_PY" server b1 50051
	wait_listen "${POD_NS[b1]}" 50051
fi

HERE=$(cd "$(dirname "$0")" && pwd)
NODE_B_ADDR=10.77.2.1
PIN_ROOT_B=/sys/fs/bpf/$RUN-b
state_add "pin $PIN_ROOT_B"
mkdir "$TEST_CG/node-b" "$TEST_CG/node-b/agent" "$TEST_CG/identity" "$TEST_CG/bridge"
LOAD_S=40
DOWN_AFTER_S=16
DOWN_FOR_S=8

W=$LOGDIR/pki
mkdir -p "$W"
# ---- the PKI: a root and shoal-identity's issuer under it --------------------
ossl() { openssl "$@" >>"$W/openssl.log" 2>&1 || fatal "openssl $1 failed (see $W/openssl.log)"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/root.key" \
	-out "$W/root.crt" -days 2 -subj "/CN=e2e root" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/issuer.key" \
	-out "$W/issuer.csr" -subj "/CN=e2e issuer"
printf '%s\n' "basicConstraints=critical,CA:TRUE,pathlen:0" "keyUsage=critical,keyCertSign,cRLSign" \
	"subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid:always" >"$W/issuer.ext"
ossl x509 -req -in "$W/issuer.csr" -CA "$W/root.crt" -CAkey "$W/root.key" -CAcreateserial \
	-out "$W/issuer.crt" -days 1 -extfile "$W/issuer.ext"
cp "$W/root.crt" "$W/anchors.pem"

# ---- the stand-in API server: the agents' tokens, the pods ----------------------
echo shoald-a-token >"$W/token-a"
echo shoald-b-token >"$W/token-b"
cat >"$W/reviews" <<'JSON'
{"shoald-a-token": {"serviceAccount": "shoal-system/shoald", "pod": "shoald-a", "node": "node-a",
                    "audiences": ["shoal-identity"]},
 "shoald-b-token": {"serviceAccount": "shoal-system/shoald", "pod": "shoald-b", "node": "node-b",
                    "audiences": ["shoal-identity"]}}
JSON
k8s_apiserver_start --token-reviews "$W/reviews" --bookmark-every 2
# pod NAME SA NODE IP LABEL [HOSTNET]: an ADDED Pod event.
pod() {
	printf '{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"%s","namespace":"%s","uid":"uid-%s","labels":{"shoal.io/mesh":"%s"}},"spec":{"nodeName":"%s","serviceAccountName":"%s","hostNetwork":%s},"status":{"phase":"Running","podIP":"%s","podIPs":[{"ip":"%s"}]}}}' \
		"$1" "${2%%/*}" "$1" "$5" "$3" "${2#*/}" "${6:-false}" "$4" "$4"
}
k8s_apply "[$(pod shoald-a shoal-system/shoald node-a 192.168.77.1 disabled true),
$(pod shoald-b shoal-system/shoald node-b 192.168.77.2 disabled true),
$(pod client-1 default/client node-a "${POD_IP4[a1]}" enabled),
$(pod web-1 default/web node-b "${POD_IP4[b1]}" enabled)]"

# ---- shoal-identity, in node-a's netns ----------------------------------------
ID_PORT=""
# identity_start: shoal-identity on 127.0.0.1:ID_PORT (any port the first
# time); sets ID_PID and ID_PORT. Its log: $LOGDIR/shoal-identity.N.log.
ID_STARTS=0
identity_start() {
	local i pf=$W/identity.port
	ID_STARTS=$((ID_STARTS + 1))
	rm -f "$pf"
	spawn_in "$TEST_CG/identity" "$NS_A" "$LOGDIR/shoal-identity.$ID_STARTS.log" "$SHOAL_IDENTITY" \
		--listen "127.0.0.1:${ID_PORT:-0}" --port-file "$pf" \
		--issuer-cert "$W/issuer.crt" --issuer-key "$W/issuer.key" --anchors "$W/anchors.pem" \
		--trust-domain cluster.local --node-agent shoal-system/shoald --server-names localhost \
		--api-server "https://127.0.0.1:$API_PORT" --api-ca "$K8S_DIR/ca.crt" \
		--api-token-file "$K8S_DIR/token" --audience shoal-identity --verbose
	ID_PID=$LAST_PID
	for ((i = 0; i < 100; i++)); do
		[[ -s $pf ]] && break
		sleep 0.1
	done
	[[ -s $pf ]] || fatal "shoal-identity did not start: $(cat "$LOGDIR/shoal-identity.$ID_STARTS.log")"
	ID_PORT=$(cat "$pf")
}
identity_start
say "shoal-identity on 127.0.0.1:$ID_PORT (pid $ID_PID)"

# node-b reaches the API server and shoal-identity, both on node-a's
# loopback, at the same ports on its own loopback: a socat pair per port,
# joined by a Unix socket (a file, so seen from both netns).
bridge() { # PORT
	spawn_in "$TEST_CG/bridge" "$NS_A" "$LOGDIR/bridge-a.$1.log" socat \
		"UNIX-LISTEN:$W/bridge.$1.sock,fork" "TCP:127.0.0.1:$1"
	spawn_in "$TEST_CG/bridge" "$NS_B" "$LOGDIR/bridge-b.$1.log" socat \
		"TCP-LISTEN:$1,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$W/bridge.$1.sock"
	wait_listen "$NS_B" "$1"
}
bridge "$API_PORT"
bridge "$ID_PORT"

# ---- the two shoalds ---------------------------------------------------------------
# agent_sections NODE TOKEN CGROUP_ROOT: the kubernetes: and identity: sections.
agent_sections() {
	cat <<EOF
kubernetes:
  api_server: https://127.0.0.1:$API_PORT
  ca_file: $K8S_DIR/ca.crt
  token_file: $K8S_DIR/token
  backoff_max_ms: 1000
  authorization_policies: false
  enrollment: {node_name: $1, cgroup_root: $3, cni_socket: "", netns_dir: "", resync_ms: 1000}
identity:
  trust_domain: cluster.local
  server_url: https://localhost:$ID_PORT
  token_file: $2
  anchors_file: $W/anchors.pem
  lifetime_s: 20
  renew_fraction: 0.3
  renew_jitter: 0.1
  backoff_min_ms: 200
  backoff_max_ms: 1000
  poll_ms: 1000
  timeout_ms: 2000
EOF
}
# services NODE_B_IDENTITY: api (HTTP) and raw (opaque TCP), both to b1:9080 on node-b.
services() {
	cat <<EOF
services:
  - name: api
    namespace: default
    vips: [10.96.0.20]
    ports: [{port: 80, target_port: 9080, protocol: http}]
    endpoints: [{address: ${POD_IP4[b1]}, node: node-b, identity: default/web}]
  - name: raw
    namespace: default
    vips: [10.96.0.30]
    ports: [{port: 80, target_port: 9080, protocol: tcp}]
    endpoints: [{address: ${POD_IP4[b1]}, node: node-b, identity: default/web}]
  - name: grpc
    namespace: default
    vips: [10.96.0.50]
    ports: [{port: 50051, protocol: grpc}]
    endpoints: [{address: ${POD_IP4[b1]}, node: node-b, identity: default/web}]
EOF
}
CONFIG_B=$LOGDIR/shoald-b.yaml
{
	cat <<EOF
node: {address_v4: $NODE_B_ADDR, proxy_port: $PROXY_PORT}
bpf: {pin_root: $PIN_ROOT_B, cgroup: $TEST_CG/node-b, shortcut: true, failopen_after_ms: $FAILOPEN_AFTER_MS}
proxy: {workers: 1}
mtls: {mode: strict, node_name: node-b}
EOF
	agent_sections node-b "$W/token-b" "/$RUN/node-b"
	services
} >"$CONFIG_B"
{
	config_head
	cat <<EOF
mtls:
  mode: strict
  node_name: node-a
  nodes: [{name: node-b, address: $NODE_B_ADDR}]
  workloads: [{address: ${POD_IP4[a1]}, identity: default/client}]
EOF
	agent_sections node-a "$W/token-a" "/$RUN"
	services
} >"$CONFIG"

SHOALD_B_LOG=$LOGDIR/shoald-b.log
node_b_start "$CONFIG_B" "$SHOALD_B_LOG" --log-level info
shoald_start
enroll a1

ISSUED_A="identity: spiffe://cluster.local/ns/default/sa/client issued"
ISSUED_B="identity: spiffe://cluster.local/ns/default/sa/web issued"
wait_log "$SHOALD_LOG" "$ISSUED_A" 15 || fatal "node-a got no certificate for default/client: $(grep identity "$SHOALD_LOG" | tail -5)"
wait_log "$SHOALD_B_LOG" "$ISSUED_B" 15 || fatal "node-b got no certificate for default/web: $(grep identity "$SHOALD_B_LOG" | tail -5)"
pass "both nodes hold certificates from shoal-identity (node-a default/client, node-b default/web)"

# failures_in NETNS NS/SA: that account's consecutive failures (shoalctl identity --json).
failures_in() {
	in_ns "$1" timeout 10 "$SHOALCTL" --admin "$ADMIN_ADDR" --json identity 2>/dev/null | python3 -c '
import json, sys
ns, sa = sys.argv[1].split("/")
for a in json.load(sys.stdin)["accounts"]:
    if a["namespace"] == ns and a["service_account"] == sa:
        print(a["failures"])' "$2" 2>/dev/null || echo "?"
}

out=$(pod_curl a1 -s -o /dev/null -w '%{http_code}' http://10.96.0.20/ 2>&1) || true
[[ $out == 200 ]] || fatal "a1 -> api through the tunnel before the load: '$out'"
pass "a1 -> api (node-b) answers through the tunnel"

# ---- the load, shoal-identity killed in its middle ------------------------------------
pod_spawn a1 "$LOGDIR/load.json" python3 "$HERE/mtls-rotate-load.py" --duration "$LOAD_S" \
	--backend b1 --target keepalive:keepalive:10.96.0.20:80 --target fresh:fresh:10.96.0.20:80 \
	--target opaque:fresh:10.96.0.30:80
LOAD_PID=$LAST_PID
say "load running for $LOAD_S s; shoal-identity goes down at $DOWN_AFTER_S s for $DOWN_FOR_S s"
sleep "$DOWN_AFTER_S"
stop_pid "$ID_PID" KILL
DOWN_AT=$(date +%s.%N)
say "shoal-identity killed (pid $ID_PID)"
sleep $((DOWN_FOR_S - 2))
fa=$(failures_in "$NS_A" default/client)
fb=$(failures_in "$NS_B" default/web)
rfa=$(metric_in "$NS_A" shoal_identity_renewal_failures_total)
rfb=$(metric_in "$NS_B" shoal_identity_renewal_failures_total)
# back DOWN_FOR_S after the kill, whatever the queries took
sleep "$(awk -v d="$DOWN_AT" -v f="$DOWN_FOR_S" -v n="$(date +%s.%N)" 'BEGIN { s = d + f - n; printf "%.2f", (s > 0 ? s : 0) }')"
# Taken before the start: an agent in back-off may be issued a
# certificate before identity_start's wait for the listener returns.
UP_AT=$(date +%s.%N)
identity_start
say "shoal-identity back (pid $ID_PID) after $(awk -v a="$DOWN_AT" -v b="$UP_AT" 'BEGIN { printf "%.1f", b - a }') s"
# Back-off: retried more than once, but nowhere near a tight loop (at
# most ~9 tries fit in 6 s between 200 ms and the 1 s cap).
for x in "node-a default/client $fa $rfa" "node-b default/web $fb $rfb"; do
	read -r n acct f rf <<<"$x"
	if [[ $f =~ ^[0-9]+$ ]] && ((f >= 2 && f <= 20 && rf >= 2)); then
		pass "$n retried $acct's renewal with back-off: $f failed tries in ~$((DOWN_FOR_S - 2)) s (renewal_failures_total $rf)"
	else
		fail "$n: $acct failures '$f', renewal_failures_total '$rf' with shoal-identity down (want 2..20)"
	fi
done
wait "$LOAD_PID" || fail "the load client exited with an error: $(tail -3 "$LOGDIR/load.json")"
[[ -s $LOGDIR/load.json ]] || fatal "the load client printed nothing"

# ---- the checks on the logs -------------------------------------------------------------
while IFS= read -r line; do
	case $line in
	"ok: "*) pass "${line#ok: }" ;;
	"FAIL: "*) fail "${line#FAIL: }" ;;
	"note: "*) say "${line#note: }" ;;
	*) fail "mtls-rotate-check.py: $line" ;;
	esac
done < <(python3 "$HERE/mtls-rotate-check.py" "$LOGDIR/load.json" "$SHOALD_LOG" "$SHOALD_B_LOG" \
	"$DOWN_AT" "$UP_AT" "$LOGDIR"/shoal-identity.*.log 2>&1 || true)
# ---- keep-alive alone: its requests leave a retired connection ------------------------
# One HTTP/1.1 connection and one gRPC channel (an HTTP/2 session
# upstream), nothing else, for 9 s (a renewal every ~6 s): no new call
# opens a stream, yet each connection retired on renewal must close, as
# the proxy gives its pooled upstream and its session on it no new request.
KA_S=9
GRPC_PID=
if ((HAVE_GRPC)); then
	pod_spawn a1 "$LOGDIR/grpc-steady.log" "$PY" "$GRPC_PY" steady 10.96.0.50:50051 "$KA_S"
	GRPC_PID=$LAST_PID
fi
pod_spawn a1 "$LOGDIR/load-keepalive.json" python3 "$HERE/mtls-rotate-load.py" --duration "$KA_S" \
	--backend b1 --target keepalive:keepalive:10.96.0.20:80
wait "$LAST_PID" || fail "the keep-alive load exited with an error: $(tail -3 "$LOGDIR/load-keepalive.json")"
if [[ -n $GRPC_PID ]]; then
	wait "$GRPC_PID" || true
	read -r _ g_ok _ g_bad <"$LOGDIR/grpc-steady.log" || true
	((${g_bad:-1} == 0 && ${g_ok:-0} > 100)) &&
		pass "one gRPC channel alongside: $g_ok calls, none failed, across the renewals" ||
		fail "the gRPC channel alongside: $(head -c 300 "$LOGDIR/grpc-steady.log")"
else
	say "no gRPC channel in phase (c): no python3-grpcio for $PY (scripts/setup.sh installs it)"
fi
out=$(python3 - "$LOGDIR/load-keepalive.json" "$SHOALD_LOG" <<'PY'
import calendar, json, re, sys, time
load = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
start, end = load["start"], load["end"]
k = load["kinds"]["keepalive"]
retired = closed = 0
for line in open(sys.argv[2], errors="replace"):
    m = re.match(r"^(\S+)\.(\d{3})Z shoal \w+: (.*)$", line)
    if not m:
        continue
    t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000
    if start <= t <= end - 2 and "retired (its certificate was renewed)" in m.group(3):
        retired += 1
    if start <= t <= end + 1 and m.group(3).startswith("tunnel: retired connection to ") \
            and "its last stream ended" in m.group(3):
        closed += 1
print(k["ok"], k["failed"], retired, closed)
PY
)
read -r ka_ok ka_bad ka_retired ka_closed <<<"$out"
if ((ka_bad == 0 && ka_ok > 100 && ka_retired >= 1 && ka_closed >= ka_retired)); then
	pass "keep-alive alone: $ka_ok requests, none failed; $ka_retired connections retired on renewal, $ka_closed closed after their last stream"
else
	fail "keep-alive alone: ok '$ka_ok' failed '$ka_bad', retired '$ka_retired', closed '$ka_closed' (want every retired one closed: its requests moved)"
fi
moved=$(metric_in "$NS_A" shoal_proxy_upstream_tunnel_retired_total)
((moved >= 1)) && pass "node-a's proxy moved keep-alive requests off retired connections (shoal_proxy_upstream_tunnel_retired_total $moved)" ||
	fail "node-a's shoal_proxy_upstream_tunnel_retired_total is $moved: the keep-alive load stayed on a retired connection"
retired=$(metric_in "$NS_A" shoal_tunnel_connections_retired_total)
((retired >= 2)) && pass "node-a's shoal_tunnel_connections_retired_total is $retired" ||
	fail "node-a's shoal_tunnel_connections_retired_total is $retired (want >= 2)"
for n in "$NS_A:node-a" "$NS_B:node-b"; do
	e=$(metric_in "${n%%:*}" shoal_identity_expired_total)
	((e == 0)) && pass "${n#*:}: no certificate expired (shoal_identity_expired_total 0)" ||
		fail "${n#*:}: shoal_identity_expired_total $e"
done
say "node-a: $(metric_in "$NS_A" shoal_tunnel_connections_out_total) TLS connections opened, $(metric_in "$NS_A" shoal_tunnel_connections_open) open at the end, $(metric_in "$NS_A" shoal_tunnel_streams_out_total) streams; node-b: $(metric_in "$NS_B" shoal_tunnel_streams_failed_total) streams failed"
((E2E_FAILED)) && {
	grep -E "tunnel|identity" "$SHOALD_LOG" | tail -15 | sed 's/^/    a: /'
	grep -E "tunnel|identity" "$SHOALD_B_LOG" | tail -15 | sed 's/^/    b: /'
}
stop_pid "$SHOALD_B_PID"
finish
