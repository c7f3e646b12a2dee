#!/usr/bin/env python3
# watch.py: the demo's live table (scripts/demo.sh), run in the node's
# network namespace. Every INTERVAL seconds it reads shoald's admin
# endpoint (/debug/services, /debug/endpoints: what `shoalctl top` reads)
# and each backend's own counters (GET /_ctl/stats, straight to the pod,
# not through the mesh), and prints, per endpoint, over the last interval:
#
#   SHARE    of the requests the proxy answered, the endpoint that served
#            the last attempt (a request retried elsewhere counts there)
#   P50/P99  client-facing latency of those requests (the proxy's histogram,
#            interpolated inside its bucket as histogram_quantile does)
#   SUCCESS  responses that were not 5xx, as the proxy sent them
#   TRIES    requests the backend itself received (first tries and retries)
#   503      how many of those it answered 503 (retried by the proxy)
#   BREAKER  closed / open / half-open, and ejections so far
#
# One JSON object per frame goes to --frames, for the summary.
#
#   watch.py --admin ADDR:PORT --endpoint ROLE=ADDR:PORT[=LABEL]... --duration S
#            [--interval S] [--down-at S --up-at S] [--frames FILE]
import argparse
import json
import os
import sys
import time
import urllib.request

BOUNDS_MS = [1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000,
             3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000]  # METRICS_LATENCY_BUCKETS_MS


def get_json(url, timeout=1.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def quantile(buckets, q):
    """The q quantile (ms) of a bucket-count histogram, or None when empty."""
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
        return lo + (BOUNDS_MS[i] - lo) * (rank - cum) / n
    return None


def http_of(row):
    h = row.get("http", {})
    resp = h.get("responses", {})
    return {
        "requests": h.get("requests", 0),
        "responses": sum(resp.get(k, 0) for k in ("1xx", "2xx", "3xx", "4xx", "5xx")),
        "failures": resp.get("5xx", 0),
        "buckets": list(h.get("latency_buckets", [])),
    }


def delta(a, b):
    """a - b, field by field (b may be None: a restart or a first frame)."""
    if b is None or a["requests"] < b["requests"]:
        return dict(a)
    out = {k: a[k] - b[k] for k in ("requests", "responses", "failures")}
    out["buckets"] = [x - y for x, y in zip(a["buckets"], b["buckets"] + [0] * len(a["buckets"]))]
    return out


def fmt(v, spec="{:.1f}", none="-"):
    return none if v is None else spec.format(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin", default="127.0.0.1:15020")
    ap.add_argument("--endpoint", action="append", default=[])
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--down-at", type=float, default=-1)
    ap.add_argument("--up-at", type=float, default=-1)
    ap.add_argument("--frames")
    a = ap.parse_args()

    eps = []  # (role, address, port, label)
    for spec in a.endpoint:
        role, rest = spec.split("=", 1)
        addr, label = (rest.split("=", 1) + [""])[:2]
        host, port = addr.rsplit(":", 1)
        eps.append((role, host, port, label or role))
    tty = sys.stdout.isatty()
    frames = open(a.frames, "w") if a.frames else None
    t0 = time.monotonic()
    prev_ep, prev_svc, prev_be, prev_t = {}, None, {}, t0
    events = []
    last_state = {}
    while True:
        now = time.monotonic()
        elapsed = now - t0
        if elapsed >= a.duration:
            break
        time.sleep(min(a.interval, a.duration - elapsed))
        now = time.monotonic()
        elapsed = now - t0
        secs = max(now - prev_t, 1e-3)
        try:
            svc_doc = get_json(f"http://{a.admin}/debug/services")
            ep_doc = get_json(f"http://{a.admin}/debug/endpoints")
        except Exception as e:  # shoald restarting or gone: say so, go on
            print(f"admin endpoint {a.admin} not answering: {e}", flush=True)
            continue
        svc = next((v for v in svc_doc.get("services", []) if v.get("name") == "web"), {})
        res = svc.get("resilience", {})
        sh = http_of(svc)
        sd = delta(sh, prev_svc)
        # Service web's only: the gRPC scene's service has the same pods.
        rows = {e["address"]: e for e in ep_doc.get("endpoints", []) if e.get("service", "web") == "web"}
        frame = {"t": round(elapsed, 2), "interval_s": round(secs, 2),
                 "service": {"requests": sd["requests"], "failures": sd["failures"],
                             "retries_total": res.get("retries", 0),
                             "ejections_total": res.get("ejections", 0),
                             "readmissions_total": res.get("readmissions", 0)},
                 "endpoints": {}}
        total = sum(delta(http_of(rows[h]), prev_ep.get(h))["requests"]
                    for _, h, _, _ in eps if h in rows) or 0
        phase = "all up"
        if 0 <= a.down_at <= elapsed < (a.up_at if a.up_at >= 0 else 1e18):
            phase = "flaky DOWN (refusing connections, resetting requests)"
        elif 0 <= a.up_at <= elapsed:
            phase = "flaky back up"
        out = []
        if tty:
            out.append("\033[H\033[2J")
        retries_d = res.get("retries", 0) - (prev_svc or {}).get("retries_total", 0) \
            if prev_svc else res.get("retries", 0)
        out.append(f"shoal demo  t={elapsed:4.0f}s of {a.duration:.0f}s   {phase}\n")
        out.append(f"service default/web (VIP 10.96.0.10:80)  {sd['requests'] / secs:6.0f} req/s  "
                   f"success {fmt(100.0 * (sd['responses'] - sd['failures']) / sd['responses'] if sd['responses'] else None)}%  "
                   f"retries {retries_d / secs:5.1f}/s  "
                   f"ejections {res.get('ejections', 0)}  readmissions {res.get('readmissions', 0)}\n\n")
        out.append(f"{'ENDPOINT':<22} {'SHARE':>6} {'P50_MS':>7} {'P99_MS':>7} {'SUCCESS':>8} "
                   f"{'TRIES/S':>8} {'503/S':>6} {'BREAKER':<10} {'EJECTIONS':>9}\n")
        for role, host, port, label in eps:
            row = rows.get(host)
            if row is None:
                out.append(f"{label:<22} (not in /debug/endpoints)\n")
                continue
            d = delta(http_of(row), prev_ep.get(host))
            share = 100.0 * d["requests"] / total if total else None
            succ = 100.0 * (d["responses"] - d["failures"]) / d["responses"] if d["responses"] else None
            try:
                be = get_json(f"http://{host}:{port}/_ctl/stats", timeout=0.5)
                tries = be.get("requests", 0) + be.get("resets", 0)
                n503 = be.get("by_status", {}).get("503", 0)
                pb = prev_be.get(host)
                # Per second since the backend last answered: after it was
                # unreachable ("down") that is more than one interval.
                be_secs = max(now - pb[2], 1e-3) if pb else secs
                tries_d = tries - pb[0] if pb else None
                n503_d = n503 - pb[1] if pb else None
                prev_be[host] = (tries, n503, now)
                tries_s, n503_s = fmt(tries_d / be_secs if tries_d is not None else None, "{:.0f}"), \
                    fmt(n503_d / be_secs if n503_d is not None else None, "{:.0f}")
            except Exception:
                tries_s, n503_s = "down", "-"
            state = row.get("breaker", "-")
            if last_state.get(host, "closed") != state:
                events.append(f"t={elapsed:4.0f}s  {label}: breaker {last_state.get(host, 'closed')} -> {state}")
            last_state[host] = state
            out.append(f"{label:<22} {fmt(share):>5}% {fmt(quantile(d['buckets'], 0.5)):>7} "
                       f"{fmt(quantile(d['buckets'], 0.99)):>7} {fmt(succ):>7}% "
                       f"{tries_s:>8} {n503_s:>6} {state:<10} {row.get('ejections', 0):>9}\n")
            frame["endpoints"][role] = {
                "address": host, "requests": d["requests"], "share_pct": share,
                "p50_ms": quantile(d["buckets"], 0.5), "p99_ms": quantile(d["buckets"], 0.99),
                "success_pct": succ, "breaker": state, "ejections": row.get("ejections", 0),
                "estimate_ms": row.get("estimate_ms")}
            prev_ep[host] = http_of(row)
        if events:
            out.append("\nbreaker events:\n" + "".join(f"  {e}\n" for e in events[-6:]))
        sys.stdout.write("".join(out) + ("" if tty else "\n"))
        sys.stdout.flush()
        if frames:
            frames.write(json.dumps(frame) + "\n")
            frames.flush()
        prev_svc = dict(sh)
        prev_svc["retries_total"] = res.get("retries", 0)
        prev_t = now
    if frames:
        frames.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)
