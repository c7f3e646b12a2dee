#!/usr/bin/env python3
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
"""A strict OTLP/HTTP JSON trace collector for tests (Python 3 stdlib only).

    otlp-receiver.py [--host 127.0.0.1] [--port 0] [--status 200]

Prints "listening HOST:PORT" on stdout once it accepts connections, then:

  POST /v1/traces   an ExportTraceServiceRequest in the OTLP JSON mapping.
                    Checked strictly (shape, hex ids, string-encoded 64-bit
                    integers, one AnyValue per attribute, no unknown keys).
                    Valid: the spans are kept, answer --status (200: "{}").
                    Invalid: 400 with {"errors": [...]}, and the errors kept.
  GET  /spans       {"requests": n, "spans": [...], "errors": [...]}: every
                    span kept, flattened (resource and attributes as dicts).
  POST /_ctl/status body "503": answer that from now on (200 to recover).

SIGTERM or SIGINT stops it.
"""
import argparse
import json
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
UINT64 = re.compile(r"^(0|[1-9][0-9]{0,19})$")
INT64 = re.compile(r"^-?(0|[1-9][0-9]{0,18})$")
MAX_BODY = 64 << 20  # refuse larger requests outright

SPAN_KEYS = {"traceId", "spanId", "parentSpanId", "traceState", "name", "kind",
             "startTimeUnixNano", "endTimeUnixNano", "attributes",
             "droppedAttributesCount", "events", "droppedEventsCount", "links",
             "droppedLinksCount", "status", "flags"}
ANY_VALUE_KEYS = {"stringValue", "boolValue", "intValue", "doubleValue",
                  "arrayValue", "kvlistValue", "bytesValue"}


class Store:
    def __init__(self, status):
        self.lock = threading.Lock()
        self.status = status
        self.requests = 0
        self.spans = []
        self.errors = []


def check_any_value(v, where, errs):
    if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in ANY_VALUE_KEYS:
        errs.append(f"{where}: AnyValue must have exactly one of {sorted(ANY_VALUE_KEYS)}: {v!r}")
        return None
    kind, val = next(iter(v.items()))
    if kind == "stringValue" and not isinstance(val, str):
        errs.append(f"{where}: stringValue is not a string")
    elif kind == "boolValue" and not isinstance(val, bool):
        errs.append(f"{where}: boolValue is not a boolean")
    elif kind == "intValue":
        # proto3 JSON: int64 is a decimal string (numbers are tolerated by
        # parsers, but the exporter under test must send strings).
        if not isinstance(val, str) or not INT64.match(val):
            errs.append(f"{where}: intValue must be a decimal string: {val!r}")
            return None
        return int(val)
    elif kind == "doubleValue" and (isinstance(val, bool) or not isinstance(val, (int, float))):
        errs.append(f"{where}: doubleValue is not a number")
    return val


def check_attributes(attrs, where, errs):
    out = {}
    if not isinstance(attrs, list):
        errs.append(f"{where}: attributes must be a list")
        return out
    for i, kv in enumerate(attrs):
        w = f"{where}.attributes[{i}]"
        if not isinstance(kv, dict) or set(kv) != {"key", "value"}:
            errs.append(f"{w}: a KeyValue has exactly key and value: {kv!r}")
            continue
        if not isinstance(kv["key"], str) or not kv["key"]:
            errs.append(f"{w}: key must be a non-empty string")
            continue
        if kv["key"] in out:
            errs.append(f"{w}: duplicate key {kv['key']}")
        out[kv["key"]] = check_any_value(kv["value"], f"{w}({kv['key']})", errs)
    return out


def check_id(v, pattern, where, errs):
    if not isinstance(v, str) or not pattern.match(v):
        errs.append(f"{where}: not lowercase hex of the right length: {v!r}")
    elif set(v) == {"0"}:
        errs.append(f"{where}: all zero")


def check_span(s, where, resource, scope, errs):
    if not isinstance(s, dict):
        errs.append(f"{where}: a span must be an object")
        return None
    unknown = set(s) - SPAN_KEYS
    if unknown:
        errs.append(f"{where}: unknown keys {sorted(unknown)}")
    check_id(s.get("traceId"), TRACE_ID, f"{where}.traceId", errs)
    check_id(s.get("spanId"), SPAN_ID, f"{where}.spanId", errs)
    if "parentSpanId" in s and s["parentSpanId"] != "":
        check_id(s["parentSpanId"], SPAN_ID, f"{where}.parentSpanId", errs)
    if not isinstance(s.get("name"), str) or not s.get("name"):
        errs.append(f"{where}.name: required non-empty string")
    kind = s.get("kind", 0)
    if not isinstance(kind, int) or isinstance(kind, bool) or not 0 <= kind <= 5:
        errs.append(f"{where}.kind: an integer SpanKind 0-5: {kind!r}")
    times = []
    for key in ("startTimeUnixNano", "endTimeUnixNano"):
        v = s.get(key)
        if not isinstance(v, str) or not UINT64.match(v):
            errs.append(f"{where}.{key}: must be a decimal string: {v!r}")
        else:
            times.append(int(v))
    if len(times) == 2 and times[1] < times[0]:
        errs.append(f"{where}: ends before it starts")
    status = s.get("status", {})
    if not isinstance(status, dict) or set(status) - {"code", "message"} or \
            not isinstance(status.get("code", 0), int) or not 0 <= status.get("code", 0) <= 2:
        errs.append(f"{where}.status: {{code: 0-2, message}}: {status!r}")
        status = {}
    attrs = check_attributes(s.get("attributes", []), where, errs)
    return {
        "traceId": s.get("traceId"), "spanId": s.get("spanId"),
        "parentSpanId": s.get("parentSpanId", ""), "name": s.get("name"),
        "kind": kind, "startTimeUnixNano": s.get("startTimeUnixNano"),
        "endTimeUnixNano": s.get("endTimeUnixNano"), "attributes": attrs,
        "status": status.get("code", 0), "resource": resource, "scope": scope,
    }


def check_request(req):
    """Returns (spans, errors) for one ExportTraceServiceRequest."""
    errs, spans = [], []
    if not isinstance(req, dict) or set(req) != {"resourceSpans"}:
        return [], [f"top level must be {{\"resourceSpans\": [...]}}: keys {list(req) if isinstance(req, dict) else type(req).__name__}"]
    rss = req["resourceSpans"]
    if not isinstance(rss, list) or not rss:
        return [], ["resourceSpans must be a non-empty list"]
    for i, rs in enumerate(rss):
        w = f"resourceSpans[{i}]"
        if not isinstance(rs, dict) or set(rs) - {"resource", "scopeSpans", "schemaUrl"}:
            errs.append(f"{w}: unexpected shape {rs!r:.200}")
            continue
        res = rs.get("resource", {})
        if not isinstance(res, dict) or set(res) - {"attributes", "droppedAttributesCount"}:
            errs.append(f"{w}.resource: unexpected shape")
            res = {}
        resource = check_attributes(res.get("attributes", []), f"{w}.resource", errs)
        if not isinstance(resource.get("service.name"), str):
            errs.append(f"{w}.resource: service.name (a string) is required")
        sss = rs.get("scopeSpans")
        if not isinstance(sss, list) or not sss:
            errs.append(f"{w}.scopeSpans must be a non-empty list")
            continue
        for j, ss in enumerate(sss):
            ws = f"{w}.scopeSpans[{j}]"
            if not isinstance(ss, dict) or set(ss) - {"scope", "spans", "schemaUrl"}:
                errs.append(f"{ws}: unexpected shape")
                continue
            scope = ss.get("scope", {})
            if not isinstance(scope, dict) or not isinstance(scope.get("name", ""), str):
                errs.append(f"{ws}.scope: unexpected shape")
                scope = {}
            if not isinstance(ss.get("spans"), list) or not ss["spans"]:
                errs.append(f"{ws}.spans must be a non-empty list")
                continue
            for k, s in enumerate(ss["spans"]):
                span = check_span(s, f"{ws}.spans[{k}]", resource, scope.get("name", ""), errs)
                if span:
                    spans.append(span)
    return spans, errs


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = None

    def log_message(self, fmt, *args):  # quiet: tests read the results, not logs
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length", "-1"))
        if n < 0 or n > MAX_BODY:
            return None
        return self.rfile.read(n)

    def do_GET(self):
        if self.path != "/spans":
            return self.reply(404, {"error": "not found"})
        with self.store.lock:
            snap = {"requests": self.store.requests, "spans": list(self.store.spans),
                    "errors": list(self.store.errors)}
        self.reply(200, snap)

    def do_POST(self):
        body = self.read_body()
        if body is None:
            return self.reply(411, {"error": "Content-Length required, at most 64 MiB"})
        if self.path == "/_ctl/status":
            with self.store.lock:
                self.store.status = int(body.decode().strip())
            return self.reply(200, {})
        if self.path != "/v1/traces":
            return self.reply(404, {"error": "not found"})
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        with self.store.lock:
            self.store.requests += 1
            status = self.store.status
        if ctype != "application/json":
            errs, spans = [f"Content-Type {ctype!r}, want application/json"], []
        else:
            try:
                spans, errs = check_request(json.loads(body))
            except (ValueError, UnicodeDecodeError) as e:
                spans, errs = [], [f"not JSON: {e}"]
        if errs:
            with self.store.lock:
                self.store.errors.extend(errs)
            return self.reply(400, {"errors": errs})
        if status // 100 != 2:  # told to fail: nothing is kept
            return self.reply(status, {"code": 14, "message": "unavailable (test)"})
        with self.store.lock:
            self.store.spans.extend(spans)
        self.reply(status, {})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--status", type=int, default=200,
                    help="HTTP status for valid requests (non-2xx: spans are not kept)")
    args = ap.parse_args()

    Handler.store = Store(args.status)
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {args.host}:{srv.server_address[1]}", flush=True)
    srv.serve_forever()
    srv.server_close()


if __name__ == "__main__":
    sys.exit(main())
