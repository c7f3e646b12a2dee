#!/usr/bin/env python3
"""delay-line.py: a user-space stand-in for netem, for kernels without
sch_netem. Two TUN devices, IN in the network namespace this process
starts in and OUT in the one at NETNS_PATH, joined by this process: a
packet read from IN is written to OUT DELAY_MS later, one read from OUT
is written to IN at once, so every round trip through it (a TCP
handshake included) takes DELAY_MS more.

usage: delay-line.py IN_NAME NETNS_PATH OUT_NAME DELAY_MS

The devices live as long as this process; it writes "ready" on stdout
once both are open. Used by tests/e2e/kernel-l4.sh.
"""
import ctypes
import fcntl
import heapq
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MTU_READ = 65536


def tun_open(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    in_name, netns_path, out_name, delay_ms = sys.argv[1:]
    delay = int(delay_ms) / 1000.0
    fd_in = tun_open(in_name)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    ns = os.open(netns_path, os.O_RDONLY)
    if libc.setns(ns, CLONE_NEWNET) != 0:
        sys.exit("setns %s: %s" % (netns_path, os.strerror(ctypes.get_errno())))
    os.close(ns)
    fd_out = tun_open(out_name)
    print("ready", flush=True)
    due = []  # (time, seq, packet) for fd_out
    seq = 0
    while True:
        timeout = None
        if due:
            timeout = max(0.0, due[0][0] - time.monotonic())
        readable, _, _ = select.select([fd_in, fd_out], [], [], timeout)
        now = time.monotonic()
        if fd_in in readable:
            while True:
                try:
                    pkt = os.read(fd_in, MTU_READ)
                except BlockingIOError:
                    break
                seq += 1
                heapq.heappush(due, (now + delay, seq, pkt))
        if fd_out in readable:
            while True:
                try:
                    pkt = os.read(fd_out, MTU_READ)
                except BlockingIOError:
                    break
                try:
                    os.write(fd_in, pkt)
                except OSError:
                    pass  # dropped, as a full link would
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, pkt = heapq.heappop(due)
            try:
                os.write(fd_out, pkt)
            except OSError:
                pass


if __name__ == "__main__":
    main()
