#!/usr/bin/env bash
# End to end, `localdns doctor` on a node in miniature: a "pod" namespace
# joined by veth to a "node" namespace, "CoreDNS" (Knot DNS) in a third one
# behind a kube-proxy-like DNAT of the kube-dns ClusterIP, localdns in the node
# namespace (bridge instead of dummy). Asserts what the report says about
# the race counters, the pod's resolv.conf (--pod, --all-pods), localdns's
# interface, rules and answers, and a rule deleted by hand.
#   doctor_e2e.sh LOCALDNS RACE_PAIR
# DOCTOR_REPORT=FILE keeps the text report of the healthy node.
set -euo pipefail

LOCALDNS=$1 RACE=$2
if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "FAIL: the doctor end-to-end test needs root (network namespaces, iptables) and CI=true"
    exit 1
  fi
  echo "SKIPPED: the doctor end-to-end test needs root (network namespaces, iptables)"
  exit 77
fi
for tool in ip iptables-nft iptables-nft-save knotd dig jq bash; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (scripts/install-deps.sh installs it)"; exit 1; }
done

id=$$
POD=ld-dpod-$id NODE=ld-dnode-$id DNS=ld-ddns-$id
TMP=$(mktemp -d /tmp/localdns-doctor-e2e-XXXXXX)
LOG=$TMP/localdns.log
PIDS=()
LPID="" PODPID=""
CLUSTER_IP=10.96.0.10 LINK_LOCAL=169.254.20.10 COREDNS=10.244.2.53
FORWARD=(--forward cluster.local=tcp://$COREDNS --forward .=tcp://$COREDNS)
START=$SECONDS

cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "$POD" "$NODE" "$DNS"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/etc/netns/$POD" "$TMP"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  if [ -f "$LOG" ]; then echo "--- localdns log (last 20 lines)"; tail -20 "$LOG"; fi
  exit 1
}
note() { echo "== $*"; }
n() { ip netns exec "$NODE" "$@"; }
p() { ip netns exec "$POD" "$@"; }

# --- topology (as in node_e2e.sh) ---------------------------------------------
for ns in "$POD" "$NODE" "$DNS"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add vpod netns "$NODE" type veth peer name eth0 netns "$POD"
ip link add vdns netns "$NODE" type veth peer name eth0 netns "$DNS"
ip -n "$NODE" addr add 10.244.1.1/24 dev vpod && ip -n "$NODE" link set vpod up
ip -n "$NODE" addr add 10.244.2.1/24 dev vdns && ip -n "$NODE" link set vdns up
ip -n "$POD" addr add 10.244.1.2/24 dev eth0 && ip -n "$POD" link set eth0 up
ip -n "$POD" route add default via 10.244.1.1
ip -n "$DNS" addr add $COREDNS/24 dev eth0 && ip -n "$DNS" link set eth0 up
ip -n "$DNS" route add default via 10.244.2.1
n sysctl -qw net.ipv4.ip_forward=1
n iptables-nft -w -t mangle -N KUBE-IPTABLES-HINT
for proto in udp tcp; do
  for chain in PREROUTING OUTPUT; do
    n iptables-nft -w -t nat -A $chain -d $CLUSTER_IP/32 -p $proto --dport 53 \
      -j DNAT --to-destination $COREDNS:53
  done
  n iptables-nft -w -t nat -A POSTROUTING -d $COREDNS/32 -p $proto --dport 53 -j MASQUERADE
done

mkdir -p "$TMP/knot"
cat > "$TMP/knot/zone" <<ZONE
\$ORIGIN cluster.local.
\$TTL 30
@ IN SOA ns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
@ IN NS ns
ns IN A $COREDNS
api.default.svc IN A 10.96.0.1
ZONE
cat > "$TMP/knot/knot.conf" <<CONF
server:
  rundir: "$TMP/knot"
  listen: $COREDNS@53
  udp-workers: 4
  tcp-workers: 2
  background-workers: 1
database:
  storage: "$TMP/knot"
log:
  - target: stderr
    any: error
zone:
  - domain: cluster.local
    storage: "$TMP/knot"
    file: "zone"
CONF
ip netns exec "$DNS" knotd -c "$TMP/knot/knot.conf" >"$TMP/knot.log" 2>&1 &
PIDS+=($!)

# The pod: Kubernetes' resolv.conf pointing at the kube-dns ClusterIP, and a
# process that keeps it in its own mount namespace (ip netns exec bind-mounts
# /etc/netns/POD/resolv.conf over /etc/resolv.conf for it).
mkdir -p "/etc/netns/$POD"
printf 'nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
  $CLUSTER_IP > "/etc/netns/$POD/resolv.conf"
ip netns exec "$POD" sleep 300 &
PODPID=$!
PIDS+=("$PODPID")
for _ in $(seq 1 50); do
  grep -q "^nameserver $CLUSTER_IP" "/proc/$PODPID/root/etc/resolv.conf" 2>/dev/null && break
  sleep 0.1
done
grep -q "^nameserver $CLUSTER_IP" "/proc/$PODPID/root/etc/resolv.conf" ||
  fail "the pod process does not see its own resolv.conf"
cmp -s "/proc/$PODPID/root/etc/resolv.conf" /etc/resolv.conf &&
  fail "the pod's resolv.conf is the host's: the test could not tell them apart"

for _ in $(seq 1 100); do n dig +short +time=1 +tries=1 @$COREDNS api.default.svc.cluster.local >/dev/null 2>&1 && break; sleep 0.1; done

# --- helpers ------------------------------------------------------------------
starts() { local c; c=$(grep -c "listening on" "$LOG" 2>/dev/null) || true; echo "${c:-0}"; }
LOCAL_FLAGS=()
start_localdns() {  # local-ip flags...; rules are checked once an hour: deletions stay
  local started
  started=$(starts)
  LOCAL_FLAGS=("$@" --interface-kind bridge "${FORWARD[@]}")
  ip netns exec "$NODE" "$LOCALDNS" "${LOCAL_FLAGS[@]}" --sync-interval 1h --control off >>"$LOG" 2>&1 &
  LPID=$!
  PIDS+=("$LPID")
  for _ in $(seq 1 100); do
    [ "$(starts)" -gt "$started" ] && break
    kill -0 "$LPID" 2>/dev/null || fail "localdns exited during start-up"
    sleep 0.1
  done
  [ "$(starts)" -gt "$started" ] || fail "localdns did not start within 10 s"
}
stop_localdns() {
  kill -TERM "$LPID"
  for _ in $(seq 1 100); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$LPID" 2>/dev/null && fail "localdns did not exit within 10 s"
  wait "$LPID" 2>/dev/null || true
}
RC=0
doctor() {  # OUT_FILE doctor-args...: runs the doctor in the node namespace, sets RC
  local out=$1; shift
  RC=0
  timeout 60 ip netns exec "$NODE" "$LOCALDNS" doctor "$@" >"$out" 2>"$out.err" || RC=$?
  [ "$RC" -le 2 ] || { cat "$out.err"; fail "doctor exited with $RC"; }
}
check() {  # JSON_FILE ID FIELD: a field of check ID
  jq -r --argjson id "$2" ".checks[] | select(.id == \$id) | $3" "$1"
}
clashes() {
  local header total=0 row i c=-1
  mapfile -t rows < <(n cat /proc/net/stat/nf_conntrack)
  read -ra header <<<"${rows[0]}"
  for i in "${!header[@]}"; do [ "${header[$i]}" = clashres ] && c=$i; done
  for row in "${rows[@]:1}"; do read -ra f <<<"$row"; [ $c -ge 0 ] && total=$((total + 16#${f[$c]})); done
  echo $total
}

# --- 1: localdns captures only the link-local address; the pod asks the ClusterIP
note "1. the pod's nameserver is a ClusterIP localdns does not capture; forced race"
start_localdns --local-ip $LINK_LOCAL
# The forced race through kube-proxy's DNAT while the doctor watches.
before=$(clashes)
doctor_bg() { timeout 60 ip netns exec "$NODE" "$LOCALDNS" doctor --watch 8 --json --pod "$PODPID" \
  "${LOCAL_FLAGS[@]}" >"$TMP/race.json" 2>"$TMP/race.err"; }
doctor_bg & DPID=$!
PIDS+=("$DPID")
sleep 1
for _ in 1 2 3 4 5; do
  p "$RACE" $CLUSTER_IP 53 300 api.default.svc.cluster.local >/dev/null
  [ "$(clashes)" -gt "$before" ] && break
done
raced=$(( $(clashes) - before ))
status=0; wait "$DPID" || status=$?
echo "   forced race x300: clashres +$raced; doctor exit $status"
[ -n "${DOCTOR_REPORT:-}" ] && cp "$TMP/race.json" "$DOCTOR_REPORT.race.json"
[ "$raced" -gt 0 ] || fail "the forced race raised no clashres (the test cannot show anything)"
[ "$status" -eq 1 ] || { cat "$TMP/race.err"; fail "doctor exit $status, expected 1 (warnings)"; }
delta=$(check "$TMP/race.json" 1 '.facts.clashres_delta')
echo "   check 1: $(check "$TMP/race.json" 1 '.status'), clashres_delta=$delta; $(check "$TMP/race.json" 1 '.evidence[1]')"
[ "$delta" -ge "$raced" ] || fail "check 1 reports clashres +$delta, the race raised it by $raced"
[ "$(check "$TMP/race.json" 1 '.status')" = warn ] || fail "check 1 is not a warning after the race"
check "$TMP/race.json" 1 '.evidence[]' | grep -q "clashres climbing" || fail "check 1 does not name clashres"
[ "$(check "$TMP/race.json" 4 '.status')" = warn ] || fail "check 4 does not warn about the uncaptured ClusterIP"
check "$TMP/race.json" 4 '.evidence[]' | grep -q "nameserver $CLUSTER_IP: the kube-dns ClusterIP, which localdns does not capture" ||
  fail "check 4 does not say the ClusterIP is not captured"
check "$TMP/race.json" 4 '.remedies[]' | grep -q "point the pods at the node-local address $LINK_LOCAL" ||
  fail "check 4 does not recommend the link-local address"
[ "$(check "$TMP/race.json" 4 '.facts."queries.api.example.com"')" -eq 8 ] || fail "amplification for api.example.com is not 8"
[ "$(check "$TMP/race.json" 5 '.status')" = ok ] || { check "$TMP/race.json" 5 '.evidence[]'; fail "check 5 not ok for the link-local setup"; }
echo "   verdict: $(check "$TMP/race.json" 7 '.remedies[0]')"
check "$TMP/race.json" 7 '.remedies[0]' | grep -q "point pods at the node-local address" || fail "verdict does not point pods at the cache"

note "1b. --all-pods finds the pod's resolv.conf"
doctor "$TMP/all.json" --all-pods --json "${LOCAL_FLAGS[@]}"
group=$(jq -r --arg pid "$PODPID" '.checks[] | select(.id == 4) | .evidence[] | select(test("^/proc/[0-9]+/root/etc/resolv.conf \\(")) | select(test("[ ,:]" + $pid + "[,)]") or test("[.]{3}"))' "$TMP/all.json" |
  grep "nameserver $CLUSTER_IP, search default.svc.cluster.local svc.cluster.local cluster.local, ndots:5" || true)
echo "   ${group:0:160}"
[ -n "$group" ] || { check "$TMP/all.json" 4 '.evidence[]' | head; fail "--all-pods did not find the pod's resolv.conf"; }
sources=$(check "$TMP/all.json" 4 '.facts.sources | length')
[ "$sources" -ge 2 ] || fail "--all-pods found $sources resolv.conf groups, expected the host's and the pod's"
stop_localdns

note "2. localdns not running: checks 1-4 and 6 still run"
doctor "$TMP/down.json" --json --pod "$PODPID" "${LOCAL_FLAGS[@]}"
[ "$RC" -eq 2 ] || fail "doctor exit $RC with localdns down, expected 2"
check "$TMP/down.json" 5 '.evidence[]' | grep -q "localdns is not running" || fail "check 5 does not say localdns is not running"
[ "$(jq '[.checks[] | select(.id <= 6)] | length' "$TMP/down.json")" -eq 6 ] || fail "not every check ran"

# --- 3: both addresses captured, rules in place -------------------------------
note "3. localdns captures $LINK_LOCAL and $CLUSTER_IP with its rules"
start_localdns --local-ip $LINK_LOCAL --local-ip $CLUSTER_IP
doctor "$TMP/ok.json" --json --pod "$PODPID" "${LOCAL_FLAGS[@]}"
doctor "$TMP/ok.txt" --pod "$PODPID" "${LOCAL_FLAGS[@]}"
sed 's/^/   | /' "$TMP/ok.txt"
[ -n "${DOCTOR_REPORT:-}" ] && cp "$TMP/ok.txt" "$DOCTOR_REPORT"
[ "$(check "$TMP/ok.json" 5 '.status')" = ok ] || { check "$TMP/ok.json" 5 '.evidence[]'; fail "check 5 not ok with localdns and its rules in place"; }
[ "$(check "$TMP/ok.json" 5 '.facts.rules_checked')" -gt 0 ] || fail "check 5 checked no rules"
[ "$(check "$TMP/ok.json" 5 '[.evidence[] | select(test("^query .* \\(cluster.local. SOA\\): NOERROR in"))] | length')" -eq 4 ] ||
  fail "check 5 did not see 4 answered queries (UDP and TCP to both addresses)"
check "$TMP/ok.json" 5 '.evidence[]' | grep -q "upstream $COREDNS:53 tcp: reachable" || fail "upstream not reported reachable"
check "$TMP/ok.json" 5 '.evidence[]' | grep -qE "^metrics http://$LINK_LOCAL:9253/metrics: [1-9][0-9]* responses, .* 0 setup errors" ||
  fail "check 5 did not read localdns's own counters"
[ "$(check "$TMP/ok.json" 4 '.status')" = ok ] || { check "$TMP/ok.json" 4 '.evidence[]'; fail "check 4 warns although localdns captures the ClusterIP"; }
check "$TMP/ok.json" 4 '.remedies[]' | grep -q "node-local address" && fail "check 4 still recommends the link-local address"
[ "$(check "$TMP/ok.json" 6 '.facts.to_local')" -eq 0 ] || fail "conntrack entries towards the local addresses"
# Without its flags the doctor finds localdns from the node: interface and rules.
doctor "$TMP/found.json" --json --pod "$PODPID"
[ "$(check "$TMP/found.json" 5 '.status')" = ok ] || { check "$TMP/found.json" 5 '.evidence[]'; fail "check 5 not ok when found from the node"; }
[ "$(check "$TMP/found.json" 4 '.status')" = ok ] || fail "check 4 warns when localdns is found from the node"

note "4. a NOTRACK rule deleted by hand"
missing=$(n iptables-nft-save -t raw 2>/dev/null | grep -m1 '^-A PREROUTING' | sed -n 's/.*--comment "\([^"]*\)".*/\1/p')
[ -n "$missing" ] || fail "no NOTRACK rule to delete"
n iptables-nft -w -t raw -D PREROUTING 1
doctor "$TMP/broken.json" --json --pod "$PODPID" "${LOCAL_FLAGS[@]}"
echo "   doctor exit $RC; $(check "$TMP/broken.json" 5 '.evidence[] | select(startswith("rule "))')"
[ "$RC" -eq 2 ] || fail "doctor exit $RC with a rule missing, expected 2"
[ "$(check "$TMP/broken.json" 5 '.status')" = fail ] || fail "check 5 does not fail with a rule missing"
check "$TMP/broken.json" 5 '.evidence[]' | grep -qF "rule missing in iptables raw PREROUTING: \"$missing\"" ||
  fail "check 5 does not name the missing rule \"$missing\""
[ "$(check "$TMP/broken.json" 5 '.facts.rule_problems | length')" -eq 1 ] || fail "check 5 names more than the one missing rule"
doctor "$TMP/broken-found.json" --json
check "$TMP/broken-found.json" 5 '.evidence[]' | grep -qF "rule missing in iptables raw PREROUTING: \"$missing\"" ||
  fail "found from the node, check 5 does not name the missing rule"
stop_localdns

elapsed=$((SECONDS - START))
echo "   took ${elapsed} s"
[ "$elapsed" -lt 110 ] || fail "took ${elapsed} s, the bound is 110 s"
echo "PASS"
