#!/bin/bash
# resilience-tcp.sh: opaque TCP balancing and connect retries through
# interception. Service "raw" (10.96.0.47:7000, protocol tcp) has three
# endpoints: a2 and b1 run shoal-backend on 9090, a3 has no listener
# there (connections refused). 60 opaque connections from a1, each
# speaking HTTP/1.0 by hand: every one must be served, a refused connect
# costing nothing but a retry to another endpoint (the figure counts
# them from shoald's metrics).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=resilience-lib.sh
source "$(dirname "$0")/resilience-lib.sh"

http_require
e2e_init
e2e_topology
backend_start a2 9090
backend_start b1 9090
write_config "
  - name: raw
    vips: [10.96.0.47]
    ports: [{port: 7000, target_port: 9090, protocol: tcp}]
    endpoints: [{address: 10.77.1.5}, {address: 10.77.1.3}, {address: 10.77.2.2}]"
shoald_start
enroll a1

fails0=$(proxy_metric shoal_proxy_connect_failures_total)
out=$(pod_run a1 python3 -c '
import socket, collections
c = collections.Counter()
for i in range(60):
    s = socket.create_connection(("10.96.0.47", 7000), timeout=5)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    be = "none"
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"x-backend:"):
            be = line.split(b":", 1)[1].strip().decode()
    c[be] += 1
print(" ".join("%s=%d" % kv for kv in sorted(c.items())))') || fatal "opaque client failed: $out"
fails=$(($(proxy_metric shoal_proxy_connect_failures_total) - fails0))
gave_up=$(proxy_metric shoal_proxy_gave_up_total)
say "figure: 60 opaque connections: served by $out; $fails refused connect(s) to a3, each retried elsewhere; $gave_up given up"
served=$(tr ' ' '\n' <<<"$out" | awk -F= '$1 != "none" { n += $2 } END { print n + 0 }')
((served == 60)) && pass "all 60 connections served" || fail "only $served of 60 served ($out)"
((gave_up == 0)) && pass "no connection given up" || fail "$gave_up connections given up"
((fails >= 1 && fails <= 3)) && pass "a3 cost $fails failed connect(s), then P2C kept away from it" ||
	say "note: $fails refused connects (P2C may never have picked a3)"
((fails <= 3)) || fail "$fails refused connects: the failure penalty should keep P2C away from a3"
finish
