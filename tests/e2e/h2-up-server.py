#!/usr/bin/env python3
"""An HTTP/2 (h2c, prior knowledge) endpoint for tests/e2e/h2-h1.sh, on
python3-h2: what shoal's pooled HTTP/2 sessions deliver to an endpoint.

    h2-up-server.py NAME PORT

/echo answers, once the request ended, with x-got-trailers listing the
request's trailers (name=value, or none) and the body's length; /hints
sends a 103 Early Hints, then a 100, then the 200; /hang is never
answered (the session's other streams are).
"""
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions

NAME, PORT = sys.argv[1], int(sys.argv[2])


def serve(sock):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}
    while True:
        data = sock.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                streams[ev.stream_id] = {"path": dict(ev.headers)[b":path"].decode(),
                                         "trailers": [], "len": 0}
            elif isinstance(ev, h2.events.DataReceived):
                streams[ev.stream_id]["len"] += len(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                streams[ev.stream_id]["trailers"] += [
                    f"{k.decode()}={v.decode()}" for k, v in ev.headers]
            elif isinstance(ev, h2.events.StreamEnded):
                st = streams.pop(ev.stream_id)
                sid = ev.stream_id
                if st["path"] == "/hang":
                    continue
                if st["path"] == "/hints":
                    conn.send_headers(sid, [(":status", "103"), ("link", "</h2.css>; rel=preload")])
                    conn.send_headers(sid, [(":status", "100")])
                    body = b"hinted\n"
                else:
                    body = f"{st['len']}\n".encode()
                conn.send_headers(sid, [(":status", "200"), ("x-backend", NAME),
                                        ("x-got-trailers", ",".join(st["trailers"]) or "none"),
                                        ("content-length", str(len(body)))])
                conn.send_data(sid, body, end_stream=True)
        sock.sendall(conn.data_to_send())


def handle(s):
    try:
        serve(s)
    except (ConnectionError, h2.exceptions.ProtocolError):
        pass
    finally:
        s.close()


def main():
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", PORT))
    ls.listen(64)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=handle, args=(s,), daemon=True).start()


main()
