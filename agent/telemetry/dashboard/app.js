// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// shoal's web dashboard: one EventSource on /dashboard/events (a JSON
// state a second, cumulative counters), rates and sparklines computed
// here from the last HISTORY states. Hand-written, no library; every
// value from the agent goes into the page as text, never as markup.
"use strict";

const HISTORY = 300; // states kept: 5 minutes at one a second
const history = [];
let page = "services", arg = "";

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

// A sparkline of values (numbers; null: no value), w x h pixels.
function spark(values, w = 120, h = 24) {
  const s = svgEl("svg", { width: w, height: h, class: "spark" });
  const vs = values.filter((v) => v !== null && isFinite(v));
  if (vs.length < 2) return s;
  const max = Math.max(...vs), min = Math.min(0, ...vs), span = max - min || 1;
  let d = "";
  values.forEach((v, i) => {
    if (v === null || !isFinite(v)) return;
    const x = (i / (values.length - 1)) * (w - 2) + 1;
    const y = h - 1 - ((v - min) / span) * (h - 2);
    d += (d ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1);
  });
  s.append(svgEl("path", { d, fill: "none", stroke: "#1b5fb8", "stroke-width": 1.5 }));
  return s;
}

const key = (o) => o.namespace + "/" + (o.name || o.service);
const byKey = (list, f) => Object.fromEntries((list || []).map((o) => [f(o), o]));

// The quantile q of the latency buckets' differences (ms), or null.
function quantile(bounds, now, before, q) {
  const d = now.map((c, i) => c - (before ? before[i] : 0));
  const total = d.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  let seen = 0;
  for (let i = 0; i < d.length; i++) {
    seen += d[i];
    if (seen >= q * total) return i < bounds.length ? bounds[i] : Infinity;
  }
  return null;
}

// Per-second rates of a service between two states (b older), or nulls.
function serviceRates(st, b, s) {
  const old = b && byKey(b.services.services, key)[key(s)];
  const dt = b ? (st.time_ms - b.time_ms) / 1000 : 0;
  const r = { rps: null, success: null, p50: null, p99: null, retries: null };
  if (!old || dt <= 0) return r;
  const resp = (x) => Object.values(x.http.responses).reduce((a, c) => a + c, 0);
  const answered = resp(s) - resp(old), failed = s.http.responses["5xx"] - old.http.responses["5xx"];
  r.rps = (s.http.requests - old.http.requests) / dt;
  r.success = answered > 0 ? 1 - failed / answered : null;
  r.p50 = quantile(st.latency_bounds_ms, s.http.latency_buckets, old.http.latency_buckets, 0.5);
  r.p99 = quantile(st.latency_bounds_ms, s.http.latency_buckets, old.http.latency_buckets, 0.99);
  if (s.resilience && old.resilience)
    r.retries = (s.resilience.retries - old.resilience.retries) / dt;
  return r;
}

// The rates of every state in the history against the one before it.
function series(f) {
  const out = [];
  for (let i = 1; i < history.length; i++) out.push(f(history[i], history[i - 1]));
  return out;
}

const fmt = (v, digits = 1, unit = "") => (v === null || v === undefined ? "-" : v === Infinity ? "> 50 s" : v.toFixed(digits) + unit);
const pct = (v) => (v === null ? "-" : (v * 100).toFixed(1) + "%");

function servicesPage(st) {
  const prev = history[history.length - 2];
  const rows = st.services.services.map((s) => {
    const r = serviceRates(st, prev, s);
    const rpsLine = series((a, b) => {
      const x = byKey(a.services.services, key)[key(s)];
      return x ? serviceRates(a, b, x).rps : null;
    });
    const cls = r.success === null ? "" : r.success < 0.95 ? "bad" : r.success < 0.99 ? "warn" : "ok";
    return el("tr", { "data-service": key(s) },
      el("td", {}, el("a", { href: "#/service/" + key(s) }, key(s))),
      el("td", {}, fmt(r.rps, 1)), el("td", {}, spark(rpsLine)),
      el("td", { class: cls }, pct(r.success)),
      el("td", {}, fmt(r.p50, 0, " ms")), el("td", {}, fmt(r.p99, 0, " ms")),
      el("td", {}, fmt(r.retries, 2)),
      el("td", {}, s.endpoints), el("td", {}, s.resilience ? s.resilience.ejected : "-"));
  });
  return [el("h2", {}, "Services"),
    table(["service", "requests/s", "last 5 min", "success", "p50", "p99", "retries/s", "endpoints", "ejected"], rows)];
}

function servicePage(st, name) {
  const s = byKey(st.services.services, key)[name];
  if (!s) return [el("h2", {}, "No service " + name + " in the running config")];
  const eps = st.endpoints.endpoints.filter((e) => key(e) === name);
  const rows = eps.map((e) => {
    const line = (f) => series((a) => {
      const x = a.endpoints.endpoints.find((y) => key(y) === name && y.address === e.address);
      return x ? f(x) : null;
    });
    return el("tr", { "data-endpoint": e.address, "data-breaker": e.breaker || "", class: "breaker-" + (e.breaker || "none") },
      el("td", {}, e.address),
      el("td", {}, fmt(e.estimate_ms, 2, " ms")), el("td", {}, spark(line((x) => x.estimate_ms))),
      el("td", {}, e.in_flight ?? "-"),
      el("td", { class: e.breaker === "closed" ? "ok" : "bad" }, e.breaker || "-"),
      el("td", {}, e.ejections ?? "-"),
      el("td", {}, spark(line((x) => (x.breaker === "closed" ? 0 : 1)))),
      el("td", {}, e.http.requests));
  });
  const cfg = byKey(st.config.services, key)[name];
  const routes = (cfg ? cfg.routes : []).map((r) => {
    const total = r.backends.reduce((a, b) => a + b.weight, 0) || 1;
    return el("tr", { "data-route": r.name }, el("td", {}, r.name || "(default)"),
      el("td", {}, r.backends.map((b) => b.service + " " + Math.round((100 * b.weight) / total) + "%").join(", ")),
      el("td", {}, r.timeout_ms ? r.timeout_ms + " ms" : "-"));
  });
  return [el("h2", {}, "Service " + name),
    el("h2", {}, "Endpoints"),
    table(["endpoint", "latency estimate", "estimate, 5 min", "in flight", "breaker", "ejections", "ejected, 5 min", "requests"], rows),
    el("h2", {}, "Routes"),
    routes.length ? table(["route", "split", "timeout"], routes) : el("p", { class: "note" }, "No routes: every request goes to the service's own endpoints.")];
}

const KERNEL_ROWS = [
  ["connect_intercepted", "intercepted connects"],
  ["connect_failed_open", "fail-open events"],
  ["redirect_bytes", "shortcut bytes"],
  ["redirect_msgs", "shortcut messages"],
  ["shortcut_inserted", "sockets on the shortcut"],
  ["kernel_picked", "kernel-mode picks"],
];

function kernelPage(st) {
  const out = [el("h2", {}, "Kernel")];
  if (!st.kernel) {
    out.push(el("p", { class: "bad" }, "The datapath's pinned maps cannot be read (shoal_datapath_up is 0)."));
  } else {
    const prev = history[history.length - 2];
    const dt = prev ? (st.time_ms - prev.time_ms) / 1000 : 0;
    out.push(table(["counter", "total", "per second", "last 5 min"], KERNEL_ROWS.map(([f, label]) =>
      el("tr", { "data-counter": f }, el("td", {}, label), el("td", {}, st.kernel[f]),
        el("td", {}, prev && prev.kernel && dt > 0 ? fmt((st.kernel[f] - prev.kernel[f]) / dt, 1) : "-"),
        el("td", {}, spark(series((a, b) => (a.kernel && b.kernel ? (a.kernel[f] - b.kernel[f]) / ((a.time_ms - b.time_ms) / 1000) : null))))))));
  }
  const pods = st.pods.pods || [];
  out.push(el("h2", {}, "Pods (" + pods.filter((p) => p.state === "enrolled").length + " enrolled)"));
  out.push(st.pods.enrollment
    ? table(["pod", "service account", "state", "addresses"], pods.map((p) =>
      el("tr", { "data-pod": p.namespace + "/" + p.name }, el("td", {}, p.namespace + "/" + p.name),
        el("td", {}, p.service_account), el("td", {}, p.state), el("td", {}, p.ips.join(", ")))))
    : el("p", { class: "note" }, "Enrollment does not run on this agent: pods are enrolled by hand (shoalctl enroll)."));
  return out;
}

function graphPage(st) {
  const prev = history[history.length - 2];
  const dt = prev ? (st.time_ms - prev.time_ms) / 1000 : 0;
  const old = prev ? byKey(prev.edges, (e) => e.service + ">" + e.backend) : {};
  const edges = st.edges.map((e) => {
    const o = old[e.service + ">" + e.backend];
    const req = o && dt > 0 ? (e.requests - o.requests) / dt : 0;
    const err = o && dt > 0 ? (e.errors - o.errors) / dt : 0;
    return { ...e, rate: req, success: req > 0 ? 1 - err / req : null };
  });
  const oldC = prev ? byKey(prev.caller_edges || [], (e) => e.caller + ">" + e.service) : {};
  const cedges = (st.caller_edges || []).map((e) => {
    const o = oldC[e.caller + ">" + e.service];
    const req = o && dt > 0 ? (e.requests - o.requests) / dt : 0;
    const err = o && dt > 0 ? (e.errors - o.errors) / dt : 0;
    return { ...e, rate: req, success: req > 0 ? 1 - err / req : null };
  });
  const callers = [...new Set(cedges.map((e) => e.caller))];
  const services = [...new Set([...edges.map((e) => e.service), ...cedges.map((e) => e.service)])];
  const backends = [...new Set(edges.map((e) => e.backend))];
  const row = 34, h = Math.max(callers.length, services.length, backends.length, 1) * row + 20;
  const svg = svgEl("svg", { width: 760, height: h, class: "graph" });
  const y = (list, n) => 20 + list.indexOf(n) * row;
  const maxRate = Math.max(1, ...edges.map((e) => e.rate), ...cedges.map((e) => e.rate));
  const colourOf = (e) => e.success === null ? "#9aa5b5" : e.success < 0.95 ? "#b3261e" : e.success < 0.99 ? "#c98a00" : "#1f7a3a";
  const node = (x, yy, label, anchor) => {
    const t = svgEl("text", { x, y: yy + 4, "text-anchor": anchor });
    t.textContent = label;
    svg.append(svgEl("circle", { cx: anchor === "end" ? x + 8 : x - 8, cy: yy, r: 5, fill: "#1d2b44" }), t);
  };
  // Callers: the client pod ("namespace/name"), or its address when enrollment does not know it.
  for (const c of callers) node(150, y(callers, c), c, "end");
  for (const e of cedges)
    svg.append(svgEl("line", { x1: 166, y1: y(callers, e.caller), x2: 312, y2: y(services, e.service),
      stroke: colourOf(e), "stroke-width": 1 + (7 * e.rate) / maxRate, "data-caller-edge": e.caller + ">" + e.service }));
  for (const s of services) node(320, y(services, s), s, "start");
  for (const e of edges) {
    const colour = colourOf(e);
    svg.append(svgEl("line", { x1: 470, y1: y(services, e.service), x2: 582, y2: y(backends, e.backend),
      stroke: colour, "stroke-width": 1 + (7 * e.rate) / maxRate, "data-edge": e.service + ">" + e.backend }));
  }
  for (const b of backends) node(590, y(backends, b), b, "start");
  return [el("h2", {}, "Call graph"), svg,
    table(["addressed service", "served by", "requests/s", "success"], edges.map((e) =>
      el("tr", { "data-edge": e.service + ">" + e.backend }, el("td", {}, e.service), el("td", {}, e.backend),
        el("td", {}, fmt(e.rate, 1)), el("td", {}, pct(e.success))))),
    table(["caller", "addressed service", "requests/s", "success"], cedges.map((e) =>
      el("tr", { "data-caller-edge": e.caller + ">" + e.service }, el("td", {}, e.caller), el("td", {}, e.service),
        el("td", {}, fmt(e.rate, 1)), el("td", {}, pct(e.success))))),
    el("p", { class: "note" }, "Callers (left) are client pods, or their address when enrollment does not know them " +
      "(\"other\": past a worker's cap); edges go to the service they addressed, and on to the service that served it " +
      "(a route's split), thickness by request rate, colour by success. See docs/dashboards.md, \"Callers\".")];
}

function render() {
  const st = history[history.length - 1];
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page || (page === "service" && a.dataset.page === "services")));
  if (!st) return;
  const main = document.getElementById("page");
  const kids = page === "service" ? servicePage(st, arg) : page === "kernel" ? kernelPage(st) : page === "graph" ? graphPage(st) : servicesPage(st);
  main.replaceChildren(...kids);
  main.dataset.page = page;
  main.dataset.updated = String(st.time_ms);
}

function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [p, ...rest] = h.split("/");
  page = ["services", "service", "kernel", "graph"].includes(p) ? p : "services";
  arg = decodeURIComponent(rest.join("/"));
  render();
}

function connect() {
  const status = document.getElementById("status");
  const es = new EventSource("/dashboard/events");
  es.onopen = () => { status.textContent = "live"; status.classList.add("live"); };
  es.onmessage = (ev) => {
    history.push(JSON.parse(ev.data));
    if (history.length > HISTORY) history.shift();
    render();
  };
  // EventSource retries by itself (the stream says retry: 2000); a refusal
  // (too many streams) shows here until a slot frees.
  es.onerror = () => { status.textContent = "reconnecting"; status.classList.remove("live"); };
}

window.addEventListener("hashchange", route);
route();
connect();
