#!/bin/bash
# enroll.sh: pods are meshed by label, automatically (docs/enrollment.md).
# Pods are network namespaces on node-a's bridge whose processes sit in a
# kubelet-like cgroup layout under the test cgroup, both drivers:
#   systemd:  kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/
#               cri-containerd-<id>.scope | crio-<id>.scope (+ crio-conmon-<id>.scope)
#   cgroupfs: kubepods/<qos>/pod<uid>/<id>
# and the stand-in API server (tests/k8s/apiserver.py) holds their Pods
# and Namespaces. shoald watches them with enrollment on, and:
#  - pods running before it starts are enrolled by the cgroup scan (each
#    netns checked to hold the pod's IP), and one without processes by
#    the runtime's netns mount that holds its IP; the label rules hold: namespace
#    label, pod label overriding both ways, host network never, other
#    nodes' pods not seen;
#  - through the CNI plugin (shoal-cni ADD), a new pod's netns is enrolled
#    before its first process runs: that first connect is intercepted;
#  - deleting a pod, or changing a pod's or its namespace's label, stops
#    (or starts) interception;
#  - with shoald down, shoal-cni ADD still succeeds (fail open) and the
#    pod's connects go direct; the restarted shoald re-adopts the running
#    pods (it unenrolls one deleted after the restart) and enrolls the one
#    it missed;
#  - an entry whose netns is gone is removed by the reconcile;
#  - shoal-cni install/uninstall chain and unchain the plugin; after
#    uninstall no binary, conflist entry, socket or pin is left;
#  - two waiting installers in a row, as a DaemonSet surge runs them: the
#    old one stopped after the new one installed leaves the plugin and
#    its conflist entry in place; the new one puts them back when they
#    go; the last one stopped leaves nothing.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

e2e_init
command -v python3 >/dev/null || skip "python3 is missing (the stand-in API server)"
command -v openssl >/dev/null || skip "openssl is missing (the stand-in API server's CA)"
command -v curl >/dev/null || skip "curl is missing"
SHOAL_CNI=${SHOAL_CNI:-$(dirname "$SHOALD")/shoal-cni}
[[ -x $SHOAL_CNI ]] || skip "shoal-cni binary not found (SHOAL_CNI='$SHOAL_CNI'); build it first"
# A socket path must fit sun_path (108 bytes): not under the build tree.
CNI_SOCK=$STATE_DIR/$RUN.cni.sock
for old in "$STATE_DIR"/"$E2E_PREFIX"-*.cni.sock; do
	[[ -e $old ]] || continue
	pid=${old##*/"$E2E_PREFIX"-}
	pid=${pid%%.*}
	owner_alive "$pid" || rm -f "$old"
done
# The runtime's netns mounts (kubernetes.enrollment.netns_dir) of this
# run: a directory of bind mounts, unmounted on every exit path.
NETNS_MNT=$STATE_DIR/$RUN.netns
for old in "$STATE_DIR"/"$E2E_PREFIX"-*.netns; do
	[[ -d $old ]] || continue
	pid=${old##*/"$E2E_PREFIX"-}
	pid=${pid%%.*}
	owner_alive "$pid" && continue
	for m in "$old"/*; do
		if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || true; fi
	done
	rm -rf "$old"
done
netns_mnt_cleanup() {
	local m
	for m in "$NETNS_MNT"/*; do
		if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || true; fi
	done
	rm -rf "$NETNS_MNT" || true
	return 0
}
# Unmounted first (never failing: set -e holds in the trap), then the
# harness's own cleanup with the test's status.
trap 'rc=$?; set +e; netns_mnt_cleanup; (exit $rc); e2e_cleanup' EXIT
mkdir -p "$NETNS_MNT"
e2e_topology

k8s_apiserver_start --bookmark-every 2

# ---- pods -------------------------------------------------------------------

declare -A K_UID K_NS K_LABEL K_HOST K_NODE K_SCOPE
SEQ=0

# kpod NAME NAMESPACE DRIVER RUNTIME HOST [LABEL] [hostnet]: a pod on node-a
# at 10.77.1.HOST (its own netns, unless hostnet: node-a's), its cgroups in
# the kubelet's layout for DRIVER (systemd|cgroupfs) and RUNTIME
# (containerd|crio). The container cgroup becomes POD_CG[NAME]: whatever
# the test runs "in the pod" runs there.
kpod() {
	local name=$1 ns=$2 driver=$3 runtime=$4 host=$5 label=${6:-} hostnet=${7:-}
	local uid cid qos=besteffort pod_dir scope
	SEQ=$((SEQ + 1))
	uid=$(printf '5eed%04x-0e2e-4000-8000-%012d' "$$" "$SEQ")
	cid=$(printf '%064x' "$((SEQ * 7919))")
	if [[ -n $hostnet ]]; then
		POD_NS[$name]=$NS_A
		POD_IP4[$name]=10.77.1.1
		mkdir -p "$TEST_CG/pod-$name"
	else
		pod_add "$name" "$NS_A" 1 "$host"
	fi
	if [[ $driver == systemd ]]; then
		qos=burstable
		pod_dir=$TEST_CG/kubepods.slice/kubepods-$qos.slice/kubepods-$qos-pod${uid//-/_}.slice
		if [[ $runtime == crio ]]; then scope=crio-$cid.scope; else scope=cri-containerd-$cid.scope; fi
	else
		pod_dir=$TEST_CG/kubepods/$qos/pod$uid
		scope=$cid
	fi
	mkdir -p "$pod_dir/$scope"
	if [[ $runtime == crio ]]; then
		# CRI-O's monitor: in the node's netns, beside the container.
		mkdir -p "$pod_dir/crio-conmon-$cid.scope"
		spawn_in "$pod_dir/crio-conmon-$cid.scope" "$NS_A" /dev/null sleep 600
	fi
	POD_CG[$name]=$pod_dir/$scope
	K_UID[$name]=$uid K_NS[$name]=$ns K_LABEL[$name]=$label K_HOST[$name]=${hostnet:+true}
	K_NODE[$name]=node-a K_SCOPE[$name]=$pod_dir
}

# pod_event TYPE NAME [LABEL]: the Pod object of NAME, as the API server has it.
pod_event() {
	local typ=$1 name=$2 label=${3-${K_LABEL[$2]:-}} labels='{}'
	[[ -n $label ]] && labels="{\"shoal.io/mesh\":\"$label\",\"app\":\"$name\"}"
	printf '{"type":"%s","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"%s","namespace":"%s","uid":"%s","labels":%s},"spec":{"nodeName":"%s","serviceAccountName":"sa-%s","hostNetwork":%s},"status":{"phase":"Running","podIP":"%s","podIPs":[{"ip":"%s"}]}}}' \
		"$typ" "$name" "${K_NS[$name]}" "${K_UID[$name]}" "$labels" "${K_NODE[$name]}" "$name" \
		"${K_HOST[$name]:-false}" "${POD_IP4[$name]}" "${POD_IP4[$name]}"
}

ns_event() { # TYPE NAME [LABEL]
	local labels='{}'
	[[ -n ${3:-} ]] && labels="{\"shoal.io/mesh\":\"$3\"}"
	printf '{"type":"%s","object":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"%s","labels":%s},"status":{"phase":"Active"}}}' \
		"$1" "$2" "$labels"
}

# The pod's "pause": one process that keeps it running.
pause_in() { pod_spawn "$1" "$LOGDIR/pause-$1.log" sleep 600; }

ADMIN_PORT=15024
shoalctl_admin() { in_ns "$NS_A" timeout 20 "$SHOALCTL" --admin "127.0.0.1:$ADMIN_PORT" "$@"; }

# state_of NAME: the pod's state in `shoalctl pods --json`, "" if absent.
state_of() {
	shoalctl_admin --json pods 2>/dev/null | python3 -c '
import json, sys
want = sys.argv[1]
for p in json.load(sys.stdin)["pods"]:
    if p["name"] == want:
        print(p["state"])' "$1" 2>/dev/null || true
}

# wait_state NAME STATE [SECONDS]
wait_state() {
	local name=$1 want=$2 secs=${3:-10} got="" i
	for ((i = 0; i < secs * 10; i++)); do
		got=$(state_of "$name")
		[[ $got == "$want" ]] && return 0
		sleep 0.1
	done
	fail "pod $name: state '$got' after ${secs}s, expected '$want'"
	return 1
}

# until_path POD direct|proxied [SECONDS]: polls hello until the path is the
# one wanted, then records it with expect_direct/expect_proxied.
until_path() {
	local pod=$1 want=$2 secs=${3:-10} i
	for ((i = 0; i < secs * 5; i++)); do
		if hello "$pod" 10.96.0.10:80 --timeout-ms 500; then
			[[ $want == direct && $HELLO_BACKEND == direct ]] && break
			[[ $want == proxied && $HELLO_BACKEND != direct ]] && break
		fi
		sleep 0.2
	done
	if [[ $want == direct ]]; then
		expect_direct "$pod" 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[$pod]}"
	else
		expect_proxied "$pod" 10.96.0.10:80 10.96.0.10:80
	fi
}

enrolled_count() { ctl status | awk '$1 == "enrolled" { print $2 }'; }

# cni CMD NAME: shoal-cni as a runtime runs it, chained after a plugin
# whose result (prevResult) gave the pod its address. Output in CNI_OUT,
# stderr in CNI_ERR, status returned.
CNI_PREV='{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"SANDBOX"}],"ips":[{"address":"ADDR/24","gateway":"10.77.1.1","interface":0}]}'
cni() {
	local cmd=$1 name=$2 prev conf rc=0
	prev=${CNI_PREV//SANDBOX//run/netns/${POD_NS[$name]}}
	prev=${prev//ADDR/${POD_IP4[$name]}}
	conf="{\"cniVersion\":\"1.0.0\",\"name\":\"e2e\",\"type\":\"shoal-cni\",\"socket\":\"$CNI_SOCK\",\"prevResult\":$prev}"
	CNI_OUT=$(CNI_COMMAND=$cmd CNI_CONTAINERID="sandbox-$name" CNI_NETNS="/run/netns/${POD_NS[$name]}" \
		CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin \
		CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=${K_NS[$name]};K8S_POD_NAME=$name;K8S_POD_INFRA_CONTAINER_ID=sandbox-$name;K8S_POD_UID=${K_UID[$name]}" \
		"$SHOAL_CNI" <<<"$conf" 2>"$LOGDIR/cni-$cmd-$name.err") || rc=$?
	CNI_ERR=$(cat "$LOGDIR/cni-$cmd-$name.err")
	CNI_PREV_WANT=$prev
	return $rc
}

# Same JSON, whatever the spacing.
json_same() { python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1]) != json.loads(sys.argv[2]))' "$1" "$2"; }

# ---- the world before shoald --------------------------------------------------

say "pods before shoald: k1 (shop, systemd/containerd), k2 (plain, label enabled, cgroupfs),"
say "  k3 (shop, label disabled), k4 (shop, systemd/CRI-O), hn (shop, host network)"
kpod k1 shop systemd containerd 10
kpod k2 plain cgroupfs containerd 11 enabled
kpod k3 shop systemd containerd 12 disabled
kpod k4 shop systemd crio 13
kpod hn shop cgroupfs containerd 0 "" hostnet
for p in k1 k2 k3 k4 hn; do pause_in "$p"; done
kpod k5 shop systemd containerd 14   # created later, through the CNI plugin
kpod k6 plain cgroupfs containerd 15 # the same, in a namespace without the label
kpod k7 shop cgroupfs containerd 16  # started while shoald is down
# No process at all, its netns pinned where the runtime pins them: found
# by the netns mount holding its IP (no ptrace access to pods needed).
kpod k8 shop systemd containerd 17
touch "$NETNS_MNT/cni-k8"
mount --bind "/run/netns/${POD_NS[k8]}" "$NETNS_MNT/cni-k8" || fatal "cannot bind-mount k8's netns"
k8s_apply "[$(ns_event ADDED shop enabled),$(ns_event ADDED plain),$(pod_event ADDED k1),$(pod_event ADDED k2),$(pod_event ADDED k3),$(pod_event ADDED k4),$(pod_event ADDED hn)]"
# A pod of another node, whose netns is k6's: never this node's business.
K_UID[far]=5eedfa00-0e2e-4000-8000-000000000000 K_NS[far]=shop K_NODE[far]=node-b
POD_IP4[far]=${POD_IP4[k6]} POD_NS[far]=${POD_NS[k6]}
k8s_apply "$(pod_event ADDED far)"

{
	config_head
	cat <<EOF
kubernetes:
  api_server: https://127.0.0.1:$API_PORT
  ca_file: $K8S_DIR/ca.crt
  token_file: $K8S_DIR/token
  backoff_max_ms: 1000
  enrollment:
    node_name: node-a
    cgroup_root: /$RUN
    cni_socket: $CNI_SOCK
    resync_ms: 1000
    netns_dir: $NETNS_MNT
services:
EOF
	web_service
} >"$CONFIG"

shoald_start --admin "127.0.0.1:$ADMIN_PORT"

# A netns enrolled by hand and then deleted: a stale entry for the reconcile.
netns_add "$RUN-stale"
out=$(ctl enroll "/run/netns/$RUN-stale") || fatal "shoalctl enroll of the stale netns failed"
STALE_COOKIE=$(awk '{ print $4 }' <<<"$out") # "enrolled netns cookie N (PATH)"
ip netns del "$RUN-stale"
STALE_AT=$SECONDS

say "re-scan: the running pods are found in the cgroups and enrolled by the rules"
wait_state k1 enrolled
wait_state k2 enrolled
wait_state k4 enrolled
wait_state k3 unmeshed
wait_state hn host-network
[[ -z $(state_of far) ]] && pass "a pod of node-b is not seen (fieldSelector spec.nodeName=node-a)" ||
	fail "node-b's pod is listed on node-a"
until_path k1 proxied
until_path k2 proxied
until_path k4 proxied
until_path k3 direct
for p in k1 k2 k4; do
	grep -q "enroll: pod ${K_NS[$p]}/$p enrolled (netns cookie [0-9]*, cgroup scan)" "$SHOALD_LOG" &&
		pass "$p found through its kubelet cgroup" || fail "$p not enrolled by the cgroup scan"
done
k8s_apply "$(pod_event ADDED k8)"
wait_state k8 enrolled
grep -q "enroll: pod shop/k8 enrolled (netns cookie [0-9]*, netns mount)" "$SHOALD_LOG" &&
	pass "k8 (no process) found through the runtime's netns mount holding its IP" ||
	fail "k8 not enrolled through its netns mount"
expect_proxied k8 10.96.0.10:80 10.96.0.10:80
pods_out=$(shoalctl_admin pods)
printf '%s\n' "$pods_out" >"$LOGDIR/pods.1.txt"
if grep -q "^shop/k1 .*enrolled *sa-k1 " <<<"$pods_out"; then
	pass "shoalctl pods: shop/k1 enrolled with its service account"
else
	fail "shoalctl pods does not show shop/k1 enrolled with sa-k1: $pods_out"
fi
# The node's netns (hn's, shoald's) is never enrolled: 4 pods + the stale entry.
n=$(enrolled_count)
((n <= 5)) && pass "shoal_enrolled holds $n entries (4 pods, maybe the stale one): no host netns" ||
	fail "shoal_enrolled holds $n entries, expected at most 5"

say "CNI: a new pod's netns is enrolled before its first process runs"
k8s_apply "$(pod_event ADDED k5)"
wait_state k5 pending
if cni ADD k5 && json_same "$CNI_OUT" "$CNI_PREV_WANT"; then
	pass "shoal-cni ADD: exit 0, prevResult passed through"
else
	fail "shoal-cni ADD k5: '$CNI_OUT' ($CNI_ERR)"
fi
wait_state k5 enrolled 1
# The first connect of the pod's first process: intercepted.
expect_proxied k5 10.96.0.10:80 10.96.0.10:80
pause_in k5
k8s_apply "$(pod_event ADDED k6)"
wait_state k6 unmeshed
cni ADD k6 || fail "shoal-cni ADD k6 failed: $CNI_ERR"
expect_direct k6 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[k6]}"
if cni CHECK k5 && [[ -z $CNI_OUT ]]; then
	pass "shoal-cni CHECK: exit 0, nothing printed"
else
	fail "shoal-cni CHECK k5: rc, output '$CNI_OUT' ($CNI_ERR)"
fi
out=$(CNI_COMMAND=ADD CNI_CONTAINERID=x CNI_NETNS=/run/netns/${POD_NS[k5]} "$SHOAL_CNI" \
	<<<'{"cniVersion":"1.0.0","name":"e2e","type":"shoal-cni"}' 2>/dev/null) && rc=0 || rc=$?
if ((rc == 1)) && [[ $out == *'"code":7'* ]]; then
	pass "shoal-cni ADD without prevResult: the spec's error 7 (not chained)"
else
	fail "shoal-cni ADD without prevResult: rc $rc, '$out'"
fi
out=$(CNI_COMMAND=ADD CNI_CONTAINERID=x CNI_NETNS=/run/netns/${POD_NS[k5]} "$SHOAL_CNI" \
	<<<'{"cniVersion":"9.9.9","name":"e2e","type":"shoal-cni","prevResult":{}}' 2>/dev/null) && rc=0 || rc=$?
((rc == 1)) && [[ $out == *'"code":1'* ]] && pass "shoal-cni refuses cniVersion 9.9.9 (error 1)" ||
	fail "shoal-cni with cniVersion 9.9.9: rc $rc, '$out'"
if CNI_COMMAND=VERSION "$SHOAL_CNI" | grep -q '"supportedVersions":\[.*"1.0.0"'; then
	pass "shoal-cni VERSION lists 1.0.0"
else
	fail "shoal-cni VERSION: $(CNI_COMMAND=VERSION "$SHOAL_CNI" 2>&1)"
fi

say "delete and relabel"
k8s_apply "$(pod_event DELETED k1)"
until_path k1 direct
k8s_apply "$(pod_event MODIFIED k2 disabled)"
until_path k2 direct
wait_state k2 unmeshed
k8s_apply "$(ns_event MODIFIED shop)"
until_path k4 direct
k8s_apply "$(ns_event MODIFIED shop enabled)"
until_path k4 proxied

say "shoald down: a pod created meanwhile starts (fail open), then shoald is back"
shoald_stop
k8s_apply "$(pod_event ADDED k7)"
if cni ADD k7 && json_same "$CNI_OUT" "$CNI_PREV_WANT" && [[ $CNI_ERR == *"did not answer"* ]]; then
	pass "shoal-cni ADD with shoald down: exit 0, prevResult, logged"
else
	fail "shoal-cni ADD with shoald down: '$CNI_OUT' ($CNI_ERR)"
fi
pause_in k7
expect_direct k7 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[k7]}"
shoald_start --admin "127.0.0.1:$ADMIN_PORT"
wait_state k7 enrolled
wait_state k5 enrolled
wait_state k4 enrolled
until_path k7 proxied
if grep -q "enroll: pod shop/k4 adopted" "$SHOALD_LOG"; then
	pass "the restarted shoald adopted k4's entry (left in place, not rewritten)"
else
	fail "no 'pod shop/k4 adopted' line in $SHOALD_LOG"
fi
# Re-adopted: the new agent unenrolls a pod the old one enrolled.
k8s_apply "$(pod_event DELETED k5)"
until_path k5 direct

say "stale entries: the hand-enrolled netns that is gone"
left=$((12 - (SECONDS - STALE_AT)))
((left > 0)) && sleep "$left"
# Either agent may have removed it (the first one, if the grace passed
# before its restart): the log lines of both, and the map, say.
for ((i = 0; i < 30; i++)); do
	grep -q "enroll: netns cookie $STALE_COOKIE removed: its network namespace is gone" \
		"$LOGDIR"/shoald.*.log && break
	sleep 0.2
done
if grep -q "enroll: netns cookie $STALE_COOKIE removed: its network namespace is gone" "$LOGDIR"/shoald.*.log &&
	! bpftool map lookup pinned "$PIN_ROOT/maps/shoal_enrolled" key $(printf '%016x' "$STALE_COOKIE" |
		sed 's/../& /g' | awk '{ for (i = NF; i > 0; i--) printf "0x%s ", $i }') >/dev/null 2>&1; then
	pass "the gone netns's entry (cookie $STALE_COOKIE) was removed"
else
	fail "the gone netns's entry (cookie $STALE_COOKIE) is still there 12 s after the netns went"
fi
n=$(enrolled_count)
[[ $n == 3 ]] && pass "shoal_enrolled holds 3 entries (k4, k7, k8)" ||
	fail "shoal_enrolled holds $n entries, expected 3 (k4, k7, k8)"

say "CNI DEL: the sandbox goes, its netns leaves the map at once"
umount "$NETNS_MNT/cni-k8" # the runtime's teardown: nothing finds k8's netns any more
cni DEL k8 || fail "shoal-cni DEL k8 failed: $CNI_ERR"
grep -q "enroll: pod shop/k8 unenrolled (netns cookie [0-9]*, cni DEL)" "$SHOALD_LOG" &&
	pass "shoal-cni DEL unenrolled k8 before it returned" || fail "no 'cni DEL' unenroll of k8 in the log"
n=$(enrolled_count)
[[ $n == 2 ]] && pass "shoal_enrolled holds 2 entries (k4, k7)" ||
	fail "shoal_enrolled holds $n entries after DEL, expected 2"

if [[ -x /opt/shoal/kubernetes-client/usr/bin/kubectl ]] || dpkg-query -W kubernetes-client >/dev/null 2>&1; then
	kc=/usr/bin/kubectl
	[[ -x /opt/shoal/kubernetes-client/usr/bin/kubectl ]] && kc=/opt/shoal/kubernetes-client/usr/bin/kubectl
	cat >"$K8S_DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: s, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$K8S_DIR/ca.crt"}}]
users: [{name: u, user: {token: e2e-token}}]
contexts: [{name: c, context: {cluster: s, user: u}}]
current-context: c
EOF
	got=$(in_ns "$NS_A" "$kc" --kubeconfig "$K8S_DIR/kubeconfig" --cache-dir "$K8S_DIR/kcache" \
		get pods -A --field-selector spec.nodeName=node-a -o name 2>&1 | sort | tr '\n' ' ')
	want="pod/hn pod/k2 pod/k3 pod/k4 pod/k6 pod/k7 pod/k8 "
	[[ $got == "$want" ]] && pass "Debian's kubectl lists the same node-a pods: $got" ||
		fail "kubectl get pods on node-a: '$got', expected '$want'"
else
	say "Debian's kubectl (kubernetes-client) not available: kubectl cross-check skipped"
fi

say "install and uninstall"
CNI_HOST=$LOGDIR/cni-host
mkdir -p "$CNI_HOST/bin" "$CNI_HOST/net.d"
cat >"$CNI_HOST/net.d/10-e2e.conflist" <<'EOF'
{"cniVersion": "1.0.0", "name": "e2e", "plugins": [{"type": "bridge", "bridge": "cni0"}, {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
cp "$CNI_HOST/net.d/10-e2e.conflist" "$LOGDIR/conflist.orig"
"$SHOAL_CNI" install --bin-dir "$CNI_HOST/bin" --conf-dir "$CNI_HOST/net.d" --socket "$CNI_SOCK" 2>>"$LOGDIR/cni-install.log" ||
	fail "shoal-cni install failed: $(cat "$LOGDIR/cni-install.log")"
"$SHOAL_CNI" install --bin-dir "$CNI_HOST/bin" --conf-dir "$CNI_HOST/net.d" --socket "$CNI_SOCK" 2>>"$LOGDIR/cni-install.log"
types=$(python3 -c 'import json, sys; print(" ".join(p["type"] for p in json.load(open(sys.argv[1]))["plugins"]))' "$CNI_HOST/net.d/10-e2e.conflist")
[[ $types == "bridge portmap shoal-cni" && -x $CNI_HOST/bin/shoal-cni ]] &&
	pass "install (twice): binary in bin dir, chained last once: $types" ||
	fail "after install: plugins '$types', binary $(ls "$CNI_HOST/bin")"
"$SHOAL_CNI" uninstall --bin-dir "$CNI_HOST/bin" --conf-dir "$CNI_HOST/net.d" 2>>"$LOGDIR/cni-install.log" ||
	fail "shoal-cni uninstall failed"
shoald_stop
"$SHOALD" --uninstall --pin-root "$PIN_ROOT" >>"$LOGDIR/uninstall.log" 2>&1 || fail "shoald --uninstall failed"
left=""
[[ -e $CNI_HOST/bin/shoal-cni ]] && left+=" binary"
json_same "$(cat "$CNI_HOST/net.d/10-e2e.conflist")" "$(cat "$LOGDIR/conflist.orig")" || left+=" conflist-entry"
[[ -e $CNI_SOCK ]] && left+=" socket"
[[ -e $PIN_ROOT ]] && left+=" pins"
[[ -z $left ]] && pass "after uninstall: no plugin binary, conflist entry, CNI socket or pin left" ||
	fail "left after uninstall:$left"


say "installers across a surge (install --wait, old stopped after new)"
cp "$LOGDIR/conflist.orig" "$CNI_HOST/net.d/10-e2e.conflist"
# chained CNI_HOST: 0 when the binary is there and the conflist chains it.
chained() {
	[[ -x $CNI_HOST/bin/shoal-cni ]] &&
		python3 -c 'import json, sys; sys.exit(0 if any(p["type"] == "shoal-cni" for p in json.load(open(sys.argv[1]))["plugins"]) else 1)' \
			"$CNI_HOST/net.d/10-e2e.conflist"
}
"$SHOAL_CNI" install --bin-dir "$CNI_HOST/bin" --conf-dir "$CNI_HOST/net.d" --socket "$CNI_SOCK" \
	--wait 2>"$LOGDIR/cni-old.log" &
old_inst=$!
wait_log "$LOGDIR/cni-old.log" installed 10 || fail "the old installer did not install: $(cat "$LOGDIR/cni-old.log")"
"$SHOAL_CNI" install --bin-dir "$CNI_HOST/bin" --conf-dir "$CNI_HOST/net.d" --socket "$CNI_SOCK" \
	--wait 2>"$LOGDIR/cni-new.log" &
new_inst=$!
wait_log "$LOGDIR/cni-new.log" installed 10 || fail "the new installer did not install: $(cat "$LOGDIR/cni-new.log")"
kill -TERM "$old_inst"
wait "$old_inst"
rc=$?
chained && ((rc == 0)) &&
	pass "old installer stopped after the new one installed (exit $rc): plugin and conflist entry stay" ||
	fail "old installer stopped (exit $rc): plugin binary $(ls "$CNI_HOST/bin"), conflist $(cat "$CNI_HOST/net.d/10-e2e.conflist"); its log: $(cat "$LOGDIR/cni-old.log")"
# Gone from under the new one (as when an owner that was not the last
# stopped): it puts them back within its re-check period (2 s; 10 s here).
rm -f "$CNI_HOST/bin/shoal-cni"
cp "$LOGDIR/conflist.orig" "$CNI_HOST/net.d/10-e2e.conflist"
for ((i = 0; i < 100; i++)); do
	chained && break
	sleep 0.1
done
chained && pass "plugin and entry removed under the waiting installer: put back after $((i / 10)).$((i % 10)) s" ||
	fail "plugin and entry removed under the waiting installer: not back after 10 s; its log: $(cat "$LOGDIR/cni-new.log")"
kill -TERM "$new_inst"
wait "$new_inst"
rc=$?
left=""
[[ -e $CNI_HOST/bin/shoal-cni ]] && left+=" binary"
json_same "$(cat "$CNI_HOST/net.d/10-e2e.conflist")" "$(cat "$LOGDIR/conflist.orig")" || left+=" conflist-entry"
for f in "$CNI_HOST"/net.d/* "$CNI_HOST"/net.d/.[!.]*; do
	[[ -e $f && $f != "$CNI_HOST/net.d/10-e2e.conflist" ]] && left+=" ${f##*/}"
done
[[ -z $left ]] && ((rc == 0)) && pass "last installer stopped (exit $rc): nothing left in bin or conf dir" ||
	fail "last installer stopped (exit $rc): left:$left; its log: $(cat "$LOGDIR/cni-new.log")"

finish
