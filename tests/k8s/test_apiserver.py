#!/usr/bin/env python3
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
"""Checks that the stand-in API server behaves like a real one in each
point shoal's watcher depends on (tests/k8s/apiserver.py's docstring).
Run: python3 tests/k8s/test_apiserver.py (needs openssl). Standard
library only; exits 77 (skip) when openssl is missing."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
# Where scripts/setup.sh unpacks Debian's kubectl when another package
# owns /usr/bin/kubectl.
KUBECTL_DEBIAN_DIR = "/opt/shoal/kubernetes-client/usr/bin/kubectl"


def debian_kubectl():
    """The path of Debian's kubectl (package kubernetes-client), or None."""
    try:
        out = subprocess.run(["dpkg-query", "-L", "kubernetes-client"], capture_output=True,
                             text=True).stdout.split()
    except OSError:
        out = []
    for path in out + [KUBECTL_DEBIAN_DIR]:
        if path.endswith("/bin/kubectl") and os.access(path, os.X_OK):
            return path
    return None


def slice_obj(name, svc, ips, labels=None):
    lab = {"kubernetes.io/service-name": svc}
    lab.update(labels or {})
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": name, "namespace": "shop", "labels": lab},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip]} for ip in ips],
            "ports": [{"name": "http", "port": 8080}]}


def pod_obj(name, ns, node, labels=None, ip="10.244.0.9", host_network=False):
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns, "uid": "uid-" + name,
                         "labels": labels or {}},
            "spec": {"nodeName": node, "serviceAccountName": "sa-" + name,
                     "hostNetwork": host_network},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def ns_obj(name, labels=None):
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "labels": labels or {}}, "status": {"phase": "Active"}}


class StandIn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="shoal-apiserver-")
        subprocess.check_call(["sh", os.path.join(HERE, "mkcerts.sh"), cls.dir])
        with open(os.path.join(cls.dir, "tokens"), "w") as f:
            f.write("good\n")
        with open(os.path.join(cls.dir, "forbidden"), "w") as f:
            f.write("nosy\n")
        with open(os.path.join(cls.dir, "reviews"), "w") as f:
            json.dump({
                "agent-token": {"serviceAccount": "shoal-system/shoald", "pod": "shoald-x",
                                "node": "node-a", "audiences": ["shoal-identity"]},
                "expired-token": {"serviceAccount": "shoal-system/shoald", "pod": "shoald-x",
                                  "node": "node-a", "audiences": ["shoal-identity"],
                                  "expired": True},
                "gone-token": {"serviceAccount": "shoal-system/shoald", "pod": "shoald-gone",
                               "node": "node-a", "audiences": ["shoal-identity"]},
                "legacy-token": {"serviceAccount": "shoal-system/shoald", "legacy": True,
                                 "audiences": ["shoal-identity"]},
            }, f)
        ports = os.path.join(cls.dir, "ports")
        cls.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "apiserver.py"),
             "--cert", os.path.join(cls.dir, "server.crt"),
             "--key", os.path.join(cls.dir, "server.key"),
             "--token-file", os.path.join(cls.dir, "tokens"),
             "--forbidden-token-file", os.path.join(cls.dir, "forbidden"),
             "--token-reviews", os.path.join(cls.dir, "reviews"),
             "--history", "5", "--bookmark-every", "0.3", "--seed", "3",
             "--port-file", ports], stdout=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(ports):
                break
            time.sleep(0.05)
        with open(ports) as f:
            cls.api, cls.ctl = map(int, f.read().split())
        cls.ctx = ssl.create_default_context(cafile=os.path.join(cls.dir, "ca.crt"))

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait()
        shutil.rmtree(cls.dir)

    # ---- helpers ----

    def control(self, what, body=None):
        req = urllib.request.Request("http://127.0.0.1:%d/%s" % (self.ctl, what),
                                     data=json.dumps(body).encode() if body else b"",
                                     method="POST")
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def apply(self, typ, obj):
        return self.control("apply", {"type": typ, "object": obj})["resourceVersion"]

    def get(self, path, token="good"):
        req = urllib.request.Request("https://127.0.0.1:%d%s" % (self.api, path))
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, context=self.ctx) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def raw_watch(self, query, token="good"):
        """(seconds to headers, [chunks]) of a watch, read off the socket."""
        s = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.api)),
                                 server_hostname="127.0.0.1")
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" %
                   (query, token)).encode())
        f = s.makefile("rb")
        t0 = time.monotonic()
        status = f.readline()
        self.assertIn(b" 200 ", status)
        while f.readline() not in (b"\r\n", b""):
            pass
        headers_after = time.monotonic() - t0
        chunks = []
        while True:
            size = int(f.readline().strip(), 16)
            if size == 0:
                break
            chunks.append(f.read(size))
            f.read(2)
        s.close()
        return headers_after, chunks

    def events(self, chunks):
        data = b"".join(chunks)
        return [json.loads(line) for line in data.split(b"\n") if line.strip()]

    # ---- tests ----

    def test_tokens_and_status_objects(self):
        code, body = self.get("/api/v1/services", token=None)
        self.assertEqual(code, 401)
        self.assertEqual((body["kind"], body["code"]), ("Status", 401))
        code, body = self.get("/api/v1/services", token="wrong")
        self.assertEqual(code, 401)
        code, body = self.get("/api/v1/services", token="nosy")
        self.assertEqual((code, body["kind"], body["reason"]), (403, "Status", "Forbidden"))
        code, body = self.get("/api/v1/services")
        self.assertEqual((code, body["kind"]), (200, "ServiceList"))

    def test_resource_version_rises_and_list_pages(self):
        rvs = [self.apply("ADDED", slice_obj("page-%d" % i, "pages", ["10.9.0.%d" % i]))
               for i in range(3)]
        self.assertEqual(rvs, sorted(set(rvs)))
        seen, cont = [], ""
        while True:
            code, body = self.get("/apis/discovery.k8s.io/v1/endpointslices?limit=1" +
                                  ("&continue=" + cont if cont else ""))
            self.assertEqual(code, 200)
            seen += [i["metadata"]["name"] for i in body["items"]]
            cont = body["metadata"].get("continue", "")
            if not cont:
                break
        for i in range(3):
            self.assertIn("page-%d" % i, seen)
        self.assertGreaterEqual(int(body["metadata"]["resourceVersion"]), rvs[-1])

    def test_headers_first_then_split_chunks_and_bookmarks(self):
        start = self.apply("ADDED", slice_obj("split-0", "split", ["10.8.0.1"]))
        for i in range(1, 6):
            self.apply("MODIFIED", slice_obj("split-0", "split", ["10.8.0.%d" % i]))
        after, chunks = self.raw_watch(
            "/apis/discovery.k8s.io/v1/endpointslices?watch=1&allowWatchBookmarks=true"
            "&resourceVersion=%d&timeoutSeconds=1" % start)
        self.assertLess(after, 0.5, "headers came late")
        evs = self.events(chunks)
        types = [e["type"] for e in evs]
        self.assertEqual(types.count("MODIFIED"), 5)
        self.assertIn("BOOKMARK", types)
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
        self.assertEqual(rvs, sorted(rvs), "resourceVersion must rise")
        # Some chunk ends inside a line: clients must reassemble.
        self.assertTrue(any(not c.endswith(b"\n") for c in chunks), "no split line")

    def test_old_version_gets_410_in_stream(self):
        for i in range(7):  # more than the history window of 5
            self.apply("MODIFIED" if i else "ADDED", slice_obj("old-0", "old", ["10.7.0.%d" % i]))
        _, chunks = self.raw_watch(
            "/apis/discovery.k8s.io/v1/endpointslices?watch=1&resourceVersion=1&timeoutSeconds=1")
        evs = self.events(chunks)
        self.assertEqual(len(evs), 1)
        self.assertEqual(evs[0]["type"], "ERROR")
        self.assertEqual((evs[0]["object"]["kind"], evs[0]["object"]["code"]), ("Status", 410))

    def test_leaving_the_selector_is_deleted(self):
        start = self.apply("ADDED", slice_obj("sel-0", "sel", ["10.6.0.1"], {"tier": "web"}))
        self.apply("MODIFIED", slice_obj("sel-0", "sel", ["10.6.0.2"], {"tier": "db"}))
        self.apply("MODIFIED", slice_obj("sel-0", "sel", ["10.6.0.3"], {"tier": "web"}))
        self.apply("ADDED", slice_obj("sel-1", "sel", ["10.6.0.4"], {"tier": "db"}))
        _, chunks = self.raw_watch(
            "/apis/discovery.k8s.io/v1/endpointslices?watch=1&labelSelector=tier%%3Dweb"
            "&resourceVersion=%d&timeoutSeconds=1" % (start - 1))
        evs = [(e["type"], e["object"]["metadata"]["name"]) for e in self.events(chunks)]
        self.assertEqual(evs, [("ADDED", "sel-0"), ("DELETED", "sel-0"), ("ADDED", "sel-0")])
        code, body = self.get("/apis/discovery.k8s.io/v1/endpointslices?labelSelector=tier!%3Dweb")
        names = [i["metadata"]["name"] for i in body["items"]]
        self.assertIn("sel-1", names)
        self.assertNotIn("sel-0", names)

    def test_pods_by_node_field_selector(self):
        start = self.apply("ADDED", pod_obj("fs-a", "fs", "node-a"))
        self.apply("ADDED", pod_obj("fs-b", "fs", "node-b"))
        self.apply("MODIFIED", pod_obj("fs-a", "fs", "node-a", {"v": "2"}))
        self.apply("DELETED", pod_obj("fs-a", "fs", "node-a"))
        self.apply("ADDED", pod_obj("fs-c", "fs", "node-a"))
        code, body = self.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a")
        self.assertEqual((code, body["kind"]), (200, "PodList"))
        names = [i["metadata"]["name"] for i in body["items"]]
        self.assertIn("fs-c", names)
        self.assertFalse([n for n in names if n in ("fs-a", "fs-b")], names)
        # (five events: the whole history window of this server)
        _, chunks = self.raw_watch(
            "/api/v1/pods?watch=1&fieldSelector=spec.nodeName%%3Dnode-a"
            "&resourceVersion=%d&timeoutSeconds=1" % (start - 1))
        evs = [(e["type"], e["object"]["metadata"]["name"]) for e in self.events(chunks)]
        self.assertEqual(evs, [("ADDED", "fs-a"), ("MODIFIED", "fs-a"), ("DELETED", "fs-a"),
                               ("ADDED", "fs-c")])
        # != and a second requirement, as client-go joins them with ",".
        code, body = self.get("/api/v1/pods?fieldSelector=spec.nodeName!%3Dnode-a,"
                              "metadata.namespace%3Dfs")
        self.assertEqual([i["metadata"]["name"] for i in body["items"]], ["fs-b"])
        code, body = self.get("/api/v1/pods?fieldSelector=spec.hostNetwork%3Dfalse,"
                              "metadata.namespace%3Dfs")
        self.assertEqual([i["metadata"]["name"] for i in body["items"]], ["fs-b", "fs-c"])

    def test_unknown_field_selector_is_400(self):
        code, body = self.get("/api/v1/pods?fieldSelector=spec.nope%3Dx")
        self.assertEqual((code, body["kind"], body["reason"]), (400, "Status", "BadRequest"))
        self.assertIn("spec.nope", body["message"])
        code, body = self.get("/api/v1/namespaces?fieldSelector=spec.nodeName%3Dx")
        self.assertEqual(code, 400)

    def test_namespaced_paths_and_get(self):
        self.apply("ADDED", pod_obj("np-1", "np-a", "node-a"))
        self.apply("ADDED", pod_obj("np-2", "np-b", "node-a"))
        code, body = self.get("/api/v1/namespaces/np-a/pods")
        self.assertEqual([i["metadata"]["name"] for i in body["items"]], ["np-1"])
        code, body = self.get("/api/v1/namespaces/np-b/pods/np-2")
        self.assertEqual((code, body["metadata"]["uid"]), (200, "uid-np-2"))
        code, body = self.get("/api/v1/namespaces/np-a/pods/np-2")
        self.assertEqual((code, body["kind"], body["reason"]), (404, "Status", "NotFound"))
        _, chunks = self.raw_watch("/api/v1/namespaces/np-b/pods?watch=1&timeoutSeconds=1")
        evs = [(e["type"], e["object"]["metadata"]["name"]) for e in self.events(chunks)]
        self.assertEqual(evs, [("ADDED", "np-2")])

    def test_namespaces_are_cluster_scoped_with_labels(self):
        start = self.apply("ADDED", ns_obj("ns-mesh", {"shoal.io/mesh": "enabled"}))
        self.apply("ADDED", ns_obj("ns-plain"))
        self.apply("MODIFIED", ns_obj("ns-mesh", {"shoal.io/mesh": "disabled"}))
        self.apply("MODIFIED", ns_obj("ns-plain", {"shoal.io/mesh": "enabled"}))
        code, body = self.get("/api/v1/namespaces/ns-mesh")
        self.assertEqual((code, body["kind"]), (200, "Namespace"))
        self.assertNotIn("namespace", body["metadata"])
        code, body = self.get("/api/v1/namespaces?labelSelector=shoal.io%2Fmesh%3Denabled")
        self.assertEqual((code, body["kind"]), (200, "NamespaceList"))
        names = [i["metadata"]["name"] for i in body["items"]]
        self.assertIn("ns-plain", names)
        self.assertNotIn("ns-mesh", names)
        _, chunks = self.raw_watch(
            "/api/v1/namespaces?watch=1&labelSelector=shoal.io%%2Fmesh%%3Denabled"
            "&resourceVersion=%d&timeoutSeconds=1" % (start - 1))
        evs = [(e["type"], e["object"]["metadata"]["name"]) for e in self.events(chunks)]
        self.assertEqual(evs, [("ADDED", "ns-mesh"), ("DELETED", "ns-mesh"),
                               ("ADDED", "ns-plain")])

    def test_pods_old_version_gets_410(self):
        for i in range(7):  # more than the history window of 5
            self.apply("MODIFIED" if i else "ADDED",
                       pod_obj("gone-0", "gone", "node-a", {"i": str(i)}))
        _, chunks = self.raw_watch(
            "/api/v1/pods?watch=1&fieldSelector=spec.nodeName%3Dnode-a"
            "&resourceVersion=1&timeoutSeconds=1")
        evs = self.events(chunks)
        self.assertEqual([(e["type"], e["object"]["code"]) for e in evs], [("ERROR", 410)])

    def test_discovery_documents(self):
        code, body = self.get("/api/v1")
        self.assertEqual((code, body["kind"]), (200, "APIResourceList"))
        res = {r["name"]: r for r in body["resources"]}
        self.assertTrue(res["pods"]["namespaced"])
        self.assertFalse(res["namespaces"]["namespaced"])
        code, body = self.get("/apis")
        self.assertEqual(body["groups"][0]["name"], "discovery.k8s.io")

    def test_kubectl_lists_and_watches_pods(self):
        """A real client, Debian's kubectl 1.20: discovery, a list with a
        field selector, and a watch that sees a pod added on the node and
        not one added on another node."""
        kubectl = debian_kubectl()
        if not kubectl:
            self.skipTest("Debian's kubectl (kubernetes-client) is not installed or unpacked "
                          "(scripts/setup.sh)")
        cfg = os.path.join(self.dir, "kubeconfig")
        with open(cfg, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters: [{name: s, cluster: {server: "
                    "'https://127.0.0.1:%d', certificate-authority: '%s'}}]\n"
                    "users: [{name: u, user: {token: good}}]\n"
                    "contexts: [{name: c, context: {cluster: s, user: u}}]\n"
                    "current-context: c\n" % (self.api, os.path.join(self.dir, "ca.crt")))
        base = [kubectl, "--kubeconfig", cfg, "--cache-dir", os.path.join(self.dir, "kcache"),
                "--request-timeout", "10s"]
        self.apply("ADDED", pod_obj("kc-1", "kc", "node-k"))
        self.apply("ADDED", pod_obj("kc-other", "kc", "node-z"))
        out = subprocess.run(base + ["get", "pods", "-A", "--field-selector",
                                     "spec.nodeName=node-k", "-o", "name"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split(), ["pod/kc-1"])
        watch = subprocess.Popen(
            base + ["get", "pods", "-n", "kc", "--watch", "--field-selector",
                    "spec.nodeName=node-k", "-o", "jsonpath={.metadata.name}{\"\\n\"}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.assertEqual(watch.stdout.readline().strip(), "kc-1")  # the list
            self.apply("ADDED", pod_obj("kc-late", "kc", "node-z"))
            self.apply("ADDED", pod_obj("kc-2", "kc", "node-k"))
            self.assertEqual(watch.stdout.readline().strip(), "kc-2")  # the watch
        finally:
            watch.kill()
            watch.communicate()
        out = subprocess.run(base + ["get", "namespace", "kc-none"], capture_output=True,
                             text=True, timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("not found", out.stderr)

    # ---- TokenReview ----

    def review(self, token, audiences=None, caller="good", body=None):
        spec = {"token": token}
        if audiences is not None:
            spec["audiences"] = audiences
        data = json.dumps(body if body is not None else
                          {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                           "spec": spec}).encode()
        req = urllib.request.Request(
            "https://127.0.0.1:%d/apis/authentication.k8s.io/v1/tokenreviews" % self.api,
            data=data, method="POST", headers={"Content-Type": "application/json"})
        if caller:
            req.add_header("Authorization", "Bearer " + caller)
        try:
            with urllib.request.urlopen(req, context=self.ctx) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def test_tokenreview_bound_token(self):
        pod = pod_obj("shoald-x", "shoal-system", "node-a")
        self.apply("ADDED", pod)
        code, r = self.review("agent-token", ["shoal-identity"])
        self.assertEqual(code, 201)  # a create, as on the real server
        self.assertEqual(r["kind"], "TokenReview")
        st = r["status"]
        self.assertIs(st["authenticated"], True)
        self.assertEqual(st["audiences"], ["shoal-identity"])
        user = st["user"]
        self.assertEqual(user["username"], "system:serviceaccount:shoal-system:shoald")
        self.assertTrue(user["uid"])
        self.assertEqual(user["groups"], ["system:serviceaccounts",
                                          "system:serviceaccounts:shoal-system",
                                          "system:authenticated"])
        extra = user["extra"]
        # one-element lists, as the real server's user.extra values are
        self.assertEqual(extra["authentication.kubernetes.io/pod-name"], ["shoald-x"])
        self.assertEqual(extra["authentication.kubernetes.io/pod-uid"], ["uid-shoald-x"])
        self.assertEqual(extra["authentication.kubernetes.io/node-name"], ["node-a"])
        self.assertEqual(len(extra["authentication.kubernetes.io/node-uid"]), 1)
        self.assertTrue(extra["authentication.kubernetes.io/credential-id"][0].startswith("JTI="))
        # the pod gone: the bound token no longer authenticates
        self.apply("DELETED", pod)
        code, r = self.review("agent-token", ["shoal-identity"])
        self.assertEqual(code, 201)
        self.assertNotIn("authenticated", r["status"])
        self.assertIn("not found", r["status"]["error"])

    def test_tokenreview_legacy_token(self):
        # a Secret-based token authenticates, but names no pod or node
        code, r = self.review("legacy-token", ["shoal-identity"])
        self.assertEqual(code, 201)
        st = r["status"]
        self.assertIs(st["authenticated"], True)
        self.assertEqual(st["user"]["username"], "system:serviceaccount:shoal-system:shoald")
        self.assertNotIn("authentication.kubernetes.io/pod-name", st["user"]["extra"])
        self.assertNotIn("authentication.kubernetes.io/node-name", st["user"]["extra"])

    def test_tokenreview_refusals(self):
        self.apply("ADDED", pod_obj("shoald-x", "shoal-system", "node-a"))
        # unknown token: authenticated omitted (false), empty user, an error
        code, r = self.review("who-knows", ["shoal-identity"])
        self.assertEqual(code, 201)
        self.assertNotIn("authenticated", r["status"])
        self.assertEqual(r["status"]["user"], {})
        self.assertIn("invalid bearer token", r["status"]["error"])
        # the wrong audience (none given means the API server's own)
        for aud in (["someone-else"], None):
            code, r = self.review("agent-token", aud)
            self.assertEqual(code, 201)
            self.assertNotIn("authenticated", r["status"])
            self.assertIn("audiences", r["status"]["error"])
        code, r = self.review("expired-token", ["shoal-identity"])
        self.assertIn("expired", r["status"]["error"])
        code, r = self.review("gone-token", ["shoal-identity"])
        self.assertIn("not found", r["status"]["error"])
        # the caller must be authorized itself
        code, r = self.review("agent-token", ["shoal-identity"], caller=None)
        self.assertEqual((code, r["reason"]), (401, "Unauthorized"))
        code, r = self.review("agent-token", ["shoal-identity"], caller="nosy")
        self.assertEqual((code, r["reason"]), (403, "Forbidden"))
        self.assertIn("tokenreviews", r["message"])
        code, r = self.review("agent-token", body={"kind": "TokenReview", "spec": {}})
        self.assertEqual(code, 400)


if __name__ == "__main__":
    if not shutil.which("openssl"):
        print("SKIP: openssl is missing")
        sys.exit(77)
    unittest.main(verbosity=2)
