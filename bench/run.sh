#!/usr/bin/env bash
# Side-by-side benchmark: localdns against the DNS caches people run on nodes
# today (unbound, dnsdist, dnsmasq, Knot Resolver), one server core against one
# load-generator core, all traffic on the loopback of a network namespace this
# script creates. Knot DNS is the upstream, serving a generated cluster.local.
#
#   bench/run.sh                 3 repetitions of workloads A-F, every server;
#                                writes the table into bench/RESULTS.md
#   bench/run.sh --quick         CI gate: short alternating runs of A and B,
#                                localdns against unbound, medians; fails only
#                                on a clear regression seen twice (the rule and
#                                its rationale: bench/README.md)
#   options: --reps N  --duration SECONDS  --servers "localdns unbound ..."
#            --workloads "F A ..."  run only these workloads, in this order
#            --localdns PATH     measure this binary instead of building the
#                                release preset (CI passes its ci build)
#   quick:   --pairs N (5)  --min-ratio R (0.90)
#   E:       --latency-rates "10000 50000"  --no-rt (E without SCHED_FIFO)
#            --halt-poll NS  during E, the guest's cpuidle-haltpoll polls up to
#                            NS before halting an idle vCPU (bench/README.md)
#
# Needs root (network namespace, iptables counters). Starts and stops only its
# own processes, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0 REPS=3 DURATION=10 SERVERS="echo localdns unbound dnsdist dnsmasq kresd"
WORKLOADS="F A D C E B"
LOCALDNS="" PAIRS=5 MIN_RATIO=0.90
E_RATES="10000 50000" E_RT=1 E_TICK_US=100 E_HALT_POLL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 REPS=1 DURATION=2 SERVERS="localdns unbound" WORKLOADS="A B" ;;
    --reps) REPS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --workloads) WORKLOADS=$2; shift ;;
    --localdns) LOCALDNS=$(realpath "$2"); shift ;;
    --latency-rates) E_RATES=$2; shift ;;
    --no-rt) E_RT=0 ;;
    --halt-poll) E_HALT_POLL=$2; shift ;;
    --pairs) PAIRS=$2; shift ;;
    --min-ratio) MIN_RATIO=$2; shift ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
  shift
done
if [ "$(id -u)" -ne 0 ]; then echo "bench/run.sh needs root (network namespace)"; exit 2; fi
if [ -n "$E_HALT_POLL" ] && [ ! -w /sys/module/haltpoll/parameters/guest_halt_poll_ns ]; then
  echo "--halt-poll: this machine has no cpuidle-haltpoll driver (/sys/module/haltpoll)"; exit 2
fi
if [ "$(nproc)" -lt 2 ]; then echo "bench/run.sh needs 2 CPUs (server on CPU 0, load on CPU 1)"; exit 2; fi

# --- peers and tools from Debian -------------------------------------------------
need=(dnsperf knot dnsutils iptables)
for s in $SERVERS; do
  case $s in
    unbound) need+=(unbound) ;; dnsdist) need+=(dnsdist) ;;
    dnsmasq) need+=(dnsmasq-base) ;; kresd) need+=(knot-resolver) ;;
  esac
done
[ $QUICK -eq 0 ] && need+=(gnuplot-nox)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Packaged services would hold port 53; the benchmark runs its own copies.
  if [ -x /usr/bin/systemctl ]; then
    for unit in unbound dnsdist kresd@1 knot; do
      systemctl is-active --quiet "$unit" 2>/dev/null && systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
  fi
fi
if [ -z "$LOCALDNS" ]; then
  cmake --preset release >/dev/null && cmake --build --preset release >/dev/null
  LOCALDNS=$ROOT/build/release/localdns
fi
[ -x "$LOCALDNS" ] || { echo "no localdns binary at $LOCALDNS"; exit 2; }

NS=ldbench-$$
TMP=$(mktemp -d /tmp/localdns-bench-XXXXXX)
# The ceiling: a trivial recvmmsg/sendmmsg server that answers every datagram.
case " $SERVERS " in *" echo "*) g++ -O2 -o "$TMP/echo_server" bench/echo/echo_server.cpp ;; esac
# E's load generator: a paced client (bench/README.md says why not dnsperf).
case " $WORKLOADS " in *" E "*) g++ -O2 -o "$TMP/paced_client" bench/latency/paced_client.cpp ;; esac
PIDS=()
cleanup() {
  if declare -F halt_poll_restore >/dev/null; then halt_poll_restore; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
x() { ip netns exec "$NS" "$@"; }  # foreground only: in the background $! is a subshell
PORT=5353 UP=5300
HZ=$(getconf CLK_TCK)

# --- the upstream: Knot DNS with 20,000 names and a wildcard for misses -------------
{
  echo "\$ORIGIN cluster.local."
  echo "\$TTL 3600"
  echo "@ IN SOA ns hostmaster 1 7200 1800 86400 30"
  echo "@ IN NS ns"
  echo "ns IN A 10.0.0.53"
  for i in $(seq 0 19999); do echo "svc-$i.default.svc IN A 10.96.$((i / 256)).$((i % 256))"; done
  echo "*.miss IN A 10.1.2.3"
  echo "*.fill IN A 10.2.3.4"
} > "$TMP/zone"
cat > "$TMP/knot.conf" <<CONF
server:
  rundir: "$TMP"
  listen: 127.0.0.1@$UP
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$TMP"
log:
  - target: stderr
    any: error
zone:
  - domain: cluster.local
    storage: "$TMP"
    file: "zone"
CONF
ip netns exec "$NS" taskset -c 1 knotd -c "$TMP/knot.conf" >"$TMP/knot.log" 2>&1 &
KNOT=$!
PIDS+=($KNOT)
for _ in $(seq 1 100); do
  x dig +short +time=1 +tries=1 -p $UP @127.0.0.1 svc-1.default.svc.cluster.local >/dev/null 2>&1 && break
  sleep 0.1
done
# Counts upstream TCP connections (SYNs to Knot).
x iptables -w -A INPUT -p tcp --dport $UP --syn -m comment --comment bench-syn -j ACCEPT

# --- query files ----------------------------------------------------------------
for i in $(seq 0 999); do echo "svc-$i.default.svc.cluster.local A"; done > "$TMP/hits"
# Pure misses: never repeated names under the wildcard.
[ $QUICK -eq 1 ] || awk 'BEGIN { for (i = 0; i < 2000000; i++) printf "m%d.miss.cluster.local A\n", i }' \
  > "$TMP/misses" 2>/dev/null || true
# A node's mix: A and AAAA pairs; for a third of the names the ndots:5 walk
# (NXDOMAIN for each search suffix first); 10 % never-seen names.
awk 'BEGIN {
  n = 0
  for (r = 0; r < 20; r++) for (i = 0; i < 1000; i++) {
    name = "svc-" i ".default.svc.cluster.local"
    if (i % 3 == 0) {
      print "svc-" i ".default.svc.cluster.local.default.svc.cluster.local A"
      print "svc-" i ".default.svc.cluster.local.default.svc.cluster.local AAAA"
      print "svc-" i ".default.svc.cluster.local.svc.cluster.local A"
      print "svc-" i ".default.svc.cluster.local.svc.cluster.local AAAA"
      n += 4
    }
    print name " A"; print name " AAAA"; n += 2
    while (m * 9 < n) { print "mix" r "-" m ".miss.cluster.local A"; m++ }
  }
}' > "$TMP/mix"
grep -v '^mix' "$TMP/mix" | sort -u > "$TMP/mix-warm"
# Cache fill: 100,000 distinct names (under the wildcard), cycled by dnsperf
# from a cold cache: the first pass misses, every later pass hits.
awk 'BEGIN { for (i = 0; i < 100000; i++) printf "f%d.fill.cluster.local A\n", i }' > "$TMP/fill"

# --- servers ----------------------------------------------------------------------
start_server() {  # NAME: starts it pinned to CPU 0 with one worker; sets SPID
  local s=$1
  case $s in
    echo)
      ip netns exec "$NS" taskset -c 0 "$TMP/echo_server" $PORT >"$TMP/$s.log" 2>&1 &
      ;;
    localdns)
      # The default 100,000 entries, split over 32 shards, would evict part of F's
      # 100,000 names; 200,000 as dnsdist's packet cache below.
      printf 'cache:\n  max_entries: 200000\n' > "$TMP/localdns.yaml"
      ip netns exec "$NS" taskset -c 0 "$LOCALDNS" --config "$TMP/localdns.yaml" --listen 127.0.0.1:$PORT --forward .=tcp://127.0.0.1:$UP \
        --threads 1 --metrics off --health off --control off --log-level warn >"$TMP/$s.log" 2>&1 &
      ;;
    unbound)
      cat > "$TMP/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$PORT
  port: $PORT
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  pidfile: ""
  directory: "$TMP"
  use-syslog: no
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  so-reuseport: yes
  so-rcvbuf: 4m
  so-sndbuf: 4m
  msg-cache-size: 64m
  rrset-cache-size: 128m
  num-queries-per-thread: 4096
  outgoing-range: 8192
  incoming-num-tcp: 256
  qname-minimisation: no
  minimal-responses: yes
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$UP
  forward-tcp-upstream: yes
CONF
      ip netns exec "$NS" taskset -c 0 unbound -d -c "$TMP/unbound.conf" >"$TMP/$s.log" 2>&1 &
      ;;
    dnsdist)
      cat > "$TMP/dnsdist.conf" <<CONF
setLocal("127.0.0.1:$PORT", { reusePort = true })
setUDPSocketBufferSizes(4194304, 4194304)
newServer({ address = "127.0.0.1:$UP", tcpOnly = true, name = "knot" })
pc = newPacketCache(200000, { maxTTL = 86400, minTTL = 0 })
getPool(""):setCache(pc)
setSecurityPollSuffix("")
setMaxTCPClientThreads(1)
CONF
      ip netns exec "$NS" taskset -c 0 dnsdist --supervised --disable-syslog -C "$TMP/dnsdist.conf" >"$TMP/$s.log" 2>&1 &
      ;;
    dnsmasq)
      # 150,000 entries hold F's 100,000 names (dnsmasq accepts up to 5,000,000
      # and warns above 10,000).
      ip netns exec "$NS" taskset -c 0 dnsmasq -k --port=$PORT --listen-address=127.0.0.1 --bind-interfaces \
        --no-resolv --no-hosts --server=127.0.0.1#$UP --cache-size=150000 --dns-forward-max=4096 \
        --user=root --pid-file= >"$TMP/$s.log" 2>&1 &
      ;;
    kresd)
      # A fresh cache directory: kresd keeps its cache on disk across restarts.
      rm -rf "$TMP/kresd"
      mkdir -p "$TMP/kresd"
      cat > "$TMP/kresd.conf" <<CONF
net.listen('127.0.0.1', $PORT, { kind = 'dns' })
trust_anchors.remove('.')
cache.size = 200 * MB
policy.add(policy.all(policy.FORWARD({ '127.0.0.1@$UP' })))
CONF
      (cd "$TMP/kresd" && exec ip netns exec "$NS" taskset -c 0 kresd -n -c "$TMP/kresd.conf" "$TMP/kresd" >"$TMP/$s.log" 2>&1) &
      ;;
  esac
  SPID=$!
  PIDS+=("$SPID")
  for _ in $(seq 1 100); do
    if [ "$s" = echo ]; then
      x dig +time=1 +tries=1 -p $PORT @127.0.0.1 svc-1.default.svc.cluster.local >/dev/null 2>&1 && break
    else
      x dig +short +time=1 +tries=1 -p $PORT @127.0.0.1 svc-1.default.svc.cluster.local 2>/dev/null |
        grep -q 10.96 && break
    fi
    sleep 0.1
  done
  sleep 0.5
}
stop_server() {
  kill "$SPID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SPID" 2>/dev/null || true
}
version_of() {
  case $1 in
    echo) echo "bench/echo/echo_server.cpp (recvmmsg/sendmmsg, fixed reply: the ceiling)" ;;
    localdns) "$LOCALDNS" --version ;;
    unbound) unbound -V | head -1 ;;
    dnsdist) dnsdist --version 2>&1 | head -1 ;;
    dnsmasq) dnsmasq --version | head -1 ;;
    kresd) kresd --version | head -1 ;;
  esac
}

cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # jiffies, user + system
busy_total() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
syns() { x iptables -w -nvxL INPUT | awk '/bench-syn/{print $1}'; }

# One measured run: prints "qps cpu_share lost avg_latency_ms syns other_cpu completed"
measure() {  # WORKLOAD FILE MODE [RATE: dnsperf -Q]
  local file=$2 mode=$3 rate=${4:-} out
  x iptables -w -Z INPUT
  local c0 b0 k0 t0 c1 b1 k1 t1
  c0=$(cpu_of "$SPID"); k0=$(cpu_of "$KNOT"); b0=$(busy_total); t0=$(date +%s.%N)
  # A 1 s timeout: lost queries must not stretch the run (the CPU share is
  # taken over dnsperf's own run time).
  local args=(-s 127.0.0.1 -p $PORT -d "$file" -l "$DURATION" -t 1 -T 1 -c 16 -q 512 -m "$mode")
  # F: every server answers the same queries, two passes over the 100,000
  # names (100,000 misses, then 100,000 hits), however fast it is; a run of
  # fixed duration would give a faster server more hits.
  [ "$1" = F ] && args=(-s 127.0.0.1 -p $PORT -d "$file" -n 2 -l 300 -t 1 -T 1 -c 16 -q 512 -m "$mode")
  [ -n "$rate" ] && args+=(-Q "$rate")
  # Not through x(): $! must be dnsperf itself, not a subshell.
  ip netns exec "$NS" taskset -c 1 dnsperf "${args[@]}" > "$TMP/dnsperf.out" 2>&1 &
  local dp=$!
  wait $dp
  c1=$(cpu_of "$SPID"); k1=$(cpu_of "$KNOT"); b1=$(busy_total); t1=$(date +%s.%N)
  local dcpu=$((c1 - c0)) dknot=$((k1 - k0)) dbusy=$((b1 - b0))
  awk -v f="$TMP/dnsperf.out" -v dcpu=$dcpu -v dknot=$dknot -v dbusy=$dbusy -v hz=$HZ \
      -v t0=$t0 -v t1=$t1 -v syn="$(syns)" 'BEGIN {
    while ((getline l < f) > 0) {
      if (l ~ /Queries completed:/) { split(l, a, " "); done = a[3] }
      if (l ~ /Queries lost:/) { split(l, a, " "); lost = a[3] }
      if (l ~ /Queries per second:/) { split(l, a, " "); qps = a[4] }
      if (l ~ /Average Latency/) { split(l, a, " "); lat = a[4] * 1000 }
      if (l ~ /Run time \(s\):/) { split(l, a, " "); run = a[4] }
    }
    wall = t1 - t0; share = dcpu / hz / (run > 0 ? run : wall)
    # Other processes: busy time not from the server, Knot or the load generator
    # (dnsperf keeps its core busy: count one core for it at most).
    other = (dbusy - dcpu - dknot) / hz / wall - 1; if (other < 0) other = 0
    printf "%.0f %.3f %d %.3f %d %.2f %d\n", qps, share, lost, lat, syn, other, done
  }'
}

# E, latency: measure_latency and latency_runs.
. bench/latency/workload_e.sh

# --- quick: the CI gate (rule and rationale in bench/README.md) ------------------
if [ $QUICK -eq 1 ]; then
  PEER=""
  for s in $SERVERS; do
    if [ "$s" != localdns ]; then PEER=$s; break; fi
  done
  [ -n "$PEER" ] || { echo "--quick needs localdns and one peer in --servers"; exit 2; }
  # Both servers run side by side (each pinned to CPU 0, on its own port) so
  # that runs can alternate without restarts; the idle one costs nothing.
  declare -A QPORT=([localdns]=5353 [$PEER]=5354) QPID=()
  for s in localdns $PEER; do
    PORT=${QPORT[$s]}
    start_server "$s"
    QPID[$s]=$SPID
    x taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT" -d "$TMP/hits" -n 1 -q 100 >/dev/null 2>&1
  done
  QRUNS=$TMP/quick  # round workload pair server qps share other per_core
  : > "$QRUNS"
  echo "# $(date -u +%FT%TZ) bench/run.sh --quick: localdns $("$LOCALDNS" --version) vs $PEER;" \
    "$PAIRS alternating pairs of ${DURATION}s runs per workload; fail below $MIN_RATIO twice"
  quick_round() {  # ROUND WORKLOAD...: PAIRS alternating pairs per workload
    local round=$1 pair w s file row pc
    shift
    for pair in $(seq 1 "$PAIRS"); do
      for w in "$@"; do
        case $w in
          A) file=$TMP/hits ;;
          B)  # Fresh names for every pair: each server sees each name once, so
              # every query of the run is a miss (sized so that dnsperf never
              # wraps around within the run).
            file=$TMP/misses-$round-$pair
            awk -v n=$((DURATION * 200000)) -v p="r$round-p$pair" \
              'BEGIN { for (i = 0; i < n; i++) printf "%s-%d.miss.cluster.local A\n", p, i }' > "$file"
            ;;
        esac
        for s in localdns $PEER; do
          SPID=${QPID[$s]} PORT=${QPORT[$s]}
          row=$(measure "$w" "$file" udp)
          pc=$(echo "$row" | awk '{ s = ($2 > 0.01 ? $2 : 0.01); printf "%.0f", $1 / s }')
          echo "$round $w $pair $s $(echo "$row" | awk '{print $1, $2, $6}') $pc" >> "$QRUNS"
          echo "  round $round pair $pair $w $s: $pc qps/core (raw $(echo "$row" | awk '{printf "%s qps, server CPU %s, lost %s, others %s cores", $1, $2, $3, $6}'))"
          sleep 0.3
        done
        if [ "$w" = B ]; then rm -f "$file"; fi
      done
    done
  }
  quick_verdict() {  # ROUND WORKLOAD: prints "ratio ours peer slower_pairs"
    awk -v r="$1" -v w="$2" -v peer="$PEER" '
      function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      $1 == r && $2 == w && $4 == "localdns" { o[++no] = $8; po[$3] = $8 }
      $1 == r && $2 == w && $4 == peer { q[++nq] = $8; pq[$3] = $8 }
      END {
        for (k in po) if ((k in pq) && po[k] < pq[k]) slower++
        mo = median(o, no); mq = median(q, nq)
        printf "%.3f %.0f %.0f %d\n", (mq > 0 ? mo / mq : 0), mo, mq, slower
      }' "$QRUNS"
  }
  fail=0 again=""
  quick_round 1 $WORKLOADS
  for w in $WORKLOADS; do
    read -r ratio ours peer slower <<<"$(quick_verdict 1 "$w")"
    echo "quick round 1 $w: median localdns $ours qps/core, $PEER $peer qps/core, ratio $ratio" \
      "(localdns slower in $slower of $PAIRS pairs)"
    if awk -v r="$ratio" -v m="$MIN_RATIO" 'BEGIN { exit !(r < m) }'; then again+=" $w"; fi
  done
  if [ -n "$again" ]; then
    echo "quick: ratio below $MIN_RATIO on$again; confirmation round"
    quick_round 2 $again
    for w in $again; do
      read -r ratio ours peer slower <<<"$(quick_verdict 2 "$w")"
      echo "quick round 2 $w: median localdns $ours qps/core, $PEER $peer qps/core, ratio $ratio" \
        "(localdns slower in $slower of $PAIRS pairs)"
      if awk -v r="$ratio" -v m="$MIN_RATIO" 'BEGIN { exit !(r < m) }'; then
        echo "FAIL: localdns below $MIN_RATIO of $PEER per core on $w in both rounds"
        fail=1
      else
        echo "quick $w: not confirmed (noise)"
      fi
    done
  fi
  # The rule CI used before: one run per server, fail if localdns is slower
  # on A or B. Applied to the first pair of round 1, for comparison only.
  old=$(awk -v peer="$PEER" '$1 == 1 && $3 == 1 { v[$2, $4] = $8 }
    END { f = 0; for (k in v) { split(k, p, SUBSEP); if (p[2] == "localdns" && v[p[1], "localdns"] < v[p[1], peer]) f = 1 }
          print (f ? "fail" : "pass") }' "$QRUNS")
  echo "quick: verdict $([ $fail -eq 0 ] && echo pass || echo FAIL); the old single-run rule on pair 1 would say $old;" \
    "${SECONDS}s in total"
  exit $fail
fi

RESULTS=$TMP/results  # server workload rep qps share lost lat syns other p50 p99 p999 idle_rss rss
: > "$RESULTS"
warm() {  # the hot names and the node mix's repeated names; never F's names
  x taskset -c 1 dnsperf -s 127.0.0.1 -p $PORT -d "$TMP/hits" -n 1 -q 100 >/dev/null 2>&1
  x taskset -c 1 dnsperf -s 127.0.0.1 -p $PORT -d "$TMP/mix-warm" -n 1 -q 100 >/dev/null 2>&1
}
echo "# $(date -u +%FT%TZ) bench/run.sh $*; duration ${DURATION}s, reps $REPS"
for rep in $(seq 1 "$REPS"); do
  for s in $SERVERS; do
    start_server "$s"
    idle=$(rss_kib "$SPID")
    warm
    ran=0
    for w in $WORKLOADS; do
      # The echo server has no cache, upstream or TCP: UDP hits and latency only.
      if [ "$s" = echo ] && [ "$w" != A ] && [ "$w" != E ]; then continue; fi
      if [ "$w" = E ]; then latency_runs "$s" "$rep"; continue; fi
      case $w in
        F) file=$TMP/fill mode=udp rate= ;;
        A) file=$TMP/hits mode=udp rate= ;;
        B) file=$TMP/misses mode=udp rate= ;;
        C) file=$TMP/mix mode=udp rate= ;;
        D) file=$TMP/hits mode=tcp rate= ;;
      esac
      for try in 1 2; do
        # F starts from a cold cache: on a fresh server unless it is the first run.
        if [ "$w" = F ] && [ "$ran" -ne 0 ]; then stop_server; start_server "$s"; warm; fi
        ran=1
        row=$(measure "$w" "$file" "$mode" "$rate")
        other=$(echo "$row" | awk '{print $6}')
        # A run disturbed by other work on the machine is repeated once.
        if [ "$try" -eq 1 ] && awk -v o="$other" 'BEGIN { exit !(o > 0.25) }'; then
          echo "  $s $w: other processes used $other of a core; repeating"
          continue
        fi
        break
      done
      pct="0 0 0"
      echo "$s $w $rep $row $pct $idle $(rss_kib "$SPID")" >> "$RESULTS"
      echo "  rep $rep $s $w: qps/share/lost/lat_ms/syns/other/done = $row p50/p99/p99.9 = $pct"
    done
    stop_server
  done
done

# --- report -----------------------------------------------------------------------
report() {
  awk -v servers="$SERVERS" -v workloads="$WORKLOADS" -v haltpoll="${E_HALT_POLL:-$(halt_poll_now)}" '
  function median(arr, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
  }
  {
    k = $1 SUBSEP $2; n[k]++
    qps[k, n[k]] = $4; share = ($5 > 0.01 ? $5 : 0.01); pc[k, n[k]] = $4 / share
    lost[k] += $6; syns[k, n[k]] = $8; cpum[k, n[k]] = ($4 > 0 ? $5 / $4 * 1e6 : 0)
    p50[k, n[k]] = $11; p99[k, n[k]] = $12; p999[k, n[k]] = $13
    if ($2 ~ /^E[0-9]+$/) { erate[substr($2, 2) + 0] = 1; pmax[k, n[k]] = $16; sp99[k, n[k]] = $17; smax[k, n[k]] = $18; sent[k] += $19; cpus[k, n[k]] = $5; stl[k, n[k]] = $20 }
    idle[$1] = $14; if ($2 == "B") rssb[$1] = $15
  }
  END {
    split(servers, S, " "); split(workloads, W, " ")
    for (wi = 1; wi in W; wi++) {
      w = W[wi]
      if (w == "E") {  # one table per rate, rates in ascending order
        nr = 0; for (r in erate) R[++nr] = r + 0
        for (i = 1; i <= nr; i++) for (j = i + 1; j <= nr; j++) if (R[j] < R[i]) { rt = R[i]; R[i] = R[j]; R[j] = rt }
        for (ri = 1; ri <= nr; ri++) {
          print "\n### E: latency at " R[ri] " queries/s (cache hits, UDP, bench/latency/paced_client; guest halt poll " haltpoll " ns)\n"
          print "| server | p50 ms | p99 ms | p99.9 ms | max ms | lost / sent | server CPU | client late p99 / max ms | steal ms |"
          print "|---|---|---|---|---|---|---|---|---|"
          for (si = 1; si in S; si++) {
            k = S[si] SUBSEP "E" R[ri]; m = n[k]; if (!m) continue
            for (i = 1; i <= m; i++) { a[i] = p50[k, i]; b[i] = p99[k, i]; c[i] = p999[k, i]; d[i] = pmax[k, i]; e[i] = cpus[k, i]; f[i] = sp99[k, i]; g[i] = smax[k, i]; h[i] = stl[k, i] }
            printf "| %s | %.3f | %.3f | %.3f | %.3f | %d / %d | %.0f %% | %.3f / %.3f | %.0f |\n", S[si], median(a, m), median(b, m),
              median(c, m), median(d, m), lost[k], sent[k], 100 * median(e, m), median(f, m), median(g, m), median(h, m)
          }
        }
        continue
      }
      title = (w == "A" ? "A: cache hits, UDP" : w == "B" ? "B: pure misses, upstream over TCP where the server can" : w == "C" ? "C: node mix, 90% hits, A+AAAA, ndots:5 NXDOMAINs" : "D: cache hits, TCP clients")
      if (w == "F") title = "F: cache fill, 100,000 distinct names from a cold cache, asked twice (100,000 misses, then 100,000 hits), UDP"
      print "\n### " title "\n"
      print "| server | qps/busy core (median) | spread | ratio to localdns | raw qps | lost | CPU s per M queries | upstream TCP conns |"
      print "|---|---|---|---|---|---|---|---|"
      kl = "localdns" SUBSEP w
      if (n[kl]) { for (i = 1; i <= n[kl]; i++) t[i] = pc[kl, i]; base = median(t, n[kl]) } else base = 0
      for (si = 1; si in S; si++) {
        k = S[si] SUBSEP w; m = n[k]; if (!m) continue
        lo = 1e18; hi = 0
        for (i = 1; i <= m; i++) { a[i] = pc[k, i]; b[i] = qps[k, i]; c[i] = cpum[k, i]; d[i] = syns[k, i]; if (pc[k, i] < lo) lo = pc[k, i]; if (pc[k, i] > hi) hi = pc[k, i] }
        med = median(a, m)
        printf "| %s | %.0f | %.0f-%.0f | %.2f | %.0f | %d | %.2f | %.0f |\n", S[si], med, lo, hi, (base ? med / base : 0), median(b, m), lost[k], median(c, m), median(d, m)
      }
    }
    print "\n### Memory\n"
    print "| server | idle RSS MiB | RSS after B MiB |"
    print "|---|---|---|"
    for (si = 1; si in S; si++) if (S[si] in idle) printf "| %s | %.1f | %.1f |\n", S[si], idle[S[si]] / 1024, rssb[S[si]] / 1024
  }' "$RESULTS"
}
TABLE=$(report)
echo "$TABLE"

if [ $QUICK -eq 1 ]; then
  # CI: localdns must not be slower per core than the peer on A and B.
  fail=0
  for w in A B; do
    ours=$(awk -v w=$w '$1 == "localdns" && $2 == w { s = ($5 > 0.01 ? $5 : 0.01); print $4 / s }' "$RESULTS")
    peer=$(awk -v w=$w '$1 != "localdns" && $2 == w { s = ($5 > 0.01 ? $5 : 0.01); print $4 / s; exit }' "$RESULTS")
    echo "quick $w: localdns $ours qps/core, peer $peer qps/core"
    awk -v a="$ours" -v b="$peer" 'BEGIN { exit !(a >= b) }' || { echo "FAIL: localdns slower than the peer on $w"; fail=1; }
  done
  exit $fail
fi

VERSIONS=$(for s in $SERVERS; do echo "- $s: $(version_of "$s")"; done; echo "- dnsperf: $(dnsperf -h 2>&1 | awk '/Version/{print $2}')"; echo "- upstream: $(knotd -V)"; echo "- kernel $(uname -r), $(nproc) CPUs: $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo)")
{
  echo "<!-- side-by-side:begin -->"
  echo "## Side by side (generated by bench/run.sh on $(date -u +%F))"
  echo
  echo "Command: \`bench/run.sh --reps $REPS --duration $DURATION\`. Each server is pinned to CPU 0 with one"
  echo "worker thread, dnsperf (1 thread, 16 sockets, 512 queries outstanding) to CPU 1, Knot DNS (the"
  echo "upstream, 20,000 names and two wildcards) also on CPU 1; all on loopback in a private network"
  echo "namespace. qps/busy core = queries per second divided by the server's CPU share (from"
  echo "/proc/PID/stat), which compares servers that the load generator cannot saturate. Medians of"
  echo "$REPS repetitions; spread is min-max. Runs where other processes used more than a quarter"
  echo "core were repeated once."
  echo
  echo "$VERSIONS"
  echo "$TABLE"
  echo
  echo "![QPS per workload](results.png)"
  echo "<!-- side-by-side:end -->"
} > "$TMP/section.md"
OUT=bench/RESULTS.md
if grep -q "side-by-side:begin" "$OUT"; then
  awk -v f="$TMP/section.md" '/side-by-side:begin/ { while ((getline l < f) > 0) print l; skip = 1 }
    !skip { print } /side-by-side:end/ { skip = 0 }' "$OUT" > "$TMP/out.md"
  cp "$TMP/out.md" "$OUT"
else
  { echo; cat "$TMP/section.md"; } >> "$OUT"
fi
# The plot: raw qps per workload per server.
awk '$2 !~ /^E/ { k = $2 " " $1; s[k] += $4; c[k]++ } END { for (k in s) print k, s[k] / c[k] }' "$RESULTS" |
  sort > "$TMP/plot.dat"
{
  echo "set terminal png size 900,500; set output 'bench/results.png'"
  echo "set style data histograms; set style fill solid; set ylabel 'queries/s'; set key top right"
  printf "plot "
  first=1
  for s in $SERVERS; do
    [ $first -eq 0 ] && printf ", "
    printf "'< grep \" %s \" %s' using 3:xtic(1) title '%s'" "$s" "$TMP/plot.dat" "$s"
    first=0
  done
  echo
} > "$TMP/plot.gp"
gnuplot "$TMP/plot.gp" 2>/dev/null || echo "(gnuplot failed; no plot)"
echo "wrote $OUT and bench/results.png"
