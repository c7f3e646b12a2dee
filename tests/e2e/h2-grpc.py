#!/usr/bin/env python3
"""gRPC server and client for tests/e2e/h2.sh (python3-grpcio, no stubs).

server NAME PORT: serves /shoal.Echo/Echo (answers NAME) and
  /shoal.Echo/Slow (waits for the client to go, up to 5 s, and prints
  "cancelled after MS" when the stream was reset).
balance TARGET N: N unary Echo calls on ONE channel (one connection), 24
  in flight at a time; prints "NAME COUNT" lines.
hang PORT: an HTTP/2 endpoint that never answers and knows nothing of
  grpc-timeout (a gRPC server would enforce the deadline itself): it
  sends its SETTINGS, acknowledges the proxy's, then only reads frames,
  printing "rst stream ID" for each RST_STREAM.
"""
import socket
import sys
import threading
import time
from concurrent import futures

import grpc


def server(name, port):
    def echo(req, ctx):
        return name.encode()

    def slow(req, ctx):
        t0 = time.monotonic()
        while ctx.is_active() and time.monotonic() - t0 < 5:
            time.sleep(0.005)
        if not ctx.is_active():
            print("cancelled after %d" % ((time.monotonic() - t0) * 1000), flush=True)
        return b"late"

    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "SlowCapped": grpc.unary_unary_rpc_method_handler(slow),
    }
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shoal.Echo", handlers),))
    srv.add_insecure_port("0.0.0.0:%s" % port)
    srv.start()
    print("serving", name, port, flush=True)
    srv.wait_for_termination()


CONCURRENCY = 24


def balance(target, n):
    # One subchannel, so one TCP connection: the proxy must balance per call.
    ch = grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "pick_first")])
    call = ch.unary_unary("/shoal.Echo/Echo")
    counts = {}
    # CONCURRENCY calls in flight at a time, as a gRPC client multiplexes
    # them: the balancer sees each endpoint's load (PeakEWMA's pending).
    done = 0
    while done < n:
        wave = [call.future(b"hi", timeout=5) for _ in range(min(CONCURRENCY, n - done))]
        for f in wave:
            who = f.result().decode()
            counts[who] = counts.get(who, 0) + 1
        done += len(wave)
    for who in sorted(counts):
        print(who, counts[who])


def hang_conn(conn):
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
        conn.sendall(b"\0\0\0\x04\0\0\0\0\0")  # SETTINGS, empty
        while True:
            hd = readn(9)
            length, ftype, flags = int.from_bytes(hd[:3], "big"), hd[3], hd[4]
            sid = int.from_bytes(hd[5:9], "big") & 0x7FFFFFFF
            readn(length)
            if ftype == 4 and not flags & 1:
                conn.sendall(b"\0\0\0\x04\x01\0\0\0\0")  # SETTINGS ACK
            elif ftype == 3:
                print("rst stream", sid, flush=True)
    except (EOFError, OSError):
        pass
    conn.close()


def hang(port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(port)))
    ls.listen(16)
    print("hanging", port, flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=hang_conn, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        server(sys.argv[2], sys.argv[3])
    elif mode == "balance":
        balance(sys.argv[2], int(sys.argv[3]))
    elif mode == "hang":
        hang(sys.argv[2])
    else:
        sys.exit("unknown mode " + mode)
