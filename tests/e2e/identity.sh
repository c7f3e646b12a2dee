#!/usr/bin/env bash
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# shoal-identity as a real process against the stand-in API server
# (tests/k8s/apiserver.py, with TokenReview): a CA made here by openssl,
# an agent-like client (curl, with CSRs made by openssl) asking for
# certificates with bound service-account tokens. Granted for a service
# account with a pod on the caller's node; refused for one without, for
# a finished pod, for a bad, unknown, wrongly-audienced or no token, for a
# token that is not the node agent's, for an agent whose pod is gone, and
# for CSRs of another trust domain, with two URI SANs or a non-P-256 key.
# The certificate verifies against the anchors with the right URI SAN and
# a 24 h lifetime. A root rotation: an issuer under a second root, agents
# trusting both roots. And the server's bounds: TLS 1.3 only, a head over
# 16 KiB, a body over the limit, a per-source rate and concurrency.
#
# Loopback only, no root needed: python3, openssl, curl.
set -euo pipefail
# IDENTITY_TRACE=1: trace with times (most of the run is python3 and openssl starting).
[[ -n ${IDENTITY_TRACE:-} ]] && { PS4='+ $(date +%s.%N) '; set -x; }

T=identity
say() { printf '[%s] %s\n' "$T" "$*"; }
FAILED=0
fail() { printf '[%s] FAIL: %s\n' "$T" "$*" >&2; FAILED=1; }
pass() { printf '[%s] ok: %s\n' "$T" "$*"; }
skip() { printf '[%s] SKIP: %s\n' "$T" "$*"; exit 77; }

for tool in python3 openssl curl; do
	command -v $tool >/dev/null || skip "$tool is missing"
done
root=$(cd "$(dirname "$0")/../.." && pwd)
ID=${SHOAL_IDENTITY:-$root/build/shoal-identity/shoal-identity}
[[ -x $ID ]] || skip "shoal-identity binary not found ($ID); build it first"

W=$(mktemp -d /tmp/shoal-identity-e2e.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if ((FAILED)); then
		say "logs kept in $W"
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT

# ---- the PKI, made here ----
ossl() { openssl "$@" 2>>"$W/openssl.log"; }
# ca NAME SUBJECT [PARENT]: a CA key and certificate; self-signed without PARENT.
ca() {
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
ca root1 "shoal root 1"
ca issuer1 "shoal issuer 1" root1
ca root2 "shoal root 2"
ca issuer2 "shoal issuer 2" root2
cp "$W/root1.crt" "$W/anchors1.pem"
cat "$W/root1.crt" "$W/root2.crt" >"$W/anchors12.pem"

# ---- the stand-in API server ----
sh "$root/tests/k8s/mkcerts.sh" "$W/api"
echo identity-own-token >"$W/tokens"       # shoal-identity's own (may create TokenReviews)
echo shoald-a-token >>"$W/tokens"          # agents may use the API too; irrelevant here
cat >"$W/reviews" <<'JSON'
{
  "shoald-a-token": {"serviceAccount": "shoal-system/shoald", "pod": "shoald-a", "node": "node-a",
                     "audiences": ["shoal-identity"]},
  "shoald-a-api-token": {"serviceAccount": "shoal-system/shoald", "pod": "shoald-a", "node": "node-a"},
  "web-token": {"serviceAccount": "shop/web", "pod": "web-1", "node": "node-a",
                "audiences": ["shoal-identity"]},
  "shoald-legacy-token": {"serviceAccount": "shoal-system/shoald", "legacy": true,
                          "audiences": ["shoal-identity"]}
}
JSON
pod() { # NS NAME SA NODE PHASE
	printf '{"type": "ADDED", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"namespace": "%s", "name": "%s", "uid": "uid-%s"}, "spec": {"serviceAccountName": "%s", "nodeName": "%s"}, "status": {"phase": "%s"}}}\n' \
		"$1" "$2" "$2" "$3" "$4" "$5"
}
{
	pod shoal-system shoald-a shoald node-a Running
	pod shoal-system shoald-b shoald node-b Running
	pod shop web-1 web node-a Running
	pod shop db-1 db node-b Running
	pod shop batch-1 batch node-a Succeeded
} >"$W/seed.ndjson"
python3 "$root/tests/k8s/apiserver.py" --cert "$W/api/server.crt" --key "$W/api/server.key" \
	--token-file "$W/tokens" --token-reviews "$W/reviews" --seed-file "$W/seed.ndjson" \
	--port-file "$W/api.ports" >/dev/null 2>"$W/apiserver.log" &
PIDS+=($!)
for _ in $(seq 100); do [[ -s $W/api.ports ]] && break; sleep 0.1; done
[[ -s $W/api.ports ]] || { fail "the stand-in API server did not start"; exit 1; }
read -r API CTL <"$W/api.ports"
echo identity-own-token >"$W/own-token"

# start NAME ISSUER ANCHORS [ARGS...]: shoal-identity on 127.0.0.1, any port; sets PORT_NAME.
start() {
	local name=$1 issuer=$2 anchors=$3
	shift 3
	rm -f "$W/$name.port"
	"$ID" --listen 127.0.0.1:0 --port-file "$W/$name.port" \
		--issuer-cert "$W/$issuer.crt" --issuer-key "$W/$issuer.key" --anchors "$W/$anchors" \
		--trust-domain cluster.local --node-agent shoal-system/shoald --server-names localhost \
		--api-server "https://127.0.0.1:$API" --api-ca "$W/api/ca.crt" \
		--api-token-file "$W/own-token" --audience shoal-identity "$@" \
		2>"$W/$name.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [[ -s $W/$name.port ]] && break; sleep 0.05; done
	[[ -s $W/$name.port ]] || { cat "$W/$name.log" >&2; fail "shoal-identity $name did not start"; exit 1; }
	printf -v "PORT_$name" '%s' "$(cat "$W/$name.port")"
}

# csr OUT URI... [-rsa]: a key and CSR asking for these URI SANs.
csr() {
	local out=$1 san="" u
	shift
	if [[ ${1:-} == -rsa ]]; then
		shift
		ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/$out.key"
	else
		ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/$out.key"
	fi
	for u in "$@"; do san+="${san:+,}URI:$u"; done
	ossl req -new -key "$W/$out.key" -out "$W/$out.csr" -subj "/" ${san:+-addext "subjectAltName=$san"}
	python3 -c 'import json,sys; print(json.dumps({"csr": open(sys.argv[1]).read()}))' \
		"$W/$out.csr" >"$W/$out.json"
}

# ask NAME OUT TOKEN: POST OUT.json; CODE is the HTTP status, OUT.resp the body.
ask() {
	local port_var=PORT_$1 auth=()
	[[ -n $3 ]] && auth=(-H "Authorization: Bearer $3")
	CODE=$(curl -s -o "$W/$2.resp" -w '%{http_code}' --max-time 10 \
		--cacert "$W/anchors12.pem" --resolve "localhost:${!port_var}:127.0.0.1" \
		"${auth[@]}" -H 'Content-Type: application/json' --data-binary "@$W/$2.json" \
		"https://localhost:${!port_var}/v1/certificates") || CODE=000
}
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2"; }

# expect CODE WORDS NAME OUT TOKEN: the request is answered CODE with an error naming WORDS.
expect() {
	local want=$1 words=$2
	shift 2
	ask "$@"
	if [[ $CODE != "$want" ]]; then
		fail "$2: HTTP $CODE, want $want: $(cat "$W/$2.resp" 2>/dev/null)"
		return
	fi
	local err
	err=$(field "$W/$2.resp" error)
	if [[ $err != *"$words"* ]]; then
		fail "$2: error \"$err\" does not name \"$words\""
		return
	fi
	pass "$2: $want \"$err\""
}

start one issuer1 anchors1.pem

# ---- granted: a pod of shop/web runs on node-a ----
WEB=spiffe://cluster.local/ns/shop/sa/web
csr web "$WEB"
ask one web shoald-a-token
if [[ $CODE != 200 ]]; then
	fail "web: HTTP $CODE: $(cat "$W/web.resp")"
else
	field "$W/web.resp" certificate >"$W/web.crt"
	field "$W/web.resp" chain >"$W/web.chain"
	expires=$(field "$W/web.resp" expires)
	if openssl verify -CAfile "$W/anchors1.pem" -untrusted "$W/web.chain" "$W/web.crt" >/dev/null 2>&1; then
		pass "web: the leaf verifies against the anchors through the chain"
	else
		fail "web: the leaf does not verify: $(openssl verify -CAfile "$W/anchors1.pem" -untrusted "$W/web.chain" "$W/web.crt" 2>&1)"
	fi
	text=$(openssl x509 -in "$W/web.crt" -noout -text)
	sans=$(openssl x509 -in "$W/web.crt" -noout -ext subjectAltName | tail -n +2 | tr -d ' ')
	[[ $sans == "URI:$WEB" ]] && pass "web: one URI SAN, $WEB" || fail "web: SANs are '$sans'"
	grep -q "CA:FALSE" <<<"$text" && grep -q "Digital Signature" <<<"$text" &&
		grep -q "TLS Web Server Authentication, TLS Web Client Authentication" <<<"$text" &&
		! grep -q "Certificate Sign" <<<"$text" &&
		pass "web: CA:FALSE, digitalSignature, serverAuth+clientAuth" ||
		fail "web: extensions wrong: $text"
	nb=$(date -d "$(openssl x509 -in "$W/web.crt" -noout -startdate | cut -d= -f2)" +%s)
	na=$(date -d "$(openssl x509 -in "$W/web.crt" -noout -enddate | cut -d= -f2)" +%s)
	now=$(date +%s)
	life=$((na - nb))
	# 24 h, plus the 60 s backdating; notAfter about now + 24 h
	if ((life >= 86400 && life <= 86400 + 120 && na - now >= 86400 - 60 && na - now <= 86400 + 5)); then
		pass "web: lifetime ${life} s, expires in $((na - now)) s"
	else
		fail "web: lifetime $life s, expires in $((na - now)) s (want about 24 h)"
	fi
	[[ $expires == "$na" ]] && pass "web: \"expires\" is notAfter" || fail "web: expires $expires, notAfter $na"
	[[ $(openssl x509 -in "$W/web.crt" -noout -pubkey) == $(openssl pkey -in "$W/web.key" -pubout) ]] &&
		pass "web: the leaf certifies the CSR's key" || fail "web: the leaf's key is not the CSR's"
	grep -q "issued $WEB to 127.0.0.1 (shoal-system/shoald, pod shoald-a on node node-a)" "$W/one.log" &&
		pass "web: the issuance is logged with the caller" || fail "web: no issuance log line"
fi

# ---- node authorization ----
csr db spiffe://cluster.local/ns/shop/sa/db
expect 403 "no pod with service account shop/db runs on node node-a" one db shoald-a-token
csr batch spiffe://cluster.local/ns/shop/sa/batch
expect 403 "no pod with service account shop/batch runs on node node-a" one batch shoald-a-token
csr other spiffe://cluster.local/ns/shoal-system/sa/shoald
# the agent's own account has a pod on node-a (the agent itself): granted
ask one other shoald-a-token
[[ $CODE == 200 ]] && pass "the agent's own service account: 200" || fail "agent's own SA: HTTP $CODE"
expect 401 "token not authenticated" one web not-a-token
cp "$W/web.json" "$W/notoken.json"
expect 401 "no Authorization: Bearer token" one notoken ""
code=$(curl -s -o "$W/longtok.resp" -w '%{http_code}' --max-time 10 --cacert "$W/anchors12.pem" \
	--resolve "localhost:$PORT_one:127.0.0.1" -H "Authorization: Bearer $(head -c 9000 /dev/zero | tr '\0' a)" \
	--data-binary "@$W/web.json" "https://localhost:$PORT_one/v1/certificates") || code=000
[[ $code == 401 && $(field "$W/longtok.resp" error) == "bearer token over 8 KiB" ]] &&
	pass "a token over 8 KiB: 401 naming it" || fail "long token: HTTP $code $(cat "$W/longtok.resp")"
cp "$W/web.json" "$W/aud.json"
expect 401 "audiences" one aud shoald-a-api-token
cp "$W/web.json" "$W/legacy.json"
# the agent's service account, but a Secret-based token: it names no node, so nothing can be checked
expect 401 "is not bound to a pod on a node" one legacy shoald-legacy-token
cp "$W/web.json" "$W/notagent.json"
expect 403 "service account shop/web is not the node agent's (shoal-system/shoald)" one notagent web-token
grep -q "refused 403 to 127.0.0.1 (shop/web, pod web-1 on node node-a): service account shop/web is not" "$W/one.log" &&
	pass "refusals are logged with the caller" || fail "no refusal log line"

# ---- the CSR ----
csr evil spiffe://evil.example/ns/shop/sa/web
expect 400 "trust domain \"evil.example\" is not \"cluster.local\"" one evil shoald-a-token
csr two "$WEB" spiffe://cluster.local/ns/shop/sa/db
expect 400 "2 URI SANs" one two shoald-a-token
csr nouri
expect 400 "no subjectAltName" one nouri shoald-a-token
csr rsa -rsa "$WEB"
expect 400 "not EC P-256" one rsa shoald-a-token
csr malformed "spiffe://cluster.local/ns/shop/sa/w%65b"
expect 400 "not a SPIFFE ID: percent-encoding" one malformed shoald-a-token
echo '{"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}' >"$W/junk.json"
expect 400 "not a PEM certificate request" one junk shoald-a-token
echo 'csr=1' >"$W/notjson.json"
expect 400 "not JSON" one notjson shoald-a-token

# ---- the caller's pod must be current: deleted, its bound token is dead ----
curl -s -X POST --data-binary '{"type": "DELETED", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"namespace": "shoal-system", "name": "shoald-a"}}}' \
	"http://127.0.0.1:$CTL/apply" >/dev/null
cp "$W/web.json" "$W/gone.json"
expect 401 'pod "shoald-a" not found' one gone shoald-a-token
pod shoal-system shoald-a shoald node-a Running | curl -s -X POST --data-binary @- "http://127.0.0.1:$CTL/apply" >/dev/null
ask one web shoald-a-token
[[ $CODE == 200 ]] && pass "the agent's pod back: 200 again" || fail "agent pod back: HTTP $CODE"

# ---- the server's bounds ----
if curl -s -o /dev/null --max-time 5 --tls-max 1.2 --cacert "$W/anchors12.pem" \
	--resolve "localhost:$PORT_one:127.0.0.1" "https://localhost:$PORT_one/v1/certificates"; then
	fail "a TLS 1.2 client was served"
else
	pass "TLS 1.2 refused (TLS 1.3 only)"
fi
code=$(curl -s -o "$W/big.resp" -w '%{http_code}' --max-time 10 --cacert "$W/anchors12.pem" \
	--resolve "localhost:$PORT_one:127.0.0.1" -H "X-Pad: $(head -c 17000 /dev/zero | tr '\0' a)" \
	-H "Authorization: Bearer shoald-a-token" --data-binary "@$W/web.json" \
	"https://localhost:$PORT_one/v1/certificates") || code=000
[[ $code == 431 ]] && pass "a head over 16 KiB: 431" || fail "big head: HTTP $code"
head -c 20000 /dev/zero | tr '\0' a >"$W/huge.json"
expect 413 "body over the size limit" one huge shoald-a-token
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$W/anchors12.pem" \
	--resolve "localhost:$PORT_one:127.0.0.1" "https://localhost:$PORT_one/v1/certificates") || code=000
[[ $code == 405 ]] && pass "GET: 405" || fail "GET: HTTP $code"

# ---- a root rotation: an issuer under root 2, both roots trusted ----
# Against root 1 alone, an issuer under root 2 does not start.
if "$ID" --listen 127.0.0.1:0 --issuer-cert "$W/issuer2.crt" --issuer-key "$W/issuer2.key" \
	--anchors "$W/anchors1.pem" --api-server https://127.0.0.1:1 2>"$W/bad.log"; then
	fail "an issuer that does not chain to the anchors started"
else
	grep -q "does not chain to --anchors" "$W/bad.log" && pass "issuer outside the anchors: refused at start" ||
		fail "issuer outside anchors: $(cat "$W/bad.log")"
fi
start two issuer2 anchors12.pem --lifetime 7200
csr web2 "$WEB"
ask two web2 shoald-a-token
if [[ $CODE != 200 ]]; then
	fail "rotation: HTTP $CODE: $(cat "$W/web2.resp")"
else
	field "$W/web2.resp" certificate >"$W/web2.crt"
	field "$W/web2.resp" chain >"$W/web2.chain"
	openssl verify -CAfile "$W/anchors12.pem" -untrusted "$W/web2.chain" "$W/web2.crt" >/dev/null 2>&1 &&
		openssl verify -CAfile "$W/anchors12.pem" -untrusted "$W/web.chain" "$W/web.crt" >/dev/null 2>&1 &&
		pass "rotation: leaves of both issuers verify against the two anchors" ||
		fail "rotation: a leaf does not verify against both anchors"
	if openssl verify -CAfile "$W/anchors1.pem" -untrusted "$W/web2.chain" "$W/web2.crt" >/dev/null 2>&1; then
		fail "rotation: a root-2 leaf verified against root 1 alone"
	else
		pass "rotation: a root-2 leaf does not verify against root 1 alone"
	fi
	nb=$(date -d "$(openssl x509 -in "$W/web2.crt" -noout -startdate | cut -d= -f2)" +%s)
	na=$(date -d "$(openssl x509 -in "$W/web2.crt" -noout -enddate | cut -d= -f2)" +%s)
	((na - nb >= 7200 && na - nb <= 7200 + 120)) && pass "--lifetime 7200: $((na - nb)) s" ||
		fail "--lifetime 7200: $((na - nb)) s"
fi

# ---- the lifetime asked for: granted when shorter than --lifetime, cut to it when longer ----
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["lifetime_s"]=int(sys.argv[2]); print(json.dumps(d))' \
	"$W/web2.json" 600 >"$W/short.json"
ask two short shoald-a-token
if [[ $CODE == 200 ]]; then
	field "$W/short.resp" certificate >"$W/short.crt"
	nb=$(date -d "$(openssl x509 -in "$W/short.crt" -noout -startdate | cut -d= -f2)" +%s)
	na=$(date -d "$(openssl x509 -in "$W/short.crt" -noout -enddate | cut -d= -f2)" +%s)
	((na - nb >= 600 && na - nb <= 600 + 120)) && pass "lifetime_s 600: $((na - nb)) s" ||
		fail "lifetime_s 600: $((na - nb)) s"
else
	fail "lifetime_s 600: HTTP $CODE"
fi
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["lifetime_s"]=int(sys.argv[2]); print(json.dumps(d))' \
	"$W/web2.json" 999999 >"$W/long.json"
ask two long shoald-a-token
if [[ $CODE == 200 ]]; then
	field "$W/long.resp" certificate >"$W/long.crt"
	nb=$(date -d "$(openssl x509 -in "$W/long.crt" -noout -startdate | cut -d= -f2)" +%s)
	na=$(date -d "$(openssl x509 -in "$W/long.crt" -noout -enddate | cut -d= -f2)" +%s)
	((na - nb <= 7200 + 120)) && pass "lifetime_s 999999: cut to --lifetime ($((na - nb)) s)" ||
		fail "lifetime_s 999999: $((na - nb)) s, over --lifetime 7200"
else
	fail "lifetime_s 999999: HTTP $CODE"
fi
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["lifetime_s"]="long"; print(json.dumps(d))' \
	"$W/web2.json" >"$W/badlife.json"
expect 400 "lifetime_s must be an integer" two badlife shoald-a-token

# ---- per-source rate: a burst of 3, then 1 per second ----
start three issuer1 anchors1.pem --per-source-rate 1 --per-source-burst 3
ok=0 refused=0
for i in 1 2 3 4 5; do
	ask three web shoald-a-token
	if [[ $CODE == 200 ]]; then ok=$((ok + 1)); else refused=$((refused + 1)); fi
done
# 5 within well under a second: 3 from the burst, at most one refilled
if ((ok >= 3 && ok <= 4 && refused >= 1)); then
	pass "per-source rate: $ok served, $refused refused"
else
	fail "per-source rate: $ok served, $refused refused (want 3-4 served)"
fi
grep -q "refused connection from 127.0.0.1: --per-source-rate exceeded" "$W/three.log" &&
	pass "rate refusals are logged" || fail "no rate refusal log line"

# ---- per-source concurrency: two idle connections hold both slots ----
start four issuer1 anchors1.pem --per-source-connections 2
exec 5<>"/dev/tcp/127.0.0.1/$PORT_four" 6<>"/dev/tcp/127.0.0.1/$PORT_four"
sleep 0.3
ask four web shoald-a-token
[[ $CODE == 000 ]] && pass "a third connection while two are open: closed" || fail "third connection: HTTP $CODE"
grep -q "refused connection from 127.0.0.1: --per-source-connections reached" "$W/four.log" &&
	pass "concurrency refusals are logged" || fail "no concurrency refusal log line"
exec 5>&- 6>&-
sleep 0.3
ask four web shoald-a-token
[[ $CODE == 200 ]] && pass "the slots freed when the idle connections closed: 200" ||
	fail "after closing the idle connections: HTTP $CODE"

if ((FAILED)); then
	say "FAILED"
	exit 1
fi
say "PASSED"
