#!/usr/bin/env python3
"""gRPC server and client for tests/e2e/h2.sh (python3-grpcio, no stubs).

server NAME PORT: serves /shoal.Echo/Echo (answers NAME) and
  /shoal.Echo/Slow (waits for the client to go, up to 5 s, and prints
  "cancelled after MS" when the stream was reset).
balance TARGET N: N unary Echo calls on ONE channel (one connection), 24
  in flight at a time; prints "NAME COUNT" lines.
ident TARGET: one /shoal.Echo/Ident call that claims a forged
  x-shoal-peer-identity; prints the values of that field the server got,
  comma-separated (the proxy's own only, once).
steady TARGET SECONDS: unary Echo calls one at a time on ONE channel for
  SECONDS; prints "ok N failed M".
hang PORT: an HTTP/2 endpoint that never answers and knows nothing of
  grpc-timeout (a gRPC server would enforce the deadline itself): it
  sends its SETTINGS, acknowledges the proxy's, then only reads frames,
  printing "rst stream ID" for each RST_STREAM.
stall HOST PORT SECONDS: a raw HTTP/2 client that calls /shoal.Echo/Stream
  with a 64 KiB window and reads nothing for SECONDS, then closes.
flood HOST PORT rapid-reset|continuation|hpack-bomb|settings: hostile
  input on a raw socket: 2000 streams each opened and reset at once; one
  header block followed by 1000 CONTINUATION frames; an HPACK bomb (8 MB
  of header list from 6 KB); 200000 SETTINGS frames. Prints "goaway CODE"
  when the peer sent a GOAWAY, else "rst STREAM" for the first
  RST_STREAM, "closed" or "no goaway".
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

    def stream(req, ctx):
        # 320 messages of 64 KiB (20 MiB); each line says how far it got.
        chunk = b"x" * 65536
        for i in range(320):
            yield chunk
            print("streamed %d" % (i + 1), flush=True)

    def ident(req, ctx):
        got = [v for k, v in ctx.invocation_metadata() if k == "x-shoal-peer-identity"]
        return ",".join(got).encode()

    handlers = {
        "Ident": grpc.unary_unary_rpc_method_handler(ident),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
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


def ident(target):
    ch = grpc.insecure_channel(target)
    forged = (("x-shoal-peer-identity", "spiffe://evil/ns/kube-system/sa/admin"),)
    print(ch.unary_unary("/shoal.Echo/Ident")(b"who", timeout=5, metadata=forged).decode())


def steady(target, seconds):
    # One channel (one connection), one call at a time for SECONDS: a
    # long-lived HTTP/2 session, as a gRPC client keeps one.
    ch = grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "pick_first")])
    call = ch.unary_unary("/shoal.Echo/Echo")
    ok = failed = 0
    stop = time.monotonic() + float(seconds)
    while time.monotonic() < stop:
        try:
            call(b"hi", timeout=5)
            ok += 1
        except grpc.RpcError:
            failed += 1
        time.sleep(0.01)
    print("ok %d failed %d" % (ok, failed))


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


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


# HPACK, static table only: :method GET, :scheme http, :path /.
HEAD_BLOCK = b"\x82\x86\x84"


def flood(host, port, kind):
    s = socket.create_connection((host, int(port)), timeout=5)
    out = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", frame(4, 0, 0)]
    if kind == "rapid-reset":
        for i in range(2000):
            sid = 2 * i + 1
            out.append(frame(1, 0x4 | 0x1, sid, HEAD_BLOCK))  # HEADERS, END_HEADERS|END_STREAM
            out.append(frame(3, 0, sid, (8).to_bytes(4, "big")))  # RST_STREAM CANCEL
    elif kind == "continuation":
        out.append(frame(1, 0x1, 1, HEAD_BLOCK))  # HEADERS, END_STREAM, no END_HEADERS
        for _ in range(1000):
            out.append(frame(9, 0, 1, b""))  # CONTINUATION, empty
    elif kind == "hpack-bomb":
        # One 4000-byte field into the dynamic table, then 2000 one-byte
        # references to it: 8 MB of header list from a 6 KB frame.
        value = b"a" * 4000
        block = HEAD_BLOCK + b"\x40\x06x-bomb\x7f\xa1\x1e" + value + b"\xbe" * 2000
        out.append(frame(1, 0x4 | 0x1, 1, block))
    elif kind == "settings":
        # SETTINGS frames whose acks the client never reads.
        for _ in range(200000):
            out.append(frame(4, 0, 0))
    else:
        sys.exit("unknown flood " + kind)
    try:
        s.sendall(b"".join(out))
    except OSError:
        pass  # the peer may close before taking it all
    # A flood the peer stopped reading: whatever it sent before closing.
    buf = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            got = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            got = b""
        if not got:
            break
        buf += got
    goaway = rst = None
    off = 0
    while off + 9 <= len(buf):
        n, ftype = int.from_bytes(buf[off:off + 3], "big"), buf[off + 3]
        if ftype == 7 and off + 9 + 8 <= len(buf):
            goaway = int.from_bytes(buf[off + 13:off + 17], "big")
        if ftype == 3 and rst is None:
            rst = int.from_bytes(buf[off + 5:off + 9], "big") & 0x7FFFFFFF
        off += 9 + n
    if goaway is not None:
        print("goaway %d" % goaway)
    elif rst is not None:
        print("rst %d" % rst)
    else:
        print("closed" if not buf else "no goaway")


def hpack_literal(name, value):
    # Literal header field without indexing, new name, no Huffman.
    return b"\0" + bytes([len(name)]) + name + bytes([len(value)]) + value


def stall(host, port, seconds):
    s = socket.create_connection((host, int(port)), timeout=5)
    block = (b"\x83\x86"  # :method POST, :scheme http
             + hpack_literal(b":path", b"/shoal.Echo/Stream")
             + hpack_literal(b":authority", host.encode())
             + hpack_literal(b"content-type", b"application/grpc")
             + hpack_literal(b"te", b"trailers"))
    msg = b"\0\0\0\0\1x"
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
              + frame(1, 0x4, 1, block) + frame(0, 0x1, 1, msg))
    time.sleep(float(seconds))
    s.close()
    print("stalled", seconds)


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
    elif mode == "ident":
        ident(sys.argv[2])
    elif mode == "steady":
        steady(sys.argv[2], sys.argv[3])
    elif mode == "flood":
        flood(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "stall":
        stall(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "hang":
        hang(sys.argv[2])
    else:
        sys.exit("unknown mode " + mode)
