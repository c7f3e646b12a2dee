#!/bin/bash
# dashboard.sh: the web dashboard in a real headless Chromium (Debian
# chromium, driven over the DevTools protocol by dashboard-cdp.py with
# python3-websockets), loaded from shoald's admin endpoint on node-a's
# loopback while traffic runs. Service "cb" (10.96.0.43:80, http): a2, a3
# and b1, the breaker set as in resilience-breaker.sh. Checks:
#  - Services lists default/cb with a request rate; its page lists its
#    three endpoints; service "shop" (10.96.0.44) splits its route "all"
#    80/20 to itself and "shop-canary": its page shows the split and the
#    call graph the edge default/shop -> default/shop-canary; the kernel page shows
#    intercepted connects; a screenshot of each page in $LOGDIR;
#  - a2 resetting every request (shoal-backend's /_ctl/mode reset=1)
#    shows its breaker open on the page, and closed again once it
#    recovers (reset=0);
#  - no JavaScript console error, and every request went to the admin
#    origin;
#  - the call graph draws a1 (by its address: enrolled by shoalctl, so
#    enrollment has no pod name for it) calling default/cb, in the page,
#    and calling default/cb and default/shop in /dashboard/state;
#  - shoalctl dashboard prints the URL.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=resilience-lib.sh
source "$(dirname "$0")/resilience-lib.sh"

ADMIN=127.0.0.1:15020
CDP=$(dirname "$0")/dashboard-cdp.py

command -v chromium >/dev/null || skip "chromium missing (Debian package chromium; scripts/setup.sh installs it)"
# Debian's python3-websockets is for Debian's python3, which may not be
# the first python3 on PATH (a pyenv one).
PY=""
for p in python3 /usr/bin/python3; do
	if "$p" -c 'import websockets' 2>/dev/null; then
		PY=$p
		break
	fi
done
[[ -n $PY ]] || skip "python3 websockets missing (Debian package python3-websockets; scripts/setup.sh installs it)"

http_topology a2 a3 b1
write_config "
$(http_service cb 10.96.0.43 9080 10.77.1.3 10.77.1.5 10.77.2.2)
    resilience:
      balancer: {failure_penalty_ms: 0}
      breaker: {consecutive_failures: 7, backoff_min_ms: 1000, jitter_pct: 50}
$(http_service shop 10.96.0.44 9080 10.77.1.5)
    routes:
      - name: all
        match: {path: {prefix: /}}
        backends:
          - {service: shop, weight: 80}
          - {service: shop-canary, weight: 20}
$(http_service shop-canary 10.96.0.45 9080 10.77.2.2)"
shoald_start
enroll a1

url=$(in_ns "$NS_A" "$SHOALCTL" --admin "$ADMIN" dashboard 2>"$LOGDIR/ctl-dashboard.err") || true
[[ $url == "http://$ADMIN/dashboard" ]] && pass "shoalctl dashboard prints $url" ||
	fail "shoalctl dashboard printed '$url' ($(cat "$LOGDIR/ctl-dashboard.err"))"

# Traffic for the whole test: about 20 GETs a second from a1, through
# interception, one at a time (so a2's resets are retried elsewhere).
pod_spawn a1 "$LOGDIR/traffic.log" sh -c \
	'while :; do curl -s -o /dev/null --max-time 2 http://10.96.0.43/ -o /dev/null http://10.96.0.44/; sleep 0.05; done'
TRAFFIC_PID=$LAST_PID

ctldir=$LOGDIR/cdp-ctl
mkdir -p "$ctldir"
in_ns "$NS_A" "$PY" "$CDP" --origin "http://$ADMIN" --out "$LOGDIR" --ctl "$ctldir" \
	--service default/cb --endpoints 10.77.1.3,10.77.1.5,10.77.2.2 --flaky 10.77.1.3 \
	--split-service default/shop --split "default/shop-canary 20%" --edge "default/shop>default/shop-canary" --caller-edge "${POD_IP4[a1]}>default/cb" \
	>"$LOGDIR/cdp.log" 2>&1 &
CDP_PID=$!
# The driver asks for the fault and its end through files in $ctldir.
fault_on=0 fault_off=0
for ((i = 0; i < 1500; i++)); do
	kill -0 "$CDP_PID" 2>/dev/null || break
	if ((!fault_on)) && [[ -e $ctldir/fault-on ]]; then
		backend_ctl a2 9080 /_ctl/mode "reset=1"
		say "a2 resets every request now"
		fault_on=1
	fi
	if ((!fault_off)) && [[ -e $ctldir/fault-off ]]; then
		backend_ctl a2 9080 /_ctl/mode "reset=0"
		say "a2 answers again"
		fault_off=1
	fi
	sleep 0.1
done
wait "$CDP_PID" && rc=0 || rc=$?
sed "s/^/[$E2E_TEST] /" "$LOGDIR/cdp.log"
if grep -q '^FAIL' "$LOGDIR/cdp.log"; then fail "the browser driver reported failures (above)"; fi
((rc == 0)) || fail "the browser driver exited with status $rc"
stop_pid "$TRAFFIC_PID"
in_ns "$NS_A" curl -sS --max-time 5 "http://$ADMIN/dashboard/state" >"$LOGDIR/state.json" ||
	fail "GET /dashboard/state"
# The caller edges: a1 addressed both services, and a1 only (one client).
if "$PY" - "$LOGDIR/state.json" "${POD_IP4[a1]}" >"$LOGDIR/caller-edges.txt" 2>&1 <<'EOF'; then
import json, sys
st = json.load(open(sys.argv[1]))
got = {(e["caller"], e["service"]): e for e in st["caller_edges"]}
for svc in ("default/cb", "default/shop"):
    e = got.get((sys.argv[2], svc))
    assert e and e["requests"] > 0, "no caller edge %s -> %s in %s" % (sys.argv[2], svc, st["caller_edges"])
    print("%s -> %s: %d requests, %d 5xx" % (sys.argv[2], svc, e["requests"], e["errors"]))
callers = sorted({c for c, _ in got})
assert callers == [sys.argv[2]], "callers %s, not only a1" % callers
EOF
	pass "caller edges in /dashboard/state: $(tr '\n' ';' <"$LOGDIR/caller-edges.txt")"
else
	fail "caller edges in /dashboard/state: $(cat "$LOGDIR/caller-edges.txt")"
fi
say "figure: one frame's state is $(wc -c <"$LOGDIR/state.json") bytes for 4 services, 7 endpoints"
for p in services service graph kernel breaker-open; do
	[[ -s $LOGDIR/$p.png ]] && pass "screenshot $LOGDIR/$p.png" || fail "no screenshot $p.png"
done
finish
