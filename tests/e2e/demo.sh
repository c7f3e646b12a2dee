#!/bin/bash
# demo.sh: the README's first command, in short mode. Runs
# scripts/demo.sh --duration 20 with the binaries this build made (no
# set-up, no build, no live table) and asserts, from the demo's own JSON
# summary, what the demo claims to show:
#  - the fast endpoint took at least 60 % of the requests;
#  - the client (wrk) saw at least 99.5 % success: retries hid the flaky
#    endpoint's 503s and its outage;
#  - the flaky endpoint's breaker opened while it was down and closed
#    again (a good probe readmitted it) after it came back;
#  - the gRPC scene: python3-grpcio's calls on ONE channel reached the
#    proxy on one connection, none failed, and were balanced per call:
#    the two quick endpoints (fast, flaky) took at least 25 % each, the
#    one 25 ms slower at most 15 % (opaque TCP would give one endpoint
#    100 %, and per-connection balancing likewise).
# The demo builds and tears down its own namespaces, cgroup and pins, and
# skips (77) like the other e2e tests when root, BPF or a tool is missing.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
logdir=${SHOAL_E2E_LOGDIR:-/tmp/she2e-logs}/demo
summary=$logdir-summary.json
rm -f "$summary"

bash "$root/scripts/demo.sh" --no-build --no-live --duration 20 --summary "$summary"
rc=$?
((rc == 77)) && exit 77
if ((rc != 0)); then
	echo "[demo] FAIL: scripts/demo.sh exited $rc (logs in $logdir)" >&2
	exit 1
fi
[[ -s $summary ]] || {
	echo "[demo] FAIL: no summary at $summary" >&2
	exit 1
}
python3 - "$summary" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
fails = 0
def check(ok, what):
    global fails
    print(f"[demo] {'ok' if ok else 'FAIL'}: {what}", file=sys.stdout if ok else sys.stderr)
    fails += not ok
fast, client, br = s["fast_share_pct"], s["client"], s["breaker"]
check(fast >= 60, f"the fast endpoint took {fast} % of the requests (>= 60 %)")
check((client["success_pct"] or 0) >= 99.5,
      f"the client saw {client['success_pct']} % success over {client['requests']} requests (>= 99.5 %)")
check(br["opened"], f"flaky's breaker opened while it was down ({br['ejections_while_down']} ejections on failed connects or resets)")
check(br["closed"], f"flaky's breaker closed again after it came back ({br['readmissions']} readmissions)")
g = s.get("grpc")
check(g is not None, "the summary has the gRPC scene")
if g:
    eps = g["endpoints"]
    share = {n: eps.get(n, {}).get("share_pct", 0.0) for n in ("fast", "slow", "flaky")}
    check(g["connections"] == 1, f"gRPC: the calls came on {g['connections']} client connection(s) (want 1)")
    check(g["answered"] >= 200 and not g["failed"],
          f"gRPC: {g['answered']} calls answered (>= 200), failed {g['failed'] or 0}")
    check(share["fast"] >= 25 and share["flaky"] >= 25,
          f"gRPC: per call over one connection: fast {share['fast']} %, flaky {share['flaky']} % (>= 25 % each)")
    check(share["slow"] <= 15, f"gRPC: the slow endpoint was avoided: {share['slow']} % (<= 15 %)")
print(f"[demo] figures: retries {s['service']['retries']}, client p99 {client['latency_ms'].get('p99')} ms, "
      f"sockmap bytes {s['kernel']['redirect_bytes']}, intercepted connects {s['kernel']['connect_intercepted']}")
sys.exit(1 if fails else 0)
PY
