#!/bin/bash
# mtls.sh: the encrypted hop between nodes (docs/mtls.md). Two shoalds,
# one per node netns (node-a's the usual one, node-b's with its own pin
# root, attached at the cgroup its shoald runs in), mtls strict on both; certificates
# from the identity file source, made here by openssl: a root, the
# client pod a1's identity default/client on node-a, the backend b1's
# default/web on node-b.
#  1. a1 -> web (opaque TCP), -> api (HTTP), -> grpc (20 calls on one
#     HTTP/2 connection) and -> h2h1 (h2c to HTTP/1.1) reach b1 through the
#     tunnel: b1 sees node-b's address, and node-a counts tunneled
#     connections and CONNECT streams; node-a's spans of the HTTP calls
#     (at its collector stand-in, tests/tools/otlp-receiver.py) carry
#     both SPIFFE IDs and shoal.mtls true, and a caller without identity's
#     has neither;
#  2. a capture on the underlay (ul0) holds TLS on port 15008 and no
#     byte of the request's or the response's plaintext markers;
#  3. b1's requests carry x-shoal-peer-identity (mtls.peer_identity_header)
#     once, the caller's, not the one a1 forged: HTTP/1, gRPC (HTTP/2
#     upstream) and h2c translated to HTTP/1.1;
#  4. node-b refuses on 15008: openssl s_client with no certificate, with
#     a forged one (self-signed, the right SPIFFE ID), with one of the
#     wrong trust domain, with an expired one; a plaintext client; and a
#     node-a whose endpoint names the wrong identity gets no connection;
#  5. no socket of port 15008 is in either node's SOCKHASH while a call
#     is held, and the kTLS gauges say whether the kernel offloads (or
#     why not);
#  6. strict refuses an endpoint of node-b without identity; a flood of
#     silent handshakes from one source is bounded;
#  7. node-b's policy decides each CONNECT by the proven caller, though
#     node-a has none: an edit under load closes the tunneled connection
#     it denies and no allowed GET fails, a denial is counted and logged
#     on both nodes; with the policy on node-a too, a POST gets node-a's
#     403 and x-shoal-policy; node-b counts the streams, bytes and
#     refusals per (proven caller, local identity) in bounded series.
# shellcheck shell=bash disable=SC2034
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_require openssl tcpdump
e2e_init
# b1's cgroup under node-b's attach point: its sockets see node-b's
# programs, so the destination's leg to it can take the shortcut.
E2E_NODE_B_CGROUP=1
e2e_topology
backend_start b1 9080
# A gRPC server on b1, for HTTP/2 across the hop (python3-grpcio).
GRPC_PY=$(dirname "$0")/h2-grpc.py
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
HAVE_GRPC=0
if "$PY" -c 'import grpc' 2>/dev/null; then
	HAVE_GRPC=1
	pod_spawn b1 "$LOGDIR/grpc-b1.log" "$PY" "$GRPC_PY" server b1 50051
	wait_listen "${POD_NS[b1]}" 50051
fi

MTLS_PORT=15008
NODE_B_ADDR=10.77.2.1
# node-a's collector stand-in, for the spans of the calls across the hop.
RECEIVER=$(cd "$(dirname "$0")/../tools" && pwd)/otlp-receiver.py
COLLECTOR_PORT=4318
PIN_ROOT_B=/sys/fs/bpf/$RUN-b
state_add "pin $PIN_ROOT_B"
# node-b's shoald lives under its own attach point, so that its sockops
# sees its accepted 15008 sockets (the SOCKHASH check below).
mkdir -p "$TEST_CG/node-b" "$TEST_CG/node-b/agent"
ID=$LOGDIR/id
mkdir -p "$ID/a" "$ID/b" "$ID/bad"

# ---- certificates ------------------------------------------------------------
TD=cluster.local
ossl() { openssl "$@" >>"$LOGDIR/openssl.log" 2>&1 || fatal "openssl $1 failed (see $LOGDIR/openssl.log)"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ID/ca.key" \
	-out "$ID/ca.crt" -days 2 -subj /CN=shoal-e2e-root \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
# leaf OUT URI [SIGNER_CRT SIGNER_KEY] [DAYS]: a P-256 leaf with URI SAN URI.
leaf() {
	local out=$1 uri=$2 ca=${3:-$ID/ca.crt} cakey=${4:-$ID/ca.key} days=${5:-1}
	printf 'subjectAltName=URI:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
		"$uri" >"$out.ext"
	ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$out.key" -out "$out.csr" \
		-subj "/CN=$(basename "$out")"
	ossl x509 -req -in "$out.csr" -CA "$ca" -CAkey "$cakey" -CAcreateserial -days "$days" \
		-out "$out.crt" -extfile "$out.ext"
}
leaf "$ID/a/default_client" "spiffe://$TD/ns/default/sa/client"
leaf "$ID/b/default_web" "spiffe://$TD/ns/default/sa/web"
cp "$ID/ca.crt" "$ID/a/anchors.pem"
cp "$ID/ca.crt" "$ID/b/anchors.pem"
# Bad ones, for the refusals.
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ID/bad/forged.key" \
	-out "$ID/bad/forged.crt" -days 1 -subj /CN=forged \
	-addext "subjectAltName=URI:spiffe://$TD/ns/default/sa/client"
leaf "$ID/bad/wrong-td" "spiffe://evil.example/ns/default/sa/client"
# Expired: valid from 3 days ago to 2 days ago (openssl ca takes dates).
mkdir -p "$ID/ca-db"
: >"$ID/ca-db/index.txt"
echo 1000 >"$ID/ca-db/serial"
cat >"$ID/ca-db/ca.cnf" <<EOF
[ca]
default_ca = e2e
[e2e]
database = $ID/ca-db/index.txt
serial = $ID/ca-db/serial
new_certs_dir = $ID/ca-db
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
EOF
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ID/bad/expired.key" \
	-out "$ID/bad/expired.csr" -subj /CN=expired
printf 'subjectAltName=URI:spiffe://%s/ns/default/sa/client\nextendedKeyUsage=serverAuth,clientAuth\n' "$TD" >"$ID/bad/expired.ext"
ossl ca -batch -config "$ID/ca-db/ca.cnf" -cert "$ID/ca.crt" -keyfile "$ID/ca.key" \
	-in "$ID/bad/expired.csr" -out "$ID/bad/expired.crt" -extfile "$ID/bad/expired.ext" \
	-startdate "$(date -u -d '-3 days' +%Y%m%d%H%M%SZ)" -enddate "$(date -u -d '-2 days' +%Y%m%d%H%M%SZ)"
pass "certificates made: a root, default/client, default/web and four bad ones"

# ---- configs -----------------------------------------------------------------
# write_config_b [POLICY]: node-b's config, with POLICY (a policy: section) at its end.
CONFIG_B=$LOGDIR/shoald-b.yaml
write_config_b() {
	cat >"$CONFIG_B.new" <<EOF
node: {address_v4: $NODE_B_ADDR, proxy_port: $PROXY_PORT}
bpf: {pin_root: $PIN_ROOT_B, cgroup: $TEST_CG/node-b, shortcut: true, failopen_after_ms: $FAILOPEN_AFTER_MS}
proxy: {workers: 1}
identity: {source: files, dir: "$ID/b"}
mtls: {mode: strict, node_name: node-b, max_handshakes_per_source: 4, handshake_timeout_ms: 1000}
services:
  - name: web
    namespace: default
    vips: [10.96.0.10]
    ports: [{port: 80, target_port: 8080, protocol: tcp}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: default/web}]
  - name: api
    namespace: default
    vips: [10.96.0.20]
    ports: [{port: 80, target_port: 9080, protocol: http}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: default/web}]
  - name: bulk
    namespace: default
    vips: [10.96.0.30]
    ports: [{port: 80, target_port: 9000, protocol: tcp}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: default/web}]
  - name: grpc
    namespace: default
    vips: [10.96.0.50]
    ports: [{port: 50051, protocol: grpc}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: default/web}]
${1:-}
EOF
	mv "$CONFIG_B.new" "$CONFIG_B" # whole, for the reload
}
write_config_b

# write_config_a WEB_IDENTITY [MTLS_PORT] [POLICY]: node-a's, with b1 as
# WEB_IDENTITY on node-b, whose tunnel is on MTLS_PORT (default 15008),
# and POLICY (a policy: section) at its end.
write_config_a() {
	{
		config_head
		cat <<EOF
identity: {source: files, dir: "$ID/a"}
mtls:
  mode: strict
  port: ${2:-15008}
  node_name: node-a
  peer_identity_header: true
  nodes: [{name: node-b, address: $NODE_B_ADDR}]
  workloads: [{address: ${POD_IP4[a1]}, identity: default/client}]
  services: [{namespace: default, name: legacy, mode: permissive}]
tracing:
  enabled: true
  collector_url: http://127.0.0.1:$COLLECTOR_PORT/v1/traces
  sample_rate: 1.0
  batch_delay_ms: 100
  timeout_ms: 500
services:
  - name: web
    namespace: default
    vips: [10.96.0.10]
    ports: [{port: 80, target_port: 8080, protocol: tcp}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: $1}]
  - name: api
    namespace: default
    vips: [10.96.0.20]
    ports: [{port: 80, target_port: 9080, protocol: http}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: $1}]
  - name: bulk
    namespace: default
    vips: [10.96.0.30]
    ports: [{port: 80, target_port: 9000, protocol: tcp}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: $1}]
  - name: grpc
    namespace: default
    vips: [10.96.0.50]
    ports: [{port: 50051, protocol: grpc}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: $1}]
  - name: legacy
    namespace: default
    vips: [10.96.0.70]
    ports: [{port: 80, target_port: 9080, protocol: http}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: $1}]
  - name: h2h1
    namespace: default
    vips: [10.96.0.60]
    ports: [{port: 80, target_port: 9080, protocol: h2c, upstream_protocol: http1}]
    endpoints: [{address: 10.77.2.2, node: node-b, identity: $1}]
  - name: plain
    namespace: default
    vips: [10.96.0.40]
    ports: [{port: 80, target_port: 8080, protocol: tcp}]
    endpoints: [{address: 10.77.2.2, node: node-b}]
${3:-}
EOF
	} >"$CONFIG.new"
	mv "$CONFIG.new" "$CONFIG"
}
write_config_a default/web

# ---- node-b's shoald -----------------------------------------------------------
node_b_start "$CONFIG_B" "$LOGDIR/shoald-b.log" --log-level debug
# b1 is a meshed pod of node-b: enrolled there (its netns), as a label would.
timeout 20 "$SHOALCTL" --pin-root "$PIN_ROOT_B" enroll "/run/netns/${POD_NS[b1]}" >/dev/null ||
	fatal "shoalctl enroll b1 on node-b failed"
# counter_b NAME: a datapath counter of node-b's shoald.
counter_b() {
	timeout 20 "$SHOALCTL" --pin-root "$PIN_ROOT_B" counters |
		awk -v n="$1" '$1 == n && NF == 2 { print $2; exit }'
}
pass "node-b's shoald listens on $NODE_B_ADDR:$MTLS_PORT"

spawn_in "$TEST_CG/agent" "$NS_A" "$LOGDIR/receiver.log" python3 "$RECEIVER" --port "$COLLECTOR_PORT"
wait_listen "$NS_A" "$COLLECTOR_PORT"
shoald_start
enroll a1

# spans_where KEY VALUE: "service source destination mtls" of each span
# node-a's collector holds whose KEY (traceId, or an attribute) is VALUE,
# one a line, counted (uniq -c); "-" for an attribute left out.
spans_where() {
	in_ns "$NS_A" curl -sS --max-time 5 "http://127.0.0.1:$COLLECTOR_PORT/spans" | python3 -c '
import json, sys
for s in json.load(sys.stdin)["spans"]:
    a = s["attributes"]
    if s.get(sys.argv[1], a.get(sys.argv[1])) == sys.argv[2]:
        print(a.get("shoal.service"), a.get("shoal.source.identity", "-"),
              a.get("shoal.destination.identity", "-"), a.get("shoal.mtls", "-"))' "$1" "$2" |
		sort | uniq -c | awk '{ $1 = $1; print }'
}
# wait_spans KEY VALUE COUNT: spans_where, once COUNT such spans arrived (5 s).
wait_spans() {
	local out i
	for ((i = 0; i < 50; i++)); do
		out=$(spans_where "$1" "$2")
		(($(awk '{ n += $1 } END { print n + 0 }' <<<"$out") >= $3)) && break
		sleep 0.1
	done
	echo "$out"
}
SPIFFE_CLIENT=spiffe://$TD/ns/default/sa/client
SPIFFE_WEB=spiffe://$TD/ns/default/sa/web

metric_b() { metric_in "$NS_B" "$1"; }
metric_a() { metric_in "$NS_A" "$1"; }

# ---- 1. calls across the hop, and 2. the capture ---------------------------------
PCAP=$LOGDIR/underlay.pcap
spawn_in "$TEST_CG/agent" "$NS_A" "$LOGDIR/tcpdump.log" tcpdump -i ul0 -U -w "$PCAP" -s 0 tcp
TCPDUMP_PID=$LAST_PID
wait_log "$LOGDIR/tcpdump.log" "listening on" 5 || fatal "tcpdump did not start: $(cat "$LOGDIR/tcpdump.log")"

tunneled0=$(metric_a shoal_proxy_mtls_tunneled_total)
streams_in0=$(metric_b shoal_tunnel_streams_in_total)
if hello a1 10.96.0.10:80 && [[ $HELLO_BACKEND == b1 && $HELLO_SEEN == "$NODE_B_ADDR" ]]; then
	pass "a1 -> web (opaque TCP): b1 answered, and saw node-b's tunnel ($HELLO_SEEN)"
else
	fail "a1 -> web (opaque TCP) through the tunnel: '$HELLO_OUT'"
fi

REQ_MARK=plaintextreqmark$RANDOM$RANDOM
RESP_MARK=plaintextrespmark$RANDOM$RANDOM
API_TRACE=$(printf '%08x' $RANDOM $RANDOM $RANDOM $RANDOM)
FORGED=spiffe://evil/ns/kube-system/sa/admin
out=$(pod_curl a1 -H "x-e2e-mark: $REQ_MARK" -H "traceparent: 00-$API_TRACE-00f067aa0ba902b7-01" \
	-H "x-shoal-peer-identity: $FORGED" \
	"http://10.96.0.20/hello?headers=1&x=$RESP_MARK" 2>&1) ||
	fail "a1 -> api (HTTP) through the tunnel failed: $out"
if grep -qi "^x-e2e-mark: $REQ_MARK" <<<"$(tr -d '\r' <<<"$out")"; then
	pass "a1 -> api (HTTP): b1 got the request through the tunnel"
else
	fail "a1 -> api (HTTP): b1's echo of the head lacks the marker: $out"
fi
# HTTP/2 upstream sessions cross the hop too, one per caller identity: 20
# gRPC calls on one client connection, and h2c translated to HTTP/1.1.
# (The capture below holds them: nothing left the node outside 15008.)
if ((HAVE_GRPC)); then
	h2out=$(pod_run a1 timeout 30 "$PY" "$GRPC_PY" balance 10.96.0.50:50051 20 2>&1)
	[[ $h2out == "b1 20" ]] && pass "a1 -> grpc: 20 calls on one connection answered by b1 through the tunnel" ||
		fail "a1 -> grpc through the tunnel: '$h2out'"
else
	say "gRPC across the hop not checked: no python3-grpcio for $PY (scripts/setup.sh installs it)"
fi
h2out=$(pod_curl a1 --http2-prior-knowledge -s -w '\n%{http_code}' -H "x-shoal-peer-identity: $FORGED" \
	'http://10.96.0.60/hello?headers=1' 2>&1)
[[ ${h2out##*$'\n'} == 200 ]] && pass "a1 -> h2h1 (h2c to an HTTP/1.1 endpoint): 200 through the tunnel" ||
	fail "a1 -> h2h1 (h2c translated to HTTP/1.1) through the tunnel: '$h2out'"
# The spans node-a recorded of these calls: the caller, the identity the
# tunnel made the endpoint prove, and the hop (docs/tracing.md).
want="$SPIFFE_CLIENT $SPIFFE_WEB True"
got=$(wait_spans traceId "$API_TRACE" 1)
[[ $got == "1 default/api $want" ]] &&
	pass "node-a's span of a1 -> api: shoal.source.identity $SPIFFE_CLIENT, shoal.destination.identity $SPIFFE_WEB, shoal.mtls true" ||
	fail "node-a's span of a1 -> api (trace $API_TRACE): '$got' (want '1 default/api $want')"
got=$(wait_spans shoal.service default/h2h1 1)
[[ $got == "1 default/h2h1 $want" ]] &&
	pass "node-a's span of a1 -> h2h1 (HTTP/2 to HTTP/1.1 across the hop) carries both identities and shoal.mtls" ||
	fail "node-a's span of a1 -> h2h1: '$got' (want '1 default/h2h1 $want')"
if ((HAVE_GRPC)); then
	got=$(wait_spans shoal.service default/grpc 20)
	[[ $got == "20 default/grpc $want" ]] &&
		pass "node-a's 20 spans of a1 -> grpc (one HTTP/2 session through the tunnel) carry both identities and shoal.mtls" ||
		fail "node-a's spans of a1 -> grpc: '$got' (want '20 default/grpc $want')"
fi
# 3. The source identity, as the backend sees it: every value, comma-separated.
peers() { tr -d '\r' | awk 'tolower($1) == "x-shoal-peer-identity:" { print $2 }' | paste -sd,; }
peer=$(peers <<<"$out")
[[ $peer == "spiffe://$TD/ns/default/sa/client" ]] &&
	pass "b1's request carries x-shoal-peer-identity once, the caller's, not a1's forged one: $peer" ||
	fail "b1's request should carry x-shoal-peer-identity spiffe://$TD/ns/default/sa/client once (got '$peer')"
peer=$(peers <<<"$h2out")
[[ $peer == "spiffe://$TD/ns/default/sa/client" ]] &&
	pass "a1 -> h2h1: the translated request carries x-shoal-peer-identity once, the caller's: $peer" ||
	fail "a1 -> h2h1: the translated request should carry x-shoal-peer-identity spiffe://$TD/ns/default/sa/client once (got '$peer')"
# On an HTTP/2 upstream session (after the spans above: it is a 21st gRPC call).
if ((HAVE_GRPC)); then
	h2peer=$(pod_run a1 timeout 10 "$PY" "$GRPC_PY" ident 10.96.0.50:50051 2>&1)
	[[ $h2peer == "spiffe://$TD/ns/default/sa/client" ]] &&
		pass "a1 -> grpc: b1's call carries one x-shoal-peer-identity, the caller's, not a1's forged one" ||
		fail "a1 -> grpc: b1's call should carry x-shoal-peer-identity spiffe://$TD/ns/default/sa/client once (got '$h2peer')"
fi
# A bulk transfer, both ways at once, checksummed.
BYTES=$((8 << 20))
redirect0=$(counter_b redirect_msgs)
pod_spawn b1 "$LOGDIR/stream.server.log" "$SHOAL_PEER" stream-server --listen 0.0.0.0:9000 \
	--bytes "$BYTES" --seed 7
spid=$LAST_PID
wait_listen "${POD_NS[b1]}" 9000
t0=$(date +%s%N)
cout=$(pod_run a1 "$SHOAL_PEER" stream-client --to 10.96.0.30:80 --bytes "$BYTES" --seed 7 \
	2>"$LOGDIR/stream.client.err") || fail "bulk: stream-client failed: $(cat "$LOGDIR/stream.client.err")"
t1=$(date +%s%N)
wait "$spid" || true
sout=$(grep '^sent=' "$LOGDIR/stream.server.log" || true)
say "bulk: 8 MiB each way in $(((t1 - t0) / 1000000)) ms through the tunnel"
stream_intact "bulk through the tunnel" "$cout" "$sout" "$BYTES" "$BYTES" &&
	pass "bulk: 8 MiB each way, both directions at once, arrived intact through the tunnel"
# The destination's leg to b1 is on node-b: its bytes took node-b's
# shortcut (the tunnel's socket to b1 is marked, b1 is enrolled there).
redirect=$(counter_b redirect_msgs)
((${redirect:-0} - ${redirect0:-0} >= 100)) &&
	pass "node-b's leg to b1 took the sockmap shortcut: redirect_msgs $redirect0 -> $redirect during the bulk" ||
	fail "node-b's redirect_msgs went '$redirect0' -> '$redirect' during the bulk: the leg to b1 stayed on TCP"

tunneled=$(metric_a shoal_proxy_mtls_tunneled_total)
((tunneled - tunneled0 >= 2)) && pass "node-a sent $((tunneled - tunneled0)) connections through the tunnel" ||
	fail "node-a's shoal_proxy_mtls_tunneled_total went $tunneled0 -> $tunneled (want >= 2)"
streams_in=$(metric_b shoal_tunnel_streams_in_total)
((streams_in - streams_in0 >= 2)) && pass "node-b accepted $((streams_in - streams_in0)) CONNECT streams" ||
	fail "node-b's shoal_tunnel_streams_in_total went $streams_in0 -> $streams_in (want >= 2)"
conns_out=$(metric_a shoal_tunnel_connections_out_total)
# Pooled per (source, destination, node) in each proxy worker's loop:
# config_head runs 2 workers, so 1 or 2 connections, never one per call.
((conns_out >= 1 && conns_out <= 2)) &&
	pass "$conns_out pooled TLS connections (one per proxy worker at most) carried every call of default/client to node-b" ||
	fail "node-a opened $conns_out TLS connections (want 1 or 2: pooled per source, destination, node and worker)"

sleep 0.5
stop_pid "$TCPDUMP_PID" INT
tls_bytes=$(tcpdump -r "$PCAP" -nn "tcp port $MTLS_PORT" 2>/dev/null | wc -l)
((tls_bytes > 0)) && pass "the capture holds $tls_bytes packets on port $MTLS_PORT" ||
	fail "the capture holds no packet on port $MTLS_PORT: was the hop taken?"
plain=$(tcpdump -r "$PCAP" -nn "tcp and not port $MTLS_PORT" 2>/dev/null | wc -l)
((plain == 0)) && pass "no packet on the underlay outside port $MTLS_PORT" ||
	fail "$plain packets on the underlay outside port $MTLS_PORT (plaintext path?)"
if grep -qa -e "$REQ_MARK" -e "$RESP_MARK" -e "x-e2e-mark" "$PCAP"; then
	fail "the underlay capture holds a plaintext marker of the request or the response"
else
	pass "the underlay capture holds neither the request's nor the response's marker"
fi

# ---- 5. sockmap and kTLS ---------------------------------------------------------
hold_start a1 10.96.0.10:80 --interval-ms 100 --count 30 --timeout-ms 2000
sleep 1
# sockhash_ports PIN_ROOT: the local and remote ports of every socket in
# that shoald's SOCKHASH.
sockhash_ports() {
	bpftool -j map dump pinned "$1/maps/shoal_shortcut" 2>/dev/null |
	python3 -c '
import json, sys
for e in json.load(sys.stdin):
    k = e.get("formatted", {}).get("key") or {}
    for f in ("local_port", "remote_port"):
        v = k.get(f)
        if isinstance(v, int):
            print(((v & 0xff) << 8) | (v >> 8))
    if not k and "key" in e:
        b = [int(x, 16) for x in e["key"]]
        print(b[32] << 8 | b[33]); print(b[34] << 8 | b[35])
' 2>/dev/null | sort -u | tr '\n' ' '
}
for node in a b; do
	if [[ $node == a ]]; then root=$PIN_ROOT; else root=$PIN_ROOT_B; fi
	[[ -e $root/maps/shoal_shortcut ]] || fatal "node-$node has no pinned shoal_shortcut under $root"
	ports=$(sockhash_ports "$root")
	if [[ " $ports " == *" $MTLS_PORT "* ]]; then
		fail "a socket of port $MTLS_PORT is in node-$node's SOCKHASH (ports: $ports)"
	else
		pass "no socket of port $MTLS_PORT in node-$node's SOCKHASH while a call is held (ports there: ${ports:-none})"
	fi
	# node-b's side of the held call to b1:8080 (the tunnel's socket, and b1's) is there.
	if [[ $node == b ]]; then
		[[ " $ports " == *" 8080 "* ]] &&
			pass "node-b's SOCKHASH holds the held call's leg to b1:8080" ||
			fail "node-b's SOCKHASH lacks the leg to b1:8080 (ports: ${ports:-none})"
	fi
done
hold_alive "held call" "the tunneled hold connection"
stop_pid "$HOLD_PID"
ktls_tx=$(metric_a shoal_tunnel_ktls_tx)
ktls_rx=$(metric_a shoal_tunnel_ktls_rx)
ulp=$(in_ns "$NS_A" python3 -c '
import socket
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname())
try:
    c.setsockopt(socket.IPPROTO_TCP, 31, b"tls"); print("ok")
except OSError as e:
    print(e.strerror)' 2>&1)
if [[ $ulp == ok ]]; then
	((ktls_tx >= 1)) && pass "kTLS: the kernel encrypts the tunnel's transmit side (shoal_tunnel_ktls_tx $ktls_tx, rx $ktls_rx)" ||
		fail "kTLS is available (TCP_ULP tls) but shoal_tunnel_ktls_tx is $ktls_tx"
else
	((ktls_tx == 0)) && say "kTLS not checked: this kernel has no tls ULP (setsockopt TCP_ULP \"tls\": $ulp; modprobe tls needs the module); the gauges say 0 (tx $ktls_tx, rx $ktls_rx)" ||
		fail "no tls ULP, yet shoal_tunnel_ktls_tx is $ktls_tx"
fi

# ---- 4. refusals on 15008 --------------------------------------------------------
# s_client_refused LABEL ARGS...: a TLS client with ARGS is refused by node-b.
s_client_refused() {
	local label=$1 before after out
	shift
	before=$(metric_b shoal_tunnel_handshake_failures_total)
	out=$(in_ns "$NS_A" timeout 10 openssl s_client -connect "$NODE_B_ADDR:$MTLS_PORT" -tls1_3 \
		-servername web.default.id.shoal -CAfile "$ID/ca.crt" "$@" </dev/null 2>&1 |
		tr '\n' ' ') || true
	after=$(metric_b shoal_tunnel_handshake_failures_total)
	if ((after > before)) && ! grep -q "Verify return code: 0 (ok).*Post-Handshake New Session Ticket" <<<"$out"; then
		pass "$label: refused (node-b's handshake failures $before -> $after)"
	else
		fail "$label: not refused (failures $before -> $after): ${out:0:400}"
	fi
}
s_client_refused "openssl s_client without a certificate"
s_client_refused "a forged certificate (self-signed, the right SPIFFE ID)" \
	-cert "$ID/bad/forged.crt" -key "$ID/bad/forged.key"
s_client_refused "a certificate of another trust domain" \
	-cert "$ID/bad/wrong-td.crt" -key "$ID/bad/wrong-td.key"
s_client_refused "an expired certificate" -cert "$ID/bad/expired.crt" -key "$ID/bad/expired.key"
before=$(metric_b shoal_tunnel_handshake_failures_total)
in_ns "$NS_A" timeout 5 socat -T 3 - "TCP:$NODE_B_ADDR:$MTLS_PORT" <<<"GET / HTTP/1.1" >/dev/null 2>&1 || true
sleep 0.3
after=$(metric_b shoal_tunnel_handshake_failures_total)
((after > before)) && pass "a plaintext client on $MTLS_PORT is refused (failures $before -> $after)" ||
	fail "a plaintext client on $MTLS_PORT: failures $before -> $after"
# The right client certificate, asking for the right identity, gets a session.
out=$(in_ns "$NS_A" timeout 10 openssl s_client -connect "$NODE_B_ADDR:$MTLS_PORT" -tls1_3 \
	-servername web.default.id.shoal -CAfile "$ID/ca.crt" -cert "$ID/a/default_client.crt" \
	-key "$ID/a/default_client.key" </dev/null 2>&1 | tr '\n' ' ') || true
grep -q "Verify return code: 0 (ok)" <<<"$out" && grep -q "URI:spiffe://$TD/ns/default/sa/web\|sa/web" <<<"$out$(in_ns "$NS_A" timeout 10 openssl s_client -connect "$NODE_B_ADDR:$MTLS_PORT" -tls1_3 -servername web.default.id.shoal -CAfile "$ID/ca.crt" -cert "$ID/a/default_client.crt" -key "$ID/a/default_client.key" -showcerts </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName 2>/dev/null)" &&
	pass "with default/client's certificate, node-b presents default/web's, verified by the root" ||
	fail "a good client certificate did not get default/web's verified certificate: ${out:0:400}"

# strict: an endpoint on node-b with no identity (no shoal there, as far
# as node-a knows) is refused rather than called in plaintext.
refused0=$(metric_a shoal_proxy_mtls_refused_total)
if hello a1 10.96.0.40:80 --timeout-ms 3000; then
	fail "strict: a1 -> an endpoint of node-b without identity answered: '$HELLO_OUT'"
else
	pass "strict: a1 -> an endpoint of node-b without identity is refused, not sent in plaintext"
fi
refused=$(metric_a shoal_proxy_mtls_refused_total)
((refused > refused0)) && pass "node-a counted it (shoal_proxy_mtls_refused_total $refused0 -> $refused)" ||
	fail "shoal_proxy_mtls_refused_total went $refused0 -> $refused"

# A handshake flood from one source: 12 connections that never speak.
# node-b takes 4 at once from it (max_handshakes_per_source), closes the
# rest at accept, and times the 4 out after handshake_timeout_ms (1 s);
# the pooled connection already up keeps carrying calls.
refused0=$(metric_b shoal_tunnel_handshakes_refused_total)
timeouts0=$(metric_b shoal_tunnel_handshake_timeouts_total)
spawn_in "$TEST_CG/agent" "$NS_A" "$LOGDIR/flood.log" python3 -c '
import socket, sys, time
s = [socket.create_connection((sys.argv[1], int(sys.argv[2]))) for _ in range(12)]
time.sleep(2.5)' "$NODE_B_ADDR" "$MTLS_PORT"
FLOOD_PID=$LAST_PID
sleep 0.5
if hello a1 10.96.0.10:80 && [[ $HELLO_BACKEND == b1 ]]; then
	pass "during the flood, a1 -> web still answered through the pooled connection"
else
	fail "during the flood, a1 -> web failed: '$HELLO_OUT'"
fi
wait "$FLOOD_PID" 2>/dev/null || true
refused=$(metric_b shoal_tunnel_handshakes_refused_total)
timeouts=$(metric_b shoal_tunnel_handshake_timeouts_total)
((refused - refused0 >= 8)) && pass "flood: node-b refused $((refused - refused0)) connections at accept (>= 8 of 12)" ||
	fail "flood: node-b refused $((refused - refused0)) (want >= 8: 12 less the 4 per source)"
((timeouts - timeouts0 >= 4)) && pass "flood: node-b timed out $((timeouts - timeouts0)) silent handshakes" ||
	fail "flood: node-b timed out $((timeouts - timeouts0)) handshakes (want >= 4)"

# ---- 7. policy at the destination (docs/policy.md, "Cross-node calls") ---------
# node-b decides every CONNECT by the identity the caller proved. node-a
# writes no policy first (a source that does not enforce: stale, or not
# shoal's), so what is refused is node-b's doing.
# policy_b WEB_CALLER: api takes GETs from default/client, web (opaque)
# takes WEB_CALLER, and nothing else gets in.
policy_b() {
	cat <<EOF
policy:
  defaults:
    - {namespace: default, service: web, default: deny}
    - {namespace: default, service: api, default: deny}
  rules:
    - name: client-reads
      namespace: default
      service: api
      action: allow
      from: [{service_account: default/client}]
      to: [{methods: [GET]}]
    - name: client-tcp
      namespace: default
      service: web
      action: allow
      from: [{service_account: $1}]
EOF
}
POLICY_B_WEB_OPEN=$(policy_b default/client)
# reloads_b: how many times node-b's shoald reloaded its config so far.
reloads_b() { grep -c "config: reloaded" "$LOGDIR/shoald-b.log" || true; }
# reload_b POLICY: write node-b's config with POLICY and wait for the reload.
reload_b() {
	local before
	before=$(reloads_b)
	write_config_b "$1"
	for ((i = 0; i < 50 && $(reloads_b) <= before; i++)); do sleep 0.1; done
	(($(reloads_b) > before)) || fatal "node-b did not reload its config within 5 s"
}
reload_b "$POLICY_B_WEB_OPEN"
denied0=$(metric_b shoal_tunnel_streams_denied_total)
if hello a1 10.96.0.10:80 && [[ $HELLO_BACKEND == b1 ]]; then
	pass "node-b's policy allows default/client -> web: b1 answered"
else
	fail "node-b's policy allows default/client -> web, yet: '$HELLO_OUT'"
fi
out=$(pod_curl a1 -s -o /dev/null -w '%{http_code}' http://10.96.0.20/hello 2>&1)
[[ $out == 200 ]] && pass "a rule that lets default/client GET api opens its tunneled connection (200)" ||
	fail "a1 GET api with client-reads at node-b: '$out'"

# An edit under load: a held TCP connection to web, and GETs to api all
# along; the edit closes web to default/client.
hold_start a1 10.96.0.10:80
for ((i = 0; i < 50 && $(hold_count) < 3; i++)); do sleep 0.1; done
(($(hold_count) >= 3)) || fail "the hold connection to web through the tunnel never echoed"
LOAD_LOG=$LOGDIR/load.log
pod_spawn a1 "$LOAD_LOG" bash -c 'for i in $(seq 1 200); do
	curl -s -o /dev/null -w "%{http_code}\n" --max-time 5 http://10.96.0.20/hello; done'
LOAD_PID=$LAST_PID
sleep 0.3
reload_b "$(policy_b default/nobody)"
for ((i = 0; i < 30 && $(kill -0 "$HOLD_PID" 2>/dev/null && echo 1 || echo 0) == 1; i++)); do sleep 0.1; done
if kill -0 "$HOLD_PID" 2>/dev/null; then
	fail "node-b: the tunneled TCP connection its new policy denies is still up after 3 s"
else
	pass "node-b closed the tunneled TCP connection its new policy denies within $((i * 100)) ms"
fi
wait "$LOAD_PID" 2>/dev/null || true
total=$(grep -c . "$LOAD_LOG" || true)
bad=$(grep -vc '^200$' "$LOAD_LOG" || true)
((total == 200 && bad == 0)) && pass "200 allowed GETs to api across node-b's edit: none failed" ||
	fail "GETs across node-b's edit: $total done, $bad not 200: $(grep -v '^200$' "$LOAD_LOG" | sort | uniq -c | tr '\n' ' ')"
if hello a1 10.96.0.10:80 --timeout-ms 3000; then
	fail "a1 -> web after node-b's edit: answered ('$HELLO_OUT'), expected a refusal"
else
	pass "a1 -> web after node-b's edit: refused at node-b, though node-a has no policy"
fi
denied=$(metric_b shoal_tunnel_streams_denied_total)
((denied - denied0 >= 2)) && pass "node-b counted $((denied - denied0)) denied CONNECT streams (the close and the refusal)" ||
	fail "shoal_tunnel_streams_denied_total went $denied0 -> $denied, expected +2"
got=$(in_ns "$NS_B" curl -sS --max-time 5 "http://$ADMIN_ADDR/metrics" |
	awk '/^shoal_policy_decisions_total\{/ && /service="web"/ && /policy="default-deny"/ && /decision="deny"/ { print $2 }')
((${got:-0} >= 1)) && pass "node-b's shoal_policy_decisions_total counts web's default-deny ($got)" ||
	fail "node-b has no web default-deny series in shoal_policy_decisions_total"
# The close at the edit and the refusal after it are both denials; the
# log takes at most one a second (the rest are counted), so either line.
wait_log "$LOGDIR/shoald-b.log" "policy: \(denied\|closed\) spiffe://$TD/ns/default/sa/client's call to 10.77.2.2:8080" 3 &&
	pass "node-b logged the denial with the caller's SPIFFE ID" ||
	fail "node-b did not log the denial: $(grep 'policy:' "$LOGDIR/shoald-b.log" | tail -n 3 | tr '\n' ' ')"
wait_log "$SHOALD_LOG" "denied by its policy's default-deny" 3 &&
	pass "node-a's log names node-b's reason (default-deny)" ||
	fail "node-a did not log node-b's reason: $(grep 'refused the call' "$SHOALD_LOG" | tail -n 2 | tr '\n' ' ')"

# The destination's callers by proven identity (docs/mtls.md, "Metrics"):
# node-b counts default/client's streams into default/web, their bytes
# both ways, and the refusals above, in series named by SPIFFE ID.
SCRAPE_B=$(in_ns "$NS_B" curl -sS --max-time 5 "http://$ADMIN_ADDR/metrics")
# inbound FAMILY: node-b's shoal_tunnel_inbound_FAMILY of default/client -> default/web.
inbound() {
	awk -v f="shoal_tunnel_inbound_$1" -v s="spiffe://$TD/ns/default/sa/client" \
		-v d="spiffe://$TD/ns/default/sa/web" '
		index($0, f "{source_identity=\"" s "\",destination_identity=\"" d "\"} ") == 1 { print $2 }' \
		<<<"$SCRAPE_B"
}
streams=$(inbound streams_total) rx=$(inbound received_bytes_total) tx=$(inbound sent_bytes_total)
refused=$(inbound refused_total)
if ((${streams:-0} >= 3 && ${rx:-0} > 0 && ${tx:-0} > 0 && ${refused:-0} >= 1)); then
	pass "node-b labels its callers by proven identity: default/client -> default/web $streams streams, $rx B in, $tx B out, $refused refused"
else
	fail "node-b's shoal_tunnel_inbound_* of default/client -> default/web: streams '$streams' rx '$rx' tx '$tx' refused '$refused': $(grep '^shoal_tunnel_inbound' <<<"$SCRAPE_B" | head -n 8 | tr '\n' ' ')"
fi
other=$(grep -c '^shoal_tunnel_inbound_[a-z_]*{source_identity="other"' <<<"$SCRAPE_B" || true)
((other == 0)) && pass "no caller pair fell into the 'other' row (2 identities, cap 256)" ||
	fail "node-b counted $other series as 'other' with one caller pair"
if command -v promtool >/dev/null; then
	if promtool check metrics <<<"$SCRAPE_B" >"$LOGDIR/promtool-b.out" 2>&1; then
		pass "promtool accepts node-b's scrape with the shoal_tunnel_inbound_* families"
	else
		fail "promtool on node-b's scrape: $(head -c 600 "$LOGDIR/promtool-b.out")"
	fi
fi

# Requests are the source's to decide (it parsed them): with the same
# policy at node-a, as a cluster's AuthorizationPolicy is everywhere, a
# POST to api is refused at node-a with a 403 naming the default.
write_config_a default/web 15008 "$POLICY_B_WEB_OPEN"
for ((i = 0; i < 50; i++)); do
	out=$(pod_curl a1 -s -o /dev/null -X POST -w '%{http_code}' http://10.96.0.20/hello 2>&1)
	[[ $out == 403 ]] && break
	sleep 0.1
done
hdr=$(pod_curl a1 -s -o /dev/null -D - -X POST http://10.96.0.20/hello 2>&1 | tr -d '\r')
if [[ $out == 403 ]] && grep -qi '^x-shoal-policy: default-deny$' <<<"$hdr"; then
	pass "a cross-node POST to api: 403 with x-shoal-policy: default-deny"
else
	fail "a cross-node POST to api with the policy at node-a: '$out', headers: ${hdr:0:300}"
fi
out=$(pod_curl a1 -s -o /dev/null -w '%{http_code}' http://10.96.0.20/hello 2>&1)
[[ $out == 200 ]] && pass "and a GET, which client-reads allows, still gets 200" ||
	fail "a cross-node GET to api with the policy at node-a: '$out'"
# A meshed caller without identity (a3: no mtls.workloads entry) is
# unauthenticated; node-a is strict, so no rule lets it in.
enroll a3
A3_TRACE=$(printf '%08x' $RANDOM $RANDOM $RANDOM $RANDOM)
hdr=$(pod_curl a3 -s -o /dev/null -D - -H "traceparent: 00-$A3_TRACE-00f067aa0ba902b7-01" \
	http://10.96.0.20/hello 2>&1 | tr -d '\r')
if [[ $hdr == "HTTP/1.1 403"* ]] && grep -qi '^x-shoal-policy: mtls-strict$' <<<"$hdr"; then
	pass "an unauthenticated caller on strict node-a: 403 with x-shoal-policy: mtls-strict"
else
	fail "a3 (no identity) GET api on strict node-a: ${hdr:0:300}"
fi
got=$(wait_spans traceId "$A3_TRACE" 1)
[[ $got == "1 default/api - - -" ]] &&
	pass "its span has no identity and no shoal.mtls (refused before any try)" ||
	fail "the span of a3's refused call: '$got' (want '1 default/api - - -')"
# No downgrade through the pool: legacy (permissive, api's endpoint) lets
# a3 call b1:9080 in plaintext, and node-a keeps that connection idle;
# a1's next call to api, the same endpoint and port, must not reuse it:
# its span says it crossed through the tunnel.
out=$(pod_curl a3 -s -o /dev/null -w '%{http_code}' http://10.96.0.70/hello 2>&1)
[[ $out == 200 ]] && pass "a3 (no identity) -> legacy (permissive): 200 in plaintext" ||
	fail "a3 -> legacy (permissive, plaintext to b1): '$out'"
REUSE_TRACE=$(printf '%08x' $RANDOM $RANDOM $RANDOM $RANDOM)
out=$(pod_curl a1 -s -o /dev/null -w '%{http_code}' -H "traceparent: 00-$REUSE_TRACE-00f067aa0ba902b7-01" \
	http://10.96.0.20/hello 2>&1)
got=$(wait_spans traceId "$REUSE_TRACE" 1)
[[ $out == 200 && $got == "1 default/api $SPIFFE_CLIENT $SPIFFE_WEB True" ]] &&
	pass "a1 -> api right after: through the tunnel, not on a3's idle plaintext connection to the same endpoint" ||
	fail "a1 -> api after a3's plaintext call to its endpoint: '$out', span '$got' (a plaintext reuse says shoal.mtls False)"
unenroll a3
# Back to no policy on either node, for what follows.
write_config_a default/web
reload_b ""

# A hand-over on node-b (docs/upgrade.md): the new shoald binds 15008
# next to the old one (SO_REUSEPORT); once the old one exits, node-a's
# pooled connection to it is gone and the next call opens one to the new.
spawn_in "$TEST_CG/node-b/agent" "$NS_B" "$LOGDIR/shoald-b.new.log" "$SHOALD" -c "$CONFIG_B" --log-level debug
SHOALD_B_NEW=$LAST_PID
if wait_log "$LOGDIR/shoald-b.new.log" "hand-over: done" 10 &&
	wait_log "$LOGDIR/shoald-b.new.log" "mtls: strict" 5; then
	pass "node-b: a new shoald took over, its tunnel listening beside the old one's"
else
	fail "node-b: no hand-over with mtls on: $(grep -iE 'hand-over|mtls|cannot' "$LOGDIR/shoald-b.new.log" | tr '\n' ' ')"
fi
wait_log "$LOGDIR/shoald-b.log" "drained every connection" 10 || true
stop_pid "$SHOALD_B_PID"
SHOALD_B_PID=$SHOALD_B_NEW
ok=0
for ((i = 0; i < 30; i++)); do
	if hello a1 10.96.0.10:80 && [[ $HELLO_BACKEND == b1 ]]; then
		ok=1
		break
	fi
	sleep 0.1
done
((ok)) && pass "after node-b's hand-over, a1 -> web answers through the new shoald's tunnel" ||
	fail "after node-b's hand-over, a1 -> web: '$HELLO_OUT'"

# The client checks the server's identity: a server on node-b that
# presents default/web's certificate whatever the SNI asks for (openssl
# s_server on port 15009), for an endpoint said to be default/other.
spawn_in "$TEST_CG/node-b/agent" "$NS_B" "$LOGDIR/s_server.log" openssl s_server -quiet -tls1_3 \
	-accept "$NODE_B_ADDR:15009" -cert "$ID/b/default_web.crt" -key "$ID/b/default_web.key" \
	-CAfile "$ID/ca.crt" -Verify 2
wait_listen "$NS_B" 15009
write_config_a default/other 15009
shoald_stop
shoald_start
enroll a1
if hello a1 10.96.0.10:80 --timeout-ms 3000; then
	fail "a1 -> web whose endpoint claims default/other: answered ('$HELLO_OUT')"
else
	pass "a1 -> web whose endpoint claims default/other: no answer (node-b proved default/web)"
fi
mismatch=$(metric_a shoal_tunnel_peer_identity_mismatch_total)
((mismatch >= 1)) && pass "node-a counted the server identity mismatch ($mismatch)" ||
	fail "shoal_tunnel_peer_identity_mismatch_total is $mismatch"

stop_pid "$SHOALD_B_PID"
finish
