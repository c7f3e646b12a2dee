#!/usr/bin/env python3
"""Raw HTTP/2 clients for tests/e2e/h2-hostile.sh (stdlib only: sockets,
frames and HPACK literals written by hand; no h2 library).

Every case connects to HOST PORT, sends the client preface and an empty
SETTINGS (unless said otherwise), misbehaves, then reads what the peer
sends and prints one line:
  "goaway CODE last=ID rst=N data=BYTES ms=MS" when a GOAWAY came,
  "closed rst=N data=BYTES ms=MS" when the peer closed without one,
  "open rst=N data=BYTES ms=MS" when it was still open at the end;
rst is the number of RST_STREAM frames received, data the DATA payload
bytes, ms the time from the misbehaviour to the GOAWAY or close; after a
RST_STREAM, rst_ms is the time of the first and rst_codes their codes.

Cases:
  ping N              N PINGs, acks never read while sending
  even-id             HEADERS on stream 2 (a client's ids are odd)
  decreasing-id       HEADERS on stream 5, then on stream 3
  decreasing-id-at-once  the same in one write with the preface (on a
                      detected port, detection reads it all)
  reuse-id            HEADERS on stream 1 (END_STREAM), its response read
                      to the end, then HEADERS on stream 1 again
  zero-window N SECS  SETTINGS_INITIAL_WINDOW_SIZE 0, N streaming gRPC
                      calls (/shoal.Echo/Stream), no WINDOW_UPDATE ever;
                      reads for up to SECS seconds
  made-you-reset N    N requests, each followed by a WINDOW_UPDATE that
                      overflows its stream's window: the server must
                      reset each one itself (MadeYouReset, CVE-2025-8671)
  silent SECS         a gRPC call's HEADERS without END_STREAM, then
                      nothing for up to SECS seconds (a slowloris)
"""
import socket
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def literal(name, value):
    """HPACK literal header field without indexing, new name, no Huffman."""
    assert len(name) < 127 and len(value) < 127
    return b"\0" + bytes([len(name)]) + name + bytes([len(value)]) + value


def get_block(host):
    # :method GET, :scheme http, :path / (static table), :authority literal.
    return b"\x82\x86\x84" + literal(b":authority", host.encode())


def grpc_block(host, path):
    return (b"\x83\x86"  # :method POST, :scheme http
            + literal(b":path", path)
            + literal(b":authority", host.encode())
            + literal(b"content-type", b"application/grpc")
            + literal(b"te", b"trailers"))


GRPC_MSG = b"\0\0\0\0\1x"


class Conn:
    def __init__(self, host, port, settings=b"", first=b""):
        self.s = socket.create_connection((host, int(port)), timeout=5)
        self.buf = b""
        self.rst = 0
        self.rst_codes = set()
        self.t_rst = None
        self.data = 0
        self.goaway = None
        self.closed = False
        self.t0 = time.monotonic()
        self.t_end = None
        self.s.sendall(PREFACE + frame(SETTINGS, 0, 0, settings) + first)

    def send(self, b):
        try:
            self.s.sendall(b)
        except OSError:
            pass  # the peer may close before taking it all

    def frames(self, secs):
        """Yield (type, flags, sid, payload) as they come, for up to secs."""
        deadline = time.monotonic() + secs
        while not self.closed:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload = self.buf[9:9 + n]
                self.buf = self.buf[9 + n:]
                self.account(ftype, flags, sid, payload)
                yield ftype, flags, sid, payload
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.s.settimeout(min(left, 1.0))
            try:
                got = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                got = b""
            if not got:
                self.closed = True
                if self.t_end is None:
                    self.t_end = time.monotonic()
                return
            self.buf += got

    def account(self, ftype, flags, sid, payload):
        if ftype == RST_STREAM:
            self.rst += 1
            self.rst_codes.add(int.from_bytes(payload[:4], "big"))
            if self.t_rst is None:
                self.t_rst = time.monotonic()
        elif ftype == DATA:
            self.data += len(payload)
        elif ftype == GOAWAY and len(payload) >= 8:
            last, code = struct.unpack(">II", payload[:8])
            if self.goaway is None:
                self.goaway = (code, last & 0x7FFFFFFF)
                self.t_end = time.monotonic()
        elif ftype == SETTINGS and not flags & ACK:
            self.send(frame(SETTINGS, ACK, 0))

    def drain(self, secs):
        """Read until the peer closes (or secs pass)."""
        for _ in self.frames(secs):
            pass

    def report(self):
        ms = int(((self.t_end or time.monotonic()) - self.t0) * 1000)
        tail = "rst=%d data=%d ms=%d" % (self.rst, self.data, ms)
        if self.t_rst is not None:
            tail += " rst_ms=%d rst_codes=%s" % ((self.t_rst - self.t0) * 1000,
                                                 ",".join(str(x) for x in sorted(self.rst_codes)))
        if self.goaway is not None:
            print("goaway %d last=%d %s" % (self.goaway[0], self.goaway[1], tail))
        elif self.closed:
            print("closed " + tail)
        else:
            print("open " + tail)


def wait_end(c, sid, secs=5):
    """Read until stream sid ended (END_STREAM or RST_STREAM); its :status byte."""
    for ftype, flags, fsid, _ in c.frames(secs):
        if fsid == sid and (ftype == RST_STREAM or (ftype in (DATA, HEADERS) and flags & END_STREAM)):
            return True
    return False


def main():
    case, host, port = sys.argv[1], sys.argv[2], sys.argv[3]
    args = sys.argv[4:]
    if case == "ping":
        c = Conn(host, port)
        n = int(args[0])
        c.t0 = time.monotonic()
        # In pieces, so that a peer that stops reading stops us too.
        chunk = b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(1000))
        c.s.settimeout(3)
        for _ in range(n // 1000):
            try:
                c.s.sendall(chunk)
            except OSError:
                break
        c.drain(5)
    elif case == "even-id":
        c = Conn(host, port)
        c.t0 = time.monotonic()
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 2, get_block(host)))
        c.drain(5)
    elif case == "decreasing-id":
        c = Conn(host, port)
        c.t0 = time.monotonic()
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, get_block(host)))
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, get_block(host)))
        c.drain(5)
    elif case == "decreasing-id-at-once":
        c = Conn(host, port, first=frame(HEADERS, END_HEADERS | END_STREAM, 5, get_block(host))
                 + frame(HEADERS, END_HEADERS | END_STREAM, 3, get_block(host)))
        c.drain(5)
    elif case == "reuse-id":
        c = Conn(host, port)
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, get_block(host)))
        if not wait_end(c, 1):
            sys.exit("reuse-id: stream 1 never ended")
        c.t0 = time.monotonic()
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, get_block(host)))
        c.drain(5)
    elif case == "zero-window":
        n, secs = int(args[0]), float(args[1])
        c = Conn(host, port, struct.pack(">HI", 4, 0))  # INITIAL_WINDOW_SIZE 0
        c.t0 = time.monotonic()
        for i in range(n):
            sid = 2 * i + 1
            c.send(frame(HEADERS, END_HEADERS, sid, grpc_block(host, b"/shoal.Echo/Stream"))
                   + frame(DATA, END_STREAM, sid, GRPC_MSG))
        c.drain(secs)
    elif case == "made-you-reset":
        n = int(args[0])
        c = Conn(host, port)
        c.t0 = time.monotonic()
        # In batches of 10, so that the server's resets go out (and its
        # limit can act) between them, as a real attacker's would.
        for b in range(0, n, 10):
            out = []
            for i in range(b, min(n, b + 10)):
                sid = 2 * i + 1
                out.append(frame(HEADERS, END_HEADERS | END_STREAM, sid, get_block(host)))
                # 65535 + 2^31-1 overflows the stream's send window: FLOW_CONTROL_ERROR.
                out.append(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0x7FFFFFFF)))
            c.send(b"".join(out))
            for _ in c.frames(0.005):
                pass
            if c.goaway is not None or c.closed:
                break
        c.drain(5)
    elif case == "silent":
        c = Conn(host, port)
        c.t0 = time.monotonic()
        c.send(frame(HEADERS, END_HEADERS, 1, grpc_block(host, b"/shoal.Echo/Echo")))
        c.drain(float(args[0]))
    else:
        sys.exit("unknown case " + case)
    c.report()


if __name__ == "__main__":
    main()
