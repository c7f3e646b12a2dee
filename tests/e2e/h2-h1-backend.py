#!/usr/bin/env python3
"""An HTTP/1.1-only server for tests/e2e/h2-h1.sh: keep-alive, framing
written by hand (so that hostile responses are exactly what they say),
and counters of connections, requests and bytes of the large response
sent, read at GET /_stats over the pod's loopback.

    h2-h1-backend.py NAME PORT

Paths: /hello (Content-Length), /echo (POST: the body's length and
sha256, the chunked request's trailers), /big?n=BYTES (chunked), /trail
(chunked with trailers), /hints (103 then 200), /smuggle (both
Content-Length and Transfer-Encoding), /badchunk (a bad first chunk size), /badchunk-late (a bad one after
data), /flaky (a connection's second request is
closed unanswered, as an idle close that crosses it), /hang and /hang-idle (no answer; hang_closed counts the
close that ends it), /only-a2 (POST: a3 answers 503, counted in unavailable, a2 the body's
length and sha256).
Anything else is a 404. It never speaks HTTP/2: a preface is a 400.
"""
import hashlib
import json
import socket
import socketserver
import sys
import threading

NAME, PORT = sys.argv[1], int(sys.argv[2])
LOCK = threading.Lock()
STATS = {"conns": 0, "requests": 0, "big_sent": 0, "h2_preface": 0, "hang_closed": 0,
         "flaky_dropped": 0, "unavailable": 0, "last_head": ""}


def bump(key, n=1):
    with LOCK:
        STATS[key] += n


class Conn(socketserver.BaseRequestHandler):
    def setup(self):
        self.buf = b""
        self.counted = False  # a connection counts once it carries a request not to /_stats
        self.flaky = 0  # /flaky requests on this connection

    def fill(self):
        d = self.request.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def send(self, data):
        self.request.sendall(data)

    def handle(self):
        try:
            while self.one():
                pass
        except (EOFError, ConnectionError, BrokenPipeError):
            pass

    def one(self):
        start = self.line()
        if start.startswith(b"PRI * HTTP/2"):
            bump("h2_preface")
            self.send(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            return False
        method, target, version = start.decode().split(" ")
        headers = []
        while True:
            ln = self.line()
            if not ln:
                break
            k, v = ln.decode().split(":", 1)
            headers.append((k.strip().lower(), v.strip()))
        h = dict(headers)
        if not target.startswith("/_stats"):
            with LOCK:
                STATS["requests"] += 1
                STATS["conns"] += 0 if self.counted else 1
                STATS["last_head"] = start.decode() + "\n" + "\n".join(f"{k}: {v}" for k, v in headers)
            self.counted = True
        body, trailers = b"", []
        if h.get("transfer-encoding") == "chunked":
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    break
                body += self.take(size)
                self.take(2)
            while True:
                ln = self.line()
                if not ln:
                    break
                k, v = ln.decode().split(":", 1)
                trailers.append(f"{k.strip().lower()}={v.strip()}")
        elif "content-length" in h:
            body = self.take(int(h["content-length"]))
        path, _, query = target.partition("?")
        close = h.get("connection", "").lower() == "close"
        common = f"x-backend: {NAME}\r\n"
        if path == "/_stats":
            with LOCK:
                out = json.dumps(STATS).encode()
            self.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                      b"content-length: %d\r\n\r\n%s" % (len(out), out))
        elif path == "/hello":
            out = f"hello from {NAME}\n".encode()
            self.send(f"HTTP/1.1 200 OK\r\n{common}Connection: keep-alive\r\nKeep-Alive: timeout=60\r\n"
                      f"Content-Length: {len(out)}\r\n\r\n".encode() + (b"" if method == "HEAD" else out))
        elif path == "/echo":
            out = (f"{len(body)} {hashlib.sha256(body).hexdigest()}\n").encode()
            self.send(f"HTTP/1.1 200 OK\r\n{common}x-request-framing: "
                      f"{'chunked' if h.get('transfer-encoding') == 'chunked' else 'length'}\r\n"
                      f"x-got-trailers: {','.join(trailers) or 'none'}\r\n"
                      f"Content-Length: {len(out)}\r\n\r\n".encode() + out)
        elif path == "/big":
            n = int(query.split("=")[1])
            self.send(f"HTTP/1.1 200 OK\r\n{common}Transfer-Encoding: chunked\r\n\r\n".encode())
            block = bytes(range(256)) * 256  # 64 KiB
            left = n
            while left:
                k = min(left, len(block))
                self.send(b"%x\r\n%s\r\n" % (k, block[:k]))
                left -= k
                bump("big_sent", k)
            self.send(b"0\r\n\r\n")
        elif path == "/trail":
            self.send(f"HTTP/1.1 200 OK\r\n{common}Trailer: x-checksum\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc123\r\nx-count: 2\r\n\r\n".encode())
        elif path == "/hints":
            self.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                      + f"HTTP/1.1 200 OK\r\n{common}Content-Length: 3\r\n\r\nok\n".encode())
        elif path == "/smuggle":
            # Which framing is meant? A proxy that picks one can be made to see two responses.
            self.send(f"HTTP/1.1 200 OK\r\n{common}Content-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "0\r\n\r\nHTTP/1.1 200 OK\r\nX: y\r\n\r\n".encode())
            return False
        elif path == "/flaky":
            # A keep-alive server whose idle close crosses the next request.
            self.flaky += 1
            if self.flaky > 1:
                bump("flaky_dropped")
                return False
            self.send(f"HTTP/1.1 200 OK\r\n{common}Content-Length: 3\r\n\r\nok\n".encode())
        elif path in ("/hang", "/hang-idle"):
            # Never answers; counts the proxy closing the connection on it.
            try:
                while self.request.recv(65536):
                    pass
            except ConnectionError:
                pass
            bump("hang_closed")
            return False
        elif path == "/only-a2":
            # A failing endpoint (a3) for the retry of an HTTP/2 stream to the other one.
            if NAME != "a2":
                bump("unavailable")
                self.send(f"HTTP/1.1 503 Service Unavailable\r\n{common}Content-Length: 0\r\n\r\n".encode())
            else:
                out = (f"{len(body)} {hashlib.sha256(body).hexdigest()} from {NAME}\n").encode()
                self.send(f"HTTP/1.1 200 OK\r\n{common}Content-Length: {len(out)}\r\n\r\n".encode() + out)
        elif path == "/badchunk":
            self.send(f"HTTP/1.1 200 OK\r\n{common}Transfer-Encoding: chunked\r\n\r\n"
                      "zz\r\nhello\r\n0\r\n\r\n".encode())
            return False
        elif path == "/badchunk-late":
            self.send(f"HTTP/1.1 200 OK\r\n{common}Transfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\nzz\r\n0\r\n\r\n".encode())
            return False
        else:
            self.send(f"HTTP/1.1 404 Not Found\r\n{common}Content-Length: 0\r\n\r\n".encode())
        return not close


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = socket.AF_INET


Server(("0.0.0.0", PORT), Conn).serve_forever()
