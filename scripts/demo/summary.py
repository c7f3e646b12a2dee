#!/usr/bin/env python3
# summary.py: the demo's closing summary (scripts/demo.sh). Reads what the
# run left in --logdir (wrk's JSON line in wrk.log, the live table's
# frames.jsonl, /debug/endpoints and /debug/services at the end, `shoalctl
# --json counters`, each backend's /_ctl/stats) and shoald's log, prints the
# summary and writes it as JSON (--json). Its "checks" are what
# tests/e2e/demo.sh asserts: the fast endpoint took >= 60 % of the
# requests, the client saw >= 99.5 % success, and the flaky endpoint's
# breaker opened and closed again.
import argparse
import json
import os
import re

BOUNDS_MS = [1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000,
             3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000]


def quantile(buckets, q):
    total = sum(buckets)
    if not total:
        return None
    rank, cum = q * total, 0
    for i, n in enumerate(buckets):
        if not n or cum + n < rank:
            cum += n
            continue
        if i >= len(BOUNDS_MS):
            return float(BOUNDS_MS[-1])
        lo = BOUNDS_MS[i - 1] if i else 0
        return round(lo + (BOUNDS_MS[i] - lo) * (rank - cum) / n, 2)
    return None


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default if default is not None else {}


def pct(a, b):
    return round(100.0 * a / b, 2) if b else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--shoald-log", required=True)
    ap.add_argument("--duration", type=int, required=True)
    ap.add_argument("--down-at", type=int, required=True)
    ap.add_argument("--up-at", type=int, required=True)
    ap.add_argument("--endpoint", action="append", default=[])
    ap.add_argument("--pin-root", required=True)
    ap.add_argument("--cgroup", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    d = a.logdir
    roles = dict(e.split("=", 1) for e in a.endpoint)

    # The client's own view: wrk's done() line.
    wrk = {}
    try:
        for line in open(os.path.join(d, "wrk.log")):
            if line.startswith('{"requests"'):
                wrk = json.loads(line)
    except OSError:
        pass
    errs = wrk.get("errors", {})
    socket_errors = sum(errs.values())
    attempts = wrk.get("requests", 0) + errs.get("connect", 0) + errs.get("read", 0) + \
        errs.get("write", 0) + errs.get("timeout", 0)
    ok = wrk.get("requests", 0) - wrk.get("non_2xx_3xx", 0)
    lat = {k: round(v / 1000.0, 2) for k, v in wrk.get("latency_us", {}).items()}
    client = {"tool": "wrk", "requests": attempts, "succeeded": ok,
              "non_2xx_3xx": wrk.get("non_2xx_3xx", 0), "socket_errors": socket_errors,
              "success_pct": pct(ok, attempts), "latency_ms": lat,
              "requests_per_s": round(attempts / a.duration, 1)}

    # The proxy's view, per endpoint (whole run), and each backend's own.
    eps_doc = load(os.path.join(d, "endpoints.json"))
    # Service web's only: the gRPC scene's service has the same pods.
    rows = {e["address"]: e for e in eps_doc.get("endpoints", []) if e.get("service", "web") == "web"}
    total = sum(rows[h]["http"]["requests"] for h in roles.values() if h in rows)
    endpoints = {}
    for role, host in roles.items():
        r = rows.get(host, {})
        h = r.get("http", {})
        resp = h.get("responses", {})
        n_resp = sum(resp.values())
        be = load(os.path.join(d, f"backend-{role}.json"))
        endpoints[role] = {
            "address": host,
            "requests": h.get("requests", 0),
            "share_pct": pct(h.get("requests", 0), total),
            "p50_ms": quantile(h.get("latency_buckets", []), 0.5),
            "p99_ms": quantile(h.get("latency_buckets", []), 0.99),
            "success_pct": pct(n_resp - resp.get("5xx", 0), n_resp),
            "breaker": r.get("breaker"),
            "ejections": r.get("ejections", 0),
            "backend_received": be.get("requests", 0) + be.get("resets", 0),
            "backend_503": be.get("by_status", {}).get("503", 0),
            "backend_resets": be.get("resets", 0),
        }

    svc_doc = load(os.path.join(d, "services.json"))
    svc = next((v for v in svc_doc.get("services") or [] if v.get("name") == "web"), {})
    res = svc.get("resilience", {})

    # The flaky endpoint's breaker: from shoald's log, and when the live
    # table first saw it open and then closed again.
    flaky = roles.get("flaky", "")
    log_lines = []
    try:
        log_lines = [l.rstrip() for l in open(a.shoald_log)
                     if f"endpoint {flaky} " in l and ("ejected" in l or "readmitted" in l)]
    except OSError:
        pass
    # An ejection "after a failed connect" or "after a reset" is the outage
    # (a 503 can eject it too, rarely, when several come in a row); the
    # breaker closed again if a readmission follows the last of those.
    ejected = [l for l in log_lines if "ejected" in l]
    readmitted = [l for l in log_lines if "readmitted" in l]
    outage = [i for i, l in enumerate(log_lines)
              if "ejected" in l and ("failed connect" in l or "reset" in l)]
    back = [i for i, l in enumerate(log_lines) if "readmitted" in l and outage and i > outage[-1]]
    opened_at = closed_at = None
    try:
        for line in open(os.path.join(d, "frames.jsonl")):
            f = json.loads(line)
            st = f.get("endpoints", {}).get("flaky", {}).get("breaker")
            if st and st != "closed" and opened_at is None and f["t"] >= a.down_at:
                opened_at = f["t"]
            if st == "closed" and opened_at is not None and closed_at is None and f["t"] >= a.up_at:
                closed_at = f["t"]
    except (OSError, ValueError):
        pass
    breaker = {
        "opened": bool(outage),
        "closed": bool(back),
        "ejections": len(ejected), "ejections_while_down": len(outage),
        "readmissions": len(readmitted),
        "seen_open_at_s": opened_at, "seen_closed_again_at_s": closed_at,
        "log": log_lines[:16],
    }

    ctr = load(os.path.join(d, "counters.json")).get("datapath", {})
    kernel = {k: ctr.get(k, 0) for k in ("connect_intercepted", "connect_failed_open",
                                         "handoff_stored", "shortcut_inserted",
                                         "redirect_msgs", "redirect_bytes")}
    p, cg = a.pin_root, a.cgroup
    bpftool = [
        f"bpftool cgroup tree {cg}",
        "bpftool prog show name shoal_connect4",
        f"bpftool map dump pinned {p}/maps/shoal_services",
        f"bpftool map dump pinned {p}/maps/shoal_counters",
        f"bpftool map dump pinned {p}/maps/shoal_enrolled",
        f"bpftool map dump pinned {p}/maps/shoal_shortcut",
    ]
    fast_share = endpoints.get("fast", {}).get("share_pct") or 0
    checks = {
        "fast_share_ge_60": fast_share >= 60,
        "client_success_ge_99_5": (client["success_pct"] or 0) >= 99.5,
        "breaker_opened_and_closed": breaker["opened"] and breaker["closed"],
    }
    out = {
        "duration_s": a.duration,
        "flaky_down_s": [a.down_at, a.up_at],
        "client": client,
        "service": {"name": "default/web", "vip": "10.96.0.10:80",
                    "retries": res.get("retries", 0),
                    "retries_refused": res.get("retries_refused", 0),
                    "ejections": res.get("ejections", 0),
                    "readmissions": res.get("readmissions", 0)},
        "endpoints": endpoints,
        "fast_share_pct": fast_share,
        "breaker": breaker,
        "kernel": kernel,
        "bpftool": bpftool,
        "checks": checks,
    }
    with open(a.json + ".tmp", "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    os.replace(a.json + ".tmp", a.json)

    def v(x, spec="{:.1f}"):
        return "-" if x is None else spec.format(x)

    print("\n\033[1m== summary\033[0m")
    print(f"client (wrk in pod client, {a.duration} s): {client['requests']} requests, "
          f"{v(client['success_pct'], '{:.2f}')} % succeeded "
          f"({client['non_2xx_3xx']} errors seen, {socket_errors} socket errors); "
          f"latency p50 {v(lat.get('p50'))} ms, p99 {v(lat.get('p99'))} ms, max {v(lat.get('max'))} ms")
    print(f"shoal retried {out['service']['retries']} requests "
          f"({out['service']['retries_refused']} refused by the budget); "
          f"the backends answered {sum(e['backend_503'] for e in endpoints.values())} 503s "
          f"and reset {sum(e['backend_resets'] for e in endpoints.values())} requests in all")
    print(f"\n{'ENDPOINT':<18} {'SHARE':>6} {'P50_MS':>7} {'P99_MS':>7} {'SUCCESS':>8} "
          f"{'RECEIVED':>9} {'503':>5} {'RESETS':>6} {'EJECTIONS':>9} BREAKER")
    for role, e in endpoints.items():
        print(f"{role + ' ' + e['address']:<18} {v(e['share_pct']):>5}% {v(e['p50_ms']):>7} "
              f"{v(e['p99_ms']):>7} {v(e['success_pct']):>7}% {e['backend_received']:>9} "
              f"{e['backend_503']:>5} {e['backend_resets']:>6} {e['ejections']:>9} {e['breaker']}")
    print(f"\nflaky was down from t={a.down_at} s to t={a.up_at} s. Its breaker was seen open "
          f"at t={v(opened_at, '{:.0f}')} s; while it was down every probe failed and opened it "
          f"again ({breaker['ejections_while_down']} ejections on failed connects or resets); "
          f"it was seen closed again at t={v(closed_at, '{:.0f}')} s, after a good probe. "
          f"shoald's log:")
    shown = log_lines if len(log_lines) <= 8 else log_lines[:3] + ["..."] + log_lines[-4:]
    for l in shown:
        # Without shoald's timestamp and prefix: the summary gives t= itself.
        print("    " + l.split("shoal info: proxy: ", 1)[-1])
    print(f"\nkernel: {kernel['connect_intercepted']} connects intercepted, "
          f"{kernel['shortcut_inserted']} sockets in the sockmap, "
          f"{kernel['redirect_bytes']} bytes in {kernel['redirect_msgs']} messages carried "
          f"by the sockmap shortcut (client, proxy and backends share this node: those bytes "
          f"skipped TCP/IP)")
    print("look inside (as root, while it runs: --keep):")
    for c in bpftool:
        print("    " + c)
    print("\nchecks: " + ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in checks.items()))


if __name__ == "__main__":
    main()
