// Every metric the dashboard and the alert rules query is one localdns
// exports: checked against a real /metrics scrape (runtime_test.sh), with the
// label names each selector uses. One exemption, by name: the rule group
// localdns-kube-state-metrics queries kube-state-metrics's series (listed in
// KUBE_STATE_METRICS below, and only there), which localdns does not export.
//   node metrics_check.cjs SCRAPE_FILE
'use strict';
const fs = require('fs');
const path = require('path');
if (!fs.existsSync(path.join(__dirname, 'node_modules', 'yaml'))) {
  console.log('FAIL: tests/deploy/node_modules is missing: run scripts/install-deps.sh (npm ci in tests/deploy)');
  process.exit(1);
}
const YAML = require('yaml');

const ROOT = path.resolve(__dirname, '../..');
const scrape = fs.readFileSync(process.argv[2], 'utf8');
// family -> label names seen on its samples (histograms: _bucket/_sum/_count too)
const exported = new Map();
for (const line of scrape.split('\n')) {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? /.exec(line);
  if (!m) continue;
  const labels = new Set([...(m[3] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)].map((x) => x[1]));
  if (!exported.has(m[1])) exported.set(m[1], new Set());
  for (const l of labels) exported.get(m[1]).add(l);
}
// Prometheus adds these to every series; `up` is Prometheus's own.
const TARGET_LABELS = new Set(['job', 'instance', 'node', 'le']);
const PROMETHEUS_SERIES = new Set(['up']);
// kube-state-metrics's series, allowed in that rule group only.
const KUBE_STATE_METRICS_GROUP = 'localdns-kube-state-metrics';
const KUBE_STATE_METRICS = new Set(['kube_daemonset_status_number_unavailable']);
const FUNCS = new Set(['rate', 'irate', 'increase', 'sum', 'avg', 'max', 'min', 'count', 'histogram_quantile', 'label_values',
  'topk', 'bottomk', 'clamp_min', 'clamp_max', 'abs', 'absent', 'delta', 'deriv', 'by', 'without', 'on', 'ignoring',
  'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'humanizePercentage', 'printf']);

const exprs = [];
const dash = JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy/monitoring/localdns-dashboard.json'), 'utf8'));
for (const p of dash.panels) for (const t of p.targets || []) exprs.push([`dashboard "${p.title}"`, t.expr]);
for (const v of dash.templating.list) if (v.definition) exprs.push([`dashboard variable ${v.name}`, v.definition]);
const rules = YAML.parse(fs.readFileSync(path.join(ROOT, 'deploy/monitoring/localdns-alerts.yaml'), 'utf8'));
for (const g of rules.groups) for (const r of g.rules) exprs.push([`alert ${r.alert} (group ${g.name})`, r.expr, g.name]);

let failures = 0;
let used = 0;
if (!rules.groups.some((g) => g.name === KUBE_STATE_METRICS_GROUP)) {
  failures++;
  console.log(`FAIL: no rule group ${KUBE_STATE_METRICS_GROUP} (the exemption below is for it)`);
}
const exempt = [];
for (const [where, expr, group] of exprs) {
  // Drop strings, ranges and grouping clauses; what is left are metric names,
  // functions and keywords.
  const selectors = [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)];
  const bare = expr.replace(/,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$/, ')').replace(/"[^"]*"/g, '""').replace(/\{[^}]*\}/g, ' ').replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, ' ').replace(/\$\w+/g, ' ');
  const names = [...bare.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b/g)].map((m) => m[1])
    .filter((n) => !FUNCS.has(n) && !/^\d/.test(n) && !/^(e|inf|nan)$/i.test(n));
  if (names.length === 0) { failures++; console.log(`FAIL: ${where}: no metric in ${expr}`); }
  for (const n of names) {
    used++;
    if (PROMETHEUS_SERIES.has(n)) continue;
    if (group === KUBE_STATE_METRICS_GROUP && KUBE_STATE_METRICS.has(n)) {
      if (exported.has(n)) { failures++; console.log(`FAIL: ${where}: ${n} is in localdns's scrape, not only kube-state-metrics's`); }
      exempt.push(`${where}: ${n}`);
      continue;
    }
    if (!exported.has(n)) { failures++; console.log(`FAIL: ${where}: localdns exports no ${n}`); }
  }
  for (const [, name, matchers] of selectors) {
    if (!exported.has(name)) continue;
    for (const [, label] of matchers.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)/g)) {
      if (!TARGET_LABELS.has(label) && !exported.get(name).has(label)) {
        failures++;
        console.log(`FAIL: ${where}: ${name} has no label ${label}`);
      }
    }
  }
}
for (const e of exempt) console.log(`not in localdns's scrape, by design (kube-state-metrics): ${e}`);
console.log(`${exprs.length} queries, ${used} metric references, ${exempt.length} exempt, ${failures} failures`);
process.exit(failures ? 1 : 0);
