# shellcheck shell=bash
# lib.sh: the end-to-end harness, sourced by every tests/e2e/*.sh.
#
# Each test builds its own world and tears it down on every exit path:
#
#   node-a netns                                   node-b netns
#   br0 10.77.1.1/24 fd77:1::1/64                  br0 10.77.2.1/24 fd77:2::1/64
#   ul0 192.168.77.1/24 fd77::1/64 <---- veth ---> ul0 192.168.77.2/24 fd77::2/64
#   routes: 10.77.2.0/24, fd77:2::/64 via node-b   routes: 10.77.1.0/24, fd77:1::/64 via node-a
#           10.96.0.10/32, fd96::10/128 via "direct" (the kube-proxy stand-in)
#    |-- a1      10.77.1.2 fd77:1::2   client (the tests enroll it)
#    |-- a2      10.77.1.3 fd77:1::3   backend "a2" on :8080
#    |-- direct  10.77.1.4 fd77:1::4   owns the VIPs, "direct" on :80
#    `-- a3      10.77.1.5 fd77:1::5   client (unenrolled unless bypass.sh enrolls it)
#                                                   `-- b1  10.77.2.2 fd77:2::2  backend "b1" on :8080
#
# Every netns is a separate namespace named $RUN-<name>, so nothing is
# configured in the host's own network namespace. Every process the test
# starts runs in a child of the test cgroup <cgroup2>/$RUN (pods in
# pod-<name>, shoald in agent), which is also where shoald attaches its
# programs. shoald runs in node-a's netns and listens on 10.77.1.1:15001.
#
# A state file under /run/she2e records what a run created (netns, cgroup,
# pin root, PIDs) so that the next run can clear the leftovers of one that
# crashed. Processes are only ever ended by PID, after checking that the
# PID still lives in the test's own cgroup.
#
# Exit status: 0 pass, 1 fail, 77 skip (with the reason printed).

set -euo pipefail

E2E_PREFIX=she2e
E2E_TEST=$(basename "${0%.sh}")
RUN=$E2E_PREFIX-$$
STATE_DIR=/run/$E2E_PREFIX
STATE=$STATE_DIR/$RUN.state
LOGDIR=${SHOAL_E2E_LOGDIR:-/tmp/$E2E_PREFIX-logs}/$E2E_TEST
SHOALD=${SHOALD:-}
SHOALCTL=${SHOALCTL:-}
SHOAL_PEER=${SHOAL_PEER:-}
# A command that starts shoald in place of $SHOALD, with the same
# arguments, in the foreground, passing SIGTERM on (tests/e2e/image.sh:
# shoald from the image, in podman). It runs with SHOALD_PIN_ROOT set to
# the config's pin root and SHOALD_CONTAINER to a container name; the
# harness removes that container and its "-init" at cleanup. Empty:
# $SHOALD itself.
SHOALD_LAUNCHER=${SHOALD_LAUNCHER:-}
# Set to 0 before sourcing for a test of the harness alone.
E2E_NEEDS_AGENT=${E2E_NEEDS_AGENT:-1}

PROXY_PORT=15001
FAILOPEN_AFTER_MS=1000
# Addresses a backend may see when the proxy connected to it: node-a's
# bridge address, or its underlay address on the way to node-b.
PROXY_SOURCES="10.77.1.1 192.168.77.1"

CG2=""          # cgroup2 mount point
TEST_CG=""      # <cgroup2>/$RUN
PIN_ROOT=/sys/fs/bpf/$RUN
CONFIG=""
SHOALD_PID=""
SHOALD_STARTS=0
SHOALD_LOG=""
E2E_FAILED=0
LAST_PID=""
EXPECT_OK=0

declare -A POD_NS POD_IP4 POD_IP6 POD_CG

# ---- reporting ----------------------------------------------------------

say() { printf '[%s] %s\n' "$E2E_TEST" "$*"; }
pass() { printf '[%s] ok: %s\n' "$E2E_TEST" "$*"; }
# Failures go to stderr, so that one raised inside $(...) is still seen.
fail() {
	printf '[%s] FAIL: %s\n' "$E2E_TEST" "$*" >&2
	E2E_FAILED=1
}
# A failure that makes the rest of the test meaningless. Inside $(...) it
# ends the subshell, and set -e then ends the test.
fatal() {
	printf '[%s] FAIL: %s\n' "$E2E_TEST" "$*" >&2
	E2E_FAILED=1
	exit 1
}
skip() {
	printf '[%s] SKIP: %s\n' "$E2E_TEST" "$*"
	exit 77
}
# Ends the test: 0 if every check passed.
finish() {
	if ((E2E_FAILED)); then
		say "FAILED (logs in $LOGDIR)"
		exit 1
	fi
	say "PASSED"
	exit 0
}

# ---- prerequisites --------------------------------------------------------

# The cgroup2 mount point, from /proc/self/mounts (never a fixed path).
find_cgroup2() {
	awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts
}

e2e_require() {
	local tool
	[[ $(id -u) -eq 0 ]] || skip "needs root (network namespaces, cgroups, BPF)"
	for tool in ip nsenter bpftool ss awk timeout sed grep comm; do
		command -v "$tool" >/dev/null || skip "missing tool: $tool"
	done
	if ((E2E_NEEDS_AGENT)); then
		[[ -n $SHOALD && -x $SHOALD ]] || skip "shoald binary not found (SHOALD='$SHOALD'); build it first"
		[[ -n $SHOALCTL && -x $SHOALCTL ]] || skip "shoalctl binary not found (SHOALCTL='$SHOALCTL'); build it first"
	fi
	[[ -n $SHOAL_PEER && -x $SHOAL_PEER ]] || skip "shoal-peer binary not found (SHOAL_PEER='$SHOAL_PEER'); build it first"
	CG2=$(find_cgroup2)
	[[ -n $CG2 ]] || skip "no cgroup2 mount in /proc/self/mounts (scripts/setup.sh mounts one)"
	awk '$2 == "/sys/fs/bpf" && $3 == "bpf" { f = 1 } END { exit !f }' /proc/self/mounts ||
		skip "bpffs is not mounted at /sys/fs/bpf (scripts/setup.sh mounts it)"
	bpftool prog show >/dev/null 2>&1 || skip "the bpf() syscall is not usable here (bpftool prog show failed)"
	local probe
	probe=$(bpftool feature probe kernel 2>/dev/null || true)
	for tool in cgroup_sock_addr sock_ops sk_msg; do
		grep -q "program_type $tool is available" <<<"$probe" ||
			skip "kernel lacks BPF program type $tool"
	done
	TEST_CG=$CG2/$RUN
}

# ---- state and cleanup ----------------------------------------------------

state_add() { echo "$*" >>"$STATE"; }

# True if PID $1 is a live e2e test script (the owner of a run).
owner_alive() {
	local pid=$1
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'e2e/'
}

# True if PID $1 lives in cgroup $2 (an absolute path under $CG2) or below.
pid_in_cgroup() {
	local pid=$1 cg=$2 rel line
	rel=${cg#"$CG2"}
	line=$(grep '^0::' "/proc/$pid/cgroup" 2>/dev/null) || return 1
	line=${line#0::}
	[[ $line == "$rel" || $line == "$rel"/* ]]
}

# Every PID in cgroup $1 and its children.
cgroup_pids() {
	local cg=$1
	[[ -d $cg ]] || return 0
	find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true
}

# Ends processes by PID: the ones listed, plus any in cgroup $1 (children
# the listed ones forked). Each is checked to be in $1 before a signal.
kill_test_processes() {
	local cg=$1
	shift
	local pid sig round
	for round in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		sig=TERM
		((round > 10)) && sig=KILL
		local any=0
		for pid in "$@" $(cgroup_pids "$cg"); do
			[[ $pid =~ ^[0-9]+$ ]] || continue
			if pid_in_cgroup "$pid" "$cg"; then
				kill -"$sig" "$pid" 2>/dev/null || true
				any=1
			fi
		done
		((any)) || return 0
		sleep 0.2
	done
	return 0
}

# Removes cgroup $1 and its children, deepest first.
remove_cgroup_tree() {
	local cg=$1 dir
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		[[ -d $cg ]] || return 0
		while read -r dir; do
			rmdir "$dir" 2>/dev/null || true
		done < <(find "$cg" -depth -type d)
		[[ -d $cg ]] || return 0
		sleep 0.2
	done
	echo "warning: could not remove cgroup $cg" >&2
}

# handover_socket PIN_ROOT: shoald's default hand-over socket for a pin
# root that is not the default one (handover_default_path,
# docs/upgrade.md): /run/shoal/handover-<FNV-1a 64 of the path>.sock.
# Bash's integers wrap at 64 bits as the C does.
handover_socket() {
	local s=$1 h=-3750763034362895579 i c # 0xcbf29ce484222325
	for ((i = 0; i < ${#s}; i++)); do
		printf -v c '%d' "'${s:i:1}"
		h=$(((h ^ c) * 1099511628211))
	done
	printf '/run/shoal/handover-%016x.sock\n' "$h"
}

# Removes a pin root: first the agent's own uninstall, then whatever is left
# (unpinning a link detaches its program); and the hand-over socket file a
# SIGKILLed shoald of it left.
remove_pin_root() {
	local root=$1
	rm -f "$(handover_socket "$root")"
	[[ -e $root ]] || return 0
	if [[ -n $SHOALCTL && -x $SHOALCTL ]]; then
		timeout 20 "$SHOALCTL" --pin-root "$root" uninstall >/dev/null 2>&1 || true
	fi
	[[ -e $root ]] && rm -rf "$root" 2>/dev/null
	[[ -e $root ]] && echo "warning: could not remove pin root $root" >&2
	return 0
}

# Tears down what state file $1 records. Safe to run twice.
cleanup_state_file() {
	local file=$1 cg="" kind value
	local -a pids=() netns=() pins=() containers=()
	[[ -f $file ]] || return 0
	while read -r kind value; do
		case $kind in
		cgroup) cg=$value ;;
		pid) pids+=("$value") ;;
		netns) netns+=("$value") ;;
		pin) pins+=("$value") ;;
		container) containers+=("$value") ;;
		esac
	done <"$file"
	if [[ -n $cg ]]; then
		kill_test_processes "$cg" "${pids[@]}"
	fi
	# A launcher's container outlives a podman client that was killed.
	for value in "${containers[@]}"; do
		podman rm --force --time 2 "$value" >/dev/null 2>&1 || true
	done
	for value in "${pins[@]}"; do
		remove_pin_root "$value"
	done
	for value in "${netns[@]}"; do
		ip netns del "$value" 2>/dev/null || true
	done
	[[ -n $cg ]] && remove_cgroup_tree "$cg"
	rm -f "$file"
}

# Clears what earlier runs left behind when their owner is gone: first from
# their state files, then anything named $E2E_PREFIX-<pid>* without one.
clear_leftovers() {
	local file name pid
	mkdir -p "$STATE_DIR"
	for file in "$STATE_DIR"/"$E2E_PREFIX"-*.state; do
		[[ -e $file ]] || continue
		name=$(basename "$file" .state)
		pid=${name#"$E2E_PREFIX"-}
		owner_alive "$pid" && continue
		say "clearing leftovers of crashed run $name"
		cleanup_state_file "$file"
	done
	for file in "$CG2"/"$E2E_PREFIX"-* /sys/fs/bpf/"$E2E_PREFIX"-* /run/netns/"$E2E_PREFIX"-*; do
		[[ -e $file ]] || continue
		name=$(basename "$file")
		pid=${name#"$E2E_PREFIX"-}
		pid=${pid%%-*}
		[[ $pid =~ ^[0-9]+$ ]] || continue
		owner_alive "$pid" && continue
		say "clearing leftover $file"
		case $file in
		"$CG2"/*)
			kill_test_processes "$file"
			remove_cgroup_tree "$file"
			;;
		/sys/fs/bpf/*) remove_pin_root "$file" ;;
		/run/netns/*) ip netns del "$name" 2>/dev/null || true ;;
		esac
	done
}

e2e_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if ((rc != 0 && rc != 77)) && [[ -n $SHOALD_PID ]]; then
		say "last lines of the shoald log:"
		tail -n 20 "$LOGDIR"/shoald.*.log 2>/dev/null | sed 's/^/    /'
	fi
	cleanup_state_file "$STATE"
	exit "$rc"
}

# Prerequisites, leftovers, traps, state. Call first in every test.
e2e_init() {
	e2e_require
	clear_leftovers
	rm -rf "$LOGDIR"
	mkdir -p "$LOGDIR"
	CONFIG=$LOGDIR/shoald.yaml
	trap e2e_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	: >"$STATE"
	state_add "owner $$"
	state_add "cgroup $TEST_CG"
	state_add "pin $PIN_ROOT"
	mkdir "$TEST_CG"
	mkdir "$TEST_CG/agent"
	say "run $RUN: cgroup $TEST_CG, pins $PIN_ROOT, logs $LOGDIR"
}

# ---- topology -------------------------------------------------------------

NS_A=$RUN-node-a
NS_B=$RUN-node-b

netns_add() {
	local ns=$1
	state_add "netns $ns"
	ip netns add "$ns" || skip "cannot create network namespaces (ip netns add $ns failed)"
	ip -n "$ns" link set lo up
	# Addresses are usable at once: no duplicate address detection here.
	in_ns "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 \
		net.ipv6.conf.default.accept_dad=0
}

# node_add NS N UNDERLAY4 UNDERLAY6: a node with bridge br0 for pod subnet N.
node_add() {
	local ns=$1 n=$2
	netns_add "$ns"
	in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	ip -n "$ns" link add br0 type bridge forward_delay 0
	ip -n "$ns" addr add "10.77.$n.1/24" dev br0
	ip -n "$ns" addr add "fd77:$n::1/64" dev br0 nodad
	ip -n "$ns" link set br0 up
}

# pod_add NAME NODE_NS N HOST: a pod netns on node N's bridge, with its own
# cgroup, addresses 10.77.N.HOST and fd77:N::HOST, default routes via br0.
# With E2E_NODE_B_CGROUP=1, a pod of node-b gets its cgroup under
# $TEST_CG/node-b, where a test attaches node-b's shoald: its sockets then
# see node-b's programs, as a node's pods do under a cluster's cgroup root.
pod_add() {
	local name=$1 node=$2 n=$3 host=$4 ns=$RUN-$1
	netns_add "$ns"
	ip -n "$node" link add "p-$name" type veth peer name eth0 netns "$ns"
	ip -n "$node" link set "p-$name" master br0 up
	ip -n "$ns" addr add "10.77.$n.$host/24" dev eth0
	ip -n "$ns" addr add "fd77:$n::$host/64" dev eth0 nodad
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "10.77.$n.1"
	ip -n "$ns" -6 route add default via "fd77:$n::1"
	local cg=$TEST_CG/pod-$name
	if [[ ${E2E_NODE_B_CGROUP:-0} == 1 && $node == "$NS_B" ]]; then
		mkdir -p "$TEST_CG/node-b"
		cg=$TEST_CG/node-b/pod-$name
	fi
	mkdir "$cg"
	POD_NS[$name]=$ns
	POD_IP4[$name]=10.77.$n.$host
	POD_IP6[$name]=fd77:$n::$host
	POD_CG[$name]=$cg
}

# Builds the topology drawn at the top of this file and starts the three
# echo servers (a2, b1, direct). No shoald yet.
e2e_topology() {
	say "building topology: 2 nodes, pods a1 a2 a3 direct on node-a, b1 on node-b"
	node_add "$NS_A" 1
	node_add "$NS_B" 2
	ip -n "$NS_A" link add ul0 type veth peer name ul0 netns "$NS_B"
	ip -n "$NS_A" addr add 192.168.77.1/24 dev ul0
	ip -n "$NS_A" addr add fd77::1/64 dev ul0 nodad
	ip -n "$NS_B" addr add 192.168.77.2/24 dev ul0
	ip -n "$NS_B" addr add fd77::2/64 dev ul0 nodad
	ip -n "$NS_A" link set ul0 up
	ip -n "$NS_B" link set ul0 up
	ip -n "$NS_A" route add 10.77.2.0/24 via 192.168.77.2
	ip -n "$NS_A" -6 route add fd77:2::/64 via fd77::2
	ip -n "$NS_B" route add 10.77.1.0/24 via 192.168.77.1
	ip -n "$NS_B" -6 route add fd77:1::/64 via fd77::1

	pod_add a1 "$NS_A" 1 2
	pod_add a2 "$NS_A" 1 3
	pod_add direct "$NS_A" 1 4
	pod_add a3 "$NS_A" 1 5
	pod_add b1 "$NS_B" 2 2

	# The kube-proxy stand-in: the VIPs are local to pod "direct", and
	# node-a routes them there, so a connection that shoal leaves alone
	# (unenrolled, or failed open) lands on "direct".
	ip -n "${POD_NS[direct]}" addr add 10.96.0.10/32 dev lo
	ip -n "${POD_NS[direct]}" addr add fd96::10/128 dev lo nodad
	ip -n "$NS_A" route add 10.96.0.10/32 via "${POD_IP4[direct]}"
	ip -n "$NS_A" -6 route add fd96::10/128 via "${POD_IP6[direct]}"

	pod_spawn a2 "$LOGDIR/serve-a2.log" "$SHOAL_PEER" serve --listen 0.0.0.0:8080 --listen '[::]:8080' --name a2
	pod_spawn b1 "$LOGDIR/serve-b1.log" "$SHOAL_PEER" serve --listen 0.0.0.0:8080 --listen '[::]:8080' --name b1
	pod_spawn direct "$LOGDIR/serve-direct.log" "$SHOAL_PEER" serve --listen 0.0.0.0:80 --listen '[::]:80' --name direct
	wait_listen "${POD_NS[a2]}" 8080
	wait_listen "${POD_NS[b1]}" 8080
	wait_listen "${POD_NS[direct]}" 80
}

# Checks the topology itself, before any shoald: every pod reaches the
# others across both nodes, v4 and v6, and the VIPs reach "direct".
e2e_topology_check() {
	local out
	for dst in a2 b1; do
		for fam in 4 6; do
			local to
			if [[ $fam == 4 ]]; then to=${POD_IP4[$dst]}:8080; else to=[${POD_IP6[$dst]}]:8080; fi
			out=$(pod_run a1 "$SHOAL_PEER" hello --to "$to" 2>&1) ||
				fatal "topology: a1 cannot reach $dst at $to: $out"
			[[ $out == *"banner=$dst "* ]] || fatal "topology: a1 -> $to answered '$out'"
		done
	done
	out=$(pod_run a3 "$SHOAL_PEER" hello --to 10.96.0.10:80 2>&1) ||
		fatal "topology: a3 cannot reach the VIP's direct path: $out"
	[[ $out == "peername=10.96.0.10:80 banner=direct ${POD_IP4[a3]}" ]] ||
		fatal "topology: a3 -> 10.96.0.10:80 answered '$out'"
	out=$(pod_run a3 "$SHOAL_PEER" hello --to '[fd96::10]:80' 2>&1) ||
		fatal "topology: a3 cannot reach [fd96::10]:80 directly: $out"
	[[ $out == "peername=[fd96::10]:80 banner=direct ${POD_IP6[a3]}" ]] ||
		fatal "topology: a3 -> [fd96::10]:80 answered '$out'"
	pass "topology: pods reach each other across nodes (v4, v6) and the VIPs reach 'direct'"
}

# ---- processes --------------------------------------------------------------

# run_in CGROUP NETNS CMD...: runs CMD inside NETNS, in CGROUP. The shell
# moves itself into the cgroup before exec, so CMD and all it forks are
# there from their first instruction, under the shell's PID. nsenter, not
# `ip netns exec`: the latter remounts /sys, which hides bpffs and the
# cgroup2 mount from shoald.
RUN_IN_SCRIPT='cg=$1 ns=$2; shift 2; echo $$ >"$cg/cgroup.procs" && exec nsenter --net="/run/netns/$ns" -- "$@"'
run_in() {
	local cg=$1 ns=$2
	shift 2
	sh -c "$RUN_IN_SCRIPT" sh "$cg" "$ns" "$@"
}

# in_ns NETNS CMD...: a helper command (ss, sysctl) in NETNS, outside the
# test cgroup, so that no BPF program of the test sees it.
in_ns() {
	local ns=$1
	shift
	nsenter --net="/run/netns/$ns" -- "$@"
}

# spawn_in CGROUP NETNS LOG CMD...: run_in in the background; LAST_PID.
spawn_in() {
	local cg=$1 ns=$2 log=$3
	shift 3
	# A plain command, not the run_in function: $! is then the PID that
	# becomes CMD, not a subshell's.
	sh -c "$RUN_IN_SCRIPT" sh "$cg" "$ns" "$@" >"$log" 2>&1 </dev/null &
	LAST_PID=$!
	state_add "pid $LAST_PID"
}

pod_run() {
	local pod=$1
	shift
	run_in "${POD_CG[$pod]}" "${POD_NS[$pod]}" "$@"
}

pod_spawn() {
	local pod=$1 log=$2
	shift 2
	spawn_in "${POD_CG[$pod]}" "${POD_NS[$pod]}" "$log" "$@"
}

# Sends signal $2 to our process $1 and waits for it, if it is still ours.
stop_pid() {
	local pid=$1 sig=${2:-TERM}
	if pid_in_cgroup "$pid" "$TEST_CG"; then
		kill -"$sig" "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# wait_listen NETNS PORT: waits (5 s) for a TCP listener on PORT in NETNS.
wait_listen() {
	local ns=$1 port=$2 i
	for ((i = 0; i < 50; i++)); do
		if [[ -n $(in_ns "$ns" ss -Hltn "sport = :$port" 2>/dev/null) ]]; then
			return 0
		fi
		sleep 0.1
	done
	fatal "nothing listens on port $port in $ns after 5 s"
}

# wait_log FILE PATTERN SECONDS: 0 once FILE holds PATTERN (a grep
# pattern), 1 if it does not within SECONDS.
wait_log() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# ---- a second node's shoald (the mtls tests) ----------------------------------

# node_b_start CONFIG LOG [SHOALD_ARGS...]: node-b's shoald, in its own
# cgroup under the test's ($TEST_CG/node-b/agent, which the caller made),
# up once it listens on the tunnel's port 15008; sets SHOALD_B_PID.
node_b_start() {
	local config=$1 log=$2 i
	shift 2
	spawn_in "$TEST_CG/node-b/agent" "$NS_B" "$log" "$SHOALD" -c "$config" "$@"
	SHOALD_B_PID=$LAST_PID
	for ((i = 0; i < 100; i++)); do
		kill -0 "$SHOALD_B_PID" 2>/dev/null || {
			sed 's/^/    /' "$log"
			fatal "node-b's shoald exited during start-up"
		}
		[[ -n $(in_ns "$NS_B" ss -Hltn "sport = :15008" 2>/dev/null) ]] && return 0
		sleep 0.1
	done
	fatal "node-b's shoald does not listen on 15008: $(tail -5 "$log")"
}

# metric_in NETNS NAME [ADMIN]: the first sample of NAME in that node's
# shoald /metrics (at ADMIN, default $ADMIN_ADDR); 0 when absent.
metric_in() {
	local v
	v=$(in_ns "$1" curl -sS --max-time 5 "http://${3:-$ADMIN_ADDR}/metrics" |
		awk -v m="$2" '$1 == m && !done { print $2; done = 1 }') || true
	echo "${v:-0}"
}

# ---- shoald and shoalctl ----------------------------------------------------

ctl() { timeout 20 "$SHOALCTL" --pin-root "$PIN_ROOT" "$@"; }

# config_node [PROXY_PORT]: the node: and bpf: lines of node-a's config.
config_node() {
	cat <<EOF
node: {address_v4: 10.77.1.1, address_v6: "fd77:1::1", proxy_port: ${1:-$PROXY_PORT}}
bpf: {pin_root: $PIN_ROOT, cgroup: $TEST_CG, shortcut: true, failopen_after_ms: $FAILOPEN_AFTER_MS}
EOF
}

# config_head [PROXY_PORT]: config_node and the proxy: line most tests use.
config_head() {
	config_node "$@"
	echo "proxy: {workers: 2, connect_timeout_ms: 500, connect_deadline_ms: 2000}"
}

# web_service [ENDPOINTS]: the services: entry of service "web"
# (10.96.0.10 and fd96::10, port 80 -> 8080, opaque), by default with
# a2 and b1 as endpoints.
web_service() {
	local eps=${1:-"{address: 10.77.1.3}, {address: 10.77.2.2}"}
	cat <<EOF
  - name: web
    namespace: default
    vips: [10.96.0.10, "fd96::10"]
    ports: [{port: 80, target_port: 8080, protocol: tcp}]
    endpoints: [$eps]
EOF
}

# write_config [EXTRA_SERVICES_YAML]: node-a's config, with service "web"
# and whatever service entries the test appends.
write_config() {
	{
		config_head
		echo "services:"
		web_service
		printf '%s\n' "${1:-}"
	} >"$CONFIG"
}

# config_drain_timeout MS: proxy.drain_timeout_ms MS in the written CONFIG
# (write_config first).
config_drain_timeout() {
	sed -i "s/^proxy: {/proxy: {drain_timeout_ms: $1, /" "$CONFIG"
	grep -q "drain_timeout_ms: $1" "$CONFIG" || fatal "cannot set proxy.drain_timeout_ms in $CONFIG"
}

# Starts shoald in node-a's netns and the agent cgroup, and waits until the
# datapath reports a live proxy and the listener is up. Extra arguments go
# to shoald. Sets SHOALD_PID; the log is $LOGDIR/shoald.<n>.log.
shoald_start() {
	local i rc status=""
	SHOALD_STARTS=$((SHOALD_STARTS + 1))
	SHOALD_LOG=$LOGDIR/shoald.$SHOALD_STARTS.log
	if [[ -n $SHOALD_LAUNCHER ]]; then
		state_add "container $RUN-shoald"
		state_add "container $RUN-shoald-init"
		spawn_in "$TEST_CG/agent" "$NS_A" "$SHOALD_LOG" env SHOALD_CONTAINER="$RUN-shoald" \
			SHOALD_PIN_ROOT="$PIN_ROOT" "$SHOALD_LAUNCHER" -c "$CONFIG" --log-level info "$@"
	else
		spawn_in "$TEST_CG/agent" "$NS_A" "$SHOALD_LOG" "$SHOALD" -c "$CONFIG" --log-level info "$@"
	fi
	SHOALD_PID=$LAST_PID
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$SHOALD_PID" 2>/dev/null; then
			wait "$SHOALD_PID" 2>/dev/null && rc=0 || rc=$?
			sed 's/^/    /' "$SHOALD_LOG"
			fatal "shoald exited (status $rc) during start-up"
		fi
		status=$(ctl status 2>/dev/null || true)
		if grep -qx 'proxy alive' <<<"$status" &&
			[[ -n $(in_ns "$NS_A" ss -Hltn "sport = :$PROXY_PORT" 2>/dev/null) ]]; then
			say "shoald running (pid $SHOALD_PID, start #$SHOALD_STARTS)"
			return 0
		fi
		sleep 0.1
	done
	sed 's/^/    /' "$SHOALD_LOG"
	fatal "shoald not ready after 10 s (status: $(tr '\n' ';' <<<"$status"))"
}

# shoald_stop [SIGNAL]: signals our shoald (default TERM) and reaps it.
shoald_stop() {
	local sig=${1:-TERM}
	[[ -n $SHOALD_PID ]] || return 0
	stop_pid "$SHOALD_PID" "$sig"
	SHOALD_PID=""
}

enroll() {
	local pod=$1 path
	if [[ $pod == node-a ]]; then path=/run/netns/$NS_A; else path=/run/netns/${POD_NS[$pod]}; fi
	ctl enroll "$path" >/dev/null || fatal "shoalctl enroll $path failed"
}

unenroll() {
	local pod=$1 path
	if [[ $pod == node-a ]]; then path=/run/netns/$NS_A; else path=/run/netns/${POD_NS[$pod]}; fi
	ctl unenroll "$path" >/dev/null || fatal "shoalctl unenroll $path failed"
}

# counter NAME: the value of a datapath counter from `shoalctl counters`.
counter() {
	local out v
	out=$(ctl counters) || fatal "shoalctl counters failed"
	v=$(awk -v n="$1" '$1 == n && NF == 2 { print $2; exit }' <<<"$out")
	[[ $v =~ ^[0-9]+$ ]] || fatal "counter $1 missing from 'shoalctl counters'"
	echo "$v"
}

# service_counter NAMESPACE/NAME FIELD: e.g. default/web intercepted.
service_counter() {
	local out v
	out=$(ctl counters) || fatal "shoalctl counters failed"
	v=$(awk -v s="$1" -v f="$2" '$1 == "service" && $3 == s {
		for (i = 4; i < NF; i++) if ($i == f) { print $(i + 1); exit } }' <<<"$out")
	[[ $v =~ ^[0-9]+$ ]] || fatal "service $1 $2 missing from 'shoalctl counters'"
	echo "$v"
}

# peer_field LINE KEY: the value of KEY=VALUE in a shoal-peer summary line
# ("sent=N sent_sum=H recv=N recv_sum=H").
peer_field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }

# stream_intact LABEL CLIENT_LINE SERVER_LINE UP DOWN: the stream-client's
# and stream-server's summaries agree: UP bytes reached the server with the
# client's checksum, DOWN bytes the client with the server's. Fails (and
# returns 1) for each direction that differs.
stream_intact() {
	local label=$1 c=$2 s=$3 up=$4 down=$5 rc=0
	if [[ $(peer_field "$c" sent) != "$up" || $(peer_field "$s" recv) != "$up" ||
		$(peer_field "$c" sent_sum) != "$(peer_field "$s" recv_sum)" ]]; then
		fail "$label: client -> server stream differs (client sent $(peer_field "$c" sent) sum $(peer_field "$c" sent_sum), server got $(peer_field "$s" recv) sum $(peer_field "$s" recv_sum); want $up bytes)"
		rc=1
	fi
	if [[ $(peer_field "$s" sent) != "$down" || $(peer_field "$c" recv) != "$down" ||
		$(peer_field "$s" sent_sum) != "$(peer_field "$c" recv_sum)" ]]; then
		fail "$label: server -> client stream differs (server sent $(peer_field "$s" sent) sum $(peer_field "$s" sent_sum), client got $(peer_field "$c" recv) sum $(peer_field "$c" recv_sum); want $down bytes)"
		rc=1
	fi
	return "$rc"
}

# expect_grew NAME BEFORE [MIN_DELTA]: checks counter NAME grew by MIN_DELTA.
expect_grew() {
	local name=$1 before=$2 min=${3:-1} now
	now=$(counter "$name")
	if ((now - before >= min)); then
		pass "counter $name grew by $((now - before)) (>= $min)"
	else
		fail "counter $name went $before -> $now, expected growth >= $min"
	fi
}

# ---- probes -----------------------------------------------------------------

# hello POD TARGET [ARGS]: one shoal-peer hello; sets HELLO_OUT,
# HELLO_PEER (peername), HELLO_BACKEND and HELLO_SEEN (the banner's two
# words). Returns shoal-peer's status.
hello() {
	local pod=$1 to=$2 banner
	shift 2
	HELLO_OUT="" HELLO_PEER="" HELLO_BACKEND="" HELLO_SEEN=""
	HELLO_OUT=$(pod_run "$pod" "$SHOAL_PEER" hello --to "$to" "$@" 2>&1) || return 1
	[[ $HELLO_OUT == peername=*" banner="* ]] || return 1
	HELLO_PEER=${HELLO_OUT#peername=}
	HELLO_PEER=${HELLO_PEER%% banner=*}
	banner=${HELLO_OUT#* banner=}
	HELLO_BACKEND=${banner%% *}
	HELLO_SEEN=${banner#* }
}

# expect_proxied POD TARGET PEERNAME [HELLO_ARGS]: the connection went
# through the proxy: a real endpoint (a2 or b1) answered, it saw the
# proxy's address and not the pod's, and getpeername still gave the VIP.
# A miss is recorded with fail and the test goes on; EXPECT_OK says (1/0)
# whether this one held, for a caller that cannot go on without it.
expect_proxied() {
	local pod=$1 to=$2 want_peer=$3 what
	shift 3
	what="$pod -> $to${*:+ ($*)}"
	EXPECT_OK=0
	if ! hello "$pod" "$to" "$@"; then
		fail "$what: hello failed: $HELLO_OUT"
	elif [[ $HELLO_BACKEND != a2 && $HELLO_BACKEND != b1 ]]; then
		fail "$what: expected the proxy (backend a2 or b1), got '$HELLO_OUT'"
	elif [[ " $PROXY_SOURCES " != *" $HELLO_SEEN "* ]]; then
		fail "$what: backend saw $HELLO_SEEN, expected a proxy address ($PROXY_SOURCES)"
	elif [[ $HELLO_PEER != "$want_peer" ]]; then
		fail "$what: getpeername gave $HELLO_PEER, expected $want_peer"
	else
		EXPECT_OK=1
		pass "$what: proxied to $HELLO_BACKEND (saw $HELLO_SEEN), peername=$HELLO_PEER"
	fi
}

# expect_direct POD TARGET PEERNAME SEEN [HELLO_ARGS]: the connection went
# to the VIP's direct path untouched: "direct" answered and saw SEEN.
# Failures and EXPECT_OK as for expect_proxied.
expect_direct() {
	local pod=$1 to=$2 want_peer=$3 want_seen=$4 what
	shift 4
	what="$pod -> $to${*:+ ($*)}"
	EXPECT_OK=0
	if ! hello "$pod" "$to" "$@"; then
		fail "$what: hello failed: $HELLO_OUT"
	elif [[ $HELLO_BACKEND != direct || $HELLO_SEEN != "$want_seen" || $HELLO_PEER != "$want_peer" ]]; then
		fail "$what: expected 'peername=$want_peer banner=direct $want_seen', got '$HELLO_OUT'"
	else
		EXPECT_OK=1
		pass "$what: direct path, untouched (direct saw $HELLO_SEEN)"
	fi
}

# ---- bpftool views ----------------------------------------------------------
#
# Another shoal may run on this machine, so "ours" is what this test's pin
# root holds, read back through shoalctl.

# IDs of the links pinned under this test's pin root, as shoalctl reads
# them from the pins: links of other shoal instances on the machine (a
# concurrent test, a benchmark) never count.
our_link_ids() {
	ctl bpf 2>/dev/null | awk '/^LINK / { in_links = 1; next } /^$/ { in_links = 0 }
		in_links && $2 ~ /^[0-9]+$/ { print $2 }' | sort -n
	return 0
}

# IDs of the programs those links run.
our_link_prog_ids() {
	ctl bpf 2>/dev/null | awk '/^LINK / { in_links = 1; next } /^$/ { in_links = 0 }
		in_links && $5 ~ /^[0-9]+$/ { print $5 }' | sort -n
	return 0
}

# Which of the IDs given on stdin still exist as bpf OBJ (link or prog).
still_present() {
	local obj=$1 id live
	live=" $(bpftool "$obj" show 2>/dev/null | awk '/^[0-9]+: / { sub(":", "", $1); print $1 }' | tr '\n' ' ') "
	while read -r id; do
		[[ -n $id && $live == *" $id "* ]] && echo "$id"
	done
	return 0
}

# Entries (not headers) of `bpftool cgroup tree CGROUP`: what is attached
# to CGROUP or below it.
cgroup_attached() {
	bpftool cgroup tree "$1" 2>/dev/null | awk 'NR > 2 && $1 ~ /^[0-9]+$/' || true
}

# ---- the stand-in Kubernetes API server (tests/k8s/apiserver.py) -----------

# k8s_apiserver_start ARGS...: the stand-in API server in node-a's netns,
# in the test cgroup (so cleanup finds it), given ARGS. The first call
# makes K8S_DIR ($LOGDIR/k8s): a throw-away CA and server key
# (tests/k8s/mkcerts.sh) and the token "e2e-token", which the stand-in
# accepts (K8S_DIR/accepted) and shoald presents (K8S_DIR/token). Waits
# for its ports; sets API_PID, API_PORT and CTL_PORT.
k8s_apiserver_start() {
	local i k8s_tests
	k8s_tests=$(cd "$(dirname "${BASH_SOURCE[0]}")/../k8s" && pwd)
	K8S_DIR=$LOGDIR/k8s
	if [[ ! -s $K8S_DIR/accepted ]]; then
		mkdir -p "$K8S_DIR" "$TEST_CG/apiserver"
		sh "$k8s_tests/mkcerts.sh" "$K8S_DIR"
		echo "e2e-token" >"$K8S_DIR/accepted"
		echo "e2e-token" >"$K8S_DIR/token"
	fi
	rm -f "$K8S_DIR/ports"
	spawn_in "$TEST_CG/apiserver" "$NS_A" "$LOGDIR/apiserver.log" \
		python3 "$k8s_tests/apiserver.py" --cert "$K8S_DIR/server.crt" --key "$K8S_DIR/server.key" \
		--token-file "$K8S_DIR/accepted" --port-file "$K8S_DIR/ports" "$@"
	API_PID=$LAST_PID
	for ((i = 0; i < 100; i++)); do
		[[ -s $K8S_DIR/ports ]] && break
		sleep 0.1
	done
	[[ -s $K8S_DIR/ports ]] || fatal "the stand-in API server did not start: $(cat "$LOGDIR/apiserver.log")"
	read -r API_PORT CTL_PORT <"$K8S_DIR/ports"
	say "stand-in API server on 127.0.0.1:$API_PORT (pid $API_PID, control :$CTL_PORT)"
}

# k8s_apply JSON: one event or a list of events, into the stand-in through
# its control port.
k8s_apply() {
	in_ns "$NS_A" curl -sf -X POST --data-binary @- "http://127.0.0.1:$CTL_PORT/apply" <<<"$1" >/dev/null ||
		fatal "control apply failed: $1"
}

# ---- HTTP helpers (tests/e2e/http*.sh) ----------------------------------------

SHOAL_BACKEND=${SHOAL_BACKEND:-}
ADMIN_ADDR=127.0.0.1:15020

# Skips unless shoal-backend and the HTTP client tools are there.
http_require() {
	local tool
	[[ -n $SHOAL_BACKEND && -x $SHOAL_BACKEND ]] ||
		skip "shoal-backend binary not found (SHOAL_BACKEND='$SHOAL_BACKEND'); build it first"
	for tool in curl socat python3 "$@"; do
		command -v "$tool" >/dev/null || skip "missing tool: $tool (scripts/setup.sh installs it)"
	done
}

# backend_start POD PORT [ARGS]: shoal-backend named POD on PORT (v4 and v6)
# in POD, with ARGS; waits for its listener.
backend_start() {
	local pod=$1 port=$2
	shift 2
	pod_spawn "$pod" "$LOGDIR/backend-$pod-$port.log" "$SHOAL_BACKEND" \
		--listen "0.0.0.0:$port" --listen "[::]:$port" --name "$pod" "$@"
	wait_listen "${POD_NS[$pod]}" "$port"
}

# backend_requests POD PORT: requests POD's shoal-backend on PORT has served
# (GET /_ctl/stats, asked over its own loopback, so never through shoal).
backend_requests() {
	local out
	out=$(in_ns "${POD_NS[$1]}" curl -sS --max-time 5 "http://127.0.0.1:$2/_ctl/stats") ||
		fatal "cannot read /_ctl/stats of $1:$2"
	sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$out"
}

# pod_curl POD ARGS...: curl in POD (through the datapath), failing fast.
pod_curl() {
	local pod=$1
	shift
	pod_run "$pod" curl -sS --max-time 10 "$@"
}

# proxy_metric NAME: a sample of shoald's /metrics (0 when absent).
proxy_metric() {
	local v
	# awk reads to the end: an early exit would fail curl's write (23) under pipefail.
	v=$(in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN_ADDR/metrics" |
		awk -v m="$1" '$1 == m && !seen { print $2; seen = 1 }')
	echo "${v:-0}"
}

# header NAME < RESPONSE_HEAD: the value of the first header NAME, CR stripped.
header() {
	tr -d '\r' | awk -v n="$(tr 'A-Z' 'a-z' <<<"$1")" 'BEGIN { FS = ": " }
		{ k = tolower($1) } k == n { sub(/^[^:]*: /, ""); print; exit }'
}

# expect_backend TARGET NAME WHAT [SECONDS]: within SECONDS (default 5),
# five hellos in a row from a1 to TARGET are answered by NAME.
expect_backend() {
	local to=$1 want=$2 what=$3 secs=${4:-5} i streak=0
	for ((i = 0; i < secs * 10; i++)); do
		if hello a1 "$to" && [[ $HELLO_BACKEND == "$want" ]]; then
			streak=$((streak + 1))
			if ((streak == 5)); then
				pass "$what: $to answered by $want"
				return 0
			fi
			continue
		fi
		streak=0
		sleep 0.1
	done
	fail "$what: $to not answered by $want within $secs s (last: '$HELLO_OUT')"
}

# hold_start POD TARGET [ARGS...]: a shoal-peer hold client in POD, one
# connection to TARGET echoing a counter; sets HOLD_PID and HOLD_LOG.
hold_start() {
	local pod=$1 to=$2
	shift 2
	HOLD_LOG=$LOGDIR/hold.log
	# An earlier hold's log would answer hold_count ("ok 22") until the
	# new client truncates it: a wait for 3 echoes then ended at once (mtls).
	rm -f "$HOLD_LOG"
	pod_spawn "$pod" "$HOLD_LOG" "$SHOAL_PEER" hold --to "$to" "$@"
	HOLD_PID=$LAST_PID
}

# hold_count: the last "ok N" of the hold client, 0 before the first.
# 0 too before the client's log exists: pod_spawn starts it in the
# background, and an empty answer made the callers' (( )) a syntax error
# that ended their wait loop at once (CI, policy, under load).
hold_count() {
	[[ -f $HOLD_LOG ]] || { echo 0; return; }
	awk '/^ok / { n = $2 } END { print n + 0 }' "$HOLD_LOG"
}

# hold_alive STEP WHAT: the hold connection is still up and still echoing
# (its count grew over 0.8 s); WHAT names the connection in the message.
hold_alive() {
	local before after
	before=$(hold_count)
	sleep 0.8
	after=$(hold_count)
	if kill -0 "$HOLD_PID" 2>/dev/null && ((after > before)); then
		pass "$1: $2 still echoes (ok $after)"
	else
		fail "$1: $2 broke: $(tail -n 2 "$HOLD_LOG" | tr '\n' ' ')"
	fi
}

# http_service NAME VIP TARGET_PORT ADDR...: a services: entry for
# write_config: VIP port 80, declared http, to TARGET_PORT on the ADDRs.
http_service() {
	local name=$1 vip=$2 port=$3 eps="" a
	shift 3
	for a in "$@"; do eps+="${eps:+, }{address: $a}"; done
	printf '  - name: %s\n    vips: [%s]\n    ports: [{port: 80, target_port: %s, protocol: http}]\n    endpoints: [%s]\n' \
		"$name" "$vip" "$port" "$eps"
}

# http_topology POD...: the HTTP tests' start: the tools they need, the
# test's state and topology, and a shoal-backend on port 9080 in each POD.
http_topology() {
	local pod
	http_require
	e2e_init
	e2e_topology
	for pod in "$@"; do backend_start "$pod" 9080; done
}

# tcp_service [--mode MODE] NAME VIP PORT TARGET_PORT ADDR...: a services:
# entry for write_config: an opaque TCP port PORT on VIP, to TARGET_PORT on
# the ADDRs; with --mode, the port's mode (kernel: docs/config.md).
tcp_service() {
	local mode="" name vip port target eps="" a
	if [[ $1 == --mode ]]; then
		mode=", mode: $2"
		shift 2
	fi
	name=$1 vip=$2 port=$3 target=$4
	shift 4
	for a in "$@"; do eps+="${eps:+, }{address: $a}"; done
	printf '  - name: %s\n    namespace: default\n    vips: [%s]\n    ports: [{port: %s, target_port: %s, protocol: tcp%s}]\n    endpoints: [%s]\n' \
		"$name" "$vip" "$port" "$target" "$mode" "$eps"
}
