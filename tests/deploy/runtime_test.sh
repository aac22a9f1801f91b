#!/usr/bin/env bash
# Each overlay's localdns, for real, in a network namespace standing in for a
# node: deploy/render.sh fills the overlay with sample values, localdns runs
# the rendered ConfigMap with the DaemonSet's own args ($(HOST_IP) and
# $(POD_IP) = the "node" address), Knot DNS plays CoreDNS behind the
# kube-dns-upstream address and the node's resolver. Asserts, per mode, /ready
# and /health where the probes go and answers where pods ask (link-local: never
# the ClusterIP; Cilium: the pod IP, no interface), a clean SIGTERM; then in
# iptables mode metrics on the node IP (and not on the link-local one), that
# every metric the dashboard and the alerts query is in the scrape, and that
# localdns's RSS with a full cache (entries, then bytes) stays under the
# DaemonSet's memory limit.
#   runtime_test.sh LOCALDNS
# RUNTIME_REPORT=FILE appends the measured figures.
set -euo pipefail

LOCALDNS=$1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = "true" ]; then echo "FAIL: the deploy runtime test needs root (network namespace, node setup) and CI=true"; exit 1; fi
  echo "SKIPPED: the deploy runtime test needs root (network namespace, node setup)"
  exit 77
fi
PATH=$PATH:/usr/sbin:/sbin
for tool in ip knotd dig node kubectl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (scripts/install-deps.sh installs it)"; exit 1; }
done

NS=ld-deploy-$$
TMP=$(mktemp -d /tmp/localdns-deploy-runtime-XXXXXX)
LOG=$TMP/localdns.log
HOST_IP=192.0.2.10 LOCAL=169.254.20.10 KUBEDNS=10.96.0.10 UPSTREAM=10.96.0.11
PIDS=()
cleanup() {
  [ -n "${DEBUG_CLEANUP:-}" ] && echo "cleanup: ${PIDS[*]}"
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "/etc/netns/$NS" "$TMP"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  [ -f "$LOG" ] && { echo "--- localdns log (last 20 lines)"; tail -20 "$LOG"; }
  exit 1
}
n() { ip netns exec "$NS" "$@"; }
# start PIDFILE CMD...: runs CMD in the namespace in the background; `ip netns
# exec` forks, so CMD's own PID comes from PIDFILE (both are killed at exit).
# WRAPPER is the `ip` process, whose exit status is CMD's.
start() {
  local pidfile=$1
  shift
  ip netns exec "$NS" bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@" &
  WRAPPER=$!
  PIDS+=($WRAPPER)
  for _ in $(seq 1 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
  [ -s "$pidfile" ] || fail "$1 did not start"
  PIDS+=($(cat "$pidfile"))
}
http() {  # ADDR PORT PATH: prints the status line and body
  n timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2 && printf 'GET $3 HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && cat <&3"
}

# --- the node ------------------------------------------------------------------
ip netns add "$NS"
n ip link set lo up
# The kernel may lack the dummy driver (as some CI kernels do): then the
# node's interface and localdns's own are bridges (--interface-kind).
KIND=dummy EXTRA=()
if ! n ip link add eth0 type dummy 2>/dev/null; then
  KIND=bridge EXTRA=(--interface-kind bridge)
  n ip link add eth0 type bridge
fi
n ip addr add "$HOST_IP/24" dev eth0
n ip link set eth0 up
n ip addr add "$UPSTREAM/32" dev lo
mkdir -p "/etc/netns/$NS"
echo "nameserver $UPSTREAM" > "/etc/netns/$NS/resolv.conf"   # the node's resolver

# --- CoreDNS and the node's resolver: Knot DNS ---------------------------------
mkdir "$TMP/knot"
cat > "$TMP/knot/cluster.zone" <<ZONE
\$ORIGIN cluster.local.
@ 30 IN SOA ns hostmaster 1 3600 600 86400 5
@ 30 IN NS ns
ns 30 IN A $UPSTREAM
kubernetes.default.svc 30 IN A 10.96.0.1
ZONE
big=$(printf 'x%.0s' $(seq 1 250))
cat > "$TMP/knot/fill.zone" <<ZONE
\$ORIGIN fill.test.
@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300
@ 3600 IN NS ns
ns 3600 IN A $UPSTREAM
*.small 3600 IN A 10.0.0.1
*.big 3600 IN TXT "$big" "$big"
ZONE
cat > "$TMP/knot/root.zone" <<ZONE
\$ORIGIN .
@ 3600 IN SOA ns.fill.test. hostmaster.fill.test. 1 3600 600 86400 300
@ 3600 IN NS ns.fill.test.
ZONE
cat > "$TMP/knot/knot.conf" <<CONF
server:
  rundir: "$TMP/knot"
  listen: $UPSTREAM@53
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$TMP/knot"
log:
  - target: stderr
    any: error
zone:
  - domain: cluster.local
    file: "$TMP/knot/cluster.zone"
  - domain: fill.test
    file: "$TMP/knot/fill.zone"
  - domain: .
    file: "$TMP/knot/root.zone"
CONF
start "$TMP/knot.pid" knotd -c "$TMP/knot/knot.conf" 2>"$TMP/knot.err"
for _ in $(seq 1 50); do
  n dig +short +time=1 +tries=1 @"$UPSTREAM" kubernetes.default.svc.cluster.local 2>/dev/null | grep -q 10.96.0.1 && break
  sleep 0.2
done
n dig +short +time=1 +tries=1 @"$UPSTREAM" kubernetes.default.svc.cluster.local | grep -q 10.96.0.1 || { cat "$TMP/knot.err"; fail "Knot DNS did not start"; }

# --- the rendered DaemonSets ---------------------------------------------------
# run_overlay NAME: renders deploy/overlays/NAME, starts localdns with the
# rendered ConfigMap and the DaemonSet's args ($(HOST_IP) and $(POD_IP) are
# the "node" address: a pod IP on the host network), and waits for /ready
# where the DaemonSet's probes go. Sets LPID, LWRAP, PROBE, CONF, LIMIT.
run_overlay() {
  local dir=$TMP/$1
  mkdir -p "$dir"
  "$ROOT/deploy/render.sh" --local-dns "$LOCAL" --dns-server "$KUBEDNS" --upstream "$UPSTREAM" \
    "$ROOT/deploy/overlays/$1" > "$dir/rendered.yaml" || fail "deploy/render.sh deploy/overlays/$1"
  node -e '
const YAML = require(process.argv[1] + "/node_modules/yaml");
const fs = require("fs");
const objs = YAML.parseAllDocuments(fs.readFileSync(process.argv[2], "utf8")).map((d) => d.toJS());
const ds = objs.find((o) => o.kind === "DaemonSet");
const c = ds.spec.template.spec.containers[0];
const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === ds.spec.template.spec.volumes.find((v) => v.configMap).configMap.name);
fs.writeFileSync(process.argv[3] + "/localdns.yaml", cm.data["localdns.yaml"]);
fs.writeFileSync(process.argv[3] + "/args", c.args.join("\n") + "\n");
fs.writeFileSync(process.argv[3] + "/limit", String(c.resources.limits.memory));
fs.writeFileSync(process.argv[3] + "/probe", c.readinessProbe.httpGet.host || "");
' "$HERE" "$dir/rendered.yaml" "$dir" || fail "cannot read the rendered DaemonSet of $1"
  CONF=$dir/localdns.yaml LIMIT=$(cat "$dir/limit") PROBE=$(cat "$dir/probe")
  [ -n "$PROBE" ] || PROBE=$HOST_IP   # no host: kubelet probes the pod IP
  mapfile -t ARGS < <(sed -e "s|\$(HOST_IP)|$HOST_IP|g" -e "s|\$(POD_IP)|$HOST_IP|g" \
    -e "s|^/etc/localdns/localdns.yaml$|$CONF|" "$dir/args")
  if grep -q '\$(' <<<"${ARGS[*]}"; then fail "$1: args reference variables the test does not set: ${ARGS[*]}"; fi
  echo "== $1: localdns ${ARGS[*]} (interface kind $KIND)"
  LOG=$dir/localdns.log
  start "$dir/localdns.pid" "$LOCALDNS" "${ARGS[@]}" "${EXTRA[@]}" "${MORE[@]}" --control-socket "$dir/ctl.sock" >"$LOG" 2>&1
  LPID=$(cat "$dir/localdns.pid") LWRAP=$WRAPPER
  local ready=""
  for _ in $(seq 1 100); do
    kill -0 "$LPID" 2>/dev/null || fail "$1: localdns exited"
    if http "$PROBE" 8080 /ready 2>/dev/null | head -1 | grep -q ' 200 '; then ready=1; break; fi
    sleep 0.1
  done
  [ -n "$ready" ] || fail "$1: /ready on $PROBE:8080 did not answer 200 within 10 s: $(http "$PROBE" 8080 /ready 2>&1 | tail -1)"
  http "$PROBE" 8080 /health | head -1 | grep -q ' 200 ' || fail "$1: /health on $PROBE:8080 is not 200"
}
answers() {  # MODE SERVER...: each answers a cluster name over UDP and TCP
  local mode=$1 server proto got
  shift
  for server in "$@"; do
    for proto in +notcp +tcp; do
      got=$(n dig +short +time=2 +tries=1 $proto @"$server" kubernetes.default.svc.cluster.local) || true
      [ "$got" = 10.96.0.1 ] || fail "$mode: dig $proto @$server kubernetes.default.svc.cluster.local gave '$got'"
    done
  done
  n dig +time=2 +tries=1 @"$1" nothing.svc.cluster.local | grep -q NXDOMAIN || fail "$mode: no NXDOMAIN from $1 for a missing cluster name"
}
silent() {  # MODE SERVER...: nothing answers there
  local mode=$1 server
  shift
  for server in "$@"; do
    if n dig +short +time=1 +tries=1 @"$server" kubernetes.default.svc.cluster.local 2>/dev/null | grep -q 10.96.0.1; then
      fail "$mode: $server answers, and must not"
    fi
  done
}
stop_localdns() {  # MODE: SIGTERM, exit status 0, the interface gone
  local status=0
  kill -TERM "$LPID"
  wait "$LWRAP" || status=$?
  [ "$status" -eq 0 ] || fail "$1: localdns exited with status $status on SIGTERM"
  if n ip link show nodelocaldns >/dev/null 2>&1; then fail "$1: the nodelocaldns interface is left after SIGTERM"; fi
}
# LOCALDNS_EXTRA_ARGS: more flags, e.g. --threads 16 to measure a bigger node.
read -ra MORE <<<"${LOCALDNS_EXTRA_ARGS:-}"

# Link-local only: 169.254.20.10, never the kube-dns ClusterIP.
run_overlay link-local
answers link-local "$LOCAL"
silent link-local "$KUBEDNS"
stop_localdns link-local

# Cilium: an ordinary pod on its pod IP, no interface, no rules.
run_overlay cilium
answers cilium "$HOST_IP"
silent cilium "$LOCAL" "$KUBEDNS"
if n ip link show nodelocaldns >/dev/null 2>&1; then fail "cilium: an interface was set up"; fi
http "$HOST_IP" 9253 /metrics | head -1 | grep -q ' 200 ' || fail "cilium: no /metrics on the pod IP"
stop_localdns cilium

# iptables mode (the drop-in): both local addresses; then metrics and memory.
run_overlay iptables
answers iptables "$LOCAL" "$KUBEDNS"
n ip link show nodelocaldns >/dev/null 2>&1 || fail "iptables: no nodelocaldns interface"

# --- metrics on the node's IP only -----------------------------------------------
http "$HOST_IP" 9253 /metrics > "$TMP/metrics.txt" || fail "no /metrics on $HOST_IP:9253"
head -1 "$TMP/metrics.txt" | grep -q ' 200 ' || fail "/metrics on $HOST_IP:9253: $(head -1 "$TMP/metrics.txt")"
if http "$LOCAL" 9253 /metrics >/dev/null 2>&1; then fail "metrics also answer on the link-local address"; fi
grep -q '^coredns_nodecache_setup_errors_total' "$TMP/metrics.txt" || fail "no node setup metrics in the scrape"
node "$HERE/metrics_check.cjs" "$TMP/metrics.txt" || fail "the dashboard or the alerts query metrics localdns does not export"

# --- memory with a full cache ----------------------------------------------------
# Only for a plain build: a sanitizer runtime's shadow memory and quarantine
# say nothing about localdns's own RSS, and filling the cache under it takes
# minutes (tests/CMakeLists.txt sets LOCALDNS_SANITIZED for those builds).
if [ -n "${LOCALDNS_SANITIZED:-}" ]; then
  echo "== memory check left to the plain build (sanitizer build: RSS is the runtime's)"
  stop_localdns iptables
  echo "PASS: deploy runtime"
  exit 0
fi
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$LPID/status"; }
metric() { http "$HOST_IP" 9253 /metrics | awk -v m="$1" '$1 ~ "^"m"({|$)" {print $2; exit}'; }
limit=$LIMIT
case "$limit" in
  *Mi) limit_kib=$(( ${limit%Mi} * 1024 )) ;;
  *Gi) limit_kib=$(( ${limit%Gi} * 1024 * 1024 )) ;;
  *) fail "memory limit '$limit' is not in Mi or Gi" ;;
esac
max_bytes=$(awk '$1 == "max_bytes:" {print $2; exit}' "$CONF")
idle=$(rss_kib)
n node "$HERE/fill.cjs" "$LOCAL" 53 small.fill.test A 120000 || fail "filling the cache with 120000 names"
entries=$(metric coredns_cache_entries) bytes1=$(metric localdns_cache_bytes) full_entries=$(rss_kib)
n node "$HERE/fill.cjs" "$LOCAL" 53 big.fill.test TXT 150000 || fail "filling the cache with 150000 large answers"
bytes2=$(metric localdns_cache_bytes) evictions=$(metric coredns_cache_evictions_total) full_bytes=$(rss_kib)
report="idle RSS ${idle} KiB; 120000 small names: ${entries} entries, ${bytes1} cache bytes, RSS ${full_entries} KiB; \
150000 large answers: ${bytes2} cache bytes (max_bytes ${max_bytes}), ${evictions} evictions, RSS ${full_bytes} KiB; \
overhead past the cache $(( full_bytes - ${bytes2%.*} / 1024 )) KiB; limit ${limit}"
echo "== $report"
[ -n "${RUNTIME_REPORT:-}" ] && echo "$report" >> "$RUNTIME_REPORT"
[ "${entries%.*}" -ge 99000 ] || fail "the cache holds only $entries entries after 120000 names"
[ "${bytes2%.*}" -ge $(( max_bytes * 9 / 10 )) ] || fail "the cache did not fill its byte budget ($bytes2 of $max_bytes)"
threads=$(awk '$1 == "threads:" {print $2; exit}' "$CONF")
for a in "${MORE[@]}"; do [ "${prev:-}" = --threads ] && threads=$a; prev=$a; done
formula_kib=$(( max_bytes / 1024 + (48 + threads) * 1024 ))
[ "$full_bytes" -le "$formula_kib" ] ||
  fail "RSS ${full_bytes} KiB with a full cache is over max_bytes + 48 MiB + 1 MiB x $threads threads ($formula_kib KiB, deploy/README.md)"
[ "$full_bytes" -lt "$limit_kib" ] || fail "RSS ${full_bytes} KiB with a full cache is over the memory limit $limit"
kill -0 "$LPID" || fail "localdns died while filling its cache"
http "$LOCAL" 8080 /health | head -1 | grep -q ' 200 ' || fail "/health is not 200 with a full cache"

stop_localdns iptables
echo "PASS: deploy runtime"
