#!/usr/bin/env bash
# End to end, the conntrack race in miniature: a "pod" namespace joined by veth
# to a "node" namespace, "CoreDNS" (Knot DNS) in a third namespace reachable
# through a kube-proxy-like DNAT of the kube-dns ClusterIP, and localdns in
# the node namespace with node setup on (bridge instead of dummy: this kernel
# may lack dummy). Asserts answers, latency, conntrack entries and the
# kernel's clash counters with and without the rules, repair, SIGTERM
# teardown (exit status 0, no sanitizer report), and kill -9 crash safety with
# the standard Kubernetes upstream (a second Service IP, kube-dns-upstream)
# and adoption on restart.
#   node_e2e.sh LOCALDNS LOOKUP_BURST RACE_PAIR
set -euo pipefail

LOCALDNS=$1 BURST=$2 RACE=$3
if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = true ]; then
    echo "FAIL: the end-to-end node test needs root (network namespaces, iptables); CI=true does not allow skipping it"
    exit 1
  fi
  echo "SKIPPED: the end-to-end node test needs root (network namespaces, iptables)"
  exit 77
fi
for tool in ip iptables-nft iptables-legacy-save nft knotd dig bash; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (scripts/install-deps.sh installs it)"; exit 1; }
done

id=$$
POD=ld-pod-$id NODE=ld-node-$id DNS=ld-dns-$id
TMP=$(mktemp -d /tmp/localdns-e2e-XXXXXX)
LOG=$TMP/localdns.log
PIDS=()
LPID=""
CLUSTER_IP=10.96.0.10 LINK_LOCAL=169.254.20.10 COREDNS=10.244.2.53
UPSTREAM_IP=10.96.0.11 SERVICE_CIDR=10.96.0.0/12  # kube-dns-upstream, the Service range
# Upstreams: CoreDNS's pod address (default) or, as a real DaemonSet is set up,
# the kube-dns-upstream Service IP behind kube-proxy's DNAT.
FORWARD=(--forward cluster.local=tcp://$COREDNS --forward .=tcp://$COREDNS)

cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "$POD" "$NODE" "$DNS"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/etc/netns/$POD"; [ -n "${KEEP_TMP:-}" ] && cp "$LOG" /tmp/e2e-last.log; rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  if [ -f "$LOG" ]; then echo "--- localdns log (last 40 lines)"; tail -40 "$LOG"; fi
  exit 1
}
note() { echo "== $*"; }
n() { ip netns exec "$NODE" "$@"; }
p() { ip netns exec "$POD" "$@"; }

# --- topology -----------------------------------------------------------------
for ns in "$POD" "$NODE" "$DNS"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add vpod netns "$NODE" type veth peer name eth0 netns "$POD"
ip link add vdns netns "$NODE" type veth peer name eth0 netns "$DNS"
ip -n "$NODE" addr add 10.244.1.1/24 dev vpod && ip -n "$NODE" link set vpod up
ip -n "$NODE" addr add 10.244.2.1/24 dev vdns && ip -n "$NODE" link set vdns up
ip -n "$POD" addr add 10.244.1.2/24 dev eth0 && ip -n "$POD" link set eth0 up
ip -n "$POD" route add default via 10.244.1.1
ip -n "$DNS" addr add $COREDNS/24 dev eth0 && ip -n "$DNS" link set eth0 up
ip -n "$DNS" route add default via 10.244.2.1
# The Service range is routed like any remote network (a real node's default
# route); kube-proxy's DNAT rewrites the destination before it matters.
ip -n "$NODE" route add $SERVICE_CIDR via $COREDNS dev vdns
n sysctl -qw net.ipv4.ip_forward=1

# kube-proxy in miniature (iptables-nft, with kubelet's hint chain).
n iptables-nft -w -t mangle -N KUBE-IPTABLES-HINT
for proto in udp tcp; do
  for chain in PREROUTING OUTPUT; do
    for service in $CLUSTER_IP $UPSTREAM_IP; do  # kube-dns and kube-dns-upstream
      n iptables-nft -w -t nat -A $chain -d $service/32 -p $proto --dport 53 \
        -j DNAT --to-destination $COREDNS:53
    done
  done
  n iptables-nft -w -t nat -A POSTROUTING -d $COREDNS/32 -p $proto --dport 53 -j MASQUERADE
done
n iptables-nft -w -A FORWARD -m conntrack --ctstate INVALID -j DROP

# "CoreDNS": Knot DNS serving cluster.local.
mkdir -p "$TMP/knot"
cat > "$TMP/knot/zone" <<ZONE
\$ORIGIN cluster.local.
\$TTL 30
@ IN SOA ns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
@ IN NS ns
ns IN A $COREDNS
kube-dns.kube-system.svc IN A $CLUSTER_IP
api.default.svc IN A 10.96.0.1
dual.default.svc IN A 10.96.0.20
dual.default.svc IN AAAA fd00::20
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

# The pod's resolver: Kubernetes' search list and ndots:5.
mkdir -p "/etc/netns/$POD"
pod_nameserver() {
  printf 'nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
    "$1" > "/etc/netns/$POD/resolv.conf"
}
pod_nameserver $LINK_LOCAL

# --- helpers ------------------------------------------------------------------
answers() {  # ADDR: the pod gets an answer from ADDR
  [ "$(p dig +short +time=1 +tries=1 @"$1" api.default.svc.cluster.local 2>/dev/null)" = "10.96.0.1" ]
}
wait_answer() {
  for _ in $(seq 1 100); do answers "$1" && return 0; sleep 0.1; done
  fail "no answer from $1 within 10 s"
}
starts() {  # how many times localdns logged its listeners
  local c
  c=$(grep -c "listening on" "$LOG" 2>/dev/null) || true
  echo "${c:-0}"
}
start_localdns() {
  # Ready once it logged its listeners (after node setup and the conntrack
  # flush) and answers: the fallback DNAT may answer before that.
  local started
  started=$(starts)
  echo "--- start: $*" >>"$LOG"
  # Not through n(): a function in the background would leave $! a subshell.
  ip netns exec "$NODE" "$LOCALDNS" --local-ip $LINK_LOCAL --local-ip $CLUSTER_IP --interface-kind bridge \
    "${FORWARD[@]}" --sync-interval 1s --control "$TMP/ctl.sock" "$@" >>"$LOG" 2>&1 &
  LPID=$!
  PIDS+=("$LPID")
  for _ in $(seq 1 100); do
    [ "$(starts)" -gt "$started" ] && break
    kill -0 "$LPID" 2>/dev/null || fail "localdns exited during start-up"
    sleep 0.1
  done
  [ "$(starts)" -gt "$started" ] || fail "localdns did not start within 10 s"
  wait_answer $LINK_LOCAL
}
no_sanitizer_report() {  # ASan, TSan and UBSan builds report into the log
  local report
  report=$(grep -n -m 5 -E "ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error:" "$LOG" || true)
  [ -z "$report" ] || fail "sanitizer report in localdns's log: $report"
}
stop_localdns() {  # SIGNAL
  local status=0
  kill -"$1" "$LPID"
  for _ in $(seq 1 100); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$LPID" 2>/dev/null && fail "localdns did not exit within 10 s of SIG$1"
  wait "$LPID" 2>/dev/null || status=$?
  case $1 in
    TERM) [ "$status" -eq 0 ] || fail "localdns exited with status $status after SIGTERM, expected 0" ;;
    KILL) [ "$status" -eq 137 ] || fail "localdns exited with status $status after SIGKILL, expected 137" ;;
  esac
  no_sanitizer_report
}
dns_entries() {  # conntrack entries for DNS to or from the local addresses
  n cat /proc/net/nf_conntrack | grep -E "(src|dst)=($LINK_LOCAL|$CLUSTER_IP) " | grep -c -E "(dport|sport)=53 " || true
}
clashes() {  # clashres + insert_failed, summed over CPUs
  local header total=0 row i c_clash=-1 c_fail=-1
  mapfile -t rows < <(n cat /proc/net/stat/nf_conntrack)
  read -ra header <<<"${rows[0]}"
  for i in "${!header[@]}"; do
    [ "${header[$i]}" = clashres ] && c_clash=$i
    [ "${header[$i]}" = insert_failed ] && c_fail=$i
  done
  for row in "${rows[@]:1}"; do
    read -ra f <<<"$row"
    [ $c_clash -ge 0 ] && total=$((total + 16#${f[$c_clash]}))
    [ $c_fail -ge 0 ] && total=$((total + 16#${f[$c_fail]}))
  done
  echo $total
}
http_get() {  # URL path on the link-local address, from the node: prints "STATUS BODY"
  n bash -c "exec 3<>/dev/tcp/$LINK_LOCAL/$1 && printf 'GET $2 HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null |
    tr -d '\r' | awk 'NR==1{s=$2} /^$/{b=1; next} b{print s, $0; exit}'
}
rule_count() { { n iptables-nft-save; n iptables-legacy-save; } 2>/dev/null | grep -c 'localdns:' || true; }
burst() {  # LABEL TOTAL: glibc lookups from the pod, all answered, none slow
  local out
  out=$(p "$BURST" "$2" 16 api kube-dns.kube-system dual)
  echo "   $1: $out"
  [[ $out == *" failed=0 "* ]] || fail "$1: lookups failed: $out"
  [[ $out == *" slow=0 "* ]] || fail "$1: lookups took a second or more: $out"
}
race() {  # ADDR ITERATIONS -> prints "answered clash_delta"
  local before after out
  before=$(clashes)
  out=$(p "$RACE" "$1" 53 "$2" api.default.svc.cluster.local)
  after=$(clashes)
  echo "${out##*answered=} $((after - before))"
}

race_clashes() {  # ADDR: the forced race without rules; needs both CPUs free at
  # the same instant, so a busy machine gets up to five tries of 300.
  local answered clash
  for _ in 1 2 3 4 5; do
    read -r answered clash <<<"$(race "$1" 300)"
    [ "$clash" -gt 0 ] && break
  done
  echo "$answered $clash"
}

for _ in $(seq 1 100); do n dig +short +time=1 +tries=1 @$COREDNS api.default.svc.cluster.local >/dev/null 2>&1 && break; sleep 0.1; done

# --- 1: localdns without the rules: conntrack sees every query -----------------
note "1. interface only, no NOTRACK rules"
start_localdns --no-setup-rules
burst "glibc burst to $LINK_LOCAL" 600
entries=$(dns_entries)
echo "   conntrack entries for DNS to the local addresses: $entries"
[ "$entries" -gt 0 ] || fail "without rules the burst should create conntrack entries (the test cannot fail otherwise)"
read -r answered clash <<<"$(race_clashes $LINK_LOCAL)"
echo "   forced A/AAAA race x300: answered=$answered clashres+insert_failed=$clash"
[ "$clash" -gt 0 ] || fail "without rules the forced race should raise clashres"
stop_localdns TERM

# --- 2: node setup on: no conntrack for DNS at all ----------------------------
note "2. node setup on (rules backend detected from kubelet's hint)"
start_localdns
grep -q "rules backend iptables-nft (detected)" "$LOG" || fail "backend not detected from KUBE-IPTABLES-HINT"
grep -q "deleted [0-9]* conntrack entries" "$LOG" || fail "leftover conntrack entries were not deleted at start"
entries=$(dns_entries)
[ "$entries" -eq 0 ] || fail "$entries conntrack entries left after start"
rules=$(rule_count)
echo "   rules installed: $rules"
for target in $LINK_LOCAL $CLUSTER_IP; do
  pod_nameserver $target
  burst "glibc burst to $target" 600
  entries=$(dns_entries)
  echo "   conntrack entries for DNS: $entries"
  [ "$entries" -eq 0 ] || fail "$entries conntrack entries for DNS with the rules in place ($target)"
  read -r answered clash <<<"$(race $target 300)"
  echo "   forced A/AAAA race x300 to $target: answered=$answered clashres+insert_failed=$clash"
  [ "$clash" -eq 0 ] || fail "clash counters rose with the rules in place"
  [ "$answered" -eq 600 ] || fail "race: only $answered of 600 queries answered"
done
# Repair: a rule and an address removed by hand come back within the sync interval.
n iptables-nft -w -t raw -D PREROUTING 1
n ip addr del $CLUSTER_IP/32 dev nodelocaldns
for _ in $(seq 1 50); do
  [ "$(rule_count)" -eq "$rules" ] && n ip addr show dev nodelocaldns | grep -q "$CLUSTER_IP/32" && break
  sleep 0.1
done
[ "$(rule_count)" -eq "$rules" ] || fail "deleted rule not restored within 5 s"
n ip addr show dev nodelocaldns | grep -q "$CLUSTER_IP/32" || fail "deleted address not restored within 5 s"
grep -q "repaired 2 items" "$LOG" || grep -q "repaired 1 items" "$LOG" || fail "repair not logged"
echo "   repairs: $(grep -c 'repaired' "$LOG") logged"
# Observability on the link-local address, as node-local-dns serves it.
# /health and /ready answer from state refreshed in the background (at most
# about 1 s old): poll until both reflect the repair, within 5 s.
for _ in $(seq 1 50); do
  ready=$(http_get 8080 /ready)
  health=$(http_get 8080 /health)
  [ "$ready" = "200 OK" ] && [ "$health" = "200 OK" ] && break
  sleep 0.1
done
[ "$ready" = "200 OK" ] || fail "/ready: $ready"
[ "$health" = "200 OK" ] || fail "/health: $health"
repairs=$(n bash -c "exec 3<>/dev/tcp/$LINK_LOCAL/9253 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3" |
  awk '/^localdns_node_repairs_total /{print $2}')
echo "   /ready 200, /health 200, localdns_node_repairs_total $repairs"
[ "${repairs:-0}" -ge 2 ] || fail "repairs metric: ${repairs:-missing}"
stats=$(n "$LOCALDNS" ctl --socket "$TMP/ctl.sock" stats)
echo "$stats" | grep -q "node setup  in place" || fail "ctl stats: $stats"
nx=$(n "$LOCALDNS" ctl --socket "$TMP/ctl.sock" top --nxdomain -n 3)
echo "$nx" | sed 's/^/   ctl top --nxdomain: /'
echo "$nx" | grep -q "kube-dns.kube-system \[search default.svc.cluster.local\]" ||
  fail "the search-list NXDOMAINs of kube-dns.kube-system should rank in ctl top --nxdomain"

# --- 3: SIGTERM tears down; the ClusterIP falls back to kube-proxy --------------
note "3. SIGTERM"
stop_localdns TERM
n ip link show nodelocaldns >/dev/null 2>&1 && fail "interface left after SIGTERM"
[ "$(rule_count)" -eq 0 ] || fail "$(rule_count) rules left after SIGTERM"
[ "$(n nft list tables | grep -c localdns || true)" -eq 0 ] || fail "nft table left after SIGTERM"
pod_nameserver $CLUSTER_IP
burst "glibc burst to $CLUSTER_IP via kube-proxy's DNAT" 300
read -r answered clash <<<"$(race_clashes $CLUSTER_IP)"
echo "   forced A/AAAA race x300 through the DNAT: answered=$answered clashres+insert_failed=$clash"
[ "$clash" -gt 0 ] || fail "without localdns the race through the DNAT should raise clashres"

# --- 4: kill -9 with the standard Kubernetes upstream ---------------------------
# As the DaemonSet runs it: both addresses captured, upstreams the
# kube-dns-upstream Service IP. kube-proxy serves the ClusterIP while localdns
# is down; the link-local address has no usable fallback (a DNAT to a Service
# IP is not translated again), and localdns says so at start.
note "4. kill -9, upstreams behind kube-proxy (--forward .=tcp://$UPSTREAM_IP:53)"
FORWARD=(--forward cluster.local=tcp://$UPSTREAM_IP:53 --forward .=tcp://$UPSTREAM_IP:53 --service-cidr $SERVICE_CIDR)
start_localdns
grep -q "no fallback DNAT for $LINK_LOCAL ($UPSTREAM_IP:53 is inside node.service_cidr $SERVICE_CIDR)" "$LOG" ||
  fail "no start-up warning about the missing fallback target"
nat=$({ n iptables-nft-save -t nat; } 2>/dev/null | grep -c 'localdns:' || true)
[ "$nat" -eq 0 ] || fail "$nat fallback DNAT rules installed; none can work here"
rules=$(rule_count)
stop_localdns KILL
n ip link show nodelocaldns >/dev/null 2>&1 || fail "interface should be left behind by kill -9"
[ "$(rule_count)" -eq "$rules" ] || fail "rules should be left behind by kill -9"
# Every lookup here starts after the kill: all answered through kube-proxy, none slow.
pod_nameserver $CLUSTER_IP
burst "localdns dead: glibc burst to $CLUSTER_IP (kube-proxy path)" 200
pod_nameserver $LINK_LOCAL
start_localdns
[ "$(rule_count)" -eq "$rules" ] || fail "restart changed the rule count: $(rule_count), was $rules"
dups=$({ n iptables-nft-save; } 2>/dev/null | grep -o '"localdns:[^"]*"' | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ] || fail "$dups rules duplicated after restart"
burst "restarted: glibc burst to $LINK_LOCAL" 300
pod_nameserver $CLUSTER_IP
burst "restarted: glibc burst to $CLUSTER_IP" 300
entries=$(dns_entries)
[ "$entries" -eq 0 ] || fail "$entries conntrack entries after restart"
echo "   restart adopted $rules rules, no duplicates, no conntrack entries"
FORWARD=(--forward cluster.local=tcp://$COREDNS --forward .=tcp://$COREDNS)

# --- 5: localdns cleanup removes what a crash left --------------------------------
note "5. localdns cleanup"
stop_localdns KILL
out=$(n "$LOCALDNS" cleanup --interface-kind bridge)
echo "$out" | sed 's/^/   /'
[ "$(rule_count)" -eq 0 ] || fail "cleanup left $(rule_count) rules"
n ip link show nodelocaldns >/dev/null 2>&1 && fail "cleanup left the interface"
[ "$(n "$LOCALDNS" cleanup --interface-kind bridge)" = "nothing to clean up" ] || fail "second cleanup found something"
# --- 6: the native nftables backend, same guarantees ----------------------------
note "6. nftables backend"
nft_rules() { n nft list table inet localdns 2>/dev/null | grep -c 'comment "localdns:' || true; }
start_localdns --rules-backend nftables
rules=$(nft_rules)
echo "   nft rules: $rules"
[ "$rules" -gt 0 ] || fail "no nft rules installed"
# The fallback DNAT (to CoreDNS's pod address) is for the link-local address only.
[ "$(n nft list table inet localdns | grep -c "daddr $LINK_LOCAL .*dnat ip to $COREDNS:53" || true)" -eq 2 ] ||
  fail "no fallback DNAT for $LINK_LOCAL"
[ "$(n nft list table inet localdns | grep -c "daddr $CLUSTER_IP .*dnat" || true)" -eq 0 ] ||
  fail "a fallback DNAT for the ClusterIP would take its packets from kube-proxy"
[ "$(rule_count)" -eq 0 ] || fail "the nftables backend also wrote iptables rules"
for target in $LINK_LOCAL $CLUSTER_IP; do
  pod_nameserver $target
  burst "glibc burst to $target" 400
  entries=$(dns_entries)
  [ "$entries" -eq 0 ] || fail "$entries conntrack entries with nft rules ($target)"
  read -r answered clash <<<"$(race $target 200)"
  echo "   forced race x200 to $target: answered=$answered clashres+insert_failed=$clash"
  [ "$clash" -eq 0 ] || fail "clash counters rose with the nft rules in place"
done
stop_localdns KILL
[ "$(nft_rules)" -eq "$rules" ] || fail "nft rules should be left behind by kill -9"
pod_nameserver $CLUSTER_IP
burst "localdns dead: glibc burst to $CLUSTER_IP" 200
pod_nameserver $LINK_LOCAL
burst "localdns dead: glibc burst to $LINK_LOCAL (fallback DNAT)" 200
start_localdns --rules-backend nftables
[ "$(nft_rules)" -eq "$rules" ] || fail "restart changed the nft rule count: $(nft_rules), was $rules"
stop_localdns TERM
[ "$(n nft list tables | grep -c localdns || true)" -eq 0 ] || fail "nft table left after SIGTERM"
n ip link show nodelocaldns >/dev/null 2>&1 && fail "interface left after SIGTERM"

# --- 7: an interface localdns does not own is never deleted ---------------------
note "7. a foreign interface by the configured name"
n ip link add nodelocaldns type bridge
n ip addr add 10.244.9.1/24 dev nodelocaldns
out=$(n "$LOCALDNS" --local-ip $LINK_LOCAL --interface-kind bridge "${FORWARD[@]}" --control off 2>&1) &&
  fail "localdns started on an interface holding another address"
echo "$out" | grep -q "holds other addresses (10.244.9.1)" || fail "unclear refusal: $out"
n "$LOCALDNS" cleanup --interface-kind bridge | grep -q "left alone" || fail "cleanup did not leave the foreign interface alone"
n ip addr show dev nodelocaldns | grep -q "10.244.9.1/24" || fail "the foreign interface was changed or deleted"
n ip link del nodelocaldns
no_sanitizer_report
echo "PASS"
