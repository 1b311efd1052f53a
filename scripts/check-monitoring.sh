#!/usr/bin/env bash
# Checks the monitoring files in deploy/ (docs/monitoring.md):
#   - deploy/prometheus/alerts.yml: promtool check rules, and every alert carries
#     for:, severity page|ticket, a summary and a description;
#   - deploy/prometheus/alerts_test.yml: promtool test rules (the alert unit tests);
#   - deploy/prometheus/prometheus.yml: promtool check config (loads alerts.yml);
#   - deploy/grafana/redcloud.json: valid JSON, the fields Grafana needs, and every
#     panel query valid PromQL (checked by promtool as recording rules);
#   - every metric name used by the alerts, their tests and the dashboard is listed
#     in deploy/metrics.txt (the names RedCloud nodes serve).
# Needs promtool (Debian's prometheus package) and python3. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "check-monitoring: FAILED: $*" >&2
  exit 1
}

command -v promtool >/dev/null 2>&1 ||
  fail "promtool not found: install Debian's prometheus package (promtool), e.g. apt-get install --no-install-recommends prometheus"
command -v python3 >/dev/null 2>&1 || fail "python3 not found (needed to check the dashboard and metric names)"

prom=deploy/prometheus
for f in "$prom/alerts.yml" "$prom/alerts_test.yml" "$prom/prometheus.yml" deploy/grafana/redcloud.json deploy/metrics.txt; do
  [ -f "$f" ] || fail "$f is missing"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "==> promtool check rules $prom/alerts.yml"
promtool check rules "$prom/alerts.yml" || fail "alert rules do not load ($prom/alerts.yml)"

echo "==> dashboard, alert fields and metric names"
python3 - "$tmp/dashboard-rules.yml" <<'PY' || fail "see the messages above"
import json, re, sys

out_rules = sys.argv[1]
errors = []

known = set()
for line in open("deploy/metrics.txt"):
    line = line.split("#", 1)[0].strip()
    if line:
        known.add(line)

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2"}

def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)        # string literals
    e = re.sub(r"\{[^}]*\}", " ", e)                      # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                     # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:$])[A-Za-z_:][\w:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("("):                          # a function call
            continue
        if m.group(0).lower() in KEYWORDS:
            continue
        names.add(m.group(0))
    return names

def check_names(where, expr):
    for n in sorted(metric_names(expr)):
        if n not in known:
            errors.append(f"{where}: metric {n!r} is not listed in deploy/metrics.txt")

# --- alerts.yml, read line by line (no YAML module needed): each `- alert:` block.
lines = open("deploy/prometheus/alerts.yml").read().splitlines()
blocks, cur = [], None
for ln in lines:
    m = re.match(r"\s*- alert:\s*(\S+)", ln)
    if m:
        cur = [m.group(1), []]
        blocks.append(cur)
    elif re.match(r"\s*- (name|record):", ln):
        cur = None
    elif cur is not None:
        cur[1].append(ln)
if not blocks:
    errors.append("alerts.yml: no alerts found")
for name, body in blocks:
    text = "\n".join(body)
    where = f"alerts.yml {name}"
    if not re.search(r"^\s+for:\s*\S+", text, re.M):
        errors.append(f"{where}: no `for:`")
    if not re.search(r"^\s+severity:\s*(page|ticket)\s*$", text, re.M):
        errors.append(f"{where}: no `severity: page` or `severity: ticket` label")
    for a in ("summary", "description"):
        if not re.search(rf"^\s+{a}:\s*\S", text, re.M):
            errors.append(f"{where}: no `{a}` annotation")
    # expr: either inline or a block scalar (>- / |) of more-indented lines.
    expr = None
    for i, ln in enumerate(body):
        m = re.match(r"(\s*)expr:\s*(.*)$", ln)
        if not m:
            continue
        indent, v = len(m.group(1)), m.group(2).strip()
        if v and v[0] not in ">|":
            expr = v.strip("'\"")
        else:
            parts = []
            for nxt in body[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                parts.append(nxt.strip())
            expr = " ".join(parts)
        break
    if not expr:
        errors.append(f"{where}: no expr")
    else:
        check_names(where, expr)

# --- alerts_test.yml: the series the tests feed must be real metric names too.
for ln in open("deploy/prometheus/alerts_test.yml"):
    m = re.match(r"""\s*- series:\s*['"]?([A-Za-z_:][\w:]*)""", ln)
    if m and m.group(1) not in known:
        errors.append(f"alerts_test.yml: series {m.group(1)!r} is not listed in deploy/metrics.txt")

# --- the dashboard.
try:
    dash = json.load(open("deploy/grafana/redcloud.json"))
except ValueError as e:
    print(f"deploy/grafana/redcloud.json is not valid JSON: {e}", file=sys.stderr)
    sys.exit(1)
for k in ("uid", "title", "schemaVersion", "panels"):
    if k not in dash:
        errors.append(f"redcloud.json: no {k!r}")
if dash.get("title") != "RedCloud":
    errors.append("redcloud.json: title is not 'RedCloud'")
variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
if variables.get("DS_PROMETHEUS", {}).get("type") != "datasource":
    errors.append("redcloud.json: no datasource variable DS_PROMETHEUS")

def all_panels(ps):
    for p in ps:
        yield p
        yield from all_panels(p.get("panels", []))

exprs, ids = [], set()
for p in all_panels(dash.get("panels", [])):
    where = f"redcloud.json panel {p.get('title', '?')!r}"
    if p.get("id") in ids:
        errors.append(f"{where}: duplicate id {p.get('id')}")
    ids.add(p.get("id"))
    if "gridPos" not in p:
        errors.append(f"{where}: no gridPos")
    if p.get("type") == "row":
        continue
    targets = p.get("targets") or []
    if not targets:
        errors.append(f"{where}: no queries")
    for t in targets:
        expr = t.get("expr", "")
        if not expr.strip():
            errors.append(f"{where}: a query without expr")
            continue
        if (t.get("datasource") or p.get("datasource") or {}).get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"{where}: query not on the ${{DS_PROMETHEUS}} datasource")
        check_names(where, expr)
        exprs.append((where, expr))

# Dashboard queries as recording rules, so promtool checks their PromQL.
with open(out_rules, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (where, expr) in enumerate(exprs):
        e = re.sub(r"\$__(rate_)?interval|\$__range", "5m", expr)
        f.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}\n")

for e in errors:
    print(e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{len(blocks)} alerts and {len(exprs)} dashboard queries use only names in deploy/metrics.txt")
PY

# Rule and config paths inside these files are relative to their own directory.
echo "==> promtool test rules $prom/alerts_test.yml"
(cd "$prom" && promtool test rules alerts_test.yml) || fail "alert unit tests failed ($prom/alerts_test.yml)"

echo "==> promtool check config $prom/prometheus.yml"
(cd "$prom" && promtool check config prometheus.yml) || fail "Prometheus config is invalid ($prom/prometheus.yml)"

echo "==> promtool check rules (the dashboard's queries)"
promtool check rules "$tmp/dashboard-rules.yml" >/dev/null ||
  { promtool check rules "$tmp/dashboard-rules.yml" || true; fail "a dashboard query is not valid PromQL (deploy/grafana/redcloud.json)"; }

echo "monitoring: OK"
