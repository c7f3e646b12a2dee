#!/usr/bin/env python3
"""gRPC and raw HTTP/2 parts for tests/e2e/h2-retry.sh (python3-grpcio).

server NAME PORTS: a gRPC server on each of PORTS (comma-separated):
  /shoal.Echo/Echo answers NAME; /shoal.Echo/Work sleeps 50 ms, then
  answers NAME; /shoal.Echo/Slow waits for the client to go (up to 5 s)
  and prints "cancelled after MS" when the stream was reset;
  /shoal.Echo/Later (server streaming) sends its initial metadata at
  once, then 3 messages NAME after 300 ms.
aged NAME PORTS MS: the same, each connection drained by a GOAWAY after
  MS (grpc.max_connection_age_ms).
sleepy NAME PORTS: the same, but Echo is as slow as Slow.
unavailable PORTS: a gRPC server that answers every call UNAVAILABLE
  (printing "unavailable" for each): a flaky endpoint.
headfail PORTS: a gRPC server that sends every call's initial metadata
  (a HEADERS frame), then fails it UNAVAILABLE in the trailers: no
  trailers-only answer (printing "headfail" for each).
raw refuse|goaway|http503 PORT: a bare HTTP/2 server. refuse: every
  request stream gets RST_STREAM REFUSED_STREAM ("refused ID"). goaway:
  the first request of each connection gets a GOAWAY with last-stream-id
  0 ("goaway"), and the connection is closed a little later. http503:
  every request gets :status 503, content-type text/html and an HTML
  body, no grpc-status, as an overloaded web server or an ingress in
  front of a gRPC server answers ("http503 ID").
calls TARGET METHOD N: N unary calls on ONE channel (one connection), 16
  in flight at a time; prints "NAME COUNT" per endpoint that answered and
  "fail CODE COUNT" per failure code.
deadline TARGET N MS: N calls of Slow in turn with a client deadline of
  MS; prints "CODE TOOK_MS DETAILS" per call.
one TARGET N MS: N Echo calls in turn with a client deadline of MS;
  prints "CODE TOOK_MS DETAILS" per call.
later TARGET N: N calls of Later in turn; prints "HEAD_MS MESSAGES CODE"
  per call (HEAD_MS: when its initial metadata came).
load TARGET SECONDS: Work calls on ONE channel, 16 in flight all the
  time, for SECONDS; prints "START_WALL_S NAME" per call, or
  "START_WALL_S fail CODE".
"""
import socket
import sys
import threading
import time
from concurrent import futures

import grpc

CONCURRENCY = 16
# Handlers run on many threads: one line per write, or two threads' words
# and newlines interleave and a count of lines comes out short.
OUT_LOCK = threading.Lock()


def say(*words):
    with OUT_LOCK:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def serve(srv, ports):
    for port in ports.split(","):
        srv.add_insecure_port("0.0.0.0:%s" % port)
    srv.start()
    print("serving", ports, flush=True)
    srv.wait_for_termination()


def server(name, ports, age_ms=0, sleepy=False):
    def echo(req, ctx):
        if sleepy:
            return slow(req, ctx)
        return name.encode()

    def work(req, ctx):
        time.sleep(0.05)
        return name.encode()

    def slow(req, ctx):
        t0 = time.monotonic()
        while ctx.is_active() and time.monotonic() - t0 < 5:
            time.sleep(0.002)
        if not ctx.is_active():
            say("cancelled after %d" % ((time.monotonic() - t0) * 1000))
        return b"late"

    def later(req, ctx):
        ctx.send_initial_metadata((("x-later", name),))
        time.sleep(0.3)
        for _ in range(3):
            yield name.encode()

    handlers = {
        "Later": grpc.unary_stream_rpc_method_handler(later),
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Work": grpc.unary_unary_rpc_method_handler(work),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    opts = []
    if age_ms:
        # Each connection is drained with a GOAWAY after age_ms: a server's
        # routine (max_connection_age), whose refused streams are retried.
        opts = [("grpc.max_connection_age_ms", age_ms), ("grpc.max_connection_age_grace_ms", 5000)]
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=opts)
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shoal.Echo", handlers),))
    serve(srv, ports)


class Unavailable(grpc.GenericRpcHandler):
    def service(self, details):
        def fail(req, ctx):
            say("unavailable")
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "flaky endpoint")

        return grpc.unary_unary_rpc_method_handler(fail)


def unavailable(ports):
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    srv.add_generic_rpc_handlers((Unavailable(),))
    serve(srv, ports)


class HeadFail(grpc.GenericRpcHandler):
    def service(self, details):
        def fail(req, ctx):
            say("headfail")
            # The head goes out on its own, so the trailers cannot be trailers-only.
            ctx.send_initial_metadata((("x-head", "sent"),))
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "head, then unavailable")

        return grpc.unary_unary_rpc_method_handler(fail)


def headfail(ports):
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    srv.add_generic_rpc_handlers((HeadFail(),))
    serve(srv, ports)


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


# HPACK, literal fields without indexing by static-table name (RFC 7541
# 6.2.2): :status (8) 503, content-type (31) text/html.
HEAD_503 = b"\x08\x03503" + b"\x0f\x10\x09text/html"
BODY_503 = b"<html><body><h1>503 Service Unavailable</h1></body></html>\n"


def raw_conn(conn, mode):
    def readn(n):
        buf = b""
        while len(buf) < n:
            got = conn.recv(n - len(buf))
            if not got:
                raise EOFError
            buf += got
        return buf

    try:
        readn(24)  # the client preface
        conn.sendall(frame(4, 0, 0))  # SETTINGS, empty
        while True:
            hd = readn(9)
            length, ftype, flags = int.from_bytes(hd[:3], "big"), hd[3], hd[4]
            sid = int.from_bytes(hd[5:9], "big") & 0x7FFFFFFF
            readn(length)
            if ftype == 4 and not flags & 1:
                conn.sendall(frame(4, 1, 0))  # SETTINGS ACK
            elif ftype == 1 and mode == "refuse":
                conn.sendall(frame(3, 0, sid, (7).to_bytes(4, "big")))  # REFUSED_STREAM
                say("refused", sid)
            elif ftype == 1 and mode == "http503":
                conn.sendall(frame(1, 4, sid, HEAD_503) + frame(0, 1, sid, BODY_503))
                say("http503", sid)
            elif ftype == 1 and mode == "goaway":
                # last-stream-id 0: none of this connection's streams was processed.
                conn.sendall(frame(7, 0, 0, (0).to_bytes(4, "big") + (0).to_bytes(4, "big")))
                say("goaway", sid)
                time.sleep(0.2)
                break
    except (EOFError, OSError):
        pass
    conn.close()


def raw(mode, port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(port)))
    ls.listen(64)
    print("raw", mode, port, flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=raw_conn, args=(conn, mode), daemon=True).start()


def channel(target):
    # One subchannel, so one TCP connection: the proxy balances per call.
    ch = grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "pick_first")])
    grpc.channel_ready_future(ch).result(timeout=5)
    return ch


def calls(target, method, n):
    call = channel(target).unary_unary(method)
    counts = {}
    done = 0
    while done < n:
        wave = [call.future(b"hi", timeout=5) for _ in range(min(CONCURRENCY, n - done))]
        for f in wave:
            try:
                who = f.result().decode()
            except grpc.RpcError as e:
                who = "fail " + e.code().name
                print("failed:", e.code().name, e.details(), file=sys.stderr)
            counts[who] = counts.get(who, 0) + 1
        done += len(wave)
    for who in sorted(counts):
        print(who, counts[who])


def deadline(target, n, ms, method="/shoal.Echo/Slow"):
    call = channel(target).unary_unary(method)
    for _ in range(n):
        t0 = time.monotonic()
        try:
            call(b"x", timeout=ms / 1000.0)
            print("OK", int((time.monotonic() - t0) * 1000), "-")
        except grpc.RpcError as e:
            print(e.code().name, int((time.monotonic() - t0) * 1000), e.details(), flush=True)


def later(target, n):
    call = channel(target).unary_stream("/shoal.Echo/Later")
    for _ in range(n):
        t0 = time.monotonic()
        it = call(b"l", timeout=5)
        try:
            it.initial_metadata()
            head_ms = int((time.monotonic() - t0) * 1000)
            msgs = sum(1 for _ in it)
            print(head_ms, msgs, it.code().name, flush=True)
        except grpc.RpcError as e:
            print(-1, 0, e.code().name, flush=True)


def load(target, seconds):
    call = channel(target).unary_unary("/shoal.Echo/Work")
    end = time.monotonic() + seconds
    lock = threading.Lock()
    out = []

    def one():
        while time.monotonic() < end:
            t = time.time()
            try:
                who = call(b"w", timeout=5).decode()
            except grpc.RpcError as e:
                who = "fail " + e.code().name
            with lock:
                out.append("%.3f %s" % (t, who))

    threads = [threading.Thread(target=one) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("\n".join(out))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        server(sys.argv[2], sys.argv[3])
    elif mode == "sleepy":
        server(sys.argv[2], sys.argv[3], sleepy=True)
    elif mode == "aged":
        server(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif mode == "unavailable":
        unavailable(sys.argv[2])
    elif mode == "headfail":
        headfail(sys.argv[2])
    elif mode == "raw":
        raw(sys.argv[2], sys.argv[3])
    elif mode == "calls":
        calls(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif mode == "deadline":
        deadline(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "one":
        deadline(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), "/shoal.Echo/Echo")
    elif mode == "later":
        later(sys.argv[2], int(sys.argv[3]))
    elif mode == "load":
        load(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit("unknown mode " + mode)
