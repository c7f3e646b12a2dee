#!/bin/bash
# shortcut-scope.sh: the sockmap shortcut holds the sockets of proxied
# connections and nothing else (docs/bpf.md, "Which sockets join the
# shortcut"). node-a's netns plays the host: its address 10.77.1.1 is the
# proxy's address, as the node address is on a real node.
#  - a host-netns client (a kubelet probe, a NodePort or host-network
#    client) holding a connection to a2's server: no socket in the
#    SOCKHASH, with a2 unenrolled and enrolled, and shortcut_not_meshed
#    counted a2's accepted socket;
#  - a host-network server with a host client, both on the node address:
#    no socket in the SOCKHASH;
#  - a1 (enrolled) -> VIP -> proxy -> a2 unenrolled: 3 sockets (a1's, the
#    proxy's accepted and upstream ones), and the shortcut carried bytes;
#  - the same with a2 enrolled: 4 sockets, the most one proxied
#    connection puts there (what SHOAL_MAX_SHORTCUT_SOCKETS is sized by);
#    and over IPv6 (VIP fd96::40, endpoint a2 by v4 or v6), with the
#    host-netns client over IPv6 too.
# Every count is taken while the connection is held open, from
# `bpftool map dump` of this test's own pinned SOCKHASH.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

HOLD_COUNT=30       # hold: one echo round per interval...
HOLD_INTERVAL_MS=100 # ...so each held connection lives about 3 s

e2e_init
e2e_topology
write_config '  - name: solo
    namespace: default
    vips: [10.96.0.40, "fd96::40"]
    ports: [{port: 80, target_port: 8080, protocol: tcp}]
    endpoints: [{address: 10.77.1.3}, {address: "fd77:1::3"}]'
shoald_start
enroll a1
mkdir -p "$TEST_CG/host"

# Sockets in this test's SOCKHASH (keys of the pinned shoal_shortcut).
sockhash_entries() {
	bpftool -j map dump pinned "$PIN_ROOT/maps/shoal_shortcut" 2>/dev/null |
		python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'
}

# held_entries LABEL WANT CGROUP NETNS TARGET: holds one connection from
# NETNS (in CGROUP) to TARGET, counts the SOCKHASH's sockets 1 s in (the
# handshake and the proxy's upstream connect are done by then), checks
# that the connection worked throughout and that the count is WANT.
held_entries() {
	local label=$1 want=$2 cg=$3 ns=$4 to=$5 pid n rc=0 log
	log=$LOGDIR/hold-${label// /-}.log
	spawn_in "$cg" "$ns" "$log" "$SHOAL_PEER" hold --to "$to" \
		--interval-ms "$HOLD_INTERVAL_MS" --count "$HOLD_COUNT" --timeout-ms 2000
	pid=$LAST_PID
	sleep 1
	n=$(sockhash_entries) || n="?"
	wait "$pid" || rc=$?
	if ((rc)); then
		fail "$label: the held connection to $to failed (status $rc): $(cat "$log")"
	elif [[ $n == "$want" ]]; then
		pass "$label: $n socket(s) in the SOCKHASH while the connection was open"
	else
		fail "$label: $n socket(s) in the SOCKHASH while the connection was open, expected $want"
	fi
}

# No connection open yet: nothing in the map.
n=$(sockhash_entries)
[[ $n == 0 ]] && pass "idle: the SOCKHASH is empty" || fail "idle: $n sockets in the SOCKHASH, expected 0"

skipped0=$(counter shortcut_not_meshed)
held_entries "host -> a2 (unenrolled)" 0 "$TEST_CG/host" "$NS_A" "${POD_IP4[a2]}:8080"
expect_grew shortcut_not_meshed "$skipped0" 1

# A host-network server on the node address, with a host client.
spawn_in "$TEST_CG/host" "$NS_A" "$LOGDIR/serve-host.log" "$SHOAL_PEER" serve \
	--listen 10.77.1.1:9090 --name host
wait_listen "$NS_A" 9090
held_entries "host -> host-network server on the node address" 0 "$TEST_CG/host" "$NS_A" 10.77.1.1:9090

inserted0=$(counter shortcut_inserted)
msgs0=$(counter redirect_msgs)
held_entries "a1 -> VIP -> proxy -> a2 (unenrolled)" 3 "${POD_CG[a1]}" "${POD_NS[a1]}" 10.96.0.40:80
expect_grew shortcut_inserted "$inserted0" 3
expect_grew redirect_msgs "$msgs0" 1

enroll a2
pass "a2 enrolled"
skipped0=$(counter shortcut_not_meshed)
held_entries "host -> a2 (enrolled, like a kubelet probe)" 0 "$TEST_CG/host" "$NS_A" "${POD_IP4[a2]}:8080"
held_entries "host -> a2 over IPv6 (enrolled)" 0 "$TEST_CG/host" "$NS_A" "[${POD_IP6[a2]}]:8080"
expect_grew shortcut_not_meshed "$skipped0" 2

inserted0=$(counter shortcut_inserted)
msgs0=$(counter redirect_msgs)
held_entries "a1 -> VIP -> proxy -> a2 (enrolled)" 4 "${POD_CG[a1]}" "${POD_NS[a1]}" 10.96.0.40:80
held_entries "a1 -> IPv6 VIP -> proxy -> a2 (enrolled)" 4 "${POD_CG[a1]}" "${POD_NS[a1]}" '[fd96::40]:80'
expect_grew shortcut_inserted "$inserted0" 8
expect_grew redirect_msgs "$msgs0" 1

n=$(sockhash_entries)
[[ $n == 0 ]] && pass "every connection closed: the SOCKHASH is empty again" ||
	fail "after the connections closed: $n sockets left in the SOCKHASH"
finish
