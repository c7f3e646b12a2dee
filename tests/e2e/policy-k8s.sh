#!/bin/bash
# policy-k8s.sh: AuthorizationPolicy objects from the API server (the
# stand-in, tests/k8s/apiserver.py) enforced by shoald (docs/policy.md,
# "Sources"). Service api (10.96.0.40, http, from the file) on a2.
#  - an object denying DELETE: a DELETE gets 403 naming it, a GET 200;
#  - a bad edit of that object (a typo'd field): refused, named in the
#    log with the field, and the last good version stays in force;
#  - a namespace default deny object: a GET gets 403 default-deny;
#  - both deleted: everything is allowed again.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

http_topology a2
command -v openssl >/dev/null || skip "openssl is missing (the stand-in API server's CA)"

k8s_apiserver_start --bookmark-every 2

# policy TYPE NAME SPEC_JSON: an AuthorizationPolicy watch event, namespace default.
policy() {
	printf '{"type":"%s","object":{"kind":"AuthorizationPolicy","apiVersion":"shoal.io/v1alpha1","metadata":{"name":"%s","namespace":"default"},"spec":%s}}' \
		"$1" "$2" "$3"
}

{
	config_head
	cat <<EOF
kubernetes:
  api_server: https://127.0.0.1:$API_PORT
  ca_file: $K8S_DIR/ca.crt
  token_file: $K8S_DIR/token
  backoff_max_ms: 1000
services:
$(http_service api 10.96.0.40 9080 "${POD_IP4[a2]}")
EOF
} >"$CONFIG"
shoald_start
enroll a1

# status_and_policy ARGS...: "STATUS POLICY" of one curl from a1.
status_and_policy() {
	local out
	out=$(pod_curl a1 -o /dev/null -D - "$@" 2>&1) || { echo "curl-failed"; return; }
	printf '%s %s\n' "$(head -n1 <<<"$out" | awk '{ print $2 }')" "$(header x-shoal-policy <<<"$out")"
}

# expect_answer WANT WHAT ARGS...: within 10 s, a1's curl ARGS gets WANT ("STATUS POLICY").
expect_answer() {
	local want=$1 what=$2 i out
	shift 2
	for ((i = 0; i < 100; i++)); do
		out=$(status_and_policy "$@")
		[[ $out == "$want" ]] && { pass "$what: '$out'"; return 0; }
		sleep 0.1
	done
	fail "$what: '$out', expected '$want'"
}

expect_answer "200 " "no policy yet: GET api" http://10.96.0.40/items
k8s_apply "$(policy ADDED no-deletes '{"service":"api","action":"deny","from":["*","unauthenticated"],"to":[{"methods":["DELETE"]}]}')"
expect_answer "403 no-deletes" "AuthorizationPolicy no-deletes: DELETE api" -X DELETE http://10.96.0.40/items/1
expect_answer "200 " "AuthorizationPolicy no-deletes: GET api still allowed" http://10.96.0.40/items

# A typo in an edit (to -> too): refused by name and field; the old version holds.
k8s_apply "$(policy MODIFIED no-deletes '{"service":"api","action":"deny","from":["*","unauthenticated"],"too":[{"methods":["GET"]}]}')"
if wait_log "$SHOALD_LOG" "AuthorizationPolicy default/no-deletes: spec.too: unknown field" 10; then
	pass "the bad edit is refused, naming the object and field: $(grep -m1 'spec.too' "$SHOALD_LOG" | cut -c1-200)"
else
	fail "no log line naming AuthorizationPolicy default/no-deletes and spec.too"
fi
grep -q "its last good version stays in force" "$SHOALD_LOG" && pass "the log says the last good version stays" ||
	fail "the log does not say the last good version stays"
expect_answer "403 no-deletes" "after the bad edit: DELETE still denied by the last good version" -X DELETE http://10.96.0.40/items/2
expect_answer "200 " "after the bad edit: GET still allowed (the edit would have denied it)" http://10.96.0.40/items

k8s_apply "$(policy ADDED lockdown '{"default":"deny"}')"
expect_answer "403 default-deny" "namespace default deny: GET api" http://10.96.0.40/items
k8s_apply "[$(policy DELETED lockdown '{}'),$(policy DELETED no-deletes '{}')]"
expect_answer "200 " "both objects deleted: DELETE api allowed again" -X DELETE http://10.96.0.40/items/3
finish
