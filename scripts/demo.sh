#!/usr/bin/env bash
# The demo: a two-node mesh in network namespaces, with shoal at work.
#
#   sudo bash scripts/demo.sh
#
# Installs what it needs, builds, then builds the end-to-end harness's
# topology (drawn at the top of tests/e2e/lib.sh: node-a with pods a1, a2,
# a3 and a kube-proxy stand-in "direct"; node-b with pod b1), runs shoald
# on node-a and walks through what it does, step by step. Everything it
# creates is removed when it ends, however it ends.
#
# What the foundation shows today: interception (IPv4, IPv6), getpeername,
# balancing across nodes, connect failover past a dead endpoint, the
# kernel's counters, the sockmap shortcut, fail open and restart.
# Latency-aware balancing, HTTP retries and circuit breaking come with the
# L7 issues.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
if [ ! -f build/build.ninja ]; then
	meson setup build >/dev/null
fi
meson compile -C build >/dev/null

export SHOALD=$root/build/agent/shoald
export SHOALCTL=$root/build/agent/shoalctl
export SHOAL_PEER=$root/build/tests/shoal-peer
export SHOAL_E2E_LOGDIR=$root/build/demo-logs
# shellcheck source=../tests/e2e/lib.sh
source tests/e2e/lib.sh

step() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }
show() { printf '    $ %s\n' "$*"; }

e2e_init
e2e_topology
write_config
step "shoald starts on node-a: loads the BPF programs at cgroup $TEST_CG, pins them under $PIN_ROOT"
shoald_start
sed 's/^/    /' "$SHOALD_LOG"
show "shoalctl status"
ctl status | sed 's/^/    /'

step "1. Interception. Pod a1 is enrolled; it calls service web at its VIP 10.96.0.10:80"
enroll a1
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
say "    a1 still sees peername=$HELLO_PEER; backend $HELLO_BACKEND saw the proxy's address $HELLO_SEEN"
expect_proxied a1 '[fd96::10]:80' '[fd96::10]:80'
step "   Pod a3 is not enrolled: the same call takes the VIP's own path (kube-proxy's stand-in)"
expect_direct a3 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[a3]}"

step "2. Balancing: web has endpoints a2 (node-a) and b1 (node-b)"
for i in 1 2 3 4 5 6; do
	hello a1 10.96.0.10:80 && say "    call $i -> $HELLO_BACKEND"
done

step "3. Failover: a2's server goes down; every call still lands, on b1"
for pid in $(cgroup_pids "${POD_CG[a2]}"); do
	stop_pid "$pid" KILL
done
for i in 1 2 3 4; do
	expect_proxied a1 10.96.0.10:80 10.96.0.10:80
done

step "4. The kernel's counters (shoal_counters, shoal_svc_stats)"
show "shoalctl counters"
ctl counters | sed 's/^/    /'

step "5. The sockmap shortcut: 64 MiB each way, a1 -> VIP -> a3 on the same node, checksummed"
write_config "  - name: bulk
    vips: [10.96.0.30]
    ports: [{port: 9000, target_port: 9000}]
    endpoints: [{address: ${POD_IP4[a3]}}]"
shoald_stop TERM
shoald_start
bytes=$((64 << 20))
before=$(counter redirect_bytes)
pod_spawn a3 "$LOGDIR/stream-server.log" "$SHOAL_PEER" stream-server --listen 0.0.0.0:9000 --bytes "$bytes" --seed 1
wait_listen "${POD_NS[a3]}" 9000
pod_run a1 "$SHOAL_PEER" stream-client --to 10.96.0.30:9000 --bytes "$bytes" --seed 2 | sed 's/^/    client: /'
wait "$LAST_PID" || true
sed 's/^/    server: /' "$LOGDIR/stream-server.log"
say "    redirect_bytes grew by $(($(counter redirect_bytes) - before)): the bytes skipped TCP/IP between sockets on node-a"

step "6. Fail open: shoald is killed (SIGKILL); after ${FAILOPEN_AFTER_MS} ms new calls take the VIP's own path"
shoald_stop KILL
sleep $((FAILOPEN_AFTER_MS / 1000 + 1))
expect_direct a1 10.96.0.10:80 10.96.0.10:80 "${POD_IP4[a1]}"
step "   shoald restarts and adopts the pinned programs and maps"
shoald_start
grep adopted "$SHOALD_LOG" | sed 's/^/    /'
expect_proxied a1 10.96.0.10:80 10.96.0.10:80

step "Cleaning up: shoald stops, then every link, map and pin goes"
shoald_stop TERM
ctl uninstall | sed 's/^/    /'
finish
