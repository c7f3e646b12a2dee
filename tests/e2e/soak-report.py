#!/usr/bin/env python3
# soak-report.py: the verdict of a soak (tests/e2e/soak.sh). Reads what the
# clients recorded (soak-clients.py), the agent's restart windows and its
# RSS/fd samples, prints a summary and exits 1 if an assertion failed.
#
#   soak-report.py DIR BACKEND_POSTS SANITIZED WARMUP_S
#
# DIR holds http.jsonl, tcp.jsonl, hostile.jsonl, windows (one
# "STOP_MS READY_MS" line per restart, READY_MS being when the new agent
# serves again, plus the grace the datapath takes to follow) and samples
# ("T_MS PID RSS_KB FDS" each second). BACKEND_POSTS is the number of
# POSTs every backend together counted. SANITIZED=1 (an ASan build) skips
# the RSS bound: ASan's quarantine grows RSS by design.
#
# Assertions (issue 12, "A soak that proves it"):
#   - no idempotent request (GET) failed outside the restart windows;
#   - no POST reached the backends twice: they counted at most as many as
#     the client sent;
#   - every opaque stream outside the windows arrived intact;
#   - hostile clients got their 408/431 (or a close) and never a 2xx;
#   - per agent lifetime, after WARMUP_S, RSS grew by at most
#     RSS_GROWTH_MAX_KB and open fds by at most FD_GROWTH_MAX.
import json
import os
import statistics
import sys

# A flat process still moves a little: allocator arenas, pool sockets that
# come and go with the load. Past these, something accumulates.
RSS_GROWTH_MAX_KB = 8 * 1024
FD_GROWTH_MAX = 32


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def main():
    d, backend_posts, sanitized, warmup_s = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", float(sys.argv[4])
    windows = []
    with open(os.path.join(d, "windows")) as f:
        for line in f:
            a, b = line.split()
            windows.append((int(a), int(b)))

    def in_window(r):
        return any(r["t0"] <= b and r["t1"] >= a for a, b in windows)

    failed = []
    http = load(os.path.join(d, "http.jsonl"))
    tcp = load(os.path.join(d, "tcp.jsonl"))
    hostile = load(os.path.join(d, "hostile.jsonl"))

    def ok_status(s):
        return 200 <= s < 300

    gets = [r for r in http if r["m"] == "GET"]
    posts = [r for r in http if r["m"] == "POST"]
    get_out = [r for r in gets if not in_window(r)]
    get_bad = [r for r in get_out if not ok_status(r["s"])]
    post_bad_out = [r for r in posts if not in_window(r) and not ok_status(r["s"])]
    print("soak: %d restart windows: %s" % (len(windows), ", ".join("%.1f s" % ((b - a) / 1000) for a, b in windows)))
    print("soak: http: %d requests (%d GET, %d POST); outside the windows %d GETs, %d failed; POSTs failed outside: %d"
          % (len(http), len(gets), len(posts), len(get_out), len(get_bad), len(post_bad_out)))
    if len(get_out) < 10:
        failed.append("too few GETs outside the restart windows (%d): the load did not run" % len(get_out))
    for r in get_bad[:5]:
        print("  failed GET: %s" % json.dumps(r))
    if get_bad:
        failed.append("%d idempotent requests failed outside the restart windows" % len(get_bad))
    for r in post_bad_out[:3]:
        print("  failed POST (reported, not asserted): %s" % json.dumps(r))
    print("soak: POSTs: the client sent %d, the backends counted %d" % (len(posts), backend_posts))
    if backend_posts > len(posts):
        failed.append("a POST reached the backends twice (%d counted, %d sent)" % (backend_posts, len(posts)))
    backends = {}
    for r in http:
        if r["b"]:
            backends[r["b"]] = backends.get(r["b"], 0) + 1
    print("soak: answered by: %s" % ", ".join("%s %d" % kv for kv in sorted(backends.items())))
    # Pod "direct" answers what failed open: connections opened during a
    # restart, until the client recycles them. Outside the windows that
    # must stay a small share, or the soak was not testing the proxy.
    direct_out = sum(1 for r in http if r["b"] == "direct" and not in_window(r))
    answered_out = sum(1 for r in http if r["b"] and not in_window(r))
    print("soak: outside the windows, %d of %d answers came from the direct path" % (direct_out, answered_out))
    if answered_out and direct_out > answered_out * 0.25:
        failed.append("%d of %d answers outside the windows bypassed the proxy" % (direct_out, answered_out))

    tcp_out = [r for r in tcp if not in_window(r)]
    tcp_bad = [r for r in tcp_out if not r["ok"]]
    print("soak: tcp: %d streams, %.0f MiB; outside the windows %d, %d broken"
          % (len(tcp), sum(r["bytes"] for r in tcp) / 2**20, len(tcp_out), len(tcp_bad)))
    for r in tcp_bad[:3]:
        print("  broken stream: %s" % json.dumps(r))
    if tcp_bad:
        failed.append("%d opaque streams broke outside the restart windows" % len(tcp_bad))
    if not tcp_out:
        failed.append("no opaque stream completed outside the restart windows")

    kinds = {}
    for r in hostile:
        k = kinds.setdefault(r["kind"], {})
        k[r["status"]] = k.get(r["status"], 0) + 1
    print("soak: hostile: %s" % "; ".join("%s %s" % (k, json.dumps(v, sort_keys=True)) for k, v in sorted(kinds.items())))
    served = [r for r in hostile if str(r["status"]).startswith("2")]
    if served:
        failed.append("%d hostile requests were answered 2xx" % len(served))
    if not any(r["kind"] == "oversized" and r["status"] == "431" and not in_window(r) for r in hostile):
        failed.append("no oversized head got its 431")

    lifetimes = {}
    with open(os.path.join(d, "samples")) as f:
        for line in f:
            t, pid, rss, fds = (int(x) for x in line.split())
            lifetimes.setdefault(pid, []).append((t, rss, fds))
    agents = len(windows) + 1
    print("soak: RSS and fd samples from %d of %d agents" % (len(lifetimes), agents))
    if len(lifetimes) != agents:
        failed.append("samples from %d agents, want %d: the sampler stopped" % (len(lifetimes), agents))
    for pid, s in lifetimes.items():
        start = s[0][0]
        warm = [x for x in s if x[0] - start >= warmup_s * 1000]
        if len(warm) < 6:
            print("soak: agent pid %d: %d samples after warm-up, too few to judge" % (pid, len(warm)))
            continue
        head, tail = warm[:3], warm[-3:]
        rss0, rss1 = statistics.median(x[1] for x in head), statistics.median(x[1] for x in tail)
        fd0, fd1 = statistics.median(x[2] for x in head), statistics.median(x[2] for x in tail)
        print("soak: agent pid %d: %.0f s after warm-up: RSS %.1f -> %.1f MiB, fds %d -> %d"
              % (pid, (warm[-1][0] - warm[0][0]) / 1000, rss0 / 1024, rss1 / 1024, fd0, fd1))
        if not sanitized and rss1 - rss0 > RSS_GROWTH_MAX_KB:
            failed.append("agent pid %d: RSS grew %.1f MiB after warm-up (bound %d MiB)"
                          % (pid, (rss1 - rss0) / 1024, RSS_GROWTH_MAX_KB // 1024))
        if fd1 - fd0 > FD_GROWTH_MAX:
            failed.append("agent pid %d: open fds grew by %d after warm-up (bound %d)" % (pid, fd1 - fd0, FD_GROWTH_MAX))
    if sanitized:
        print("soak: ASan build: the RSS bound is not applied (the quarantine grows by design); fds are")

    for f in failed:
        print("soak: FAIL: " + f)
    print("soak: %s" % ("FAILED" if failed else "PASSED"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
