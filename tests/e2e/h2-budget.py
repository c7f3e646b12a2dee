#!/usr/bin/env python3
"""A raw HTTP/2 client that asks a proxy to hold a lot (tests/e2e/h2-budget.sh).

h2-budget.py HOST PORT CONNS STREAMS HEADER_KIB BODY_KIB HOLD_S

Opens CONNS connections; on each, STREAMS requests (POST /hold), each
with one header field of HEADER_KIB KiB (literal, never indexed: every
byte is decoded and kept by the proxy) and BODY_KIB KiB of body (the first
streams of a connection only, within its first 64 KiB window) sent
without END_STREAM, so that nothing ends while it holds them open for
HOLD_S seconds; acknowledges the proxy's SETTINGS. Then prints one line:
"refused N reset M answered K goaway CODES", where refused counts
RST_STREAM REFUSED_STREAM, reset every other RST_STREAM, answered the
response HEADERS, goaway the GOAWAY error codes (or "-").
"""
import socket
import sys
import threading
import time


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def hpack_int(n, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([first | n])
    out = [first | limit]
    n -= limit
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def literal(name, value):
    # Literal header field without indexing, new name (RFC 7541 6.2.2).
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


MAX_FRAME = 16384
CONN_BODY_MAX = 60000


class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=10)
        self.lock = threading.Lock()
        self.refused = self.reset = self.answered = 0
        self.goaway = []
        self.body = 0
        self.s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def send(self, data):
        with self.lock:
            self.s.sendall(data)

    def read(self):
        buf = b""
        try:
            while True:
                got = self.s.recv(65536)
                if not got:
                    return
                buf += got
                while len(buf) >= 9:
                    length = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + length:
                        break
                    ftype, flags = buf[3], buf[4]
                    payload = buf[9:9 + length]
                    buf = buf[9 + length:]
                    if ftype == 4 and not flags & 1:
                        self.send(frame(4, 1, 0))  # SETTINGS ACK
                    elif ftype == 3:
                        code = int.from_bytes(payload[:4], "big")
                        if code == 7:
                            self.refused += 1
                        else:
                            self.reset += 1
                    elif ftype == 1:
                        self.answered += 1
                    elif ftype == 7:
                        self.goaway.append(int.from_bytes(payload[4:8], "big"))
        except OSError:
            return


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    conns, streams = int(sys.argv[3]), int(sys.argv[4])
    header = b"h" * (int(sys.argv[5]) * 1024)
    body = b"b" * (int(sys.argv[6]) * 1024)
    hold = float(sys.argv[7])
    authority = ("%s:%d" % (host, port)).encode()
    # :method POST (3), :scheme http (6), :path / (4), :authority literal (name 1).
    block = b"\x83\x86\x84\x01" + hpack_int(len(authority), 7) + authority + literal(b"x-big", header)
    cs = [Conn(host, port) for _ in range(conns)]
    for c in cs:
        for i in range(streams):
            sid = 2 * i + 1
            out = []
            chunks = [block[o:o + MAX_FRAME] for o in range(0, len(block), MAX_FRAME)]
            for j, ch in enumerate(chunks):
                flags = 0x4 if j == len(chunks) - 1 else 0  # END_HEADERS on the last
                out.append(frame(1 if j == 0 else 9, flags, sid, ch))
            # Within the connection's first window (65535) whatever the
            # proxy's WINDOW_UPDATE: the first streams get the bodies.
            b = body[:max(0, CONN_BODY_MAX - c.body)]
            c.body += len(b)
            for o in range(0, len(b), MAX_FRAME):
                out.append(frame(0, 0, sid, b[o:o + MAX_FRAME]))  # DATA, no END_STREAM
            try:
                c.send(b"".join(out))
            except OSError:
                break  # the proxy ended this connection
    print("sent", flush=True)
    time.sleep(hold)
    refused = sum(c.refused for c in cs)
    reset = sum(c.reset for c in cs)
    answered = sum(c.answered for c in cs)
    goaway = sorted(set(g for c in cs for g in c.goaway))
    print("refused %d reset %d answered %d goaway %s" % (
        refused, reset, answered, ",".join(map(str, goaway)) or "-"), flush=True)
    for c in cs:
        c.s.close()


if __name__ == "__main__":
    main()
