#!/usr/bin/env python3
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
"""A stand-in Kubernetes API server for shoal's discovery tests.

It serves v1 Services, discovery.k8s.io/v1 EndpointSlices, v1 Pods and v1
Namespaces the way a real API server does in every point the watchers
depend on (shared/DESIGN.md section 5, docs/discovery.md,
docs/enrollment.md):

- TLS with a certificate the test generates (tests/k8s/mkcerts.sh);
- bearer tokens, re-read from --token-file on every request (so a test can
  rotate them); a wrong or missing token gets 401, a token listed in
  --forbidden-token-file gets 403, both as Status objects;
- list (with limit/continue paging) and watch (?watch=1) with
  resourceVersion, allowWatchBookmarks, timeoutSeconds and labelSelector;
- one resourceVersion counter for everything, rising monotonically;
- a bounded history window: a watch from a version older than the window
  gets HTTP 200 and one ERROR event carrying a 410 Status, then the end;
- label selectors (k=v, k==v, k!=v, k, !k) and field selectors (k=v,
  k==v, k!=v on the fields the real server indexes for the kind, e.g.
  spec.nodeName of a Pod; any other field is a 400 BadRequest Status, as
  the real one answers "field label not supported"): an object that stops
  matching is sent as DELETED, one that starts matching as ADDED;
- namespaced paths (/api/v1/namespaces/NS/pods, ...) list and watch one
  namespace; GET of one object (.../pods/NAME, /api/v1/namespaces/NAME)
  answers it or a 404 NotFound Status; Namespaces are cluster-scoped;
- discovery documents (/api, /api/v1, /apis, /version), enough for
  kubectl to find the resources;
- TokenReview (POST /apis/authentication.k8s.io/v1/tokenreviews), as the
  real server answers it for bound service-account tokens: the caller
  must itself be authorized (its own token in --token-file; in
  --forbidden-token-file: 403); the reviewed tokens are those of
  --token-reviews, a JSON object re-read on every request:
    {"TOKEN": {"serviceAccount": "NS/SA", "pod": NAME, "node": NODE,
               "audiences": [...], "expired": false}, ...}
  ("legacy": true instead of pod and node: a Secret-based token, which
  authenticates with no pod or node in user.extra);
  A known token whose audiences meet spec.audiences (or the API server's
  own, https://kubernetes.default.svc.cluster.local, when spec has none),
  not expired, whose pod still exists in the store, gets 201 with
  status.authenticated true, user.username system:serviceaccount:NS:SA,
  a uid, the service-account groups, and user.extra's
  authentication.kubernetes.io/{pod-name,pod-uid,node-name,node-uid,
  credential-id} as one-element lists; status.audiences is the
  intersection. Any other token gets 201 with status {"user": {},
  "error": "[invalid bearer token, ...]"} and no "authenticated", as the
  real server omits a false one;
- watch headers are flushed at once, before any event, and every event is
  written in several HTTP chunks split at random offsets (sometimes two
  events share a chunk), so clients must reassemble lines themselves.

Tests drive it through a plain-HTTP control port on 127.0.0.1:
  POST /apply        {"type": "ADDED"|"MODIFIED"|"DELETED", "object": {...}}
                     (kind from object.kind); answers {"resourceVersion": N}
  POST /compact      forget the history: older watches will get 410
  POST /expire       send the in-stream 410 ERROR to every open watch
  POST /close        end every open watch (as an API server restart would)
  GET  /stats        request counters, as JSON
Standard library only.
"""

import argparse
import base64
import hashlib
import json
import random
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESOURCES = {
    "/api/v1/services": ("Service", "v1", "ServiceList"),
    "/apis/discovery.k8s.io/v1/endpointslices": (
        "EndpointSlice", "discovery.k8s.io/v1", "EndpointSliceList"),
    "/api/v1/pods": ("Pod", "v1", "PodList"),
    "/api/v1/namespaces": ("Namespace", "v1", "NamespaceList"),
    # shoal's custom resource (manifests/crd-authorizationpolicy.yaml): served
    # as the real server serves a CRD once it is installed; --no-crd leaves it
    # out, and its paths are then a 404 NotFound, as without the CRD.
    "/apis/shoal.io/v1alpha1/authorizationpolicies": (
        "AuthorizationPolicy", "shoal.io/v1alpha1", "AuthorizationPolicyList"),
}
KIND_PATH = {v[0]: k for k, v in RESOURCES.items()}
# Kinds without a namespace: their key is the bare name.
CLUSTER_SCOPED = {"Namespace"}
# The fields the real API server accepts in a fieldSelector, per kind
# (metadata.name and metadata.namespace for every kind; the rest are the
# kind's own field label conversions in k8s.io/kubernetes pkg/apis/*/v1).
FIELDS = {
    "Service": {"metadata.name", "metadata.namespace"},
    "EndpointSlice": {"metadata.name", "metadata.namespace"},
    "Pod": {"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
            "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
            "status.phase", "status.podIP", "status.nominatedNodeName"},
    "Namespace": {"metadata.name", "status.phase"},
    "AuthorizationPolicy": {"metadata.name", "metadata.namespace"},
}


class Store:
    """Objects by kind and namespace/name, with the event history."""

    def __init__(self, history, start_rv):
        self.cond = threading.Condition()
        self.rv = start_rv
        self.objects = {kind: {} for kind in KIND_PATH}
        self.history = []  # (rv, kind, type, old, new)
        self.window = history
        self.oldest = start_rv  # watches from below this get 410
        self.generation = 0  # bumped by /expire and /close
        self.action = None
        self.stats = {"list": 0, "watch": 0, "unauthorized": 0, "forbidden": 0, "tokenreviews": 0,
                      "expired": 0, "events": 0}

    def apply(self, ev):
        obj = ev["object"]
        kind = obj.get("kind")
        if kind not in self.objects:
            raise ValueError("unknown kind %r" % kind)
        meta = obj.setdefault("metadata", {})
        if kind in CLUSTER_SCOPED:
            meta.pop("namespace", None)
            key = meta["name"]
        else:
            meta.setdefault("namespace", "default")
            key = "%s/%s" % (meta["namespace"], meta["name"])
        with self.cond:
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            old = self.objects[kind].get(key)
            typ = ev["type"]
            if typ == "DELETED":
                if old is None:
                    raise ValueError("no such object %s" % key)
                del self.objects[kind][key]
                new = obj
            else:
                typ = "MODIFIED" if old is not None else "ADDED"
                self.objects[kind][key] = obj
                new = obj
            self.history.append((self.rv, kind, typ, old, new))
            while len(self.history) > self.window:
                gone = self.history.pop(0)
                self.oldest = gone[0]
            self.stats["events"] += 1
            self.cond.notify_all()
            return self.rv

    def compact(self):
        with self.cond:
            self.history = []
            self.oldest = self.rv
            self.cond.notify_all()

    def kick(self, action):
        with self.cond:
            self.generation += 1
            self.action = action
            self.cond.notify_all()


def parse_selector(text):
    """A list of (op, key, value) from a labelSelector string."""
    reqs = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(("!=", k.strip(), v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append(("=", k.strip(), v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append(("=", k.strip(), v.strip()))
        elif part.startswith("!"):
            reqs.append(("!", part[1:].strip(), None))
        else:
            reqs.append(("exists", part, None))
    return reqs


def parse_fields(text, kind):
    """(op, field, value) list of a fieldSelector, or raise ValueError
    with the real server's message for a field it does not index."""
    reqs = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        for op, sep in (("!=", "!="), ("=", "=="), ("=", "=")):
            if sep in part:
                k, v = part.split(sep, 1)
                break
        else:
            raise ValueError("invalid selector: '%s'; can't understand '%s'" % (text, part))
        k = k.strip()
        if k not in FIELDS[kind]:
            raise ValueError('"%s" is not a known field selector: only "%s"' %
                             (k, '", "'.join(sorted(FIELDS[kind]))))
        reqs.append((op, k, v.strip()))
    return reqs


def field_value(obj, path):
    """A field as the API server's field selector sees it: a string, ""
    when absent, booleans as "true"/"false"."""
    cur = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def fields_match(reqs, obj):
    if obj is None:
        return False
    for op, k, v in reqs:
        got = field_value(obj, k)
        if (op == "=" and got != v) or (op == "!=" and got == v):
            return False
    return True


def matches(reqs, obj):
    if obj is None:
        return False
    if isinstance(reqs, tuple):  # (label requirements, field requirements, namespace)
        labels_r, fields_r, ns = reqs
        if ns is not None and obj.get("metadata", {}).get("namespace") != ns:
            return False
        return fields_match(fields_r, obj) and matches(labels_r, obj)
    labels = obj.get("metadata", {}).get("labels") or {}
    for op, k, v in reqs:
        if op == "=" and labels.get(k) != v:
            return False
        if op == "!=" and labels.get(k) == v:
            return False
        if op == "exists" and k not in labels:
            return False
        if op == "!" and k in labels:
            return False
    return True


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shoal-stand-in-apiserver"

    def setup(self):
        # Go's net/http (the real API server) disables Nagle: without it
        # the small chunks of a watch wait for delayed ACKs (40 ms).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, fmt, *args):  # noqa: D401 - quiet unless asked
        if self.server.verbose:
            sys.stderr.write("apiserver: " + (fmt % args) + "\n")

    # ---- plumbing ----

    def send_json(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def write_split(self, data):
        """data as several chunks cut at random offsets."""
        rnd = self.server.random
        cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randint(0, 3))))
        prev = 0
        for c in cuts + [len(data)]:
            self.chunk(data[prev:c])
            prev = c

    def authorize(self, forbidden_message="forbidden: User cannot list resource"):
        store = self.server.store
        got = self.headers.get("Authorization", "")
        tokens = read_tokens(self.server.token_file)
        forbidden = read_tokens(self.server.forbidden_file)
        tok = got[len("Bearer "):].strip() if got.startswith("Bearer ") else None
        if tok is not None and tok in forbidden:
            with store.cond:
                store.stats["forbidden"] += 1
            self.send_json(403, status(403, "Forbidden", forbidden_message))
            return False
        if tok is None or tok not in tokens:
            with store.cond:
                store.stats["unauthorized"] += 1
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            return False
        return True

    # ---- API ----

    def route(self, path):
        """(kind, namespace or None, name or None) of an API path, or None.
        /api/v1/namespaces/NAME is one Namespace; .../namespaces/NS/RES a
        namespaced collection; .../namespaces/NS/RES/NAME one object."""
        for coll, (kind, _, _) in RESOURCES.items():
            if path == coll:
                return kind, None, None
            prefix = coll.rsplit("/", 1)[0]
            res = coll.rsplit("/", 1)[1]
            if kind in CLUSTER_SCOPED:
                if path.startswith(coll + "/") and "/" not in path[len(coll) + 1:]:
                    return kind, None, path[len(coll) + 1:]
                continue
            parts = path[len(prefix):].split("/") if path.startswith(prefix + "/") else []
            # ["", "namespaces", NS, RES] or [..., NAME]
            if len(parts) in (4, 5) and parts[1] == "namespaces" and parts[3] == res and parts[2]:
                return kind, parts[2], parts[4] if len(parts) == 5 else None
        return None

    def discovery(self, path):
        """The discovery documents kubectl reads before it lists, or None."""
        host = "127.0.0.1:%d" % self.server.server_address[1]
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}
        if path == "/apis":
            groups = [("discovery.k8s.io", "v1")]
            if "AuthorizationPolicy" in KIND_PATH:
                groups.append(("shoal.io", "v1alpha1"))
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                "name": g,
                "versions": [{"groupVersion": g + "/" + v, "version": v}],
                "preferredVersion": {"groupVersion": g + "/" + v, "version": v}}
                for g, v in groups]}
        if path == "/version":
            return {"major": "1", "minor": "20", "gitVersion": "v1.20.0-shoal-stand-in",
                    "platform": "linux/amd64"}
        groups = {}
        for coll, (kind, api, _) in RESOURCES.items():
            groups.setdefault(coll.rsplit("/", 1)[0], []).append((coll.rsplit("/", 1)[1], kind, api))
        if path not in groups:
            return None
        short = {"pods": ["po"], "namespaces": ["ns"], "services": ["svc"]}
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": groups[path][0][2],
                "resources": [{"name": res, "singularName": kind.lower(),
                               "namespaced": kind not in CLUSTER_SCOPED, "kind": kind,
                               "verbs": ["get", "list", "watch"],
                               "shortNames": short.get(res, [])}
                              for res, kind, _ in groups[path]]}

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        if not self.authorize():
            return
        doc = self.discovery(url.path.rstrip("/") or "/")
        if doc is not None:
            self.send_json(200, doc)
            return
        where = self.route(url.path)
        if where is None:
            self.send_json(404, status(404, "NotFound", "the server could not find "
                                       "the requested resource"))
            return
        kind, ns, name = where
        if name is not None:
            self.get_one(kind, ns, name)
            return
        try:
            fields = parse_fields(q.get("fieldSelector", [""])[0], kind)
        except ValueError as e:
            self.send_json(400, status(400, "BadRequest", str(e)))
            return
        reqs = (parse_selector(q.get("labelSelector", [""])[0]), fields, ns)
        watch = q.get("watch", ["false"])[0] in ("1", "true")
        if watch:
            self.watch(kind, q, reqs)
        else:
            self.list(kind, q, reqs)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(n) if n else b""
        if url.path != TOKENREVIEW_PATH:
            if self.authorize():
                self.send_json(405, status(405, "MethodNotAllowed",
                                           "the server does not allow this method on the "
                                           "requested resource"))
            return
        if not self.authorize('tokenreviews.authentication.k8s.io is forbidden: User '
                              'cannot create resource "tokenreviews" in API group '
                              '"authentication.k8s.io" at the cluster scope'):
            return
        try:
            review = json.loads(body)
            token = review["spec"]["token"]
            if review.get("kind") != "TokenReview" or not isinstance(token, str) or not token:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self.send_json(400, status(400, "BadRequest", "TokenReview: spec.token required"))
            return
        with self.server.store.cond:
            self.server.store.stats["tokenreviews"] += 1
        self.send_json(201, self.token_review(review))

    def token_review(self, review):
        """The TokenReview answered, as the real server fills in its status."""
        spec = review["spec"]
        out = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": spec}
        want = spec.get("audiences") or [API_AUDIENCE]
        known = read_reviews(self.server.reviews_file).get(spec["token"])

        def invalid(why):
            out["status"] = {"user": {}, "error": "[invalid bearer token, %s]" % why}
            return out
        if known is None:
            return invalid("square/go-jose: compact JWS format must have three parts")
        aud = known.get("audiences") or [API_AUDIENCE]
        meet = [a for a in want if a in aud]
        if not meet:
            return invalid("token audiences %s is invalid for the target audiences %s" %
                           (json.dumps(aud), json.dumps(want)))
        if known.get("expired"):
            return invalid("service account token has expired")
        ns, sa = known["serviceAccount"].split("/", 1)
        user = {"username": "system:serviceaccount:%s:%s" % (ns, sa),
                "uid": str(uuid_of("sa", ns, sa)),
                "groups": ["system:serviceaccounts", "system:serviceaccounts:" + ns,
                           "system:authenticated"]}
        if known.get("legacy"):
            # A Secret-based token: bound to no pod, so no pod or node in extra.
            user["extra"] = {"authentication.kubernetes.io/credential-id": [
                "secret(%s)" % uuid_of("secret", ns, sa)]}
            out["status"] = {"authenticated": True, "user": user, "audiences": meet}
            return out
        store = self.server.store
        with store.cond:
            pod = store.objects["Pod"].get("%s/%s" % (ns, known["pod"]))
        # The real server checks that the pod the token is bound to still exists.
        if pod is None:
            return invalid('pod "%s" not found' % known["pod"])
        pod_uid = pod["metadata"].get("uid", "")
        if known.get("podUID", pod_uid) != pod_uid:
            return invalid("pod %s/%s, uid %s, does not exist" % (ns, known["pod"],
                                                                   known["podUID"]))
        jti = hashlib.sha256(spec["token"].encode()).hexdigest()
        user["extra"] = {
            "authentication.kubernetes.io/credential-id": ["JTI=" + jti[:36]],
            "authentication.kubernetes.io/node-name": [known["node"]],
            "authentication.kubernetes.io/node-uid": [str(uuid_of("node", known["node"]))],
            "authentication.kubernetes.io/pod-name": [known["pod"]],
            "authentication.kubernetes.io/pod-uid": [pod_uid],
        }
        out["status"] = {"authenticated": True, "user": user, "audiences": meet}
        return out

    def get_one(self, kind, ns, name):
        store = self.server.store
        key = name if kind in CLUSTER_SCOPED else "%s/%s" % (ns, name)
        with store.cond:
            obj = store.objects[kind].get(key)
        if obj is None:
            self.send_json(404, status(404, "NotFound", '%ss "%s" not found' %
                                       (kind.lower(), name)))
        else:
            self.send_json(200, obj)

    def list(self, kind, q, reqs):
        store = self.server.store
        _, api, list_kind = RESOURCES[KIND_PATH[kind]]
        limit = int(q.get("limit", ["0"])[0] or 0)
        cont = q.get("continue", [""])[0]
        with store.cond:
            store.stats["list"] += 1
            if cont:
                _, rv, offset, _ = json.loads(base64.b64decode(cont))
                snap = self.server.pages.get(cont)
                if snap is None:
                    self.send_json(410, status(410, "Expired", "continue token expired"))
                    return
            else:
                rv, offset = store.rv, 0
                snap = [o for _, o in sorted(store.objects[kind].items()) if matches(reqs, o)]
        items = snap[offset:offset + limit] if limit else snap[offset:]
        meta = {"resourceVersion": str(rv)}
        if limit and offset + limit < len(snap):
            # Like the real one, a token names the list it continues.
            token = base64.b64encode(json.dumps(
                [kind, rv, offset + limit, q.get("labelSelector", [""])[0] +
                 "|" + q.get("fieldSelector", [""])[0]]).encode()).decode()
            self.server.pages[token] = snap
            meta["continue"] = token
        self.send_json(200, {"kind": list_kind, "apiVersion": api, "metadata": meta,
                             "items": items})

    def watch(self, kind, q, reqs):
        store = self.server.store
        rv_text = q.get("resourceVersion", [""])[0]
        bookmarks = q.get("allowWatchBookmarks", ["false"])[0] in ("1", "true")
        timeout = float(q.get("timeoutSeconds", ["0"])[0] or 0) or self.server.max_watch
        timeout = min(timeout, self.server.max_watch)
        # Headers go out at once, before any event: clients rely on it to
        # know the watch is established.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        end = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        with store.cond:
            store.stats["watch"] += 1
            gen = store.generation
            if rv_text in ("", "0"):
                # "Any version": the current objects as ADDED, then changes.
                pos_rv = store.rv
                backlog = [("ADDED", o) for _, o in sorted(store.objects[kind].items())
                           if matches(reqs, o)]
            else:
                pos_rv = int(rv_text)
                backlog = []
                if pos_rv < store.oldest:
                    store.stats["expired"] += 1
                    backlog = None
        try:
            if backlog is None:
                self.send_event("ERROR", status(
                    410, "Expired", "too old resource version: %d (%d)" %
                    (pos_rv, store.oldest + 1)))
                self.chunk(b"")
                return
            for typ, obj in backlog:
                self.send_event(typ, obj)
            while True:
                out = []
                with store.cond:
                    while True:
                        if store.generation != gen:
                            action = store.action
                            break
                        if pos_rv < store.oldest:
                            action = "expire"  # compacted under a live watch
                            break
                        fresh = [h for h in store.history if h[0] > pos_rv]
                        now = time.monotonic()
                        if fresh or now >= end:
                            action = None
                            break
                        if bookmarks and now - last_bookmark >= self.server.bookmark_every:
                            action = "bookmark"
                            break
                        store.cond.wait(min(end - now, 0.1))
                    for rv, k, typ, old, new in fresh if action is None else []:
                        pos_rv = rv
                        if k != kind:
                            continue
                        was, now_in = matches(reqs, old), matches(reqs, new)
                        if typ == "DELETED":
                            if was:
                                out.append(("DELETED", new))
                        elif was and now_in:
                            out.append(("MODIFIED", new))
                        elif now_in:
                            out.append(("ADDED", new))
                        elif was:
                            out.append(("DELETED", new))  # left the selector
                    cur_rv = store.rv
                if action == "expire":
                    self.send_event("ERROR", status(
                        410, "Expired", "too old resource version: %d (%d)" %
                        (pos_rv, store.oldest + 1)))
                    break
                if action == "close":
                    break
                if action == "bookmark":
                    last_bookmark = time.monotonic()
                    self.send_event("BOOKMARK", {
                        "kind": kind, "apiVersion": RESOURCES[KIND_PATH[kind]][1],
                        "metadata": {"resourceVersion": str(cur_rv)}})
                    pos_rv = max(pos_rv, cur_rv)
                    continue
                self.send_events(out)
                if time.monotonic() >= end:
                    break
            self.chunk(b"")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        self.close_connection = True

    def send_event(self, typ, obj):
        self.send_events([(typ, obj)])

    def send_events(self, evs):
        if not evs:
            return
        rnd = self.server.random
        data = b"".join((json.dumps({"type": t, "object": o}, separators=(",", ":")) +
                         "\n").encode() for t, o in evs)
        # One write of several events, or each split at random offsets.
        if len(evs) > 1 and rnd.random() < 0.3:
            self.chunk(data)
        else:
            self.write_split(data)


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # Headers and body are two writes: no Nagle wait between them.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        store = self.server.store
        if self.path == "/stats":
            with store.cond:
                self.reply(200, dict(store.stats, resourceVersion=store.rv))
        else:
            self.reply(404, {"error": "no such control"})

    def do_POST(self):
        store = self.server.store
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n else b""
        try:
            if self.path == "/apply":
                evs = json.loads(body)
                if isinstance(evs, dict):
                    evs = [evs]
                rv = 0
                for ev in evs:
                    rv = store.apply(ev)
                self.reply(200, {"resourceVersion": rv})
            elif self.path == "/compact":
                store.compact()
                self.reply(200, {})
            elif self.path in ("/expire", "/close"):
                store.kick(self.path[1:])
                self.reply(200, {})
            else:
                self.reply(404, {"error": "no such control"})
        except (ValueError, KeyError) as e:
            self.reply(400, {"error": str(e)})


TOKENREVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
# The audience of tokens meant for the API server itself (kube-apiserver's
# --api-audiences defaults to its service account issuer).
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"


def uuid_of(*parts):
    """A stable UUID for a name, as the real objects have one."""
    import uuid
    return uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts))


def read_reviews(path):
    if not path:
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def read_tokens(path):
    if not path:
        return set()
    try:
        with open(path) as f:
            return {line.strip() for line in f if line.strip()}
    except OSError:
        return set()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="API port on 127.0.0.1 (0: any)")
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--forbidden-token-file", default="")
    ap.add_argument("--token-reviews", default="",
                    help="JSON: the tokens TokenReview knows (see the docstring)")
    ap.add_argument("--history", type=int, default=1000, help="events kept for watches")
    ap.add_argument("--start-rv", type=int, default=1000)
    ap.add_argument("--bookmark-every", type=float, default=1.0)
    ap.add_argument("--max-watch", type=float, default=60.0,
                    help="longest watch, whatever timeoutSeconds asks")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--seed-file", action="append", default=[],
                    help="an ndjson of events applied at start")
    ap.add_argument("--port-file", help="write 'API_PORT CONTROL_PORT' here when ready")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--no-crd", action="store_true",
                    help="serve no AuthorizationPolicy, as a cluster without shoal's CRD")
    args = ap.parse_args()
    if args.no_crd:
        path = KIND_PATH.pop("AuthorizationPolicy")
        del RESOURCES[path]

    store = Store(args.history, args.start_rv)
    for path in args.seed_file:
        with open(path) as f:
            for line in f:
                ev = json.loads(line) if line.strip() else {}
                # Fixtures also hold BOOKMARK and ERROR lines: not objects.
                if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    store.apply(ev)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    api = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    api.daemon_threads = True
    api.socket = ctx.wrap_socket(api.socket, server_side=True)
    api.store = store
    api.token_file = args.token_file
    api.forbidden_file = args.forbidden_token_file
    api.reviews_file = args.token_reviews
    api.bookmark_every = args.bookmark_every
    api.max_watch = args.max_watch
    api.random = random.Random(args.seed)
    api.verbose = args.verbose
    api.pages = {}
    ctl = ThreadingHTTPServer(("127.0.0.1", args.control_port), Control)
    ctl.daemon_threads = True
    ctl.store = store
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    ports = "%d %d\n" % (api.server_address[1], ctl.server_address[1])
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(ports)
        import os
        os.rename(args.port_file + ".tmp", args.port_file)
    sys.stdout.write(ports)
    sys.stdout.flush()
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
