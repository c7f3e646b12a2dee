#!/bin/bash
# The shipped Prometheus rules and Grafana dashboards (dashboards/,
# docs/dashboards.md) stay true to what shoald exports:
#  - promtool accepts the rules, and their unit tests pass (alerts fire
#    and stay quiet as shoal-rules.test.yaml says);
#  - every shoal_* metric a rule or a panel queries is in docs/metrics.md's
#    table (itself checked against shoald --list-metrics by docs-metrics),
#    with the labels the query selects on or groups by;
#  - every dashboard's panels have unique ids, query the dashboard's data
#    source variable, and use only template variables it defines.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v promtool >/dev/null || { echo "SKIP: promtool missing (Debian package prometheus; scripts/setup.sh installs it)"; exit 77; }
promtool check rules "$root/dashboards/prometheus/shoal-rules.yaml"
(cd "$root/dashboards/prometheus" && promtool test rules shoal-rules.test.yaml)
python3 - "$root" <<'PY'
import json, glob, re, sys
root = sys.argv[1]
table = {}
for line in open(f"{root}/docs/metrics.md"):
    m = re.match(r"^\| `(shoal_[a-z0-9_]+)` \| (\w+) \| ([a-z_,]*) *\|", line)
    if m:
        table[m.group(1)] = (m.group(2), set(filter(None, m.group(3).split(","))))
if len(table) < 50:
    sys.exit(f"docs/metrics.md: only {len(table)} metrics read from its table; has its format changed?")
ALWAYS = {"instance", "job"}  # added by Prometheus at scrape time
problems = []

def metric_of(name):
    """The declared metric a series name belongs to, or None."""
    if name in table:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base in table and table[base][0] == "histogram":
            return base
    return None

def check_expr(where, expr):
    # Recording-rule names (level:metric:operation) are not metrics.
    names = [m.group(1) for m in re.finditer(r"(?<![:\w])(shoal_[a-z0-9_]+)(?![:\w])", expr)]
    labels_here = set(ALWAYS)
    for name in names:
        base = metric_of(name)
        if base is None:
            problems.append(f"{where}: {name} is not in docs/metrics.md")
            continue
        labels_here |= table[base][1]
        if table[base][0] == "histogram":
            labels_here.add("le")
    for m in re.finditer(r"(?<![:\w])(shoal_[a-z0-9_]+)\{([^}]*)\}", expr):
        base = metric_of(m.group(1))
        if base is None:
            continue
        allowed = table[base][1] | ALWAYS | ({"le"} if table[base][0] == "histogram" else set())
        for lab in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", m.group(2)):
            if lab not in allowed:
                problems.append(f"{where}: {m.group(1)} has no label {lab!r}")
    for m in re.finditer(r"\bby \(([^)]*)\)", expr):
        for lab in (x.strip() for x in m.group(1).split(",")):
            if lab and names and lab not in labels_here:
                problems.append(f"{where}: groups by {lab!r}, which none of its metrics has")
    return len(names)

# Rules: every expr.
n_rule_exprs = 0
text = open(f"{root}/dashboards/prometheus/shoal-rules.yaml").read()
for m in re.finditer(r"^\s+- (?:record|alert): (\S+)\n\s+expr: (\|\n(?:\s{10,}.*\n)+|.*\n)", text, re.M):
    expr = m.group(2)
    if expr.startswith("|"):
        expr = expr[1:]
    check_expr(f"shoal-rules.yaml {m.group(1)}", expr)
    n_rule_exprs += 1
if n_rule_exprs < 10:
    problems.append(f"shoal-rules.yaml: only {n_rule_exprs} rule expressions read")

# Dashboards.
n_panels = 0
for path in sorted(glob.glob(f"{root}/dashboards/grafana/*.json")):
    name = path.rsplit("/", 1)[1]
    d = json.load(open(path))
    for key in ("uid", "title", "panels", "templating"):
        if key not in d:
            problems.append(f"{name}: no {key}")
    defined = {v["name"] for v in d["templating"]["list"]}
    if "datasource" not in defined:
        problems.append(f"{name}: no datasource variable")
    ids = [p["id"] for p in d["panels"]]
    if len(ids) != len(set(ids)):
        problems.append(f"{name}: panel ids repeat")
    for v in d["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            check_expr(f"{name} variable {v['name']}", q["query"])
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        n_panels += 1
        where = f"{name} panel {p['title']!r}"
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{where}: does not query the ${{datasource}} variable")
        if not p.get("targets"):
            problems.append(f"{where}: no query")
        for t in p.get("targets", []):
            if check_expr(where, t["expr"]) == 0 and not t["expr"].startswith("up{"):
                problems.append(f"{where}: query {t['expr']!r} names no shoal metric")
            for var in re.findall(r"\$(\w+)", t["expr"]):
                if var not in defined:
                    problems.append(f"{where}: uses ${var}, which the dashboard does not define")
if n_panels < 20:
    problems.append(f"only {n_panels} panels read from dashboards/grafana/")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"dashboards: {n_rule_exprs} rule expressions and {n_panels} panels query only metrics and labels of docs/metrics.md")
PY
