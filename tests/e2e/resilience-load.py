#!/usr/bin/env python3
# resilience-load.py: a small HTTP/1.1 load driver for the resilience e2e
# tests. Sends COUNT requests over CONCURRENCY keep-alive connections and
# prints one JSON object: requests sent, statuses, the x-backend of each
# answer, connection errors, and latency percentiles in ms.
#
#   resilience-load.py URL COUNT [--concurrency N] [--method M]
#                      [--body-bytes N] [--header 'K: V']... [--rate R]
#                      [--timeline]
#
# --rate R paces the whole run at about R requests/s (0: as fast as the
# answers come). A connection that fails is replaced, and the request
# counted under "errors" (not retried here: the proxy's retries are what
# the tests measure). --timeline adds "start_unix_ms" and "timeline", a
# list of [ms since start when the answer came, x-backend], in order.
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("count", type=int)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--method", default="GET")
    ap.add_argument("--body-bytes", type=int, default=0)
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--timeline", action="store_true")
    a = ap.parse_args()

    u = urllib.parse.urlsplit(a.url)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    headers = {}
    for h in a.header:
        k, v = h.split(":", 1)
        headers[k.strip()] = v.strip()
    body = b"x" * a.body_bytes if a.body_bytes else None

    lock = threading.Lock()
    next_i = [0]
    statuses, backends, lat = {}, {}, []
    errors = [0]
    timeline = []
    start_unix_ms = int(time.time() * 1000)
    t0 = time.monotonic()

    def take():
        with lock:
            i = next_i[0]
            if i >= a.count:
                return None
            next_i[0] += 1
            return i

    def worker():
        conn = None
        while True:
            i = take()
            if i is None:
                break
            if a.rate > 0:
                due = t0 + i / a.rate
                d = due - time.monotonic()
                if d > 0:
                    time.sleep(d)
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=a.timeout)
            start = time.monotonic()
            try:
                conn.request(a.method, path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                ms = (time.monotonic() - start) * 1000
                be = r.getheader("x-backend", "-")
                with lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    backends[be] = backends.get(be, 0) + 1
                    lat.append(ms)
                    timeline.append([round((time.monotonic() - t0) * 1000, 1), be])
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = None
        if conn:
            conn.close()

    th = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

    out = {
        "requests": a.count,
        "seconds": round(time.monotonic() - t0, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "backends": backends,
        "errors": errors[0],
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    }
    if a.timeline:
        out["start_unix_ms"] = start_unix_ms
        out["timeline"] = sorted(timeline)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
