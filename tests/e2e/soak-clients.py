#!/usr/bin/env python3
# soak-clients.py: the clients of the soak (tests/e2e/soak.sh). Each mode
# runs until SECONDS have passed, or STOP_FILE exists, and writes one JSON
# record per line to OUT, with times in unix milliseconds so that the
# report can tell which records overlap an agent restart.
#
#   soak-clients.py http    OUT SECONDS STOP_FILE HOST PORT [--rate R] [--conns N]
#       keep-alive HTTP/1.1, three GETs to one POST (1 KiB body), paced at
#       R requests/s over N connections, each connection closed after
#       REQUESTS_PER_CONN requests as real clients' pools recycle them (a
#       connection opened while the agent restarts fails open to the
#       direct path and would otherwise stay there). Record: {"t0", "t1", "m", "s"
#       (status, -1 on error), "e" (error text), "b" (x-backend)}.
#   soak-clients.py tcp     OUT SECONDS STOP_FILE HOST PORT
#       opaque TCP to an echo server (tests/tools/shoal-peer serve):
#       streams of 1..4 MiB of random bytes in random writes, each echoed
#       back and compared. Record: {"t0", "t1", "bytes", "ok", "e"}.
#   soak-clients.py hostile OUT SECONDS STOP_FILE HOST PORT
#       slowloris connections (a byte a second, never a whole head) and
#       oversized heads (48 KiB of headers) once a second. Record per
#       finished attempt: {"t0", "t1", "kind", "status" (first status line
#       code, or "closed"/"error")}.
#   soak-clients.py flap    OUT SECONDS STOP_FILE HOST PORT
#       every 3 s, toggles a shoal-backend's listener (POST /_ctl/mode
#       refuse=1, then refuse=0) over one kept connection, the only way
#       to re-bind it; ends with the listener up. Record: {"t", "refuse"}.
import http.client
import json
import os
import random
import select
import socket
import sys
import threading
import time


REQUESTS_PER_CONN = 30


def now_ms():
    return int(time.time() * 1000)


class Run:
    def __init__(self, out, seconds, stop_file):
        self.f = open(out, "w", buffering=1)
        self.lock = threading.Lock()
        self.end = time.monotonic() + seconds
        self.stop_file = stop_file

    def going(self):
        return time.monotonic() < self.end and not os.path.exists(self.stop_file)

    def record(self, **kv):
        with self.lock:
            self.f.write(json.dumps(kv, sort_keys=True) + "\n")


def http_mode(run, host, port, rate, conns):
    interval = conns / rate
    body = b"p" * 1024

    def one(k):
        conn = None
        i = 0
        due = time.monotonic() + random.random() * interval
        while run.going():
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            due += interval
            i += 1
            method = "POST" if i % 4 == 0 else "GET"
            t0 = now_ms()
            status, err, backend = -1, "", ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=10)
                conn.request(method, "/soak?c=%d&i=%d" % (k, i),
                             body=body if method == "POST" else None,
                             headers={"Content-Type": "text/plain"})
                r = conn.getresponse()
                r.read()
                status = r.status
                backend = r.getheader("x-backend", "")
                if (r.getheader("connection", "") or "").lower() == "close" or i % REQUESTS_PER_CONN == 0:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                err = type(e).__name__ + ": " + str(e)[:80]
                if conn:
                    conn.close()
                conn = None
            run.record(t0=t0, t1=now_ms(), m=method, s=status, e=err, b=backend)
        if conn:
            conn.close()

    th = [threading.Thread(target=one, args=(k,)) for k in range(conns)]
    for t in th:
        t.start()
    for t in th:
        t.join()


def tcp_mode(run, host, port):
    rnd = random.Random(7)
    while run.going():
        size = rnd.randint(1 << 20, 4 << 20)
        data = rnd.randbytes(size)
        t0 = now_ms()
        ok, err = False, ""
        try:
            s = socket.create_connection((host, port), timeout=10)
            banner = b""
            while not banner.endswith(b"\n"):
                c = s.recv(1)
                if not c:
                    raise OSError("closed before the banner")
                banner += c
            got = bytearray()
            sent = 0
            s.setblocking(False)
            deadline = time.monotonic() + 30
            while len(got) < size:
                if time.monotonic() > deadline:
                    raise OSError("stalled: %d of %d bytes back" % (len(got), size))
                want_w = [s] if sent < size else []
                r, w, _ = select.select([s], want_w, [], 1)
                if w:
                    n = s.send(data[sent:sent + rnd.randint(1, 256 * 1024)])
                    sent += n
                    if sent == size:
                        s.shutdown(socket.SHUT_WR)
                if r:
                    c = s.recv(256 * 1024)
                    if not c:
                        raise OSError("EOF after %d of %d bytes back" % (len(got), size))
                    got += c
            ok = bytes(got) == data
            if not ok:
                err = "echo differs"
            s.close()
        except OSError as e:
            err = type(e).__name__ + ": " + str(e)[:80]
        run.record(t0=t0, t1=now_ms(), bytes=size, ok=ok, e=err)


def status_of(s, timeout):
    """First status code the server sends, 'closed' on EOF or reset, 'silent'."""
    s.settimeout(timeout)
    try:
        data = s.recv(4096)
    except socket.timeout:
        return "silent"
    except OSError:
        return "closed"
    if not data:
        return "closed"
    parts = data.split(b"\r\n")[0].split(b" ")
    return parts[1].decode() if len(parts) > 1 else "garbage"


def hostile_mode(run, host, port):
    def slowloris():
        while run.going():
            t0 = now_ms()
            status = "error"
            try:
                s = socket.create_connection((host, port), timeout=10)
                head = b"GET /slow HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"a" * 4096
                for b in head:
                    if not run.going():
                        break
                    if select.select([s], [], [], 1.0)[0]:
                        break
                    s.sendall(bytes([b]))
                status = status_of(s, 2)
                s.close()
            except OSError:
                status = "closed"
            run.record(t0=t0, t1=now_ms(), kind="slowloris", status=status)

    def oversized():
        while run.going():
            t0 = now_ms()
            status = "error"
            try:
                s = socket.create_connection((host, port), timeout=10)
                head = b"GET /big HTTP/1.1\r\nHost: soak\r\n"
                head += b"".join(b"X-Big-%d: %s\r\n" % (i, b"b" * 900) for i in range(50))
                try:
                    s.sendall(head + b"\r\n")
                except OSError:
                    pass
                status = status_of(s, 5)
                s.close()
            except OSError:
                status = "closed"
            run.record(t0=t0, t1=now_ms(), kind="oversized", status=status)
            time.sleep(1)

    th = [threading.Thread(target=slowloris) for _ in range(8)]
    th.append(threading.Thread(target=oversized))
    for t in th:
        t.start()
    for t in th:
        t.join()


def flap_mode(run, host, port):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    refuse = 0
    while run.going():
        time.sleep(3)
        refuse = 1 - refuse
        conn.request("POST", "/_ctl/mode", body="refuse=%d" % refuse,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        conn.getresponse().read()
        run.record(t=now_ms(), refuse=refuse)
    if refuse:
        conn.request("POST", "/_ctl/mode", body="refuse=0",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        conn.getresponse().read()
        run.record(t=now_ms(), refuse=0)


def main():
    mode, out, seconds, stop_file, host, port = sys.argv[1:7]
    rest = sys.argv[7:]
    run = Run(out, float(seconds), stop_file)
    if mode == "http":
        opts = dict(zip(rest[::2], rest[1::2]))
        http_mode(run, host, int(port), float(opts.get("--rate", 60)), int(opts.get("--conns", 6)))
    elif mode == "tcp":
        tcp_mode(run, host, int(port))
    elif mode == "flap":
        flap_mode(run, host, int(port))
    elif mode == "hostile":
        hostile_mode(run, host, int(port))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
