#!/usr/bin/env python3
# mtls-rotate-check.py: the checks of tests/e2e/mtls-rotate.sh, on what
# the run left: the load's JSON (mtls-rotate-load.py), both shoalds' logs
# and shoal-identity's. Prints one line per check, "ok: ..." or
# "FAIL: ...", and "note: ..." for figures; the script relays them.
#
#   mtls-rotate-check.py LOAD_JSON SHOALD_A_LOG SHOALD_B_LOG DOWN_AT UP_AT ISSUER_LOG...
#
# DOWN_AT and UP_AT (unix s) are when shoal-identity was killed and when
# it listened again. node-a holds default/client (the caller, a1), node-b
# default/web (the backend, b1).
import calendar
import json
import re
import sys
import time

TD = "cluster.local"
CLIENT, WEB = "default/client", "default/web"
# A log line and the thread that wrote the next one may race by this much
# (the identity thread publishes a certificate, then logs it).
RACE_S = 0.2
# A handshake is logged when it completes, and it presents the certificate
# that was newest when it began (its SSL object took it): one begun this
# long before a renewal may still present the one before.
HANDSHAKE_S = 0.5

failed = False


def ok(msg):
    print("ok: " + msg)


def fail(msg):
    global failed
    failed = True
    print("FAIL: " + msg)


def note(msg):
    print("note: " + msg)


LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z shoal \w+: (.*)$")
ISSUED = re.compile(r"^identity: spiffe://" + re.escape(TD) +
                    r"/ns/([^/]+)/sa/(\S+) issued, serial ([0-9A-F]+), valid until \S+"
                    r"(?: \(after (\d+) failed tries\))?$")
HANDSHAKE = re.compile(r"^tunnel: (connected to|accepted from) (\S+) as (\S+) \(.*; "
                       r"serial ([0-9A-F]+), peer's ([0-9A-F]+)\)$")
RETIRED = re.compile(r"^tunnel: connection to (\S+) as (\S+) retired \((.*?)\)")
KEPT = re.compile(r"^identity: ([^:]+): transport: .*the certificate held is kept until it expires$")


def read_log(path):
    """[(unix s, message)] of a shoald log."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if m:
                t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
                out.append((t + int(m.group(2)) / 1000.0, m.group(3)))
    return out


def node(path, account):
    """What one shoald's log says: issued certificates of account, handshakes, retirements."""
    n = {"issued": [], "conns": [], "retired": [], "kept": [], "closed_retired": 0}
    for t, msg in read_log(path):
        m = ISSUED.match(msg)
        if m and "%s/%s" % (m.group(1), m.group(2)) == account:
            n["issued"].append((t, m.group(3), int(m.group(4) or 0)))
            continue
        m = HANDSHAKE.match(msg)
        if m:
            n["conns"].append({"t": t, "out": m.group(1) == "connected to", "peer": m.group(2),
                               "as": m.group(3), "ours": m.group(4), "theirs": m.group(5)})
            continue
        m = RETIRED.match(msg)
        if m:
            n["retired"].append((t, m.group(3)))
            continue
        m = KEPT.match(msg)
        if m and m.group(1) == account:
            n["kept"].append(t)
            continue
        if msg.startswith("tunnel: retired connection to ") and "its last stream ended" in msg:
            n["closed_retired"] += 1
    return n


def current_at(issued, t):
    """The serials a handshake completed at t may present: the one issued
    last at or before t, the one newest when the handshake may have begun
    (HANDSHAKE_S before t), or one logged within RACE_S after t
    (published first)."""
    cur, begun = [None], None
    for it, serial, _ in issued:
        if it <= t - HANDSHAKE_S:
            begun = serial
        if it <= t:
            cur[0] = serial
        elif it <= t + RACE_S:
            cur.append(serial)
    if begun is not None and begun not in cur:
        cur.append(begun)
    return cur


def main():
    load_path, a_log, b_log = sys.argv[1:4]
    down_at, up_at = float(sys.argv[4]), float(sys.argv[5])
    issuer_serials = set()
    for p in sys.argv[6:]:
        with open(p, errors="replace") as f:
            issuer_serials |= set(re.findall(r"issued spiffe://\S+ to .*, serial ([0-9A-F]+), "
                                             r"expires", f.read()))
    with open(load_path) as f:
        load = json.loads([l for l in f if l.startswith("{")][-1])
    start, end = load["start"], load["end"]
    a, b = node(a_log, CLIENT), node(b_log, WEB)

    # ---- the load ---------------------------------------------------------
    total_ok = sum(k["ok"] for k in load["kinds"].values())
    total_failed = sum(k["failed"] for k in load["kinds"].values())
    per_kind = ", ".join("%s %d ok/%d failed" % (n, k["ok"], k["failed"])
                         for n, k in sorted(load["kinds"].items()))
    note("load: %d requests in %.1f s (%s)" % (total_ok + total_failed, end - start, per_kind))
    if total_failed:
        fail("%d of %d requests failed; first: %s" % (total_failed, total_ok + total_failed,
                                                       load["failures"][:5]))
    elif total_ok < 300:
        fail("only %d requests in %.0f s: the load did not run" % (total_ok, end - start))
    else:
        ok("no request lost: %d of %d answered 200 by b1 across the rotations" %
           (total_ok, total_ok + total_failed))
    for n, k in sorted(load["kinds"].items()):
        if k["ok"] < 50:
            fail("load %s: only %d requests answered" % (n, k["ok"]))

    def window(lo, hi):
        okn = sum(s[1] for s in load["seconds"] if lo <= s[0] < hi)
        bad = sum(s[2] for s in load["seconds"] if lo <= s[0] < hi)
        return okn, bad

    # ---- renewals on both nodes -------------------------------------------
    for name, n, acct in (("node-a", a, CLIENT), ("node-b", b, WEB)):
        during = [i for i in n["issued"] if start <= i[0] <= end]
        serials = [i[1] for i in n["issued"]]
        note("%s: %s issued %d times, %d during the load (serials %s)" %
             (name, acct, len(serials), len(during), " ".join(s[:8] for s in serials)))
        if len(during) >= 2:
            ok("%s renewed %s %d times under load" % (name, acct, len(during)))
        else:
            fail("%s renewed %s %d times under load (want >= 2)" % (name, acct, len(during)))
        if len(set(serials)) != len(serials):
            fail("%s: a serial issued twice: %s" % (name, serials))
        missing = [s for s in serials if s not in issuer_serials]
        if missing:
            fail("%s holds serials shoal-identity never logged: %s" % (name, missing))
        else:
            ok("every serial %s logged is one shoal-identity issued (%d)" % (name, len(serials)))

    a_serials = {i[1] for i in a["issued"]}
    b_serials = {i[1] for i in b["issued"]}

    # ---- what each side presented, seen from the other -----------------------
    outs = [c for c in a["conns"] if c["out"] and c["peer"] == WEB and start <= c["t"] <= end]
    ins = [c for c in b["conns"] if not c["out"] and c["peer"] == CLIENT and start <= c["t"] <= end]
    seen_by_b = {c["theirs"] for c in ins}
    seen_by_a = {c["theirs"] for c in outs}
    note("node-a opened %d TLS connections to default/web during the load, node-b accepted %d" %
         (len(outs), len(ins)))
    if len(seen_by_b) >= 3 and seen_by_b <= a_serials:
        ok("node-b saw node-a present %d different certificates (all issued to default/client)" %
           len(seen_by_b))
    else:
        fail("node-b saw client serials %s (want >= 3, all of node-a's %s)" %
             (sorted(seen_by_b), sorted(a_serials)))
    if len(seen_by_a) >= 2 and seen_by_a <= b_serials:
        ok("node-a saw node-b present %d different certificates (all issued to default/web)" %
           len(seen_by_a))
    else:
        fail("node-a saw server serials %s (want >= 2, all of node-b's %s)" %
             (sorted(seen_by_a), sorted(b_serials)))

    # ---- every new handshake proves the newest certificate -----------------------
    stale = []
    for c in outs:
        if c["ours"] not in current_at(a["issued"], c["t"]):
            stale.append(("node-a as client", c["t"], c["ours"], current_at(a["issued"], c["t"])))
    for c in ins:
        if c["ours"] not in current_at(b["issued"], c["t"]):
            stale.append(("node-b as server", c["t"], c["ours"], current_at(b["issued"], c["t"])))
    if stale:
        fail("handshakes that presented an older certificate than the newest one: %s" % stale[:5])
    else:
        ok("each of %d new handshakes presented the newest certificate of its side" %
           (len(outs) + len(ins)))
    # each renewal of node-a's, but one at the very end, led to a new connection with it
    unused = [s for t, s, _ in a["issued"] if start <= t < end - 1 and
              s not in {c["ours"] for c in outs}]
    if unused:
        fail("node-a renewed (serials %s) but opened no connection with the new certificate" %
             unused)
    else:
        ok("after each renewal node-a's next TLS connection used the new certificate")
    renewed = [r for r in a["retired"] if "renewed" in r[1] and start <= r[0] <= end]
    if len(renewed) >= 2:
        ok("node-a retired %d pooled connections on renewal, %d in all" %
           (len(renewed), len(a["retired"])))
    else:
        fail("node-a retired %d pooled connections on renewal (want >= 2)" % len(renewed))
    # Their streams ran on (no request failed); once those ended they closed
    # cleanly (GOAWAY, close_notify), which node-b sees as the peer's end.
    clean_b = sum(1 for t, msg in read_log(b_log) if start <= t <= end and
                  msg.startswith("tunnel: inbound connection from %s closed: the peer closed TLS"
                                 % CLIENT))
    # Every one retired 2 s before the end or earlier, though the keep-alive
    # load never stops: the proxy gives its pooled upstream on a retired
    # connection no new request (tunnel_retirements), so the stream ends.
    due = [r for r in renewed if r[0] <= end - 2]
    if a["closed_retired"] >= max(1, len(due)) and clean_b >= 1:
        ok("%d retired connections closed after their last stream during the load, of %d "
           "retired on renewal by 2 s before its end (node-b saw %d clean TLS ends)" %
           (a["closed_retired"], len(due), clean_b))
    else:
        fail("retired connections closed after their last stream: %d (node-b saw %d clean "
             "TLS ends); want >= %d, each one retired on renewal 2 s before the end" %
             (a["closed_retired"], clean_b, max(1, len(due))))

    # ---- shoal-identity down ----------------------------------------------------
    down_ok, down_bad = window(down_at, up_at)
    note("shoal-identity down %.1f s: %d requests answered, %d failed meanwhile" %
         (up_at - down_at, down_ok, down_bad))
    if down_bad == 0 and down_ok >= 100:
        ok("with shoal-identity down, %d calls succeeded on the held certificates" % down_ok)
    else:
        fail("with shoal-identity down: %d answered, %d failed (want >= 100, 0)" %
             (down_ok, down_bad))
    after_ok, after_bad = window(up_at, end)
    if after_bad == 0 and after_ok > 0:
        ok("after shoal-identity came back, %d calls succeeded" % after_ok)
    else:
        fail("after shoal-identity came back: %d answered, %d failed" % (after_ok, after_bad))
    for name, n, acct in (("node-a", a, CLIENT), ("node-b", b, WEB)):
        kept = [t for t in n["kept"] if down_at <= t <= up_at + 1]
        if kept:
            ok("%s logged the failed renewal of %s, keeping its certificate (%.1f s after the "
               "kill)" % (name, acct, kept[0] - down_at))
        else:
            fail("%s logged no failed renewal of %s while shoal-identity was down" % (name, acct))
        while_down = [i for i in n["issued"] if down_at + 0.5 < i[0] < up_at]
        if while_down:
            fail("%s: issued while shoal-identity was down? %s" % (name, while_down))
        back = [i for i in n["issued"] if i[0] >= up_at and i[2] >= 1]
        if back:
            ok("%s renewed %s %.1f s after shoal-identity came back, after %d failed tries "
               "(serial %s)" % (name, acct, back[0][0] - up_at, back[0][2], back[0][1]))
        else:
            fail("%s: no renewal of %s after failures once shoal-identity was back" %
                 (name, acct))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
