#!/usr/bin/env bash
# The demo: one node, one client pod and three backends of one HTTP service,
# in network namespaces, with shoal balancing, retrying and breaking; then
# a gRPC service on the same three pods, balanced per call on one client
# connection.
#
#   sudo bash scripts/demo.sh [--duration SECONDS] [--keep]
#   sudo bash scripts/demo.sh --down        # tear down what --keep left
#
#   node netns (shoald: proxy 10.77.1.1:15001, admin 127.0.0.1:15020)
#   br0 10.77.1.1/24
#    |-- client  10.77.1.2   wrk, steady GETs to the VIP 10.96.0.10:80 (enrolled);
#    |                       then a python3-grpcio client to 10.96.0.11:50051
#    |-- fast    10.77.1.3   shoal-backend, answers at once; gRPC :50051 at once
#    |-- slow    10.77.1.4   shoal-backend, 25 ms slower; gRPC 25 ms slower
#    |-- flaky   10.77.1.5   shoal-backend, 2 ms, 30 % 503s; unreachable from 25 %
#    |                       to 50 % of the run (refuses connections, resets
#    |                       requests); gRPC at once (healthy)
#    `-- direct  10.77.1.6   kube-proxy's stand-in: owns the VIP, for the short
#                            fail-open and restart section at the end
#
# It installs what is missing (scripts/setup.sh), builds into build/, starts
# shoald with its file config, drives traffic for --duration seconds
# (default 60) while a live table shows what each endpoint gets, then prints
# a summary; then GRPC_SECONDS (6) of gRPC calls on ONE client connection,
# 16 in flight, and what each endpoint answered (the slow one is avoided).
# The summary, gRPC scene included, goes as JSON to build/demo-summary.json. Everything it
# makes is removed when it ends, Ctrl-C included, unless --keep: then it is
# left running, with the commands to explore it and to tear it down.
#
# Options for tests (tests/e2e/demo.sh): --no-build uses the binaries named
# by SHOALD, SHOALCTL, SHOAL_PEER and SHOAL_BACKEND (default: build/'s) as
# they are; --summary FILE writes the JSON there; --no-live writes the
# table's frames to the log directory (watch.log) instead of the terminal.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

duration=60
keep=0
build=1
live=1
down=0
summary_json=$root/build/demo-summary.json
while (($#)); do
	case $1 in
	--duration)
		if ! [[ ${2:-} =~ ^[0-9]+$ ]] || (($2 < 10)); then
			echo "demo.sh: --duration takes a number of seconds, at least 10" >&2
			exit 2
		fi
		duration=$2
		shift 2
		;;
	--keep) keep=1 && shift ;;
	--down) down=1 && shift ;;
	--no-build) build=0 && shift ;;
	--no-live) live=0 && shift ;;
	--summary)
		summary_json=${2:?--summary takes a file}
		shift 2
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "demo.sh: unknown option $1 (see --help)" >&2
		exit 2
		;;
	esac
done
# --keep: what the demo starts must outlive the terminal it ran in. A
# hang-up ignored here is ignored by every process started below too.
if ((keep)); then
	trap '' HUP
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "demo.sh: run it as root (sudo bash scripts/demo.sh): it creates network namespaces and cgroups, and loads BPF" >&2
	exit 1
fi

if ((build && !down)); then
	echo "== installing what is missing (scripts/setup.sh)"
	bash scripts/setup.sh
	echo "== building into build/"
	if [[ ! -f build/build.ninja ]]; then
		meson setup build >/dev/null
	fi
	meson compile -C build >/dev/null
	export SHOALD=$root/build/agent/shoald
	export SHOALCTL=$root/build/agent/shoalctl
	export SHOAL_PEER=$root/build/tests/shoal-peer
	export SHOAL_BACKEND=$root/build/tests/shoal-backend
fi
export SHOALD=${SHOALD:-$root/build/agent/shoald}
export SHOALCTL=${SHOALCTL:-$root/build/agent/shoalctl}
export SHOAL_PEER=${SHOAL_PEER:-$root/build/tests/shoal-peer}
export SHOAL_BACKEND=${SHOAL_BACKEND:-$root/build/tests/shoal-backend}
export SHOAL_E2E_LOGDIR=${SHOAL_E2E_LOGDIR:-$root/build/demo-logs}
mkdir -p "$(dirname "$summary_json")"

# shellcheck source=../tests/e2e/lib.sh
source tests/e2e/lib.sh
# The harness names its runs she2e-PID and clears those whose owner is no
# longer a running tests/e2e/ script. The demo's runs get their own prefix,
# so that a test started meanwhile never takes them for a crashed test's
# leftovers, and the demo in turn clears only its own.
# shellcheck disable=SC2034 # read by lib.sh
E2E_TEST=demo
E2E_PREFIX=shdemo
RUN=$E2E_PREFIX-$$
STATE_DIR=/run/$E2E_PREFIX
# shellcheck disable=SC2034
STATE=$STATE_DIR/$RUN.state
PIN_ROOT=/sys/fs/bpf/$RUN
NS_A=$RUN-node
owner_alive() {
	[[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'demo\.sh'
}

if ((down)); then
	# shellcheck disable=SC2034 # read by cleanup_state_file
	CG2=$(find_cgroup2)
	mkdir -p "$STATE_DIR"
	n=0
	for file in "$STATE_DIR"/"$E2E_PREFIX"-*.state; do
		[[ -e $file ]] || continue
		owner=$(basename "$file" .state)
		owner=${owner#"$E2E_PREFIX"-}
		if owner_alive "$owner"; then
			echo "demo.sh: demo $owner is still running; end it with Ctrl-C in its terminal" >&2
			continue
		fi
		echo "tearing down $(basename "$file" .state)"
		cleanup_state_file "$file"
		n=$((n + 1))
	done
	((n)) || echo "nothing to tear down"
	exit 0
fi

http_require wrk
# Debian's python3-grpcio is Debian's python3's: prefer /usr/bin/python3 to
# whatever python3 comes first in PATH (a pyenv one has no grpc).
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
"$PY" -c 'import grpc' 2>/dev/null || skip "missing python3-grpcio for $PY (scripts/setup.sh installs it)"
e2e_init

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

# ---- the topology: one node, four pods on its bridge ------------------------

bold "== building the mesh: node $NS_A, pods client, fast, slow, flaky (and direct, kube-proxy's stand-in)"
node_add "$NS_A" 1
pod_add client "$NS_A" 1 2
pod_add fast "$NS_A" 1 3
pod_add slow "$NS_A" 1 4
pod_add flaky "$NS_A" 1 5
pod_add direct "$NS_A" 1 6
VIP=10.96.0.10
# kube-proxy's stand-in: the VIP is local to pod "direct" and the node
# routes it there, so a connection shoal leaves alone (fail open) lands on
# "direct" and not on an endpoint.
ip -n "${POD_NS[direct]}" addr add "$VIP/32" dev lo
ip -n "$NS_A" route add "$VIP/32" via "${POD_IP4[direct]}"
backend_start direct 80
backend_start fast 8080
backend_start slow 8080 --delay-ms 25
backend_start flaky 8080 --fail-rate 0.3 --fail-status 503 --delay-ms "${DEMO_FLAKY_DELAY_MS:-2}"
# The gRPC scene's servers, one per pod, port 50051: slow is 25 ms slower.
GRPC_VIP=10.96.0.11
GRPC_PORT=50051
for pod in fast slow flaky; do
	delay=0
	[[ $pod == slow ]] && delay=25
	pod_spawn "$pod" "$LOGDIR/grpc-$pod.log" "$PY" "$root/scripts/demo/grpc_scene.py" server "$pod" "$GRPC_PORT" "$delay"
done
for pod in fast slow flaky; do wait_listen "${POD_NS[$pod]}" "$GRPC_PORT"; done

# The service, as a user would write it (docs/config.md). The resilience
# knobs that differ from the defaults make the story fit in a minute: the
# flaky pod's ejection backoff stays short (1 to 2 s, jittered by 50 %, so
# it is readmitted within seconds of returning), a failure weighs 50 ms in the balancer
# instead of 5 s with a 2 s decay (so the flaky pod still gets traffic to
# fail on and is ejected by its breaker, not just starved), and the
# success-rate trip is at 50 % over at least 20 requests (so its steady
# 30 % of 503s are retried, not ejected, and its outage opens the breaker).
cat >"$CONFIG" <<EOF
node: {address_v4: 10.77.1.1, proxy_port: $PROXY_PORT}
bpf: {pin_root: $PIN_ROOT, cgroup: $TEST_CG, shortcut: true, failopen_after_ms: $FAILOPEN_AFTER_MS}
proxy: {workers: 2, connect_timeout_ms: 500, connect_deadline_ms: 2000}
admin: {listen: "$ADMIN_ADDR"}
services:
  - name: web
    namespace: default
    vips: [$VIP]
    ports: [{port: 80, target_port: 8080, protocol: http}]
    endpoints: [{address: ${POD_IP4[fast]}}, {address: ${POD_IP4[slow]}}, {address: ${POD_IP4[flaky]}}]
    resilience:
      balancer: {failure_penalty_ms: ${DEMO_PENALTY_MS:-50}, decay_ms: ${DEMO_DECAY_MS:-2000}}
      breaker: {backoff_min_ms: 1000, backoff_max_ms: 2000, success_rate_pct: 50, success_rate_min_requests: 20}
  # The gRPC scene: declared grpc, so each call (an HTTP/2 stream) is
  # routed, balanced and timed on its own; defaults otherwise.
  - name: echo
    namespace: default
    vips: [$GRPC_VIP]
    ports: [{port: $GRPC_PORT, protocol: grpc}]
    endpoints: [{address: ${POD_IP4[fast]}}, {address: ${POD_IP4[slow]}}, {address: ${POD_IP4[flaky]}}]
EOF

bold "== shoald starts in the node: BPF at cgroup $TEST_CG, pins at $PIN_ROOT"
shoald_start
sed 's/^/    /' "$SHOALD_LOG"
enroll client
say "client pod enrolled: its connects to $VIP:80 now go to the node proxy"

# The web dashboard: shoald's admin endpoint is on the node netns's
# loopback, so a forwarder on this host's loopback (socat, in the agent's
# cgroup so the teardown ends it) makes it reachable from a browser here.
# The first free port from 15020 on.
DASH_PORT=""
for port in $(seq 15020 15029); do
	if [[ -z $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; then
		DASH_PORT=$port
		break
	fi
done
if [[ -n $DASH_PORT ]] && command -v socat >/dev/null; then
	# socat's EXEC address: the colons inside it are escaped.
	sh -c 'echo $$ >"$1/cgroup.procs" && exec socat "TCP-LISTEN:$2,bind=127.0.0.1,reuseaddr,fork" "EXEC:nsenter --net=/run/netns/$3 socat STDIO TCP\:$4"' \
		sh "$TEST_CG/agent" "$DASH_PORT" "$NS_A" "${ADMIN_ADDR//:/\\:}" >"$LOGDIR/dashboard-forward.log" 2>&1 </dev/null &
	state_add "pid $!"
	DASH_URL=http://127.0.0.1:$DASH_PORT/dashboard
	for ((i = 0; i < 20; i++)); do
		curl -fsS -o /dev/null --max-time 2 "$DASH_URL" 2>/dev/null && break
		sleep 0.1
	done
	if ((i < 20)); then
		say "dashboard: $DASH_URL (open it in a browser on this host)"
	else
		say "dashboard: the forwarder on $DASH_URL does not answer ($LOGDIR/dashboard-forward.log)"
	fi
else
	DASH_URL=""
	say "dashboard: no free port in 15020-15029 or no socat; it is at http://$ADMIN_ADDR/dashboard in netns $NS_A"
fi

# ---- traffic, and the flaky pod's outage ------------------------------------

down_at=$((duration * 25 / 100))
up_at=$((duration * 50 / 100))
conns=4
delay_ms=10
bold "== ${duration} s of traffic: wrk in pod client, $conns connections, GET http://$VIP/ every ${delay_ms} ms on each"
say "flaky goes down at t=${down_at}s and comes back at t=${up_at}s"
pod_spawn client "$LOGDIR/wrk.log" \
	env DEMO_DELAY_MS=$delay_ms wrk -t1 -c"$conns" -d"${duration}s" --timeout 5s --latency \
	-s "$root/scripts/demo/client.lua" "http://$VIP/"
WRK_PID=$LAST_PID
pod_spawn flaky "$LOGDIR/flap.log" python3 "$root/scripts/demo/flap.py" 127.0.0.1:8080 "$down_at" "$up_at"
watch_args=(--admin "$ADMIN_ADDR" --duration "$duration" --down-at "$down_at" --up-at "$up_at"
	--frames "$LOGDIR/frames.jsonl"
	--endpoint "fast=${POD_IP4[fast]}:8080=fast   ${POD_IP4[fast]}"
	--endpoint "slow=${POD_IP4[slow]}:8080=slow   ${POD_IP4[slow]}"
	--endpoint "flaky=${POD_IP4[flaky]}:8080=flaky  ${POD_IP4[flaky]}")
if ((live)); then
	in_ns "$NS_A" python3 "$root/scripts/demo/watch.py" "${watch_args[@]}" --interval 2
else
	in_ns "$NS_A" python3 "$root/scripts/demo/watch.py" "${watch_args[@]}" --interval 1 \
		>"$LOGDIR/watch.log"
fi
wait "$WRK_PID" || fatal "wrk failed: $(tail -5 "$LOGDIR/wrk.log")"

# ---- the summary -------------------------------------------------------------

in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN_ADDR/debug/endpoints" >"$LOGDIR/endpoints.json"
in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN_ADDR/debug/services" >"$LOGDIR/services.json"
ctl --json counters >"$LOGDIR/counters.json"
for pod in fast slow flaky; do
	in_ns "${POD_NS[$pod]}" curl -sS --max-time 5 "http://127.0.0.1:8080/_ctl/stats" \
		>"$LOGDIR/backend-$pod.json" || echo '{}' >"$LOGDIR/backend-$pod.json"
done
python3 "$root/scripts/demo/summary.py" --logdir "$LOGDIR" --shoald-log "$SHOALD_LOG" \
	--duration "$duration" --down-at "$down_at" --up-at "$up_at" \
	--endpoint "fast=${POD_IP4[fast]}" --endpoint "slow=${POD_IP4[slow]}" \
	--endpoint "flaky=${POD_IP4[flaky]}" --pin-root "$PIN_ROOT" --cgroup "$TEST_CG" \
	--json "$summary_json"

# ---- gRPC: one client connection, balanced per call ---------------------------

GRPC_SECONDS=${DEMO_GRPC_SECONDS:-6}
GRPC_CONCURRENCY=16
bold "== gRPC: python3-grpcio in pod client, ONE channel (one HTTP/2 connection) to $GRPC_VIP:$GRPC_PORT, $GRPC_CONCURRENCY calls in flight, ${GRPC_SECONDS} s"
say "service echo: fast and flaky answer at once, slow 25 ms later; opaque TCP would pin all the calls of this one connection to one of them"
acc0=$(proxy_metric shoal_proxy_accepted_total)
pod_run client timeout $((GRPC_SECONDS + 30)) "$PY" "$root/scripts/demo/grpc_scene.py" client \
	"$GRPC_VIP:$GRPC_PORT" "$GRPC_SECONDS" "$GRPC_CONCURRENCY" "$LOGDIR/grpc.json" \
	2>"$LOGDIR/grpc-client.err" || fatal "the gRPC client failed: $(tail -3 "$LOGDIR/grpc-client.err")"
grpc_conns=$(($(proxy_metric shoal_proxy_accepted_total) - acc0))
"$PY" - "$LOGDIR/grpc.json" "$summary_json" "$grpc_conns" \
	"fast=${POD_IP4[fast]}" "slow=${POD_IP4[slow]}" "flaky=${POD_IP4[flaky]}" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2]))
g["connections"] = int(sys.argv[3])
ips = dict(a.split("=", 1) for a in sys.argv[4:])
ok = sum(e["calls"] for e in g["endpoints"].values())
for name, ip in ips.items():
    e = g["endpoints"].setdefault(name, {"calls": 0, "p50_ms": None})
    e["share_pct"] = round(100.0 * e["calls"] / ok, 1) if ok else 0.0
    p50 = "-" if e["p50_ms"] is None else f"{e['p50_ms']:.1f} ms"
    print(f"    {name:<6} {ip:<11} {e['calls']:>6} calls ({e['share_pct']:>4.1f} %)  p50 {p50}")
g["answered"] = ok
nf = sum(g["failed"].values())
print(f"    {ok} calls answered, {nf} failed{' ' + str(g['failed']) if nf else ''}, "
      f"on {g['connections']} client connection(s) to the proxy")
s["grpc"] = g
json.dump(s, open(sys.argv[2], "w"), indent=2)
PY
say "summary written to $summary_json; logs in $LOGDIR"

# ---- the L4 foundation, in short: fail open, and a restart that adopts ------

if ((!keep)); then
	bold "== fail open: shoald is killed (SIGKILL); after ${FAILOPEN_AFTER_MS} ms without its heartbeat the programs leave connects alone"
	failed_open=$(counter connect_failed_open)
	shoald_stop KILL
	sleep $((FAILOPEN_AFTER_MS / 1000 + 1))
	who=$(pod_curl client -s -o /dev/null -D - "http://$VIP/" | header x-backend) || true
	say "client -> $VIP:80 answered by '${who:-nobody}' (the VIP's own path: kube-proxy's stand-in is 'direct'); connect_failed_open grew by $(($(counter connect_failed_open) - failed_open))"
	bold "== restart: shoald adopts the pinned programs and maps, nothing is detached"
	shoald_start
	grep -h "adopted" "$SHOALD_LOG" | sed 's/^/    /' || true
	who=$(pod_curl client -s -o /dev/null -D - "http://$VIP/" | header x-backend) || true
	say "client -> $VIP:80 answered by '${who:-nobody}': proxied again, without enrolling the pod again"
fi

if ((keep)); then
	# Leave it all running: drop the traps, and tell how to explore and end it.
	trap - EXIT INT TERM
	q=$(printf '%q' "$root")
	ctl_q=$(printf '%q' "$SHOALCTL")
	cat <<EOF

== left running (--keep). Explore it (as root):

  # the web dashboard, live (a forwarder to the node's admin endpoint):
  ${DASH_URL:-nsenter --net=/run/netns/$NS_A $ctl_q -c $CONFIG dashboard}

  # a request from the client pod, through the mesh (the shell joins the
  # pod's cgroup, where shoal's programs are attached, then its netns):
  sh -c 'echo \$\$ >${POD_CG[client]}/cgroup.procs && exec nsenter --net=/run/netns/${POD_NS[client]} curl -si http://$VIP/'

  # shoald's view (admin endpoint, in the node's netns):
  nsenter --net=/run/netns/$NS_A $ctl_q -c $CONFIG top
  nsenter --net=/run/netns/$NS_A $ctl_q -c $CONFIG endpoints
  nsenter --net=/run/netns/$NS_A curl -s http://$ADMIN_ADDR/metrics | grep shoal_http_retries
  $ctl_q -c $CONFIG counters
  $ctl_q -c $CONFIG bpf

  # the kernel side (docs/bpf.md has every map):
  bpftool cgroup tree $TEST_CG
  bpftool map dump pinned $PIN_ROOT/maps/shoal_services
  bpftool map dump pinned $PIN_ROOT/maps/shoal_counters
  bpftool map dump pinned $PIN_ROOT/maps/shoal_enrolled

  # gRPC calls on one connection again, 10 s, 16 in flight (JSON to /tmp/grpc.json):
  sh -c 'echo \$\$ >${POD_CG[client]}/cgroup.procs && exec nsenter --net=/run/netns/${POD_NS[client]} $PY $q/scripts/demo/grpc_scene.py client $GRPC_VIP:$GRPC_PORT 10 16 /tmp/grpc.json'

  # 30 s of traffic again, to watch with top meanwhile:
  sh -c 'echo \$\$ >${POD_CG[client]}/cgroup.procs && exec nsenter --net=/run/netns/${POD_NS[client]} wrk -t1 -c4 -d30s -s $q/scripts/demo/client.lua http://$VIP/'

  # make the flaky pod fail every request, then flaky again (over its own loopback):
  nsenter --net=/run/netns/${POD_NS[flaky]} curl -s -X POST --data 'fail_rate=1' http://127.0.0.1:8080/_ctl/mode
  nsenter --net=/run/netns/${POD_NS[flaky]} curl -s -X POST --data 'fail_rate=0.3' http://127.0.0.1:8080/_ctl/mode

  shoald's log: $SHOALD_LOG

Tear it all down:   sudo bash $q/scripts/demo.sh --down
EOF
	exit 0
fi

bold "== cleaning up: shoald stops, its BPF links, maps and pins go, then the namespaces"
shoald_stop TERM
ctl uninstall >/dev/null || true
say "done"
exit 0
