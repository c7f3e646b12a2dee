#!/usr/bin/env python3
# flap.py: takes the demo's flaky backend down and brings it back.
#
#   flap.py HOST:PORT DOWN_AT_S UP_AT_S
#
# At DOWN_AT_S seconds after start it asks shoal-backend (POST /_ctl/mode)
# for refuse=1 (listeners closed: new connections are refused) and reset=1
# (requests on connections already open, such as the proxy's pooled ones,
# are answered with a RST): the pod is unreachable. At UP_AT_S it sends
# refuse=0&reset=0 over the same keep-alive connection, opened before the
# listeners closed, which is the only way back in (tests/tools/README.md).
# Prints one line per change, with the time since start.
import http.client
import sys
import time


def mode(conn, form):
    conn.request("POST", "/_ctl/mode", body=form,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    body = r.read().decode(errors="replace").strip()
    if r.status != 200:
        raise RuntimeError(f"/_ctl/mode {form}: {r.status} {body}")
    return body


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    down_at, up_at = float(sys.argv[2]), float(sys.argv[3])
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    # Keep the connection warm: the backend closes one idle for 60 s.
    while time.monotonic() - t0 < down_at:
        time.sleep(min(5.0, max(0.0, down_at - (time.monotonic() - t0))))
        if time.monotonic() - t0 < down_at:
            conn.request("GET", "/_ctl/mode")
            conn.getresponse().read()
    mode(conn, "refuse=1&reset=1")
    print(f"{time.monotonic() - t0:.1f} down: refusing connections, resetting requests", flush=True)
    while time.monotonic() - t0 < up_at:
        time.sleep(min(5.0, max(0.0, up_at - (time.monotonic() - t0))))
        if time.monotonic() - t0 < up_at:
            conn.request("GET", "/_ctl/mode")
            conn.getresponse().read()
    mode(conn, "refuse=0&reset=0")
    print(f"{time.monotonic() - t0:.1f} up: serving again", flush=True)


if __name__ == "__main__":
    main()
