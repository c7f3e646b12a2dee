#!/bin/bash
# identity-agent.sh: shoald's workload certificates (docs/identity.md, "The
# agent side"), with the real shoal-identity and the stand-in API server
# (tests/k8s/apiserver.py, its TokenReview). Meshed pods on node-a are
# Pod objects only (enrollment sees them pending: no netns is needed to
# know their service accounts). shoald, with identity.source issued:
#  - gets a certificate for each service account of node-a's meshed pods
#    (shop/web, shop/api), none for a pod of node-b, an unmeshed pod or
#    the host-network agent itself; the leaf held has the one URI SAN;
#  - renews them at half their 20 s life (the issuer honours lifetime_s);
#  - drops an account's certificate once its last pod is deleted (after
#    drop_grace_ms);
#  - refuses an anchors bundle with a private key in it and keeps the
#    last good one;
#  - with shoal-identity killed, keeps the certificates it holds (failed
#    renewals counted, the last error a transport one) until they expire,
#    then drops them;
#  - picks up a second root from the anchors file, and gets certificates
#    again from a shoal-identity whose issuer is under that second root.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

e2e_init
for tool in python3 openssl curl; do
	command -v $tool >/dev/null || skip "$tool is missing"
done
SHOAL_IDENTITY=${SHOAL_IDENTITY:-$(dirname "$SHOALD")/../shoal-identity/shoal-identity}
[[ -x $SHOAL_IDENTITY ]] || skip "shoal-identity not found (SHOAL_IDENTITY='$SHOAL_IDENTITY'); build it first"
e2e_topology

W=$LOGDIR/pki
rm -rf "$W"
mkdir -p "$W"

# ---- the PKI: two roots, an issuer under each ------------------------------
ossl() { openssl "$@" 2>>"$W/openssl.log"; }
ca() { # NAME SUBJECT [PARENT]
	ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/$1.key"
	if [[ -z ${3:-} ]]; then
		ossl req -x509 -new -key "$W/$1.key" -out "$W/$1.crt" -days 30 -subj "/CN=$2" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign"
	else
		ossl req -new -key "$W/$1.key" -out "$W/$1.csr" -subj "/CN=$2"
		printf '%s\n' "basicConstraints=critical,CA:TRUE,pathlen:0" \
			"keyUsage=critical,keyCertSign,cRLSign" "subjectKeyIdentifier=hash" \
			"authorityKeyIdentifier=keyid:always" >"$W/$1.ext"
		ossl x509 -req -in "$W/$1.csr" -CA "$W/$3.crt" -CAkey "$W/$3.key" -CAcreateserial \
			-out "$W/$1.crt" -days 20 -extfile "$W/$1.ext"
	fi
}
ca root1 "e2e root 1"
ca issuer1 "e2e issuer 1" root1
ca root2 "e2e root 2"
ca issuer2 "e2e issuer 2" root2
[[ -s $W/issuer2.crt ]] || fatal "openssl could not make the test PKI: $(cat "$W/openssl.log")"
cp "$W/root1.crt" "$W/anchors1.pem"
cat "$W/root1.crt" "$W/root2.crt" >"$W/anchors12.pem"
# The agent's anchors file (the ConfigMap's mount), replaced as the kubelet does: by rename.
ANCHORS=$W/anchors.pem
set_anchors() { cat "$@" >"$ANCHORS.new" && mv "$ANCHORS.new" "$ANCHORS"; }
set_anchors "$W/anchors1.pem"

# ---- the stand-in API server, with TokenReview -------------------------------
# shoald's API token (K8S_DIR/token, "e2e-token") is also shoal-identity's own;
# the token shoald shows shoal-identity is reviewed as the agent pod on node-a.
echo shoald-a-token >"$W/identity-token"
cat >"$W/reviews" <<'JSON'
{"shoald-a-token": {"serviceAccount": "shoal-system/shoald", "pod": "shoald-a", "node": "node-a",
                    "audiences": ["shoal-identity"]}}
JSON
k8s_apiserver_start --token-reviews "$W/reviews" --bookmark-every 2

SEQ=0
# pod TYPE NS NAME SA NODE LABEL [HOSTNET]: a Pod event. LABEL enabled|disabled.
pod() {
	SEQ=$((SEQ + 1))
	printf '{"type":"%s","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"%s","namespace":"%s","uid":"uid-%s","labels":{"shoal.io/mesh":"%s"}},"spec":{"nodeName":"%s","serviceAccountName":"%s","hostNetwork":%s},"status":{"phase":"Running","podIP":"10.77.1.%d","podIPs":[{"ip":"10.77.1.%d"}]}}}' \
		"$1" "$3" "$2" "$3" "$6" "$5" "$4" "${7:-false}" "$((100 + SEQ))" "$((100 + SEQ))"
}
k8s_apply "[$(pod ADDED shoal-system shoald-a shoald node-a disabled true),
$(pod ADDED shop web-1 web node-a enabled),
$(pod ADDED shop web-2 web node-a enabled),
$(pod ADDED shop api-1 api node-a enabled),
$(pod ADDED shop db-1 db node-b enabled),
$(pod ADDED shop legacy-1 legacy node-a disabled)]"

# ---- shoal-identity ------------------------------------------------------------
mkdir -p "$TEST_CG/identity"
ID_PORT=""
# identity_start ISSUER: shoal-identity in node-a's netns under ISSUER; sets ID_PID, ID_PORT.
identity_start() {
	local i pf=$W/identity.port
	rm -f "$pf"
	spawn_in "$TEST_CG/identity" "$NS_A" "$LOGDIR/shoal-identity.$1.log" "$SHOAL_IDENTITY" \
		--listen "127.0.0.1:${ID_PORT:-0}" --port-file "$pf" \
		--issuer-cert "$W/$1.crt" --issuer-key "$W/$1.key" --anchors "$W/anchors12.pem" \
		--trust-domain cluster.local --node-agent shoal-system/shoald --server-names localhost \
		--api-server "https://127.0.0.1:$API_PORT" --api-ca "$K8S_DIR/ca.crt" \
		--api-token-file "$K8S_DIR/token" --audience shoal-identity --verbose
	ID_PID=$LAST_PID
	for ((i = 0; i < 100; i++)); do
		[[ -s $pf ]] && break
		sleep 0.1
	done
	[[ -s $pf ]] || fatal "shoal-identity did not start: $(cat "$LOGDIR/shoal-identity.$1.log")"
	ID_PORT=$(cat "$pf")
	say "shoal-identity on 127.0.0.1:$ID_PORT (pid $ID_PID, $1)"
}
identity_start issuer1

# ---- shoald ----------------------------------------------------------------------
ADMIN_PORT=15026
CONFIG=$LOGDIR/shoald.yaml
{
	config_head
	cat <<EOF
admin: {listen: 127.0.0.1:$ADMIN_PORT}
kubernetes:
  api_server: https://127.0.0.1:$API_PORT
  ca_file: $K8S_DIR/ca.crt
  token_file: $K8S_DIR/token
  backoff_max_ms: 1000
  enrollment:
    node_name: node-a
    cgroup_root: /$RUN
    cni_socket: ""
    netns_dir: ""
    resync_ms: 1000
identity:
  trust_domain: cluster.local
  server_url: https://localhost:$ID_PORT
  token_file: $W/identity-token
  anchors_file: $ANCHORS
  lifetime_s: 20
  renew_jitter: 0.1
  backoff_min_ms: 200
  backoff_max_ms: 1000
  drop_grace_ms: 2000
  poll_ms: 200
  timeout_ms: 3000
services:
EOF
	web_service
} >"$CONFIG"
shoald_start

shoalctl_admin() { in_ns "$NS_A" timeout 20 "$SHOALCTL" --admin "127.0.0.1:$ADMIN_PORT" "$@"; }
metric() { # NAME: its value in /metrics, 0 if absent
	in_ns "$NS_A" curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" |
		awk -v n="$1" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'
}
# acct NS/SA FIELD: a field of the account in shoalctl identity --json ("" if absent).
acct() {
	shoalctl_admin --json identity 2>/dev/null | python3 -c '
import json, sys
ns, sa = sys.argv[1].split("/")
for a in json.load(sys.stdin)["accounts"]:
    if a["namespace"] == ns and a["service_account"] == sa:
        print(a[sys.argv[2]])' "$1" "$2" 2>/dev/null || true
}
# until SECONDS COMMAND...: polls COMMAND every 0.2 s; 0 once it succeeds.
until_ok() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 5; i++)); do
		"$@" && return 0
		sleep 0.2
	done
	return 1
}
held() {
	local na
	na=$(acct "$1" not_after)
	((${na:-0} > $(date +%s)))
}
absent() { [[ -z $(acct "$1" spiffe_id) ]]; }

# ---- 1. certificates for node-a's meshed pods' accounts ----------------------
if until_ok 15 held shop/web && until_ok 5 held shop/api; then
	pass "shop/web and shop/api hold certificates"
else
	fail "no certificates: $(shoalctl_admin identity 2>&1)"
	sed 's/^/    /' "$SHOALD_LOG" | grep identity | tail -20
fi
for a in "shop/db:a pod on node-b" "shop/legacy:unmeshed by its label" \
	"shoal-system/shoald:host network"; do
	absent "${a%%:*}" && pass "no certificate for ${a%%:*} (${a#*:})" ||
		fail "${a%%:*} has an entry: $(shoalctl_admin identity)"
done
[[ $(acct shop/web spiffe_id) == spiffe://cluster.local/ns/shop/sa/web ]] &&
	pass "SPIFFE ID spiffe://cluster.local/ns/shop/sa/web" || fail "SPIFFE ID '$(acct shop/web spiffe_id)'"
[[ $(metric shoal_identity_certificates) == 2 ]] && pass "shoal_identity_certificates 2" ||
	fail "shoal_identity_certificates $(metric shoal_identity_certificates)"
soon=$(metric shoal_identity_soonest_expiry_seconds)
((soon > 0 && soon <= 21)) && pass "soonest expiry in $soon s (20 s certificates)" ||
	fail "shoal_identity_soonest_expiry_seconds $soon, want 1..21"
grep -q "shop/web.*spiffe://cluster.local/ns/shop/sa/web" <<<"$(shoalctl_admin identity)" &&
	pass "shoalctl identity lists shop/web" || fail "shoalctl identity: $(shoalctl_admin identity)"
# The issuer saw what was asked: one URI SAN per leaf, as verified there.
grep -q "spiffe://cluster.local/ns/shop/sa/api" "$LOGDIR/shoal-identity.issuer1.log" &&
	pass "shoal-identity issued spiffe://cluster.local/ns/shop/sa/api" ||
	say "note: shoal-identity's log does not name the IDs it issued"

# ---- 2. renewal at half life; an account whose last pod leaves is dropped ---------
na0=$(acct shop/web not_after)
k8s_apply "$(pod DELETED shop api-1 api node-a enabled)"
renewed() {
	local na
	na=$(acct shop/web not_after)
	((${na:-0} > na0))
}
t0=$(date +%s)
if until_ok 16 renewed; then
	pass "shop/web renewed after $(($(date +%s) - t0)) s (expiry $na0 -> $(acct shop/web not_after))"
	# at half of the 20 s life, +-10 % jitter (1 s), from when it arrived; a
	# second of slack each way for the request and whole-second times
	lo=$(acct shop/web last_ok)
	((lo >= na0 - 12 && lo <= na0 - 8)) && pass "renewed at $((na0 - lo)) s before expiry (half life: 10)" ||
		fail "renewed at $lo, $((na0 - lo)) s before expiry $na0: not at half life"
else
	fail "shop/web not renewed within 16 s (expiry $na0, now $(date +%s)): $(shoalctl_admin identity)"
fi
ok=$(in_ns "$NS_A" curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 == "shoal_identity_requests_total{outcome=\"ok\"}" { print $2 }')
((${ok:-0} >= 3)) && pass "requests_total{outcome=\"ok\"} $ok" || fail "requests_total{outcome=\"ok\"} '${ok:-}', want >= 3"
until_ok 8 absent shop/api && pass "shop/api dropped after its last pod left" ||
	fail "shop/api still there: $(shoalctl_admin identity)"
(($(metric shoal_identity_dropped_total) >= 1)) && pass "shoal_identity_dropped_total >= 1" ||
	fail "shoal_identity_dropped_total $(metric shoal_identity_dropped_total)"
# the other pod of shop/web keeps its account: web-2 is still there
k8s_apply "$(pod DELETED shop web-1 web node-a enabled)"

# ---- 3. a bad anchors bundle is refused, the last good one stays ------------------
cat "$W/root1.crt" "$W/issuer1.key" >"$ANCHORS.new" && mv "$ANCHORS.new" "$ANCHORS"
rejected() { (($(metric shoal_identity_anchors_rejects_total) >= 1)); }
until_ok 5 rejected && pass "a bundle with a private key is refused" ||
	fail "anchors_rejects_total $(metric shoal_identity_anchors_rejects_total)"
[[ $(metric shoal_identity_anchors) == 1 ]] && pass "still 1 trust anchor" ||
	fail "shoal_identity_anchors $(metric shoal_identity_anchors)"
grep -q "refused: block 2 is not a CERTIFICATE" <<<"$(shoalctl_admin identity)" &&
	pass "shoalctl identity names the refused bundle" || fail "no anchors error in: $(shoalctl_admin identity)"
set_anchors "$W/anchors1.pem"

# ---- 4. shoal-identity down: what is held is kept until it expires ---------------
kill -KILL "$ID_PID"
wait "$ID_PID" 2>/dev/null || true
na1=$(acct shop/web not_after)
failing() {
	local n
	n=$(acct shop/web failures)
	((${n:-0} >= 2))
}
if until_ok 15 failing; then
	pass "renewals fail with shoal-identity down ($(acct shop/web failures) failures)"
else
	fail "no failed renewals: $(shoalctl_admin identity)"
fi
if held shop/web && [[ $(acct shop/web not_after) == "$na1" ]]; then
	pass "the certificate is kept while renewals fail (expires $na1, now $(date +%s))"
else
	fail "the certificate was not kept: $(shoalctl_admin identity)"
fi
[[ $(acct shop/web last_error) == transport:* ]] && pass "last error: $(acct shop/web last_error | cut -c1-80)" ||
	fail "last error '$(acct shop/web last_error)'"
(($(metric shoal_identity_renewal_failures_total) >= 2)) && pass "renewal_failures_total >= 2" ||
	fail "renewal_failures_total $(metric shoal_identity_renewal_failures_total)"
[[ $(metric shoal_identity_certificates) == 1 ]] && pass "still 1 certificate held" ||
	fail "certificates $(metric shoal_identity_certificates)"
expired() { [[ $(metric shoal_identity_certificates) == 0 ]]; }
if until_ok $((na1 - $(date +%s) + 5)) expired; then
	now=$(date +%s)
	((now >= na1)) && pass "dropped once expired (at $now, expiry $na1)" ||
		fail "dropped at $now, before its expiry $na1"
else
	fail "still held after its expiry $na1: $(shoalctl_admin identity)"
fi
(($(metric shoal_identity_expired_total) >= 1)) && pass "expired_total >= 1" ||
	fail "expired_total $(metric shoal_identity_expired_total)"

# ---- 5. a second root, and an issuer under it ------------------------------------
set_anchors "$W/anchors12.pem"
two() { [[ $(metric shoal_identity_anchors) == 2 ]]; }
until_ok 5 two && pass "2 trust anchors after the rotation's first step" ||
	fail "shoal_identity_anchors $(metric shoal_identity_anchors)"
identity_start issuer2 # same port: the config names it
if until_ok 15 held shop/web; then
	# its server certificate chains to root 2 only: the TLS check passed on the new anchor
	pass "certificates again, from the issuer under root 2 (its TLS verified by root 2)"
	[[ $(acct shop/web failures) == 0 && -z $(acct shop/web last_error) ]] &&
		pass "failures reset" || fail "failures $(acct shop/web failures), error '$(acct shop/web last_error)'"
else
	fail "no certificate from issuer2: $(shoalctl_admin identity)"
	grep identity "$SHOALD_LOG" | tail -5 | sed 's/^/    /'
fi

finish
