#!/usr/bin/env bash
# End to end, the ndots:5 search walk of one cold external name, as three real
# resolvers make it from a pod: getaddrinfo("wwwN.external.test") with
# AF_UNSPEC from a program built against glibc (gcc), one built against musl
# (musl-gcc, static) and a Go program on Go's own resolver (CGO_ENABLED=0,
# GODEBUG=netdns=go). The miniature node of node_e2e.sh: a "pod" namespace
# with the Kubernetes resolv.conf (the cluster's three search domains, the
# node's own search domain node.test, ndots:5, nameserver 169.254.20.10)
# joined by veth to a "node" namespace where localdns runs with node setup
# (bridge interface); its upstream is the kube-dns-upstream Service IP behind
# a kube-proxy-like DNAT, and behind that, in a third namespace, Knot DNS
# (cluster.local, node.test, a wildcard external.test) reached through
# delay_relay, which adds DELAY_MS to every query (this kernel has no netem).
#
# Per resolver and search-path mode (off, warm and cname): the lookup time and
# the queries counted by nft counters, those the pod sent to localdns and those
# localdns sent to the upstream. Each lookup asks a name of its own, so every lookup meets a cold cache, and localdns
# restarts for each mode. Asserts: with the feature off every client query is
# an upstream miss, the walk is the search list and the name (A and AAAA
# each), and the lookup takes at least one delay per sequential round trip;
# warm gives the same addresses and client queries, no more upstream queries,
# lookups shorter by the round trips of the cluster expansions after the first
# (2 of 5 here: the node's search domain and the name itself stay on the
# critical path), and (as the walk itself, from delay_relay's trace) no query
# for a name outside the cluster before every name before it in the walk was
# answered; cname gives the same addresses with fewer client queries, and
# answers the first expansion with a CNAME to the external name and its A.
#   search_path_e2e.sh LOCALDNS DELAY_RELAY
# Environment: SEARCH_E2E_DELAY_MS (default 100), SEARCH_E2E_RUNS (lookups per
# resolver and mode, default 7), GOCACHE (default: a directory of the run's).
set -euo pipefail

LOCALDNS=$1 RELAY=$2
if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = true ]; then
    echo "FAIL: the search-path end-to-end test needs root (network namespaces, nftables); CI=true does not allow skipping it"
    exit 1
  fi
  echo "SKIPPED: the search-path end-to-end test needs root (network namespaces, nftables)"
  exit 77
fi
for tool in ip nft knotd dig gcc musl-gcc go bash; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (scripts/install-deps.sh installs it)"; exit 1; }
done

HERE=$(cd "$(dirname "$0")" && pwd)
DELAY_MS=${SEARCH_E2E_DELAY_MS:-100} RUNS=${SEARCH_E2E_RUNS:-7}
id=$$
POD=ld-sppod-$id NODE=ld-spnode-$id DNS=ld-spdns-$id
TMP=$(mktemp -d /tmp/localdns-search-e2e-XXXXXX)
LOG=$TMP/localdns.log
PIDS=()
LPID=""
LINK_LOCAL=169.254.20.10 UPSTREAM_IP=10.96.0.11 SERVICE_CIDR=10.96.0.0/12 COREDNS=10.244.2.53
SEARCH=(default.svc.cluster.local svc.cluster.local cluster.local node.test)
NCLUSTER=3  # of them in the cluster domain, first
ADDR4=192.0.2.80 ADDR6=2001:db8::80  # every name under external.test (a wildcard)
EXPECTED="$ADDR4,$ADDR6"             # sorted as the clients print them
RESOLVERS=(glibc musl go)
START=$SECONDS

cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "$POD" "$NODE" "$DNS"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/etc/netns/$POD"
  [ -n "${KEEP_TMP:-}" ] && cp "$LOG" /tmp/search-e2e-last.log
  rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  if [ -f "$LOG" ]; then echo "--- localdns log (last 40 lines)"; tail -40 "$LOG"; fi
  if [ -f "$TMP/relay.log" ]; then echo "--- the upstream's trace (last 24 lines)"; tail -24 "$TMP/relay.log"; fi
  echo "FAIL: $*"
  exit 1
}
note() { echo "== $*"; }
n() { ip netns exec "$NODE" "$@"; }
p() { ip netns exec "$POD" "$@"; }

# --- the three clients ------------------------------------------------------------
note "building the clients (gcc, musl-gcc, go)"
gcc -O2 -Wall -Wextra -Werror -o "$TMP/glibc" "$HERE/gai_client.c"
musl-gcc -static -O2 -Wall -Wextra -Werror -o "$TMP/musl" "$HERE/gai_client.c"
mkdir -p "$TMP/go"
cp "$HERE/gai_client.go" "$TMP/go/"
(cd "$TMP/go" && GOCACHE=${GOCACHE:-$TMP/gocache} GOPATH=$TMP/gopath GOPROXY=off GOFLAGS='' \
  CGO_ENABLED=0 go build -o "$TMP/gocli" gai_client.go)
echo "   built in $((SECONDS - START)) s"
client_cmd() {  # RESOLVER: the command line of that client
  case $1 in
    glibc) echo "$TMP/glibc" ;;
    musl) echo "$TMP/musl" ;;
    go) echo "env GODEBUG=netdns=go+1 $TMP/gocli" ;;
  esac
}

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
ip -n "$NODE" route add $SERVICE_CIDR via $COREDNS dev vdns
n sysctl -qw net.ipv4.ip_forward=1
# kube-proxy in miniature: the kube-dns-upstream Service IP to "CoreDNS".
for chain in PREROUTING OUTPUT; do
  n iptables-nft -w -t nat -A $chain -d $UPSTREAM_IP/32 -p udp --dport 53 -j DNAT --to-destination $COREDNS:53
done
n iptables-nft -w -t nat -A POSTROUTING -d $COREDNS/32 -p udp --dport 53 -j MASQUERADE
# The counters: queries the pod sends to localdns (at the node's input) and
# queries that reach the upstream (at its namespace's input, after the DNAT).
# From the pod's link only: localdns's health checks ask its own listener.
count_rules() {  # NS NAME MATCH...
  local ns=$1 name=$2
  shift 2
  ip netns exec "$ns" nft -f - <<NFT
table inet sp_e2e {
  counter $name { }
  chain input {
    type filter hook input priority 0; policy accept;
    $* counter name "$name"
  }
}
NFT
}
count_rules "$NODE" client iifname vpod ip daddr $LINK_LOCAL udp dport 53
count_rules "$DNS" upstream ip daddr $COREDNS udp dport 53
counter() {  # NS NAME: packets so far
  ip netns exec "$1" nft list counter inet sp_e2e "$2" |
    awk '{ for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit } }'
}

# "CoreDNS": Knot DNS on the upstream's loopback, behind the delay.
mkdir -p "$TMP/knot"
zone() {  # ORIGIN, then records on stdin
  # shellcheck disable=SC2016  # $ORIGIN and $TTL are the zone file's
  { printf '$ORIGIN %s.\n$TTL 300\n@ IN SOA ns hostmaster 1 7200 1800 86400 30\n@ IN NS ns\nns IN A %s\n' \
      "$1" "$COREDNS"; cat; } >"$TMP/knot/$1.zone"
}
zone cluster.local <<ZONE
api.default.svc IN A 10.96.0.1
kube-dns-upstream.kube-system.svc IN A $UPSTREAM_IP
ZONE
zone node.test </dev/null
zone external.test <<ZONE
* IN A $ADDR4
* IN AAAA $ADDR6
ZONE
{
  printf 'server:\n  rundir: "%s"\n  listen: 127.0.0.1@5300\n  udp-workers: 2\n  tcp-workers: 1\n' "$TMP/knot"
  printf '  background-workers: 1\ndatabase:\n  storage: "%s"\nlog:\n  - target: stderr\n    any: error\nzone:\n' "$TMP/knot"
  for z in cluster.local node.test external.test; do
    printf '  - domain: %s\n    storage: "%s"\n    file: "%s.zone"\n' $z "$TMP/knot" $z
  done
} >"$TMP/knot/knot.conf"
ip netns exec "$DNS" knotd -c "$TMP/knot/knot.conf" >"$TMP/knot.log" 2>&1 &
PIDS+=($!)
ip netns exec "$DNS" "$RELAY" $COREDNS:53 127.0.0.1:5300 "$DELAY_MS" >"$TMP/relay.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  [ "$(n dig +short +time=1 +tries=1 @$UPSTREAM_IP ns.external.test 2>/dev/null)" = "$COREDNS" ] && break
  sleep 0.1
done
[ "$(n dig +short +time=1 +tries=1 @$UPSTREAM_IP ns.external.test 2>/dev/null)" = "$COREDNS" ] ||
  fail "no answer from Knot DNS through the relay and the DNAT within 10 s: $(cat "$TMP/knot.log" "$TMP/relay.log")"

# The pod: Kubernetes' search list plus the node's, ndots:5, files then DNS.
mkdir -p "/etc/netns/$POD"
printf 'nameserver %s\nsearch %s\noptions ndots:5\n' $LINK_LOCAL "${SEARCH[*]}" >"/etc/netns/$POD/resolv.conf"
printf '127.0.0.1 localhost\n' >"/etc/netns/$POD/hosts"
printf 'hosts: files dns\n' >"/etc/netns/$POD/nsswitch.conf"
# The node's resolv.conf, which kubelet appends to ClusterFirst pods' lists
# (and localdns reads for search_path.host_search).
printf 'nameserver %s\nsearch node.test\n' $UPSTREAM_IP >"$TMP/node-resolv.conf"
printf 'resolv_conf: %s\n' "$TMP/node-resolv.conf" >"$TMP/localdns.yaml"

# --- localdns -----------------------------------------------------------------
starts() {
  local c
  c=$(grep -c "listening on" "$LOG" 2>/dev/null) || true
  echo "${c:-0}"
}
start_localdns() {  # FLAGS...
  local started
  started=$(starts)
  echo "--- start: $*" >>"$LOG"
  ip netns exec "$NODE" "$LOCALDNS" --config "$TMP/localdns.yaml" --local-ip $LINK_LOCAL \
    --interface-kind bridge --service-cidr $SERVICE_CIDR --control off \
    --forward cluster.local=udp://$UPSTREAM_IP:53 --forward .=udp://$UPSTREAM_IP:53 "$@" >>"$LOG" 2>&1 &
  LPID=$!
  PIDS+=("$LPID")
  for _ in $(seq 1 100); do
    [ "$(starts)" -gt "$started" ] && break
    kill -0 "$LPID" 2>/dev/null || fail "localdns exited during start-up"
    sleep 0.1
  done
  [ "$(starts)" -gt "$started" ] || fail "localdns did not start within 10 s"
  # ns.cluster.local: not the shape of a search expansion, so nothing speculative.
  for _ in $(seq 1 100); do
    [ "$(p dig +short +time=1 +tries=1 @$LINK_LOCAL ns.cluster.local 2>/dev/null)" = "$COREDNS" ] && return 0
    sleep 0.1
  done
  fail "no answer from localdns within 10 s"
}
stop_localdns() {
  local status=0
  kill -TERM "$LPID"
  for _ in $(seq 1 100); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$LPID" 2>/dev/null && fail "localdns did not exit within 10 s of SIGTERM"
  wait "$LPID" 2>/dev/null || status=$?
  [ "$status" -eq 0 ] || fail "localdns exited with status $status after SIGTERM, expected 0"
}
metrics() {  # localdns's search-path metrics
  n bash -c "exec 3<>/dev/tcp/$LINK_LOCAL/9253 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null |
    tr -d '\r' | grep '^localdns_search_path_' || true
}

# settle: the upstream counter has not moved for the delay plus 100 ms (what a
# query localdns may still have out would need to arrive); at most 5 s.
settle() {
  local last now still_ns=$(((DELAY_MS + 100) * 1000000)) since t_end=$((SECONDS + 5))
  last=$(counter "$DNS" upstream)
  since=$(date +%s%N)
  while :; do
    sleep 0.05
    now=$(counter "$DNS" upstream)
    if [ "$now" != "$last" ]; then
      last=$now since=$(date +%s%N)
    elif [ $(($(date +%s%N) - since)) -ge $still_ns ]; then
      return 0
    fi
    [ $SECONDS -lt $t_end ] || fail "queries to the upstream still arriving 5 s after a lookup"
  done
}

# lookup RESOLVER NAME: sets L_MS, L_ADDRS, L_CQ (queries the client sent) and
# L_UQ (queries that reached the upstream). Not in a subshell: fail must exit.
lookup() {
  local c0 u0 c1 u1 out
  c0=$(counter "$NODE" client) u0=$(counter "$DNS" upstream)
  # shellcheck disable=SC2046
  out=$(p $(client_cmd "$1") "$2" 2>"$TMP/client.err") || fail "$1: $2 did not resolve: $out $(cat "$TMP/client.err")"
  if [ "$1" = go ]; then
    grep -q "using Go's DNS resolver\|forcing use of Go's resolver" "$TMP/client.err" ||
      fail "the Go client did not use Go's resolver: $(cat "$TMP/client.err")"
  fi
  settle
  c1=$(counter "$NODE" client) u1=$(counter "$DNS" upstream)
  L_MS=${out#ms=} L_MS=${L_MS%% *} L_ADDRS=${out#*addrs=} L_CQ=$((c1 - c0)) L_UQ=$((u1 - u0))
}

# in_order NAME: from the relay's trace, for A and for AAAA, whether each
# name of the walk outside the cluster (NAME in each host search domain, then
# NAME itself) reached the upstream only after every name before it in the
# walk had been answered: a name the pod would not ask when an earlier one
# exists never leaves the cluster. Prints "ok" or what came first.
in_order() {
  awk -v name="$1." -v search="${SEARCH[*]}" -v ncluster=$NCLUSTER '
    BEGIN {
      n = split(search, s, " ")
      for (i = 1; i <= n; i++) pos[name s[i] "."] = i
      pos[name] = n + 1
    }
    $1 == "a" && ($3 in pos) { answered[$4, pos[$3]] = 1 }
    $1 == "q" && ($3 in pos) && pos[$3] > ncluster && !(($4, pos[$3]) in asked) {
      asked[$4, pos[$3]] = 1
      for (k = 1; k < pos[$3]; k++)
        if (!(($4, k) in answered))
          bad = bad sprintf(" type %s: %s asked at %s ms before %s was answered", $4, $3, $2, k <= n ? name s[k] "." : name)
    }
    END { print bad == "" ? "ok" : bad }' "$TMP/relay.log"
}

median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A MS CQ UQ ADDRS RUNMS
measure() {  # MODE: RUNS lookups per resolver, each of a name of its own
  local mode=$1 res i name cq uq all_ms cqs uqs order
  for res in "${RESOLVERS[@]}"; do
    all_ms="" cqs="" uqs="" ADDRS[$res,$mode]=""
    for i in $(seq 1 "$RUNS"); do
      name=www-$mode-$res-$i.external.test
      lookup "$res" "$name"
      all_ms+=" $L_MS" cqs+=" $L_CQ" uqs+=" $L_UQ"
      [ "$L_ADDRS" = "$EXPECTED" ] || fail "$res, $mode: $name resolved to $L_ADDRS, the zone has $EXPECTED"
      # The pod's own walk leaves the cluster only after its cluster domains
      # came back negative, one name at a time; warm must keep that order.
      if [ "$mode" != cname ]; then
        order=$(in_order "$name")
        [ "$order" = ok ] || fail "$res, $mode: a name left the cluster too early:$order"
      fi
      ADDRS[$res,$mode]=$L_ADDRS
    done
    RUNMS[$res,$mode]=${all_ms# }
    MS[$res,$mode]=$(median <<<"${all_ms# }")
    CQ[$res,$mode]=$(median <<<"${cqs# }") UQ[$res,$mode]=$(median <<<"${uqs# }")
    printf '   %-5s %-5s lookup ms: %s  client queries: %s  upstream queries: %s\n' \
      "$res" "$mode" "${all_ms# }" "${cqs# }" "${uqs# }"
    # The counts of every lookup, not only the median, for the checks below.
    for cq in $cqs; do [ "$cq" -eq "${CQ[$res,$mode]}" ] || fail "$res, $mode: client queries vary: $cqs"; done
    for uq in $uqs; do [ "$uq" -eq "${UQ[$res,$mode]}" ] || fail "$res, $mode: upstream queries vary: $uqs"; done
  done
}

# --- off: the walk as it is on the wire -------------------------------------------
note "search path off (delay $DELAY_MS ms per upstream query, $RUNS lookups per resolver)"
start_localdns
measure off
stop_localdns
walk=$((2 * (${#SEARCH[@]} + 1)))  # A and AAAA for each search domain and the name itself
for res in "${RESOLVERS[@]}"; do
  [ "${CQ[$res,off]}" -eq $walk ] ||
    fail "$res sent ${CQ[$res,off]} queries for one lookup, expected $walk (${#SEARCH[@]} search domains and the name, A and AAAA)"
  [ "${UQ[$res,off]}" -eq "${CQ[$res,off]}" ] ||
    fail "$res: ${UQ[$res,off]} upstream queries for ${CQ[$res,off]} client queries on a cold cache (each should be one miss)"
  # A and AAAA of one name go out together: one round trip per name, in sequence.
  trips=$((${CQ[$res,off]} / 2))
  floor=$((trips * DELAY_MS))
  for ms in ${RUNMS[$res,off]}; do
    awk -v ms="$ms" -v floor=$floor 'BEGIN { exit !(ms >= floor) }' ||
      fail "$res: a lookup took $ms ms, less than $floor ms ($trips round trips of $DELAY_MS ms)"
  done
done

# --- warm and cname -----------------------------------------------------------------
MODES=(off warm cname)
note "search path warm (--autopath=warm)"
start_localdns --autopath=warm
measure warm
metrics | sed 's/^/   metric: /'
stop_localdns
for res in "${RESOLVERS[@]}"; do
  [ "${ADDRS[$res,warm]}" = "${ADDRS[$res,off]}" ] ||
    fail "$res, warm: addresses ${ADDRS[$res,warm]}, with the feature off ${ADDRS[$res,off]}"
  [ "${CQ[$res,warm]}" -eq "${CQ[$res,off]}" ] ||
    fail "$res, warm: ${CQ[$res,warm]} client queries, ${CQ[$res,off]} with the feature off (the answers should not change the walk)"
  [ "${UQ[$res,warm]}" -le "${UQ[$res,off]}" ] ||
    fail "$res, warm: ${UQ[$res,warm]} upstream queries, more than the ${UQ[$res,off]} of the walk itself"
done
# The expansions in the cluster after the first ($NCLUSTER - 1) are resolved beside it:
# their round trips leave the lookup's critical path. Those outside the
# cluster stay on it, one after another (each only once the one before is
# negative), so warm saves 2 of the walk's 5 round trips here.
# The median against the fastest lookup with the feature off: a stall of a
# busy machine only ever adds time, here to either side.
saved=$((NCLUSTER - 1))
for res in "${RESOLVERS[@]}"; do
  fastest_off=$(tr ' ' '\n' <<<"${RUNMS[$res,off]}" | sort -g | head -1)
  awk -v w="${MS[$res,warm]}" -v o="$fastest_off" -v d="$DELAY_MS" -v k=$saved \
    'BEGIN { exit !(o - w >= (k - 0.5) * d) }' ||
    fail "$res, warm: median lookup ${MS[$res,warm]} ms, fastest with the feature off $fastest_off ms: not $saved round trips of $DELAY_MS ms less"
done

note "search path cname (--autopath=cname)"
start_localdns --autopath=cname
first=www-cname-dig.external.test.${SEARCH[0]}
answer=$(p dig +noall +answer +time=2 +tries=1 @$LINK_LOCAL "$first" A)
sed 's/^/   dig: /' <<<"$answer"
grep -qE "^$first\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+CNAME[[:space:]]+www-cname-dig\.external\.test\.$" <<<"$answer" ||
  fail "cname: $first A is not answered with a CNAME to www-cname-dig.external.test."
grep -qE "^www-cname-dig\.external\.test\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+$ADDR4$" <<<"$answer" ||
  fail "cname: the CNAME's target has no A $ADDR4 in the answer"
settle
measure cname
metrics | sed 's/^/   metric: /'
stop_localdns
for res in "${RESOLVERS[@]}"; do
  [ "${ADDRS[$res,cname]}" = "${ADDRS[$res,off]}" ] ||
    fail "$res, cname: addresses ${ADDRS[$res,cname]}, with the feature off ${ADDRS[$res,off]}"
  [ "${CQ[$res,cname]}" -lt "${CQ[$res,off]}" ] ||
    fail "$res, cname: ${CQ[$res,cname]} client queries, not fewer than the ${CQ[$res,off]} with the feature off"
done

# --- the table ------------------------------------------------------------------------
echo
echo "cold external name from the pod, ndots:5, ${#SEARCH[@]} search domains, $DELAY_MS ms per upstream query (load: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-8s %-6s %11s %15s %17s  %s\n' resolver mode "lookup ms" "client queries" "upstream queries" addresses
for res in "${RESOLVERS[@]}"; do
  for mode in "${MODES[@]}"; do
    printf '%-8s %-6s %11s %15s %17s  %s\n' "$res" "$mode" "${MS[$res,$mode]}" "${CQ[$res,$mode]}" \
      "${UQ[$res,$mode]}" "${ADDRS[$res,$mode]}"
  done
done
echo "(lookup ms: the median of $RUNS lookups, each of its own name)"
# How often the upstream itself was late (the machine's load, not localdns):
# held past the delay, or Knot DNS slow to answer, by more than 20 ms.
awk -v d="$DELAY_MS" '$1 == "q" { q[$3, $4] = $2 } $1 == "f" { f[$3, $4] = $2 }
  $1 == "a" { n++; if (f[$3, $4] - q[$3, $4] > d + 20 || $2 - f[$3, $4] > 20) late++ }
  END { printf "upstream answers late by more than 20 ms: %d of %d\n", late, n }' "$TMP/relay.log"
echo "PASS in $((SECONDS - START)) s"
