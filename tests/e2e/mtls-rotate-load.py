#!/usr/bin/env python3
# mtls-rotate-load.py: the steady load of tests/e2e/mtls-rotate.sh. For
# --duration seconds, one thread per --target sends GET requests and
# counts every answer; each target is KIND=HOST:PORT:
#   keepalive  one HTTP/1.1 connection kept open (a new one only after a failure);
#   fresh      a new TCP connection per request (Connection: close).
# A request counts as ok only if the status is 200 and x-backend is
# --backend; anything else (another status, a reset, a timeout, a closed
# connection) is a failure, never retried here. Prints one JSON object:
#   {"start": unix s, "end": unix s, "kinds": {NAME: {"ok": n, "failed": n}},
#    "seconds": [[unix s, ok, failed], ...], "failures": [[unix s, NAME, why], ...]}
import argparse
import http.client
import json
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--target", action="append", required=True, help="NAME:KIND:HOST:PORT")
    ap.add_argument("--backend", required=True)
    ap.add_argument("--pause", type=float, default=0.01, help="seconds between requests")
    ap.add_argument("--timeout", type=float, default=5)
    a = ap.parse_args()

    lock = threading.Lock()
    kinds, seconds, failures = {}, {}, []
    start = time.time()
    stop_at = time.monotonic() + a.duration

    def record(name, ok, why=""):
        now = time.time()
        with lock:
            k = kinds.setdefault(name, {"ok": 0, "failed": 0})
            s = seconds.setdefault(int(now), [0, 0])
            if ok:
                k["ok"] += 1
                s[0] += 1
            else:
                k["failed"] += 1
                s[1] += 1
                if len(failures) < 50:
                    failures.append([round(now, 3), name, why])

    def run(name, kind, host, port):
        conn = None
        while time.monotonic() < stop_at:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=a.timeout)
                hdr = {"Connection": "close"} if kind == "fresh" else {}
                conn.request("GET", "/rotate?kind=" + name, headers=hdr)
                r = conn.getresponse()
                r.read()
                backend = r.getheader("x-backend", "")
                if r.status == 200 and backend == a.backend:
                    record(name, True)
                else:
                    record(name, False, "status %d, x-backend %r" % (r.status, backend))
                if kind == "fresh" or r.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # a reset, a timeout, a closed connection
                record(name, False, "%s: %s" % (type(e).__name__, e))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(a.pause)
        if conn is not None:
            conn.close()

    threads = []
    for t in a.target:
        name, kind, host, port = t.split(":")
        if kind not in ("keepalive", "fresh"):
            raise SystemExit("unknown kind " + kind)
        th = threading.Thread(target=run, args=(name, kind, host, int(port)), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    print(json.dumps({"start": start, "end": time.time(), "kinds": kinds,
                      "seconds": sorted([s] + v for s, v in seconds.items()),
                      "failures": failures}), flush=True)


if __name__ == "__main__":
    main()
