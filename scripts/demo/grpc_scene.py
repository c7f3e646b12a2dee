#!/usr/bin/env python3
"""The demo's gRPC scene (python3-grpcio, no generated stubs).

  grpc_scene.py server NAME PORT DELAY_MS
      serves /demo.Echo/Who: waits DELAY_MS, then answers NAME.
  grpc_scene.py client TARGET SECONDS CONCURRENCY JSON
      unary Who calls on ONE channel for SECONDS, CONCURRENCY in flight at
      a time (as a gRPC client multiplexes them on its one HTTP/2
      connection); writes per endpoint the calls answered and their
      median latency, and the calls that failed, to JSON.

The channel is pick_first to one address (the service VIP): one
subchannel, one TCP connection, so whatever spreads the calls over the
endpoints is the proxy, per request.
"""
import json
import statistics
import sys
import threading
import time
from concurrent import futures

import grpc

METHOD = "/demo.Echo/Who"


def server(name, port, delay_ms):
    delay = float(delay_ms) / 1000.0

    def who(req, ctx):
        if delay:
            time.sleep(delay)
        return name.encode()

    handlers = {"Who": grpc.unary_unary_rpc_method_handler(who)}
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Echo", handlers),))
    srv.add_insecure_port("0.0.0.0:%s" % port)
    srv.start()
    print("serving", name, port, "delay_ms", delay_ms, flush=True)
    srv.wait_for_termination()


def client(target, seconds, concurrency, out):
    ch = grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "pick_first")])
    grpc.channel_ready_future(ch).result(timeout=10)
    call = ch.unary_unary(METHOD)
    lock = threading.Lock()
    lat = {}
    failed = {}
    stop = time.monotonic() + float(seconds)
    sem = threading.Semaphore(int(concurrency))

    def done(fut, t0):
        try:
            who = fut.result().decode()
            with lock:
                lat.setdefault(who, []).append((time.monotonic() - t0) * 1000.0)
        except grpc.RpcError as e:
            with lock:
                failed[e.code().name] = failed.get(e.code().name, 0) + 1
        sem.release()

    while time.monotonic() < stop:
        sem.acquire()
        t0 = time.monotonic()
        fut = call.future(b"hi", timeout=5)
        fut.add_done_callback(lambda f, t0=t0: done(f, t0))
    for _ in range(int(concurrency)):
        sem.acquire()
    ch.close()
    doc = {
        "seconds": float(seconds),
        "concurrency": int(concurrency),
        "calls": sum(len(v) for v in lat.values()) + sum(failed.values()),
        "failed": failed,
        "endpoints": {who: {"calls": len(v), "p50_ms": round(statistics.median(v), 2)}
                      for who, v in sorted(lat.items())},
    }
    with open(out, "w") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        server(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "client":
        client(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit("grpc_scene.py: unknown mode " + mode)
