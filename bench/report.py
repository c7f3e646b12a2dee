#!/usr/bin/env python3
"""Renders scripts/bench's raw results as one markdown report.

usage: report.py META RESULTS ROW_ID...

META: "key value" lines (machine, command, labels). RESULTS: tab-separated
"kind row rep metric value" lines. Every figure is the median over the
repetitions; the spread is half the range, as a percentage of the median.
Ratios are taken between medians of the same run only.
"""
import statistics
import sys
from collections import defaultdict


def load_meta(path):
    meta, labels, slabels, h2labels, xlabels = {}, {}, {}, {}, {}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition(" ")
            if key == "label":
                rid, _, text = value.partition(" ")
                labels[rid] = text
            elif key == "slabel":
                rid, _, text = value.partition(" ")
                slabels[rid] = text
            elif key == "h2label":
                rid, _, text = value.partition(" ")
                h2labels[rid] = text
            elif key == "xlabel":
                rid, _, text = value.partition(" ")
                xlabels[rid] = text
            else:
                meta[key] = value
    return meta, labels, slabels, h2labels, xlabels


def load_results(path):
    data = defaultdict(list)  # (kind, row, metric) -> [values]
    notes = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue
            kind, row, _rep, metric, value = parts
            if kind == "pending":
                notes[row] = value
                continue
            if kind == "idleerr":
                notes[("idleerr", row)] = value
                continue
            if kind == "upgerr":
                notes.setdefault(("upgerr", row), []).append(value)
                continue
            if kind == "h2err":
                notes.setdefault(("h2err", row), []).append(value)
                continue
            if kind == "bulkerr":
                notes.setdefault(("bulkerr", row), []).append(value)
                continue
            if kind == "xerr":
                notes.setdefault(("xerr", row), []).append(f"rep {_rep}: {value}")
                continue
            try:
                data[(kind, row, metric)].append(float(value))
                BY_REP[(kind, row, metric)][_rep] = float(value)
            except ValueError:
                pass
    return data, notes


# (kind, row, metric) -> {rep: value}: for ratios of two rows within one repetition
BY_REP = defaultdict(dict)


def paired_range(kind, a, b, metric, fmt="{:.3f}"):
    """min–max over the repetitions of b's value ÷ a's in the same repetition."""
    va, vb = BY_REP.get((kind, a, metric), {}), BY_REP.get((kind, b, metric), {})
    r = [vb[k] / va[k] for k in va if k in vb and va[k]]
    if len(r) < 2:
        return "–"
    return f"{fmt.format(min(r))}–{fmt.format(max(r))}"


class Stats:
    def __init__(self, data):
        self.data = data

    def med(self, kind, row, metric):
        v = self.data.get((kind, row, metric))
        return statistics.median(v) if v else None

    def spread(self, kind, row, metric):
        v = self.data.get((kind, row, metric))
        if not v or len(v) < 2:
            return None
        m = statistics.median(v)
        return 100.0 * (max(v) - min(v)) / 2 / m if m else None

    def cell(self, kind, row, metric, fmt="{:.0f}"):
        m = self.med(kind, row, metric)
        if m is None:
            return "–"
        sp = self.spread(kind, row, metric)
        return fmt.format(m) + (f" ±{sp:.0f}%" if sp is not None else "")


def ratio(a, b, fmt="{:.2f}×"):
    if a is None or b is None or b == 0:
        return "–"
    return fmt.format(a / b)


def main():
    meta, labels, slabels, h2labels, xlabels = load_meta(sys.argv[1])
    data, notes = load_results(sys.argv[2])
    rows = sys.argv[3:]
    s = Stats(data)
    out = []
    w = out.append

    w(f"## shoal benchmark: commit {meta.get('commit', '?')}, {meta.get('date', '?')}")
    w("")
    w(f"Command: `{meta.get('command', 'scripts/bench')}` · machine: {meta.get('nproc', '?')} CPUs, "
      f"{meta.get('cpu', '?')}, kernel {meta.get('kernel', '?')} · HAProxy {meta.get('haproxy', '?')}, "
      f"nginx {meta.get('nginx', '?')} · {meta.get('reps', '?')} interleaved repetitions, medians "
      f"(± half the range) · run took {meta.get('elapsed_s', '?')} s · load average at start "
      f"{meta.get('load_start', '?')}, at end {meta.get('load_end', '?')} (other work shares these 2 CPUs)")
    w("")
    w(f"Client (wrk, h2load, iperf3, benchtool) on CPU 0; proxy and backend share CPU 1; one worker per proxy. "
      f"Saturation: `wrk -t1 -c{meta.get('wrk_conns')} -d{meta.get('sat_seconds')}s`. "
      f"Latency: `h2load --h1 -c{meta.get('lat_conns')} --rps` for {meta.get('lat_rate')} req/s in total, "
      f"{meta.get('lat_seconds')} s. Proxy CPU: utime+stime from /proc/PID/stat over the wrk run, "
      f"divided by its requests. RSS: VmRSS after the wrk run.")
    w("")

    # --only mtls: the cross-node section alone, without the single-node
    # tables (which would be empty).
    if xlabels and all(k[0] == "x" for k in data):
        x_table(w, s, meta, xlabels, notes)
        print("\n".join(out))
        return

    d_rps = s.med("http", "direct", "rps")
    h_rps = s.med("http", "haproxy_http", "rps")
    t_rps = s.med("http", "haproxy_tcp", "rps")
    d_p99 = s.med("http", "direct", "p99_us")
    h_cpu = s.med("http", "haproxy_http", "cpu_us_per_req")
    t_cpu = s.med("http", "haproxy_tcp", "cpu_us_per_req")
    side_p99 = s.med("http", "sidecar", "p99_us")

    w("### Requests (small fixed body, keep-alive)")
    w("")
    w("| row | req/s | × direct | × HAProxy http | × HAProxy tcp | p50 µs | p99 µs | p99 added over direct "
      "| proxy CPU µs/req | CPU × HAProxy (same mode) | proxy RSS MiB |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        label = labels.get(r, r)
        if r in notes:
            w(f"| {label} | {notes[r]} |  |  |  |  |  |  |  |  |  |")
            continue
        rps = s.med("http", r, "rps")
        if rps is None:
            w(f"| {label} | not measured |  |  |  |  |  |  |  |  |  |")
            continue
        p99 = s.med("http", r, "p99_us")
        added = "–" if r == "direct" or p99 is None or d_p99 is None else f"{p99 - d_p99:+.0f} µs"
        cpu = s.med("http", r, "cpu_us_per_req")
        same = t_cpu if ("tcp" in r or "l4" in r) else h_cpu
        rss = s.med("http", r, "rss_kib")
        w(f"| {label} | {s.cell('http', r, 'rps')} | {ratio(rps, d_rps)} | {ratio(rps, h_rps)} | "
          f"{ratio(rps, t_rps)} | {s.cell('http', r, 'p50_us')} | {s.cell('http', r, 'p99_us')} | {added} | "
          f"{s.cell('http', r, 'cpu_us_per_req', '{:.1f}')} | {ratio(cpu, same)} | "
          f"{'–' if rss is None else f'{rss / 1024:.1f}'} |")
    w("")

    if s.med("http", "shoal_http_policy", "rps") is not None:
        a, b = "shoal_http_on", "shoal_http_policy"
        w("### Authorization policy: row 8 without and with 100 rules in force (issue 17)")
        w("")
        w("Row 8p is row 8 with a policy of 100 rules: 10 on the benchmarked service (deny rules with "
          "request matches walked first, allow rules for other callers and paths, and the one that "
          "allows the benchmark's GET by method and path), 90 on 30 other services; the mesh default "
          "is deny, so every request is decided per request by a rule that looks at it.")
        w("")
        w("| metric | row 8, no policy | row 8p, 100 rules | 8p ÷ 8 | 8p ÷ 8 per repetition, min–max |")
        w("|---|---|---|---|---|")
        for m, what, fmt in (("rps", "req/s", "{:.0f}"), ("cpu_us_per_req", "proxy CPU µs/req", "{:.1f}"),
                             ("p50_us", "p50 µs (fixed rate)", "{:.0f}"),
                             ("p99_us", "p99 µs (fixed rate)", "{:.0f}")):
            w(f"| {what} | {s.cell('http', a, m, fmt)} | {s.cell('http', b, m, fmt)} | "
              f"{ratio(s.med('http', b, m), s.med('http', a, m), '{:.3f}')} | "
              f"{paired_range('http', a, b, m)} |")
        w(f"| policy decisions allowed / denied (counters, median of reps) | – | "
          f"{s.cell('http', b, 'policy_allowed')} / {s.cell('http', b, 'policy_denied')} | | |")
        w("")
        w("Within the spread: the ratio's distance from 1 is compared with the larger of the two rows' "
          "spreads (± half the range over the repetitions). Per repetition: the two rows of one "
          "repetition run back to back, so their ratio shares that moment's load; its range is the "
          "ratio's own run-to-run spread.")
        w("")

    bulk_rows = [r for r in ("direct", "haproxy_tcp", "shoal_l4_on", "shoal_l4_off",
                             "shoal_l4_on_128k", "shoal_l4_off_128k", "shoal_l4_kernel", "base_l4_on",
                             "base_l4_off")
                 if s.med("bulk", r, "ok") is not None]
    d_bulk = s.med("bulk", "direct", "gbps")
    w(f"### Bulk TCP throughput (iperf3, one stream, {meta.get('bulk_seconds')} s)")
    w("")
    w("| path | Gbit/s | × direct | proxy CPU % | kernel TCP memory, peak MiB | failed runs |")
    w("|---|---|---|---|---|---|")
    for r in bulk_rows:
        errs = notes.get(("bulkerr", r), [])
        runs = len(data.get(("bulk", r, "ok"), []))
        failed = f"{len(errs)} of {runs}: " + "; ".join(sorted(set(e.split(" after ")[0] for e in errs))) if errs else "0"
        w(f"| {slabels.get(r, r)} | {s.cell('bulk', r, 'gbps', '{:.2f}')} | "
          f"{ratio(s.med('bulk', r, 'gbps'), d_bulk)} | {s.cell('bulk', r, 'cpu_pct')} | "
          f"{s.cell('bulk', r, 'tcpmem_peak_mib')} | {failed} |")
    w("")
    w("Gbit/s: median of the runs that completed. Kernel TCP memory: the largest `mem` of /proc/net/sockstat "
      "(machine-wide, limited by net.ipv4.tcp_mem) sampled every 100 ms during the run.")
    w("")

    pp_rows = [r for r in ("direct", "haproxy_tcp", "shoal_l4_on", "shoal_l4_off", "shoal_l4_kernel",
                         "base_l4_on", "base_l4_off")
               if s.med("pp", r, "rate") is not None]
    d_pp = s.med("pp", "direct", "rate")
    w(f"### Ping-pong ({meta.get('pp_size')}-byte messages, one connection, {meta.get('pp_seconds')} s, "
      "`benchtool pingpong`)")
    w("")
    w("| path | round trips/s | × direct | RTT p50 µs | RTT p99 µs |")
    w("|---|---|---|---|---|")
    for r in pp_rows:
        w(f"| {slabels.get(r, r)} | {s.cell('pp', r, 'rate')} | {ratio(s.med('pp', r, 'rate'), d_pp)} | "
          f"{s.cell('pp', r, 'p50_us', '{:.1f}')} | {s.cell('pp', r, 'p99_us', '{:.1f}')} |")
    w("")

    conn_rows = [r for r in ("direct", "haproxy_tcp", "shoal_l4_on", "shoal_l4_off", "shoal_l4_kernel")
                 if s.med("conn", r, "rate") is not None]
    d_conn = s.med("conn", "direct", "rate")
    if conn_rows:
        w(f"### Connect rate (new connections, one after another, {meta.get('conn_seconds')} s, "
          "`benchtool connect`)")
        w("")
        w("Each connection: connect, one byte each way (set up end to end, not only to a proxy's accept "
          "queue), close by the client.")
        w("")
        w("| path | connections/s | × direct | per connection p50 µs | p99 µs | failed |")
        w("|---|---|---|---|---|---|")
        for r in conn_rows:
            w(f"| {slabels.get(r, r)} | {s.cell('conn', r, 'rate')} | {ratio(s.med('conn', r, 'rate'), d_conn)} | "
              f"{s.cell('conn', r, 'p50_us', '{:.1f}')} | {s.cell('conn', r, 'p99_us', '{:.1f}')} | "
              f"{sum(data.get(('conn', r, 'failed'), [])):.0f} |")
        w("")

    upg = "shoal_http_on"
    upg_errs = notes.get(("upgerr", upg), [])
    upg_lost = data.get(("upg", upg, "upg_lost"), [])
    if upg_lost or upg_errs:
        w(f"### Upgrade under load (`wrk -t1 -c{meta.get('upg_conns')} --latency`, keep-alive, "
          f"{meta.get('upg_seconds')} s against {labels.get(upg, upg)})")
        w("")
        w(f"Per repetition: one window without an upgrade, then one in which a second shoald "
          f"(`--handover-socket`) takes over {meta.get('upg_at_seconds')} s in; the old one drains and exits. "
          "Lost: non-2xx responses plus wrk socket errors. p99: wrk's, over the whole window.")
        w("")
        w("| window | req/s | requests | lost | p99 µs |")
        w("|---|---|---|---|---|")
        for key, name in (("base", "without an upgrade"), ("upg", "with a hand-over")):
            lost = data.get(("upg", upg, key + "_lost"), [])
            w(f"| {name} | {s.cell('upg', upg, key + '_rps')} | {s.cell('upg', upg, key + '_reqs')} | "
              f"{sum(lost):.0f} in {len(lost)} runs | {s.cell('upg', upg, key + '_p99_us')} |")
        w("")
        w(f"Hand-over (new shoald started to its \"hand-over: done\"): {s.cell('upg', upg, 'handover_ms')} ms; "
          f"old shoald exited {s.cell('upg', upg, 'old_exit_ms')} ms after the new one started.")
        for e in upg_errs:
            w(f"Note: {e}")
        w("")

    h2_table(w, s, meta, h2labels, notes)

    w("### Proxy memory with idle connections")
    w("")
    w("echo: each connection carried one byte each way, then went idle; silent: connected only; "
      "http: one GET and its response, then idle (keep-alive).")
    w("")
    w("| proxy | connections | RSS idle | RSS with N idle connections | per connection |")
    w("|---|---|---|---|---|")
    per_conn = {}
    for key in ("shoal_l4_on:echo", "shoal_l4_on:silent", "shoal_l4_on_128k:echo", "haproxy_tcp:echo",
                "shoal_http_on:http", "haproxy_http:http"):
        r, mode = key.split(":")
        if ("idleerr", key) in notes:
            w(f"| {slabels.get(r, r)} | {mode} | note: {notes[('idleerr', key)]} | | |")
        idle = s.med("idle", key, "rss_idle_kib")
        held = s.med("idle", key, "rss_held_kib")
        n = s.med("idle", key, "conns")
        if idle is None or held is None or not n:
            continue
        per_conn[key] = (held - idle) * 1024 / n
        w(f"| {slabels.get(r, r)} | {mode} | {idle / 1024:.1f} MiB | {held / 1024:.1f} MiB (N = {n:.0f}) | "
          f"{per_conn[key] / 1024:.1f} KiB |")
    w("")

    # Targets from issue 7.
    w("### Targets (issue 7)")
    w("")
    w("| target | measured | met? |")
    w("|---|---|---|")

    def verdict(ok):
        return "–" if ok is None else ("yes" if ok else "**no**")

    for r in ("shoal_http_on", "shoal_http_off"):
        rps, cpu = s.med("http", r, "rps"), s.med("http", r, "cpu_us_per_req")
        if rps is None or h_rps is None:
            w(f"| HTTP/1.1 req/s ≥ 1.2× HAProxy http ({labels.get(r, r)}) | {notes.get(r, 'not measured')} | – |")
            continue
        w(f"| HTTP/1.1 req/s ≥ 1.2× HAProxy http ({labels.get(r, r)}) | {ratio(rps, h_rps)} | "
          f"{verdict(rps >= 1.2 * h_rps)} |")
        if cpu is not None:
            w(f"| HTTP/1.1 proxy CPU ≤ 10 µs/req ({labels.get(r, r)}) | {cpu:.1f} µs | {verdict(cpu <= 10)} |")
    for r in ("shoal_http_on", "shoal_http_off", "shoal_l4_on", "shoal_l4_off"):
        p99 = s.med("http", r, "p99_us")
        if p99 is None or d_p99 is None or side_p99 is None:
            continue
        mine, theirs = p99 - d_p99, side_p99 - d_p99
        ok = mine <= 0.5 * theirs if theirs > 0 else None
        w(f"| added p99 over direct ≤ 0.5× that of iptables + HAProxy ({labels.get(r, r)}) | "
          f"{mine:+.0f} µs vs {theirs:+.0f} µs | {verdict(ok)} |")
    for r in ("shoal_l4_on", "shoal_l4_off", "shoal_l4_on_128k", "shoal_l4_off_128k"):
        rps = s.med("http", r, "rps")
        if rps is None or t_rps is None:
            continue
        w(f"| L4 req/s ≥ HAProxy tcp ({labels.get(r, r)}) | {ratio(rps, t_rps)} | {verdict(rps >= t_rps)} |")
    for r in ("shoal_l4_on", "shoal_l4_off", "shoal_l4_on_128k", "shoal_l4_off_128k"):
        g = s.med("bulk", r, "gbps")
        errs = notes.get(("bulkerr", r), [])
        if g is None or d_bulk is None:
            if errs:
                w(f"| bulk ≥ 0.9× direct ({slabels.get(r, r)}) | every run failed: {errs[0]} | **no** |")
            continue
        extra = f", but {len(errs)} run(s) failed: {errs[0]}" if errs else ""
        w(f"| bulk ≥ 0.9× direct ({slabels.get(r, r)}) | {ratio(g, d_bulk)}{extra} | "
          f"{verdict(g >= 0.9 * d_bulk and not errs)} |")
    # The median RTT, not the rate: on a shared machine the rate is the
    # mean, and a few scheduling stalls of milliseconds dominate it.
    on, off = s.med("pp", "shoal_l4_on", "p50_us"), s.med("pp", "shoal_l4_off", "p50_us")
    if on is not None and off is not None:
        sp = max(s.spread("pp", "shoal_l4_on", "p50_us") or 0, s.spread("pp", "shoal_l4_off", "p50_us") or 0)
        gain = 100.0 * (off - on) / off
        w(f"| sockmap gain on ping-pong (RTT p50, on vs off, beyond the spread) | {off:.1f} → {on:.1f} µs, "
          f"{gain:.0f}% less (spread ±{sp:.0f}%) | {verdict(gain > sp)} |")
    idle = s.med("idle", "shoal_l4_on:echo", "rss_idle_kib")
    if idle is not None:
        w(f"| proxy RSS ≤ 10 MiB idle | {idle / 1024:.1f} MiB | {verdict(idle <= 10 * 1024)} |")
    for key in ("shoal_l4_on:echo", "shoal_l4_on:silent", "shoal_http_on:http"):
        if key in per_conn:
            pc = per_conn[key]
            w(f"| ≤ 4 KiB per idle connection ({key.split(':')[1]}) | {pc / 1024:.1f} KiB | {verdict(pc <= 4096)} |")
    w("")

    # Targets from issue 18 (kernel mode, upgrades).
    w("### Targets (issue 18)")
    w("")
    w("| target | measured | met? |")
    w("|---|---|---|")
    k = "shoal_l4_kernel"
    g = s.med("bulk", k, "gbps")
    if g is not None and d_bulk is not None:
        w(f"| kernel-mode bulk ≥ 0.95× direct | {ratio(g, d_bulk)} | {verdict(g >= 0.95 * d_bulk)} |")
    kp, dp = s.med("pp", k, "p50_us"), s.med("pp", "direct", "p50_us")
    if kp is not None and dp:
        w(f"| kernel-mode RTT (p50) within 5 % of direct | {dp:.1f} → {kp:.1f} µs, "
          f"{100.0 * (kp - dp) / dp:+.1f}% | {verdict(kp <= 1.05 * dp)} |")
    kc = s.med("conn", k, "rate")
    if kc is not None and d_conn:
        # The rate is a mean, which a shared machine's stalls of
        # milliseconds dominate; the median time per connection beside it.
        kt, dt = s.med("conn", k, "p50_us"), s.med("conn", "direct", "p50_us")
        per = "" if kt is None or dt is None else f" (time per connection p50 {dt:.1f} → {kt:.1f} µs)"
        w(f"| kernel-mode new connections/s ≥ 0.9× direct | {ratio(kc, d_conn)}{per} | "
          f"{verdict(kc >= 0.9 * d_conn)} |")
    if upg_lost or upg_errs:
        ok = None if upg_errs and not upg_lost else (sum(upg_lost) == 0 and not upg_errs)
        bp, up = s.med("upg", upg, "base_p99_us"), s.med("upg", upg, "upg_p99_us")
        added = "" if bp is None or up is None else f"; p99 {bp:.0f} → {up:.0f} µs ({up - bp:+.0f} µs added)"
        w(f"| requests lost during an upgrade: 0 | {sum(upg_lost):.0f} in {len(upg_lost)} hand-overs"
          f"{'; ' + str(len(upg_errs)) + ' failed' if upg_errs else ''}{added} | {verdict(ok)} |")
    w("")
    if xlabels:
        x_table(w, s, meta, xlabels, notes)
    print("\n".join(out))


H2_PEERS = ("h2_nghttpx", "h2_haproxy")
H2_SHOAL = ("h2_shoal_on", "h2_shoal_off")


def h2_table(w, s, meta, labels, notes):
    """The h2 section: one table per load shape, and issue 14's targets."""
    # "name:conns:streams[:cap[:period_us]]": cap, the proxy's share of one
    # CPU in %, in each quota period (default h2_cap_period_us).
    loads = [(l.split(":") + ["", ""])[:5] for l in meta.get("h2_loads", "").split()]
    rows = [r for r in labels if any(s.med("h2", f"{r}:{name}", "rps") is not None for name, *_ in loads)]
    if not rows:
        return
    targets = []
    for name, conns, streams, cap, period in loads:
        period_ms = int(period or meta.get("h2_cap_period_us", 0) or 0) / 1000
        key = lambda r: f"{r}:{name}"
        d_rps = s.med("h2", key("h2_direct"), "rps")
        peers = [(r, s.med("h2", key(r), "rps"), s.med("h2", key(r), "cpu_us_per_req")) for r in H2_PEERS]
        best = max((p for p in peers if p[1] is not None), key=lambda p: p[1], default=None)
        w(f"### HTTP/2: `h2load -t1 -c{conns} -m{streams} -D {meta.get('h2_seconds')}` "
          f"({'one connection, many streams' if conns == '1' else 'many connections'}"
          f"{f'; each proxy held to {cap} % of one CPU, quota period {period_ms:g} ms' if cap else ''})")
        w("")
        w("| row | req/s | × direct | × better peer | p50 µs | p99 µs | proxy CPU µs/req | "
          "CPU × lower peer | proxy switches per 1000 req | proxy RSS MiB | errors |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        low_cpu = min((p[2] for p in peers if p[2] is not None), default=None)
        for r in labels:
            rps = s.med("h2", key(r), "rps")
            errs = notes.get(("h2err", key(r)), [])
            if rps is None:
                why = notes.get(r, "; ".join(errs) if errs else "not measured")
                w(f"| {labels[r]} | {why} |  |  |  |  |  |  |  |  |  |")
                continue
            cpu = s.med("h2", key(r), "cpu_us_per_req")
            rss = s.med("h2", key(r), "rss_kib")
            w(f"| {labels[r]} | {s.cell('h2', key(r), 'rps')} | {ratio(rps, d_rps)} | "
              f"{ratio(rps, best[1] if best else None)} | {s.cell('h2', key(r), 'p50_us')} | "
              f"{s.cell('h2', key(r), 'p99_us')} | {s.cell('h2', key(r), 'cpu_us_per_req', '{:.1f}')} | "
              f"{ratio(cpu, low_cpu)} | {s.cell('h2', key(r), 'switches_per_kreq', '{:.0f}')} | "
              f"{'–' if rss is None else f'{rss / 1024:.1f}'} | "
              f"{'; '.join(errs) if errs else '0'} |")
        w("")
        for r in H2_SHOAL:
            rps, cpu = s.med("h2", key(r), "rps"), s.med("h2", key(r), "cpu_us_per_req")
            if rps is None or best is None:
                continue
            shape = f"-c{conns} -m{streams}{f', proxy at {cap} % CPU ({period_ms:g} ms period)' if cap else ''}"
            targets.append((f"{shape}: req/s ≥ 1.3× the better peer ({labels[r]}; "
                            f"better peer: {labels[best[0]]})", ratio(rps, best[1]), rps >= 1.3 * best[1]))
            below = [p for p in peers if p[2] is not None]
            if cpu is not None and below:
                figs = ", ".join(f"{labels[p[0]].split(' ')[0]} {p[2]:.1f}" for p in below)
                targets.append((f"{shape}: proxy CPU/request below both peers ({labels[r]})",
                                f"{cpu:.1f} µs vs {figs} µs", all(cpu < p[2] for p in below)))
    w(f"h2c with prior knowledge on every hop; backend nginx {meta.get('nginx', '?')} (`listen ... http2`), "
      f"nghttpx {meta.get('nghttpx', '?')}, HAProxy {meta.get('haproxy', '?')}. One h2load thread on CPU 0; "
      f"proxy and backend on CPU 1. Warm-up {meta.get('warm_seconds')} s per shape. req/s: h2load's, "
      "for the requests that succeeded. p50/p99: from h2load's per-request log (`--log-file`). "
      "Proxy CPU: utime+stime of the proxy process over the measured run, divided by the requests "
      "that succeeded. \"better peer\": the one of nghttpx and HAProxy with more req/s; \"lower peer\": the "
      "one with less CPU per request. Proxy switches: the context switches of the proxy's threads "
      "(voluntary and involuntary, /proc/PID/task/*/status) over the run, per 1000 requests that "
      "succeeded: how often it sleeps and wakes. A shape \"held to N % of one CPU\" puts the proxy alone in a cgroup "
      "with a CFS quota of N % of each period (the period is in the shape's heading); the client and the backend "
      "have no quota, so the proxy bounds the rate, and direct (no proxy) is not run.")
    w("")
    if targets:
        w("### Targets (issue 14, HTTP/2)")
        w("")
        w("| target | measured | met? |")
        w("|---|---|---|")
        for what, fig, ok in targets:
            w(f"| {what} | {fig} | {'yes' if ok else '**no**'} |")
        w("")


X_TUNNEL_ROWS = ("x_mtls", "x_mtls_ktls")


def x_table(w, s, meta, labels, notes):
    """The cross-node section: shoal plaintext, shoal mTLS (user-space TLS,
    kTLS) and an HAProxy mutual-TLS pair, and issue 16's targets."""
    xm = lambda r, m: s.med("x", r, m)
    plain_rps, plain_p99, plain_bulk = xm("x_plain", "rps"), xm("x_plain", "p99_us"), xm("x_plain", "bulk_mbps")
    ha_rps = xm("x_haproxy", "rps")
    w(f"### Cross-node: shoal's encrypted hop and an HAProxy mutual-TLS pair (issue 16)")
    w("")
    w(f"Client pod on node-a → node-a's proxy → underlay veth → node-b's proxy (or shoal's tunnel) → "
      f"backend pod on node-b (nginx). req/s: `wrk -t1 -c{meta.get('wrk_conns')} -d{meta.get('sat_seconds')}s`; "
      f"p50/p99: `h2load --h1 -c{meta.get('lat_conns')}` at {meta.get('lat_rate')} req/s in total for "
      f"{meta.get('lat_seconds')} s; proxies' CPU: utime+stime of both nodes' proxy processes (shoald: "
      f"every thread, the tunnel's too) over the wrk run, divided by its requests; bulk: one `curl` of a "
      f"{meta.get('x_bulk_mib', '?')} MiB body, MB/s = 10^6 bytes/s, with both proxies' CPU per MB. "
      f"The client on CPU 0; both proxies and the backend share CPU 1. OpenSSL {meta.get('openssl', '?')}, "
      f"TLS 1.3, P-256 certificates, AES-GCM, no resumption on either pair.")
    w("")
    w("| row | req/s | × plaintext | × HAProxy pair | p50 µs | p99 µs | p99 added over plaintext | "
      "proxies' CPU µs/req (node-a + node-b) | bulk MB/s | bulk × plaintext | bulk CPU µs/MB | the hop |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in labels:
        label = labels[r]
        rps = xm(r, "rps")
        if rps is None:
            why = notes.get(r) or "; ".join(notes.get(("xerr", r), [])) or "not measured"
            w(f"| {label} | {why} |  |  |  |  |  |  |  |  |  |  |")
            continue
        p99 = xm(r, "p99_us")
        added = "–" if r == "x_plain" or p99 is None or plain_p99 is None else f"{p99 - plain_p99:+.0f} µs"
        ca, cb = xm(r, "cpu_a_us_per_req"), xm(r, "cpu_b_us_per_req")
        split = "" if ca is None or cb is None else f" ({ca:.1f} + {cb:.1f})"
        if r == "x_haproxy":
            hop = "HAProxy TLS (user space)"
        elif xm(r, "tunneled") is None:
            hop = "–"
        else:
            hop = (f"{xm(r, 'tunneled'):.0f} conns tunneled; kTLS tx/rx node-a "
                   f"{xm(r, 'ktls_tx_a'):.0f}/{xm(r, 'ktls_rx_a'):.0f}, node-b "
                   f"{xm(r, 'ktls_tx_b'):.0f}/{xm(r, 'ktls_rx_b'):.0f}")
        w(f"| {label} | {s.cell('x', r, 'rps')} | {ratio(rps, plain_rps)} | {ratio(rps, ha_rps)} | "
          f"{s.cell('x', r, 'p50_us')} | {s.cell('x', r, 'p99_us')} | {added} | "
          f"{s.cell('x', r, 'cpu_us_per_req', '{:.1f}')}{split} | {s.cell('x', r, 'bulk_mbps')} | "
          f"{ratio(xm(r, 'bulk_mbps'), plain_bulk)} | {s.cell('x', r, 'bulk_cpu_us_per_mb', '{:.0f}')} | {hop} |")
    w("")
    w("The hop: `shoal_proxy_mtls_tunneled_total` on node-a after the row (connections sent through the "
      "hop) and the `shoal_tunnel_ktls_tx`/`_rx` gauges of both nodes (open TLS connections the kernel "
      "encrypts/decrypts), read while the pooled TLS connection is still open; medians of the repetitions.")
    w("")
    for r in labels:
        for n in notes.get(("xerr", r), []):
            w(f"- note, {labels[r]}: {n}")
    if any(notes.get(("xerr", r)) for r in labels):
        w("")

    def verdict(ok):
        return "–" if ok is None else ("yes" if ok else "**no**")

    w("### Targets (issue 16, cross-node)")
    w("")
    w("| target | measured | met? |")
    w("|---|---|---|")
    for r in X_TUNNEL_ROWS:
        rps, p99 = xm(r, "rps"), xm(r, "p99_us")
        if rps is None:
            why = notes.get(r) or "not measured"
            w(f"| shoal mTLS req/s ≥ 1.5× the HAProxy pair ({labels.get(r, r)}) | {why} | – |")
            continue
        if ha_rps is not None:
            w(f"| shoal mTLS req/s ≥ 1.5× the HAProxy pair ({labels.get(r, r)}) | {ratio(rps, ha_rps)} "
              f"({rps:.0f} vs {ha_rps:.0f}) | {verdict(rps >= 1.5 * ha_rps)} |")
        if p99 is not None and plain_p99 is not None:
            w(f"| p99 added over plaintext ≤ 100 µs ({labels.get(r, r)}) | {p99 - plain_p99:+.0f} µs "
              f"({plain_p99:.0f} → {p99:.0f}) | {verdict(p99 - plain_p99 <= 100)} |")
    kb = xm("x_mtls_ktls", "bulk_mbps")
    if kb is not None and plain_bulk:
        w(f"| bulk with kTLS ≥ 0.7× plaintext | {ratio(kb, plain_bulk)} ({plain_bulk:.0f} → {kb:.0f} MB/s) | "
          f"{verdict(kb >= 0.7 * plain_bulk)} |")
    else:
        w(f"| bulk with kTLS ≥ 0.7× plaintext | {notes.get('x_mtls_ktls') or 'not measured'} | "
          "– (cannot be judged here) |")
    ub = xm("x_mtls", "bulk_mbps")
    if ub is not None and plain_bulk:
        w(f"| (for reference, not the target) bulk with user-space TLS ÷ plaintext | "
          f"{ratio(ub, plain_bulk)} ({plain_bulk:.0f} → {ub:.0f} MB/s) | |")
    w("")


if __name__ == "__main__":
    main()
