// Offline validation of deploy/: every file parses, `kubectl kustomize` builds
// each overlay, deploy/render.sh fills its placeholders, every object
// validates against the Kubernetes API schema (kubernetes-models), the
// Prometheus Operator's (@kubernetes-models/prometheus-operator) or, for the
// CiliumLocalRedirectPolicy, cilium-lrp.schema.json; the DaemonSets and
// Services do what deploy/README.md says; each embedded localdns config passes
// `localdns --check-config`; config/kubernetes.yaml is the base template
// filled with the sample values; the PrometheusRule and the rule file agree.
//   node validate.cjs LOCALDNS_BINARY
// Exit status 1 naming every failed check.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync, spawnSync } = require('child_process');
if (!fs.existsSync(path.join(__dirname, 'node_modules', 'yaml'))) {
  console.log('FAIL: tests/deploy/node_modules is missing: run scripts/install-deps.sh (npm ci in tests/deploy)');
  process.exit(1);
}
const YAML = require('yaml');
const Ajv2020 = require('ajv/dist/2020');
const { unknownFields } = require('./strict_fields.cjs');

const ROOT = path.resolve(__dirname, '../..');
const DEPLOY = path.join(ROOT, 'deploy');
const LOCALDNS = process.argv[2];
const KUBECTL = process.env.KUBECTL || 'kubectl';
const SAMPLE = { local: '169.254.20.10', dnsServer: '10.96.0.10', domain: 'cluster.local', upstream: '10.96.0.11' };
// What localdns holds besides its cache, with a full cache: 48 MiB plus 1 MiB
// per worker thread (measured by runtime_test.sh; deploy/README.md "Memory").
// The memory limit must leave at least this above cache.max_bytes.
const overheadBytes = (threads) => (48 + threads) * 1024 * 1024;

let failures = 0;
let checks = 0;
function check(ok, what) {
  checks++;
  if (!ok) {
    failures++;
    console.log(`FAIL: ${what}`);
  }
  return ok;
}
function canon(v) {
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]));
  return v;
}
function same(a, b) { return JSON.stringify(canon(a)) === JSON.stringify(canon(b)); }
function sorted(a) { return [...(a || [])].sort(); }

// --- every file parses -------------------------------------------------------
function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]);
}
for (const f of walk(DEPLOY)) {
  const rel = path.relative(ROOT, f);
  const text = fs.readFileSync(f, 'utf8');
  if (f.endsWith('.yaml') || f.endsWith('.yml')) {
    const docs = YAML.parseAllDocuments(text);
    check(docs.length > 0 && docs.every((d) => d.errors.length === 0),
      `${rel} parses as YAML: ${docs.flatMap((d) => d.errors.map((e) => e.message)).join('; ')}`);
  } else if (f.endsWith('.json')) {
    try { JSON.parse(text); check(true, rel); } catch (e) { check(false, `${rel} parses as JSON: ${e.message}`); }
  }
}

// --- build and render ----------------------------------------------------------
function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}
// Which kubectl builds the manifests (KUBECTL=... to pick another, e.g. 1.20).
try {
  console.log(`${KUBECTL}: ${run(KUBECTL, ['version', '--client']).split('\n')[0]}`);
} catch (e) { check(false, `${KUBECTL} version --client: ${e.stderr || e.message}`); }
// render.sh ARGS: its stdout; a failure, or anything on stderr (kustomize's
// warnings pass through, its deprecation notices for `bases` and
// `patchesStrategicMerge` are filtered), is a failed check.
function render(args, what) {
  const r = spawnSync(path.join(DEPLOY, 'render.sh'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (!check(r.status === 0, `${what}: exit status ${r.status}: ${r.stderr}`)) return undefined;
  check(r.stderr === '', `${what} prints nothing on stderr (got: ${r.stderr})`);
  return r.stdout;
}
const SAMPLE_ARGS = ['--local-dns', SAMPLE.local, '--dns-server', SAMPLE.dnsServer, '--domain', SAMPLE.domain, '--upstream', SAMPLE.upstream];
function parseAll(text, what) {
  const docs = YAML.parseAllDocuments(text);
  for (const d of docs) check(d.errors.length === 0, `${what} output parses: ${d.errors.map((e) => e.message)}`);
  return docs.map((d) => d.toJS()).filter((o) => o);
}
const builds = {};
for (const dir of ['base', 'overlays/iptables', 'overlays/link-local', 'overlays/cilium', 'monitoring']) {
  let out = '';
  try { out = run(KUBECTL, ['kustomize', path.join(DEPLOY, dir)]); } catch (e) {
    check(false, `kubectl kustomize deploy/${dir}: ${e.stderr || e.message}`);
    continue;
  }
  check(out.length > 0, `kubectl kustomize deploy/${dir} prints manifests`);
  if (dir === 'monitoring') { builds[dir] = parseAll(out, dir); continue; }
  const rendered = render([...SAMPLE_ARGS, path.join(DEPLOY, dir)], `deploy/render.sh deploy/${dir}`);
  if (rendered === undefined) continue;
  check(!/__PILLAR__[A-Z_]+__/.test(rendered), `deploy/render.sh deploy/${dir} leaves no placeholder`);
  builds[dir] = parseAll(rendered, `render.sh ${dir}`);
}
// --no-traffic-distribution: the same objects, kube-dns-upstream without the
// field (for API servers before 1.30, which reject it).
{
  const rendered = render(['--no-traffic-distribution', ...SAMPLE_ARGS, path.join(DEPLOY, 'overlays/iptables')],
    'deploy/render.sh --no-traffic-distribution deploy/overlays/iptables');
  if (rendered !== undefined && builds['overlays/iptables']) {
    const objs = parseAll(rendered, 'render.sh --no-traffic-distribution');
    const strip = (o) => {
      const c = JSON.parse(JSON.stringify(o));
      if (c.kind === 'Service' && c.metadata.name === 'kube-dns-upstream') delete c.spec.trafficDistribution;
      return c;
    };
    const up = objs.find((o) => o.kind === 'Service' && o.metadata.name === 'kube-dns-upstream');
    check(up && !('trafficDistribution' in up.spec), '--no-traffic-distribution: kube-dns-upstream has no trafficDistribution');
    check(same(objs, builds['overlays/iptables'].map(strip)), '--no-traffic-distribution: every other object and field as without the flag');
  }
}

// --- schemas ------------------------------------------------------------------
const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
const lrpSchema = ajv.compile(JSON.parse(fs.readFileSync(path.join(__dirname, 'cilium-lrp.schema.json'), 'utf8')));
function modulePath(obj) {
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  if (group === 'monitoring.coreos.com') return `@kubernetes-models/prometheus-operator/${obj.apiVersion}`;
  return `kubernetes-models/${group ? group + '/' : ''}${version}`;
}
function modelFor(obj) {
  try { return require(modulePath(obj))[obj.kind]; } catch { return undefined; }
}
// The model's TypeScript declarations, for the unknown-field check.
function declarationsFor(obj) {
  return path.join(path.dirname(require.resolve(modulePath(obj))), `${obj.kind}.d.ts`);
}
function validate(obj, where) {
  const what = `${where}: ${obj.kind} ${obj.metadata && obj.metadata.name}`;
  if (obj.apiVersion === 'cilium.io/v2' && obj.kind === 'CiliumLocalRedirectPolicy') {
    check(lrpSchema(obj), `${what} validates against cilium-lrp.schema.json: ${ajv.errorsText(lrpSchema.errors)}`);
    return;
  }
  const Model = modelFor(obj);
  if (!check(Model !== undefined, `${what}: no schema for ${obj.apiVersion} ${obj.kind}`)) return;
  try { new Model(obj).validate(); check(true, what); } catch (e) { check(false, `${what} validates: ${e.message}`); }
  const unknown = unknownFields(obj, declarationsFor(obj));
  check(unknown.length === 0, `${what}: unknown fields (the API server rejects them): ${unknown.join(', ')}`);
  check(obj.metadata.namespace === 'kube-system', `${what} is in kube-system (got ${obj.metadata.namespace})`);
}
for (const [dir, objs] of Object.entries(builds)) for (const o of objs) validate(o, dir);

// --- what each mode must be ------------------------------------------------
const find = (objs, kind, name) => (objs || []).find((o) => o.kind === kind && (!name || o.metadata.name === name));
function configOf(objs, ds, where) {
  const vol = ds.spec.template.spec.volumes.find((v) => v.configMap);
  const cm = vol && find(objs, 'ConfigMap', vol.configMap.name);
  if (!check(cm && cm.data && cm.data['localdns.yaml'], `${where}: the DaemonSet's ConfigMap with localdns.yaml is in the build`)) return {};
  const text = cm.data['localdns.yaml'];
  const file = path.join(os.tmpdir(), `localdns-deploy-${process.pid}-${where.replace(/\W/g, '_')}.yaml`);
  fs.writeFileSync(file, text);
  try { run(LOCALDNS, ['--check-config', file]); check(true, where); } catch (e) {
    check(false, `${where}: localdns --check-config on the ConfigMap: ${e.stdout}${e.stderr}`);
  } finally { fs.unlinkSync(file); }
  return { text, yaml: YAML.parse(text) };
}
function container(ds) { return ds.spec.template.spec.containers.find((c) => c.name === 'localdns'); }
function envFrom(c, name) {
  const e = (c.env || []).find((v) => v.name === name);
  return e && e.valueFrom && e.valueFrom.fieldRef && e.valueFrom.fieldRef.fieldPath;
}
function common(objs, where) {
  const ds = find(objs, 'DaemonSet', 'localdns');
  if (!check(ds, `${where}: DaemonSet localdns`)) return {};
  const pod = ds.spec.template.spec;
  const c = container(ds);
  check(pod.priorityClassName === 'system-node-critical', `${where}: priorityClassName system-node-critical`);
  check(pod.dnsPolicy === 'Default', `${where}: dnsPolicy Default`);
  check((pod.tolerations || []).some((t) => t.operator === 'Exists' && !t.key && !t.effect), `${where}: a toleration for every taint`);
  // Surge upgrades: the new pod takes the old one's sockets over (README, "Upgrades").
  check(ds.spec.updateStrategy.type === 'RollingUpdate' && ds.spec.updateStrategy.rollingUpdate.maxSurge === 1 &&
        ds.spec.updateStrategy.rollingUpdate.maxUnavailable === 0,
    `${where}: rolling update with maxSurge 1 and maxUnavailable 0`);
  check(same(c.securityContext.capabilities.drop, ['ALL']) && !c.securityContext.privileged, `${where}: drops every other capability, not privileged`);
  const sa = find(objs, 'ServiceAccount', pod.serviceAccountName);
  check(sa, `${where}: the ServiceAccount ${pod.serviceAccountName} is in the build`);
  const ann = ds.spec.template.metadata.annotations || {};
  check(ann['prometheus.io/scrape'] === 'true' && ann['prometheus.io/port'] === '9253', `${where}: Prometheus scrape annotations for 9253`);
  if (pod.hostNetwork === true) {
    // Host ports: the scheduler would refuse the surge pod while the old one holds them.
    check(!c.ports || c.ports.length === 0, `${where}: no container ports on the host network (surge upgrades)`);
    // The control socket where the next pod of an upgrade finds this one.
    const ctl = pod.volumes.find((v) => v.hostPath && v.hostPath.path === '/run/localdns');
    check(ctl && ctl.hostPath.type === 'DirectoryOrCreate' &&
          c.volumeMounts.some((m) => m.name === ctl.name && m.mountPath === '/run/localdns'),
      `${where}: /run/localdns is a hostPath (DirectoryOrCreate) mounted at /run/localdns`);
    check(c.args[c.args.indexOf('--control-socket') + 1] === '/run/localdns/localdns.sock',
      `${where}: --control-socket /run/localdns/localdns.sock`);
  } else {
    check(c.ports.some((p) => p.containerPort === 53 && p.protocol === 'UDP' && p.name === 'dns') &&
          c.ports.some((p) => p.containerPort === 53 && p.protocol === 'TCP' && p.name === 'dns-tcp'), `${where}: ports dns (53/UDP) and dns-tcp (53/TCP)`);
  }
  check(c.livenessProbe.httpGet.path === '/health' && c.livenessProbe.httpGet.port === 8080, `${where}: liveness on /health:8080`);
  check(c.readinessProbe.httpGet.path === '/ready' && c.readinessProbe.httpGet.port === 8080, `${where}: readiness on /ready:8080`);
  const up = find(objs, 'Service', 'kube-dns-upstream');
  if (check(up, `${where}: Service kube-dns-upstream`)) {
    // The schema takes any string here: the value is checked by name.
    check(up.spec.trafficDistribution === 'PreferClose', `${where}: kube-dns-upstream has trafficDistribution PreferClose`);
    check(same(up.spec.selector, { 'k8s-app': 'kube-dns' }), `${where}: kube-dns-upstream selects CoreDNS (k8s-app: kube-dns)`);
    check(same(sorted(up.spec.ports.map((p) => `${p.port}/${p.protocol}`)), ['53/TCP', '53/UDP']), `${where}: kube-dns-upstream serves 53/UDP and 53/TCP`);
  }
  const ms = find(objs, 'Service', 'localdns-metrics');
  if (check(ms, `${where}: Service localdns-metrics`)) {
    check(ms.spec.clusterIP === 'None', `${where}: the metrics Service is headless`);
    check(Object.entries(ms.spec.selector).every(([k, v]) => ds.spec.template.metadata.labels[k] === v), `${where}: the metrics Service selects the localdns pods`);
    check(ms.spec.ports.some((p) => p.name === 'metrics' && p.port === 9253), `${where}: the metrics Service exposes 9253 as "metrics"`);
  }
  const cfgArg = c.args[c.args.indexOf('--config') + 1] || '';
  const cfgVol = pod.volumes.find((v) => v.configMap);
  check(cfgVol && c.volumeMounts.some((m) => m.name === cfgVol.name && m.mountPath === path.dirname(cfgArg)),
    `${where}: the ConfigMap is mounted where --config reads it (${cfgArg})`);
  const mem = c.resources;
  check(mem.requests.memory && mem.limits.memory, `${where}: memory request and limit`);
  const cfg = configOf(objs, ds, where);
  if (cfg.yaml) {
    const limit = bytes(mem.limits.memory);
    const max = cfg.yaml.cache.max_bytes;
    const threads = cfg.yaml.threads;
    check(Number.isInteger(threads) && threads > 0, `${where}: a fixed thread count (one per core would outgrow any fixed memory limit), got ${threads}`);
    check(limit >= max + overheadBytes(threads), `${where}: memory limit ${mem.limits.memory} covers cache.max_bytes ${max} + ${overheadBytes(threads)} overhead`);
    check(bytes(mem.requests.memory) <= limit, `${where}: memory request within the limit`);
    check(!/0\.0\.0\.0|::\b/.test(`${cfg.yaml.metrics} ${cfg.yaml.health}`), `${where}: no wildcard metrics or health address in the config`);
    check(same(cfg.yaml.forward[0].zones, [SAMPLE.domain, 'in-addr.arpa', 'ip6.arpa']) &&
          same(cfg.yaml.forward[0].servers, [`${SAMPLE.upstream}:53`]) && cfg.yaml.forward[0].transport === 'tcp',
      `${where}: the cluster zones go to kube-dns-upstream over TCP`);
  }
  return { ds, pod, c, cfg };
}
// The DaemonSet's args as kubelet expands them, with an IPv4 and an IPv6
// address for VARIABLE: `localdns --print-config` must put each endpoint of
// PORTS on that address and port ([$(VAR)]:PORT works for both families).
function effectiveEndpoints(c, cfg, where, variable, ports) {
  if (!cfg || !cfg.text) return;
  const file = path.join(os.tmpdir(), `localdns-deploy-${process.pid}-${where.replace(/\W/g, '_')}-args.yaml`);
  fs.writeFileSync(file, cfg.text);
  const cfgArg = c.args[c.args.indexOf('--config') + 1];
  try {
    for (const [ip, shown] of [['192.0.2.10', (p) => `192.0.2.10:${p}`], ['fd00::5', (p) => `[fd00::5]:${p}`]]) {
      const args = c.args.map((a) => (a === cfgArg ? file : a.replaceAll(`$(${variable})`, ip)));
      let out;
      try { out = YAML.parse(run(LOCALDNS, ['--print-config', ...args])); } catch (e) {
        check(false, `${where}: localdns --print-config ${args.join(' ')}: ${e.stdout}${e.stderr}`);
        continue;
      }
      for (const [key, port] of Object.entries(ports)) {
        const got = out[key];
        check(key === 'listen' ? same(got, [shown(port)]) : got === shown(port),
          `${where}: ${variable}=${ip} puts ${key} on ${shown(port)} (got ${JSON.stringify(got)})`);
      }
    }
  } finally { fs.unlinkSync(file); }
}
// What deploy/README.md says of the unbracketed form with an IPv6 address.
{
  const r = spawnSync(LOCALDNS, ['--print-config', '--metrics', 'fd00::1:9253'], { encoding: 'utf8' });
  check(r.status === 2 && r.stderr.includes('--metrics fd00::1:9253: expected ADDRESS:PORT or off'),
    `localdns refuses --metrics fd00::1:9253 (exit ${r.status}: ${r.stderr})`);
  try {
    const out = YAML.parse(run(LOCALDNS, ['--print-config', '--listen', 'fd00::5:53']));
    check(same(out.listen, ['[fd00::5:53]:5353']), `--listen fd00::5:53 is the address fd00::5:53 on the default port (got ${JSON.stringify(out.listen)})`);
  } catch (e) { check(false, `localdns --print-config --listen fd00::5:53: ${e.stdout}${e.stderr}`); }
}
function bytes(q) {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(String(q));
  if (!m) return NaN;
  return Number(m[1]) * { undefined: 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m[2]];
}
function nodeMode(objs, where, locals) {
  const r = common(objs, where);
  if (!r.ds) return r;
  const { pod, c, cfg } = r;
  check(pod.hostNetwork === true, `${where}: hostNetwork`);
  check(same(sorted(c.securityContext.capabilities.add), ['NET_ADMIN', 'NET_BIND_SERVICE', 'NET_RAW']), `${where}: capabilities NET_ADMIN, NET_BIND_SERVICE, NET_RAW only`);
  const lock = pod.volumes.find((v) => v.hostPath && v.hostPath.path === '/run/xtables.lock');
  check(lock && c.volumeMounts.some((m) => m.name === lock.name && m.mountPath === '/run/xtables.lock'), `${where}: the xtables lock is mounted from the host`);
  const args = c.args.join(' ');
  check(/(^| )--metrics \[\$\(HOST_IP\)\]:9253( |$)/.test(args) && envFrom(c, 'HOST_IP') === 'status.hostIP', `${where}: metrics on the node's own IP (status.hostIP), port 9253, bracketed`);
  effectiveEndpoints(c, cfg, where, 'HOST_IP', { metrics: 9253 });
  for (const p of [c.livenessProbe, c.readinessProbe]) check(p.httpGet.host === SAMPLE.local, `${where}: probes go to the link-local address (got ${p.httpGet.host})`);
  if (cfg.yaml) {
    check(same(cfg.yaml.node.local_addresses, locals), `${where}: local addresses ${locals.join(', ')} (got ${cfg.yaml.node.local_addresses})`);
    check(cfg.yaml.health === `${SAMPLE.local}:8080` && cfg.yaml.node.health_port === 8080, `${where}: health on the link-local address, port 8080, kept out of conntrack`);
  }
  return r;
}
const ipt = nodeMode(builds['overlays/iptables'], 'iptables', [SAMPLE.local, SAMPLE.dnsServer]);
const base = nodeMode(builds.base, 'base', [SAMPLE.local, SAMPLE.dnsServer]);
const ll = nodeMode(builds['overlays/link-local'], 'link-local', [SAMPLE.local]);
function without(cfg, keys) {
  const c = JSON.parse(JSON.stringify(cfg));
  for (const k of keys) { const parts = k.split('.'); let o = c; while (parts.length > 1) o = o[parts.shift()] || {}; delete o[parts[0]]; }
  return c;
}
if (ipt.cfg && ll.cfg && ipt.cfg.yaml && ll.cfg.yaml) {
  check(same(without(ipt.cfg.yaml, ['node.local_addresses']), without(ll.cfg.yaml, ['node.local_addresses'])),
    'link-local: the config is the base one but for node.local_addresses');
}

// Cilium: an ordinary pod on its pod IP, no node setup, a local redirect policy.
const cil = common(builds['overlays/cilium'], 'cilium');
if (cil.ds) {
  const { pod, c, cfg } = cil;
  check(pod.hostNetwork !== true, 'cilium: not on the host network');
  check(same(c.securityContext.capabilities.add, ['NET_BIND_SERVICE']), 'cilium: NET_BIND_SERVICE only (no node setup)');
  check(!pod.volumes.some((v) => v.hostPath), 'cilium: no hostPath volume');
  check(c.volumeMounts.every((m) => pod.volumes.some((v) => v.name === m.name)), 'cilium: every mount has its volume');
  const args = c.args.join(' ');
  check(envFrom(c, 'POD_IP') === 'status.podIP', 'cilium: POD_IP from status.podIP');
  for (const a of ['--listen [$(POD_IP)]:53', '--health [$(POD_IP)]:8080', '--metrics [$(POD_IP)]:9253']) check(args.includes(a), `cilium: args have ${a}`);
  effectiveEndpoints(c, cfg, 'cilium', 'POD_IP', { listen: 53, health: 8080, metrics: 9253 });
  for (const p of [c.livenessProbe, c.readinessProbe]) check(p.httpGet.host === undefined, 'cilium: probes go to the pod IP');
  if (cfg.yaml && ipt.cfg && ipt.cfg.yaml) {
    check(cfg.yaml.node === undefined, 'cilium: no node setup in the config');
    check(same(without(ipt.cfg.yaml, ['node', 'listen', 'health', 'metrics']), without(cfg.yaml, ['node', 'listen', 'health', 'metrics'])),
      'cilium: the config is the base one but for node, listen, health and metrics');
  }
  const lrp = find(builds['overlays/cilium'], 'CiliumLocalRedirectPolicy');
  if (check(lrp, 'cilium: a CiliumLocalRedirectPolicy')) {
    const fe = lrp.spec.redirectFrontend.serviceMatcher;
    check(fe.serviceName === 'kube-dns' && fe.namespace === 'kube-system', 'cilium: the policy matches the kube-dns Service');
    // Frontend and backend ports pair up by name.
    check(same(sorted((fe.toPorts || []).map((p) => p.name)), sorted(lrp.spec.redirectBackend.toPorts.map((p) => p.name))),
      'cilium: the frontend and backend ports have the same names');
    const sel = lrp.spec.redirectBackend.localEndpointSelector.matchLabels;
    check(Object.entries(sel).every(([k, v]) => cil.ds.spec.template.metadata.labels[k] === v), 'cilium: the policy selects the localdns pods');
    for (const p of lrp.spec.redirectBackend.toPorts) {
      check(c.ports.some((cp) => cp.name === p.name && String(cp.containerPort) === p.port && cp.protocol === p.protocol),
        `cilium: backend port ${p.name} ${p.port}/${p.protocol} is a port of the pod`);
    }
  }
}

// config/kubernetes.yaml is the base template filled with the sample values.
const template = fs.readFileSync(path.join(DEPLOY, 'base/localdns.yaml'), 'utf8');
const filled = template.replaceAll('__PILLAR__LOCAL__DNS__', SAMPLE.local).replaceAll('__PILLAR__DNS__SERVER__', SAMPLE.dnsServer)
  .replaceAll('__PILLAR__DNS__DOMAIN__', SAMPLE.domain).replaceAll('__PILLAR__CLUSTER__DNS__', SAMPLE.upstream);
check(filled === fs.readFileSync(path.join(ROOT, 'config/kubernetes.yaml'), 'utf8'),
  'config/kubernetes.yaml is deploy/base/localdns.yaml with the sample values (regenerate it with the sed in deploy/README.md)');
if (ipt.cfg) check(ipt.cfg.text === filled, 'iptables: the rendered ConfigMap is config/kubernetes.yaml');

// --- monitoring ------------------------------------------------------------
const mon = builds.monitoring || [];
const rulesFile = YAML.parse(fs.readFileSync(path.join(DEPLOY, 'monitoring/localdns-alerts.yaml'), 'utf8'));
const pr = find(mon, 'PrometheusRule', 'localdns');
check(pr && same(pr.spec.groups, rulesFile.groups), 'monitoring: the PrometheusRule has the groups of localdns-alerts.yaml');
const sm = find(mon, 'ServiceMonitor', 'localdns');
const metricsSvc = ipt.ds && find(builds['overlays/iptables'], 'Service', 'localdns-metrics');
if (check(sm && metricsSvc, 'monitoring: a ServiceMonitor for the localdns-metrics Service')) {
  check(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => metricsSvc.metadata.labels[k] === v), 'monitoring: the ServiceMonitor selects localdns-metrics');
  check(sm.spec.endpoints.every((e) => metricsSvc.spec.ports.some((p) => p.name === e.port)), 'monitoring: the ServiceMonitor scrapes a named port of the Service');
  check(metricsSvc.metadata.labels[sm.spec.jobLabel] === 'localdns', 'monitoring: the scrape job is "localdns", as the alerts and the dashboard select');
}
const dashFile = fs.readFileSync(path.join(DEPLOY, 'monitoring/localdns-dashboard.json'), 'utf8');
const dashCm = find(mon, 'ConfigMap', 'localdns-dashboard');
check(dashCm && dashCm.data['localdns-dashboard.json'] === dashFile && dashCm.metadata.labels.grafana_dashboard === '1',
  'monitoring: the dashboard ConfigMap carries localdns-dashboard.json with the Grafana sidecar label');

// deploy/README.md's snippets for kube-prometheus-stack and annotation-based
// scraping: the kustomize overlay adds `release` to the ServiceMonitor's and
// the PrometheusRule's labels and changes nothing else; the relabeling passes
// `promtool check config`.
const readme = fs.readFileSync(path.join(DEPLOY, 'README.md'), 'utf8');
const snippets = [...readme.matchAll(/^( *)```yaml\n([\s\S]*?)^\1```$/gm)].map((m) => m[2].split('\n').map((l) => l.slice(m[1].length)).join('\n'));
const overlay = snippets.find((s) => s.includes('commonLabels:') && s.includes('../deploy/monitoring'));
if (check(overlay, 'deploy/README.md has the kustomize overlay adding the release label') && sm && pr) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'localdns-release-'));
  try {
    fs.writeFileSync(path.join(dir, 'kustomization.yaml'),
      overlay.replace('../deploy/monitoring', path.relative(dir, path.join(DEPLOY, 'monitoring'))));
    const objs = parseAll(run(KUBECTL, ['kustomize', dir]), 'the release-label overlay');
    const release = YAML.parse(overlay).commonLabels.release;
    for (const o of [sm, pr]) {
      const got = find(objs, o.kind, o.metadata.name);
      check(got && got.metadata.labels.release === release, `release overlay: ${o.kind} ${o.metadata.name} has release: ${release}`);
      if (got) {
        const g = JSON.parse(JSON.stringify(got));
        delete g.metadata.labels.release;
        check(same(g, o), `release overlay: ${o.kind} ${o.metadata.name} otherwise unchanged (the ServiceMonitor's selector too)`);
      }
    }
  } catch (e) { check(false, `the release-label overlay builds: ${e.stderr || e.message}`); } finally { fs.rmSync(dir, { recursive: true }); }
}
const relabel = snippets.find((s) => s.includes('target_label: job'));
if (check(relabel, 'deploy/README.md has the job relabeling for annotation-based scraping')) {
  // Syntax only; static targets, since Debian's Prometheus has no Kubernetes discovery.
  const file = path.join(os.tmpdir(), `localdns-deploy-${process.pid}-prometheus.yml`);
  fs.writeFileSync(file, YAML.stringify({ scrape_configs: [{ job_name: 'kubernetes-pods',
    static_configs: [{ targets: ['192.0.2.10:9253'] }], relabel_configs: YAML.parse(relabel) }] }));
  try { run('promtool', ['check', 'config', file]); check(true, 'relabeling'); } catch (e) {
    check(false, `promtool check config on the README's relabeling: ${e.stdout}${e.stderr}`);
  } finally { fs.unlinkSync(file); }
}

// .dockerignore keeps the tests' npm packages out of the image's build context.
const dockerignore = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
check(dockerignore.includes('**/node_modules'), '.dockerignore excludes **/node_modules (tests/deploy/node_modules)');

console.log(`${checks - failures} of ${checks} checks passed`);
process.exit(failures ? 1 : 0);
