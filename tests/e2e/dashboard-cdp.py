#!/usr/bin/env python3
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
"""dashboard-cdp.py: drives a real headless Chromium over the DevTools
protocol (python3-websockets) through shoal's web dashboard, for
tests/e2e/dashboard.sh. Run it in the netns whose loopback has the admin
endpoint.

  dashboard-cdp.py --origin http://127.0.0.1:15020 --out DIR --ctl DIR
                   --service default/cb --endpoints A,B,C --flaky A

Steps, each printed as "ok: ..." or "FAIL: ..." (exit 1 on any FAIL):
 1. Services: the page lists --service with a request rate;
    screenshot services.png.
 2. The service: every --endpoints address is a row; routes table;
    screenshot service.png.
 3. --split-service shows its route's --split (service-split.png); the
    call graph shows --edge with a rate, the Kernel page intercepted
    connects; screenshots graph.png, kernel.png.
 4. The breaker: it writes CTL/fault-on and waits (45 s) for the --flaky
    row to show a breaker that is not closed (screenshot breaker-open.png),
    writes CTL/fault-off, and waits (45 s) for it to show closed again.
 5. No JavaScript console error or exception the whole time, and every
    request the page made went to --origin.
Chromium is started here, in its own process group, and that group is
killed on the way out.
"""
import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import websockets

FAILED = False


def ok(msg):
    print("ok: " + msg, flush=True)


def fail(msg):
    global FAILED
    FAILED = True
    print("FAIL: " + msg, flush=True)


def start_chromium(profile):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    # --no-sandbox: the test runs as root, where Chromium's sandbox refuses
    # to start; the page is our own dashboard on loopback.
    proc = subprocess.Popen(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--metrics-recording-only", "--mute-audio",
         "--window-size=1280,900", "--remote-debugging-port=0",
         "--remote-debugging-address=127.0.0.1",
         "--user-data-dir=" + profile, "about:blank"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(profile, "..", "chromium.log"), "w"),
        start_new_session=True)
    port_file = os.path.join(profile, "DevToolsActivePort")
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError("chromium exited with %d at start" % proc.returncode)
        try:
            with open(port_file) as f:
                lines = f.read().split("\n")
            if len(lines) >= 2 and lines[1]:
                return proc, "ws://127.0.0.1:%s%s" % (lines[0], lines[1])
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    raise RuntimeError("chromium wrote no DevToolsActivePort in 30 s")


class Cdp:
    """One browser websocket; one flattened page session on it."""

    def __init__(self, ws):
        self.ws, self.next_id, self.pending, self.session = ws, 0, {}, None
        self.console_errors, self.requests = [], []

    async def pump(self):
        async for raw in self.ws:
            m = json.loads(raw)
            if "id" in m and m["id"] in self.pending:
                self.pending.pop(m["id"]).set_result(m)
                continue
            method, p = m.get("method"), m.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                self.console_errors.append("console.%s: %s" % (
                    p["type"], " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))))
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                self.console_errors.append("exception: %s %s" % (
                    d.get("text", ""), d.get("exception", {}).get("description", "")))
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                self.console_errors.append("log: %s (%s)" % (p["entry"].get("text"), p["entry"].get("url", "")))
            elif method == "Network.requestWillBeSent":
                self.requests.append(p["request"]["url"])

    async def call(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send(json.dumps(msg))
        r = await asyncio.wait_for(fut, timeout)
        if "error" in r:
            raise RuntimeError("%s: %s" % (method, r["error"]))
        return r.get("result", {})

    async def eval(self, expr):
        r = await self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError("evaluate %s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    async def wait_for(self, expr, seconds):
        """Poll expr (JS) until it is truthy; its value, or None after seconds."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            v = await self.eval(expr)
            if v:
                return v
            await asyncio.sleep(0.25)
        return None

    async def screenshot(self, path):
        r = await self.call("Page.captureScreenshot", {"format": "png"})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    async def go(self, url):
        await self.call("Page.navigate", {"url": url})


def js_str(s):
    return json.dumps(s)


async def run(args, ws_url):
    async with websockets.connect(ws_url, max_size=64 << 20) as ws:
        cdp = Cdp(ws)
        pump = asyncio.create_task(cdp.pump())
        target = await cdp.call("Target.createTarget", {"url": "about:blank"}, session=False)
        att = await cdp.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                             session=False)
        cdp.session = att["sessionId"]
        for dom in ("Runtime", "Log", "Network", "Page"):
            await cdp.call(dom + ".enable")
        o, svc = args.origin, args.service
        endpoints = args.endpoints.split(",")

        # 1. Services.
        await cdp.go(o + "/dashboard#/services")
        row = "[...document.querySelectorAll('tr[data-service]')].find(r => r.dataset.service === %s)" % js_str(svc)
        rate = await cdp.wait_for(
            "(() => { const r = %s; if (!r) return null; const v = parseFloat(r.children[1].textContent);"
            " return v > 0 ? r.textContent : null; })()" % row, 20)
        if rate:
            ok("Services lists %s with a request rate: %s" % (svc, rate))
        else:
            fail("Services shows no %s with a request rate in 20 s (page: %s)" % (
                svc, await cdp.eval("document.getElementById('page').textContent")))
        live = await cdp.eval("document.getElementById('status').textContent")
        ok("the stream is %s" % live) if live == "live" else fail("status is '%s', not live" % live)
        await cdp.screenshot(os.path.join(args.out, "services.png"))

        # 2. The service.
        await cdp.go(o + "/dashboard#/service/" + svc)
        shown = await cdp.wait_for(
            "(() => { const a = [...document.querySelectorAll('tr[data-endpoint]')].map(r => r.dataset.endpoint);"
            " return %s.every(e => a.includes(e)) ? a : null; })()" % json.dumps(endpoints), 15)
        if shown:
            ok("the service page lists its endpoints %s" % ",".join(shown))
        else:
            fail("the service page lacks some of %s: %s" % (
                endpoints, await cdp.eval("document.getElementById('page').textContent")))
        await cdp.screenshot(os.path.join(args.out, "service.png"))

        # The split service's route.
        await cdp.go(o + "/dashboard#/service/" + args.split_service)
        split = await cdp.wait_for(
            "(() => { const r = document.querySelector('tr[data-route]'); const t = r ? r.textContent : '';"
            " return t.includes(%s) ? t : null; })()" % js_str(args.split), 10)
        ok("%s shows its route's split: %s" % (args.split_service, split)) if split else \
            fail("%s shows no split '%s': %s" % (args.split_service, args.split,
                                               await cdp.eval("document.getElementById('page').textContent")))
        await cdp.screenshot(os.path.join(args.out, "service-split.png"))

        # 3. Call graph and Kernel.
        await cdp.go(o + "/dashboard#/graph")
        edge = await cdp.wait_for(
            "(() => { const r = [...document.querySelectorAll('tr[data-edge]')].find(r => r.dataset.edge === %s);"
            " return r && parseFloat(r.children[2].textContent) > 0 ? r.textContent : null; })()" % js_str(args.edge), 15)
        ok("the call graph shows edge %s with a rate: %s" % (args.edge, edge)) if edge else \
            fail("the call graph shows no edge %s with a rate: %s" % (
                args.edge, await cdp.eval("document.getElementById('page').textContent")))
        if args.caller_edge:
            cedge = await cdp.wait_for(
                "(() => { const r = [...document.querySelectorAll('tr[data-caller-edge]')]"
                ".find(r => r.dataset.callerEdge === %s);"
                " const l = [...document.querySelectorAll('line[data-caller-edge]')]"
                ".find(l => l.dataset.callerEdge === %s);"
                " return r && l && parseFloat(r.children[2].textContent) > 0 ? r.textContent : null; })()"
                % (js_str(args.caller_edge), js_str(args.caller_edge)), 15)
            ok("the call graph draws caller edge %s with a rate: %s" % (args.caller_edge, cedge)) if cedge else \
                fail("the call graph draws no caller edge %s with a rate: %s" % (
                    args.caller_edge, await cdp.eval("document.getElementById('page').textContent")))
        await cdp.screenshot(os.path.join(args.out, "graph.png"))
        await cdp.go(o + "/dashboard#/kernel")
        kern = await cdp.wait_for(
            "(() => { const r = document.querySelector('tr[data-counter=connect_intercepted]');"
            " return r && parseInt(r.children[1].textContent) > 0 ? r.children[1].textContent : null; })()", 10)
        ok("the kernel page shows %s intercepted connects" % kern) if kern else \
            fail("the kernel page shows no intercepted connects: %s" % (
                await cdp.eval("document.getElementById('page').textContent")))
        await cdp.screenshot(os.path.join(args.out, "kernel.png"))

        # 4. The breaker, on the service page.
        await cdp.go(o + "/dashboard#/service/" + svc)
        state = ("(() => { const r = [...document.querySelectorAll('tr[data-endpoint]')]"
                 ".find(r => r.dataset.endpoint === %s); return r ? r.dataset.breaker : ''; })()" % js_str(args.flaky))
        await cdp.wait_for(state + " === 'closed'", 10)
        open(os.path.join(args.ctl, "fault-on"), "w").close()
        t0 = time.monotonic()
        opened = await cdp.wait_for("(() => { const s = %s; return s && s !== 'closed' ? s : null; })()" % state, 45)
        if opened:
            ok("the flaky endpoint %s shows breaker %s after %.1f s" % (args.flaky, opened, time.monotonic() - t0))
            await cdp.screenshot(os.path.join(args.out, "breaker-open.png"))
        else:
            fail("the flaky endpoint's breaker never showed open in 45 s")
        open(os.path.join(args.ctl, "fault-off"), "w").close()
        t0 = time.monotonic()
        closed = await cdp.wait_for(state + " === 'closed'", 45)
        if opened and closed:
            ok("the breaker shows closed again %.1f s after the endpoint recovered" % (time.monotonic() - t0))
        elif opened:
            fail("the breaker did not show closed again in 45 s (shows %s)" % await cdp.eval(state))
        await cdp.screenshot(os.path.join(args.out, "breaker-closed.png"))

        # 5. Console and origin.
        await asyncio.sleep(0.5)
        if cdp.console_errors:
            for e in cdp.console_errors:
                fail("JavaScript console: " + e)
        else:
            ok("no JavaScript console errors or exceptions")
        foreign = [u for u in cdp.requests if not (u.startswith(o + "/") or u == o or u.startswith("data:"))]
        if foreign:
            fail("requests off the admin origin: %s" % foreign[:5])
        elif cdp.requests:
            ok("all %d requests went to %s (%s)" % (len(cdp.requests), o, ", ".join(sorted(set(
                u[len(o):] for u in cdp.requests)))))
        else:
            fail("no request was seen at all (the Network domain saw nothing)")
        pump.cancel()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--origin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--flaky", required=True)
    ap.add_argument("--split-service", required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--edge", required=True)
    ap.add_argument("--caller-edge", help="CALLER>SERVICE: a caller edge the graph must draw with a rate")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="chromium.", dir=args.out)
    profile = os.path.join(tmp, "profile")
    os.mkdir(profile)
    proc = None
    try:
        proc, ws_url = start_chromium(profile)
        print("chromium pid %d, %s" % (proc.pid, ws_url), flush=True)
        asyncio.run(asyncio.wait_for(run(args, ws_url), 150))
    except Exception as e:  # a broken step is a failure, with its reason
        fail("%s: %s" % (type(e).__name__, e))
    finally:
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own group: only our Chromium
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    sys.exit(1 if FAILED else 0)


main()
