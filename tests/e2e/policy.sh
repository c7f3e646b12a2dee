#!/bin/bash
# policy.sh: authorization policy enforced by the node proxy, same node
# (docs/policy.md). a1 is the workload default/client (mtls permissive,
# mtls.workloads); a2 has no identity (unauthenticated). Services:
#   api    (10.96.0.40, http): a deny rule for DELETE, from anyone;
#   secure (10.96.0.41, http): default deny, an allow rule for default/client;
#   web    (10.96.0.10, tcp):  default deny, an allow rule for default/client;
#   rpc    (10.96.0.42, h2c to an HTTP/1.1 endpoint): a deny rule for the
#          gRPC service shop.Admin, from anyone.
# Checks: allowed calls get through; a denied HTTP request gets 403 with
# x-shoal-policy naming the rule or default, a denied TCP connection a
# reset; a policy edit under load fails no allowed request, and resets an
# open TCP connection it now denies; the counters moved.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_topology a2 b1
command -v openssl >/dev/null || skip "needs openssl for the workload certificate"

ID=$LOGDIR/id
mkdir -p "$ID/a"
ossl() { openssl "$@" >>"$LOGDIR/openssl.log" 2>&1 || fatal "openssl $1 failed (see $LOGDIR/openssl.log)"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ID/ca.key" \
	-out "$ID/ca.crt" -days 2 -subj /CN=shoal-e2e-root \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
printf 'subjectAltName=URI:spiffe://cluster.local/ns/default/sa/client\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ID/leaf.ext"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ID/a/default_client.key" \
	-out "$ID/leaf.csr" -subj /CN=client
ossl x509 -req -in "$ID/leaf.csr" -CA "$ID/ca.crt" -CAkey "$ID/ca.key" -CAcreateserial -days 1 \
	-out "$ID/a/default_client.crt" -extfile "$ID/leaf.ext"
cp "$ID/ca.crt" "$ID/a/anchors.pem"

# write_policy_config CLIENT_TCP_ACTION: the config, with the rule for a1
# on web set to allow or deny. Written to a new file and renamed over the
# old one, as a ConfigMap update is: discovery applies it live.
write_policy_config() {
	local mode=${2:-permissive}
	{
		config_head
		cat <<EOF
identity: {source: files, dir: "$ID/a"}
mtls:
  mode: $mode
  node_name: node-a
  workloads: [{address: ${POD_IP4[a1]}, identity: default/client}]
services:
$(web_service)
$(http_service api 10.96.0.40 9080 "${POD_IP4[a2]}")
$(http_service secure 10.96.0.41 9080 "${POD_IP4[b1]}")
  - name: rpc
    vips: [10.96.0.42]
    ports: [{port: 80, target_port: 9080, protocol: h2c, upstream_protocol: http1}]
    endpoints: [{address: ${POD_IP4[a2]}}]
policy:
  defaults:
    - {namespace: default, service: secure, default: deny}
    - {namespace: default, service: web, default: deny}
  rules:
    - name: no-deletes
      namespace: default
      service: api
      action: deny
      from: ["*", unauthenticated]
      to: [{methods: [DELETE]}]
    - name: client-only
      namespace: default
      service: secure
      action: allow
      from: [{service_account: default/client}]
    - name: no-admin
      namespace: default
      service: rpc
      action: deny
      from: ["*", unauthenticated]
      to: [{grpc: {service: shop.Admin}}]
    - name: client-tcp
      namespace: default
      service: web
      action: $1
      from: [{service_account: default/client}]
EOF
	} >"$CONFIG.new"
	mv "$CONFIG.new" "$CONFIG"
}

write_policy_config allow
shoald_start
enroll a1
enroll a2

# status_and_policy POD ARGS...: "STATUS POLICY" of one curl from POD.
status_and_policy() {
	local pod=$1 out
	shift
	out=$(pod_curl "$pod" -o /dev/null -D - "$@" 2>&1) || { echo "curl-failed"; return; }
	printf '%s %s\n' "$(head -n1 <<<"$out" | awk '{ print $2 }')" "$(header x-shoal-policy <<<"$out")"
}

denied_before=$(proxy_metric shoal_proxy_policy_denied_total)

out=$(status_and_policy a1 http://10.96.0.40/items)
[[ $out == "200 " ]] && pass "a1 GET api: allowed (200)" || fail "a1 GET api: '$out'"
out=$(status_and_policy a1 -X DELETE http://10.96.0.40/items/3)
[[ $out == "403 no-deletes" ]] && pass "a1 DELETE api: 403, x-shoal-policy: no-deletes" ||
	fail "a1 DELETE api: '$out', expected '403 no-deletes'"
out=$(status_and_policy a2 -X DELETE http://10.96.0.40/items/3)
[[ $out == "403 no-deletes" ]] && pass "a2 (unauthenticated) DELETE api: 403 no-deletes" ||
	fail "a2 DELETE api: '$out'"

out=$(status_and_policy a1 http://10.96.0.41/)
[[ $out == "200 " ]] && pass "a1 (default/client) GET secure: allowed by client-only" ||
	fail "a1 GET secure: '$out'"
out=$(status_and_policy a2 http://10.96.0.41/)
[[ $out == "403 default-deny" ]] && pass "a2 (unauthenticated) GET secure: 403, x-shoal-policy: default-deny" ||
	fail "a2 GET secure: '$out', expected '403 default-deny'"

# HTTP/2: each stream decided; a gRPC call gets PERMISSION_DENIED (7).
out=$(status_and_policy a1 --http2-prior-knowledge http://10.96.0.42/items)
[[ $out == "200 " ]] && pass "a1 HTTP/2 GET rpc /items: allowed (200)" || fail "a1 HTTP/2 GET rpc: '$out'"
out=$(pod_curl a1 --http2-prior-knowledge -o /dev/null -D - -X POST -H 'content-type: application/grpc' \
	--data-binary '' http://10.96.0.42/shop.Admin/Drop 2>&1 || true)
gs=$(header grpc-status <<<"$out")
gp=$(header x-shoal-policy <<<"$out")
[[ $gs == 7 && $gp == no-admin ]] && pass "a1 gRPC shop.Admin/Drop: grpc-status 7 (PERMISSION_DENIED), x-shoal-policy: no-admin" ||
	fail "a1 gRPC shop.Admin/Drop: grpc-status '$gs', x-shoal-policy '$gp'"
out=$(status_and_policy a1 --http2-prior-knowledge http://10.96.0.42/shop.Admin/Drop)
[[ $out == "403 no-admin" ]] && pass "a1 HTTP/2 (not gRPC) GET /shop.Admin/Drop: 403 no-admin" ||
	fail "a1 HTTP/2 GET /shop.Admin/Drop: '$out'"

if hello a1 10.96.0.10:80; then
	pass "a1 -> web (tcp): allowed by client-tcp, answered by $HELLO_BACKEND"
else
	fail "a1 -> web (tcp): $HELLO_OUT"
fi
if hello a2 10.96.0.10:80; then
	fail "a2 -> web (tcp): got through, expected a reset ($HELLO_OUT)"
else
	pass "a2 -> web (tcp): refused (${HELLO_OUT:0:80})"
fi
denied_now=$(proxy_metric shoal_proxy_policy_denied_total)
((denied_now - denied_before >= 6)) && pass "shoal_proxy_policy_denied_total grew by $((denied_now - denied_before))" ||
	fail "shoal_proxy_policy_denied_total went $denied_before -> $denied_now, expected +6"
grep -q "policy: denied" "$SHOALD_LOG" && pass "a denial is logged: $(grep -m1 'policy: denied' "$SHOALD_LOG" | cut -c1-160)" ||
	fail "no 'policy: denied' line in the log"

# ---- per-policy counters (shoal_policy_decisions_total) ----------------------
# decisions SERIES_LABELS: the value of shoal_policy_decisions_total{LABELS}
# in one scrape ($SCRAPE), 0 when absent.
scrape() { SCRAPE=$(in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN_ADDR/metrics"); }
decisions() {
	local v
	v=$(awk -v m="shoal_policy_decisions_total{$1}" '$1 == m { print $2; exit }' <<<"$SCRAPE")
	echo "${v:-0}"
}
# expect_series LABELS WANT: the series is exactly WANT (the calls above are
# one decision each: api per request, secure and web per connection).
expect_series() {
	local got
	got=$(decisions "$1")
	[[ $got == "$2" ]] && pass "shoal_policy_decisions_total{$1} = $got" ||
		fail "shoal_policy_decisions_total{$1} = $got, expected $2"
}
scrape
expect_series 'namespace="default",service="api",policy="no-deletes",decision="deny"' 2
expect_series 'namespace="default",service="api",policy="default-allow",decision="allow"' 1
expect_series 'namespace="default",service="secure",policy="client-only",decision="allow"' 1
expect_series 'namespace="default",service="secure",policy="default-deny",decision="deny"' 1
expect_series 'namespace="default",service="web",policy="client-tcp",decision="allow"' 1
expect_series 'namespace="default",service="web",policy="default-deny",decision="deny"' 1
if command -v promtool >/dev/null; then
	promtool check metrics <<<"$SCRAPE" >"$LOGDIR/promtool.out" 2>&1 &&
		pass "promtool check metrics accepts the scrape with the policy series" ||
		fail "promtool check metrics: $(head -c 600 "$LOGDIR/promtool.out")"
fi

# ---- shoalctl policy: the rules in force, recent decisions, checks -----------
policyctl() { in_ns "$NS_A" timeout 20 "$SHOALCTL" --admin "$ADMIN_ADDR" "$@"; }
policyctl policy >"$LOGDIR/ctl-policy.out" 2>&1 || fail "shoalctl policy failed: $(head -c 300 "$LOGDIR/ctl-policy.out")"
for rule in no-deletes client-only client-tcp; do
	grep -qE "^$rule +default " "$LOGDIR/ctl-policy.out" && pass "shoalctl policy lists rule $rule" ||
		fail "shoalctl policy does not list $rule: $(head -c 600 "$LOGDIR/ctl-policy.out")"
done
grep -qE "deny +no-deletes +spiffe://cluster.local/ns/default/sa/client +default/api:80 +DELETE /items/3" "$LOGDIR/ctl-policy.out" &&
	pass "shoalctl policy shows a1's recent denial by no-deletes" ||
	fail "no recent no-deletes denial in shoalctl policy: $(grep -A8 'recent' "$LOGDIR/ctl-policy.out" | head -c 800)"
grep -qE "deny +default-deny +unauthenticated +default/secure:80" "$LOGDIR/ctl-policy.out" &&
	pass "shoalctl policy shows a2's recent denial by default-deny" ||
	fail "no recent default-deny denial of secure in shoalctl policy"
# check CASE WANT_RC WANT_REASON ARGS...: what the agent answers matches what
# the real call above got.
check() {
	local want_rc=$1 reason=$2 rc=0 out
	shift 2
	out=$(policyctl policy check "$@" 2>&1) || rc=$?
	if ((rc == want_rc)) && [[ $want_rc == 2 || $out == *" by $reason: "* ]]; then
		pass "shoalctl policy check $*: exit $rc, $(head -n1 <<<"$out" | cut -c1-100)"
	else
		fail "shoalctl policy check $*: exit $rc, '$out', expected exit $want_rc by $reason"
	fi
}
check 1 no-deletes default/client default/api:80 DELETE /items/3
check 1 no-deletes unauthenticated default/api DELETE /items/3
check 0 default-allow default/client default/api GET /items
check 0 client-only spiffe://cluster.local/ns/default/sa/client default/secure:80
check 1 default-deny unauthenticated default/secure
check 0 client-tcp default/client default/web:80
check 1 default-deny unauthenticated default/web:80
check 2 - nobody default/api:80
check 2 - default/client default/api:81
NO_DELETES_BEFORE=$(decisions 'namespace="default",service="api",policy="no-deletes",decision="deny"')

# ---- a policy edit under load -------------------------------------------------
# a1 holds a TCP connection to web and sends GETs to api all along; the
# edit turns client-tcp into a deny.
hold_start a1 10.96.0.10:80
for ((i = 0; i < 50 && $(hold_count) < 3; i++)); do sleep 0.1; done
(($(hold_count) >= 3)) || fail "the hold connection to web never echoed"
LOAD_LOG=$LOGDIR/load.log
pod_spawn a1 "$LOAD_LOG" bash -c 'for i in $(seq 1 400); do
	curl -s -o /dev/null -w "%{http_code}\n" --max-time 5 http://10.96.0.40/items/$i; done'
LOAD_PID=$LAST_PID
sleep 0.5
write_policy_config deny
wait_log "$SHOALD_LOG" "config: reloaded" 5 || fail "the edit was not reloaded within 5 s"
# Bounded: the worker takes the new snapshot at once and re-decides open
# TCP connections (worker_snap_take).
for ((i = 0; i < 30 && $(kill -0 "$HOLD_PID" 2>/dev/null && echo 1 || echo 0) == 1; i++)); do sleep 0.1; done
if kill -0 "$HOLD_PID" 2>/dev/null; then
	fail "the open TCP connection the new policy denies is still up after 3 s"
else
	pass "the open TCP connection the new policy denies was closed within $((i * 100)) ms"
fi
wait "$LOAD_PID" 2>/dev/null || true
total=$(grep -c . "$LOAD_LOG")
bad=$(grep -vc '^200$' "$LOAD_LOG" || true)
((total == 400 && bad == 0)) && pass "400 allowed GETs across the edit: none failed" ||
	fail "GETs across the edit: $total done, $bad not 200: $(grep -v '^200$' "$LOAD_LOG" | sort | uniq -c | tr '\n' ' ')"
if hello a1 10.96.0.10:80; then
	fail "a1 -> web after the edit: got through, expected a reset"
else
	pass "a1 -> web after the edit: refused, as the new policy says"
fi
# The reload freed the compiled set the rule names came from: the series
# are keyed by name, so they continue.
out=$(status_and_policy a1 -X DELETE http://10.96.0.40/items/4)
[[ $out == "403 no-deletes" ]] || fail "a1 DELETE api after the edit: '$out'"
scrape
got=$(decisions 'namespace="default",service="api",policy="no-deletes",decision="deny"')
((got == NO_DELETES_BEFORE + 1)) && pass "no-deletes' deny series continued across the reload: $NO_DELETES_BEFORE -> $got" ||
	fail "no-deletes' deny series went $NO_DELETES_BEFORE -> $got across the reload, expected +1"
got=$(decisions 'namespace="default",service="web",policy="client-tcp",decision="deny"')
((got >= 1)) && pass "client-tcp, now a deny rule, has a deny series ($got)" ||
	fail "no client-tcp deny series after the edit ($got)"
got=$(decisions 'namespace="default",service="api",policy="default-allow",decision="allow"')
((got >= 401)) && pass "the 400 GETs across the edit are counted as default-allow ($got)" ||
	fail "default-allow on api counted $got, expected at least 401"

# ---- strict: an unauthenticated caller is refused whatever the rules say ----
shoald_stop
write_policy_config allow strict
shoald_start
out=$(status_and_policy a2 http://10.96.0.40/items)
[[ $out == "403 mtls-strict" ]] && pass "strict: a2 (unauthenticated) GET api: 403 mtls-strict (permissive allowed it)" ||
	fail "strict: a2 GET api: '$out', expected '403 mtls-strict'"
out=$(status_and_policy a1 http://10.96.0.40/items)
[[ $out == "200 " ]] && pass "strict: a1 (default/client) GET api: still allowed" ||
	fail "strict: a1 GET api: '$out'"
scrape
expect_series 'namespace="default",service="api",policy="mtls-strict",decision="deny"' 1
check 1 mtls-strict unauthenticated default/api GET /items
check 0 default-allow default/client default/api GET /items
finish
