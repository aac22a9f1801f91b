#!/usr/bin/env bash
# The fault soak: localdns under a steady dnsperf load on loopback while its
# upstream (tests/soak/fault_upstream) cycles through faults. What it asserts,
# the phases and the figures: tests/soak/README.md.
#
#   tests/soak/soak.sh                 short form (6 s per phase, about 70 s in all; CI)
#   tests/soak/soak.sh --long          5 minutes per phase (about 35 minutes)
#   tests/soak/soak.sh --minutes N     N minutes per phase
#   options: --localdns PATH (build/ci/localdns)  --upstream PATH (build/ci/tests/fault_upstream)
#            --rate QPS (2000)  --keep (keep the work directory and its logs)
#
# No root: plain loopback, ports chosen free at run time. Starts and stops only
# its own processes, by PID, on every exit. Exit status 1 with a line saying
# which assertion failed; 2 for a usage or setup problem.
set -euo pipefail
cd "$(dirname "$0")/../.."

LOCALDNS=build/ci/localdns UPSTREAM=build/ci/tests/fault_upstream
PHASE_S=6 RECOVER_S=4 RATE=2000 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --long) PHASE_S=300 RECOVER_S=30 ;;
    --minutes) PHASE_S=$(($2 * 60)) RECOVER_S=30; shift ;;
    --localdns) LOCALDNS=$2; shift ;;
    --upstream) UPSTREAM=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--long | --minutes N] [--localdns PATH] [--upstream PATH] [--rate QPS] [--keep]"; exit 2 ;;
  esac
  shift
done
for tool in dnsperf dig curl; do
  command -v $tool >/dev/null || { echo "soak: needs $tool (Debian: dnsperf, dnsutils, curl)"; exit 2; }
done
[ -x "$LOCALDNS" ] || { echo "soak: no localdns binary at $LOCALDNS"; exit 2; }
[ -x "$UPSTREAM" ] || { echo "soak: no fault_upstream binary at $UPSTREAM"; exit 2; }

# --- what is asserted, in numbers ---------------------------------------------
TIMEOUT_MS=400 ATTEMPTS=2
DEADLINE_MS=$((TIMEOUT_MS * ATTEMPTS))  # an exchange's deadline: timeout x attempts
SLACK_MS=400           # scheduling on a shared 2-core machine, on top of the deadline
RECOVER_BOUND_MS=3000  # a fresh name answers NOERROR this soon after the upstream heals
CACHE_BYTES=$((2 * 1024 * 1024))  # cache.max_bytes: small, so that the soak fills it
OVERHEAD_MIB=32        # RSS allowed above the cache budget (tests/soak/README.md)
IDLE_WAIT_S=15         # descriptors and in-flight back to idle within this
HITS=200 STALE=50      # cached names of the "." group, and of the serve-stale group

TMP=$(mktemp -d /tmp/localdns-soak-XXXXXX)
LD_PID="" UP_PID="" PERF_PID=""
cleanup() {
  local p
  exec 7>&- 2>/dev/null || true  # the upstream exits at end of its input
  for p in $PERF_PID $LD_PID $UP_PID; do kill "$p" 2>/dev/null || true; done
  for p in $PERF_PID $LD_PID $UP_PID; do wait "$p" 2>/dev/null || true; done
  if [ $KEEP -eq 1 ]; then echo "soak: logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
  echo "SOAK FAILED: $*"
  if [ -s "$TMP/localdns.log" ]; then
    echo "--- last lines of localdns's log:"
    tail -20 "$TMP/localdns.log"
  fi
  exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- the upstream -----------------------------------------------------------
mkfifo "$TMP/upstream.in"
"$UPSTREAM" <"$TMP/upstream.in" >"$TMP/upstream.out" 2>&1 &
UP_PID=$!
exec 7>"$TMP/upstream.in"
for _ in $(seq 1 100); do grep -q '^port ' "$TMP/upstream.out" 2>/dev/null && break; sleep 0.05; done
UP_PORT=$(awk '/^port / { print $2; exit }' "$TMP/upstream.out")
[ -n "$UP_PORT" ] || fail "the fault upstream printed no port: $(cat "$TMP/upstream.out")"
# upstream PHASE: switches the upstream and waits for its acknowledgement.
upstream() {
  local n
  n=$(wc -l <"$TMP/upstream.out")
  echo "phase $1" >&7
  for _ in $(seq 1 100); do
    [ "$(wc -l <"$TMP/upstream.out")" -gt "$n" ] && break
    sleep 0.02
  done
  tail -1 "$TMP/upstream.out" | grep -q "^phase $1 " || fail "the upstream did not switch to $1"
}
upstream_counters() {  # prints the upstream's counters line
  local n
  n=$(wc -l <"$TMP/upstream.out")
  echo counters >&7
  for _ in $(seq 1 100); do
    [ "$(wc -l <"$TMP/upstream.out")" -gt "$n" ] && break
    sleep 0.02
  done
  tail -1 "$TMP/upstream.out" | sed 's/^counters //'
}

# --- localdns -----------------------------------------------------------------
port_free() { ! ss -Hlnu "sport = :$1" | grep -q . && ! ss -Hlnt "sport = :$1" | grep -q .; }
pick_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    port_free $p && [ "$p" != "$UP_PORT" ] && { echo $p; return; }
  done
}
write_config() {
  local up="127.0.0.1:$UP_PORT"
  cat >"$TMP/localdns.yaml" <<YAML
listen: [127.0.0.1:$PORT]
threads: 2
log_level: warn
shutdown_grace: 1s
metrics: 127.0.0.1:$MPORT
health: off
control_socket: off
cache:
  max_bytes: $CACHE_BYTES
  max_ttl: 24h
forward:
  # serve-stale: entries live 1 s, then are answered stale while the upstream fails
  - zones: [stale.soak]
    servers: [$up]
    timeout: ${TIMEOUT_MS}ms
    attempts: $ATTEMPTS
    cache:
      max_ttl: 1s
      serve_stale: 1h
    tcp:
      idle_timeout: 2s
  # pipelined TCP (the tcp-reset phase's target)
  - zones: [tcp.soak]
    servers: [$up]
    transport: tcp
    timeout: ${TIMEOUT_MS}ms
    attempts: $ATTEMPTS
    tcp:
      idle_timeout: 2s
  # everything else: UDP, TCP when truncated
  - zones: ["."]
    servers: [$up]
    timeout: ${TIMEOUT_MS}ms
    attempts: $ATTEMPTS
    tcp:
      idle_timeout: 2s  # the connections of the TCP fallback close once idle
YAML
}
for attempt in 1 2 3; do
  PORT=$(pick_port) MPORT=$(pick_port)
  write_config
  "$LOCALDNS" --config "$TMP/localdns.yaml" >"$TMP/localdns.log" 2>&1 &
  LD_PID=$!
  for _ in $(seq 1 100); do
    kill -0 $LD_PID 2>/dev/null || break
    dig +short +tries=1 +time=1 -p "$PORT" @127.0.0.1 h0.hit.soak A 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  kill -0 $LD_PID 2>/dev/null && break
  wait $LD_PID 2>/dev/null || true
  LD_PID=""
  grep -qi "address already in use" "$TMP/localdns.log" || fail "localdns did not start"
done
[ -n "$LD_PID" ] || fail "localdns did not start (ports taken three times)"

# A process that exited stays a zombie until waited for: read its state.
alive() {
  awk '/^State:/ { exit $2 == "Z" }' "/proc/$LD_PID/status" 2>/dev/null ||
    fail "localdns (PID $LD_PID) is gone: $1"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$LD_PID/status"; }
fds() { ls "/proc/$LD_PID/fd" | wc -l; }
metric_sum() {  # the sum of a metric family's samples
  curl -s --max-time 2 "http://127.0.0.1:$MPORT/metrics" |
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d\n", s }'
}

# --- probes -------------------------------------------------------------------
# ask NAME: "RCODE ADDRESS-OR-DASH MS" from one dig over UDP.
ask() {
  local out
  out=$(dig +tries=1 +time=3 +noquestion +noauthority +noadditional -p "$PORT" @127.0.0.1 "$1" A 2>&1) || true
  awk '/status:/ { sub(",", "", $6); rc = $6 }
       $4 == "A" && $3 == "IN" { addr = $5 }
       /Query time:/ { ms = $4 }
       END { printf "%s %s %s\n", rc ? rc : "NONE", addr ? addr : "-", ms ? ms : -1 }' <<<"$out"
}

# --- warm the cached names -----------------------------------------------------
for i in $(seq 0 $((HITS - 1))); do echo "h$i.hit.soak A"; done >"$TMP/warm"
for i in $(seq 0 $((STALE - 1))); do echo "s$i.stale.soak A"; done >>"$TMP/warm"
dnsperf -s 127.0.0.1 -p "$PORT" -d "$TMP/warm" -n 1 -q 50 -t 3 >"$TMP/warm.out" 2>&1 ||
  fail "warming the cache: $(cat "$TMP/warm.out")"
grep -q "Queries lost: *0 " "$TMP/warm.out" || fail "warming the cache lost queries"
read -r rc addr _ <<<"$(ask h0.hit.soak)"
[ "$rc $addr" = "NOERROR 192.0.2.1" ] || fail "a warmed name answers $rc $addr"

# The idle level: no query in flight and no upstream TCP connection open.
wait_idle() {  # SECONDS MAX_FDS: polls until idle (and fds <= MAX_FDS when given)
  local end=$(($(date +%s) + $1))
  while :; do
    IDLE_INFLIGHT=$(metric_sum localdns_inflight_queries)
    IDLE_TCP=$(metric_sum localdns_upstream_tcp_connections)
    IDLE_FDS=$(fds)
    [ "$IDLE_INFLIGHT" -eq 0 ] && [ "$IDLE_TCP" -eq 0 ] &&
      { [ -z "${2:-}" ] || [ "$IDLE_FDS" -le "$2" ]; } && return 0
    [ "$(date +%s)" -lt $end ] || return 1
    sleep 0.2
  done
}
wait_idle $IDLE_WAIT_S || fail "localdns not idle after warming: in flight $IDLE_INFLIGHT, upstream TCP $IDLE_TCP"
FDS_BEFORE=$IDLE_FDS RSS_BEFORE=$(rss_kib)
RSS_PEAK=$RSS_BEFORE FDS_PEAK=$FDS_BEFORE
LIMIT_KIB=$((CACHE_BYTES / 1024 + OVERHEAD_MIB * 1024))

# --- the phases -----------------------------------------------------------------
# Each bad phase is followed by a recovery window (the upstream healthy again).
PHASES="healthy slow recover dead recover tcp-reset recover tc-silent-tcp recover servfail recover"
# The load: per 10 queries, 7 cached names, 1 serve-stale name (expired every
# second), 1 miss of the "." group (UDP) and 1 miss of the TCP group; misses are
# names never asked before. The cached names are asked in turn, each within a
# second, so that none of them falls to the cache's LRU tail while the misses
# fill it (the probes below ask any of them).
queries() {  # PHASE_INDEX COUNT
  awk -v k="$1" -v n="$2" -v hits=$HITS -v stale=$STALE 'BEGIN {
    for (i = 0; i < n; i++) {
      j = i % 10
      r = int(i / 10)  # every cached name in turn, so that the load keeps them all hot
      if (j < 7) printf "h%d.hit.soak A\n", (r * 7 + j) % hits
      else if (j == 7) printf "s%d.stale.soak A\n", r % stale
      else if (j == 8) printf "m%d.p%d.miss.soak A\n", i, k
      else printf "t%d.p%d.tcp.soak A\n", i, k
    }
  }'
}
# dnsperf -v prints one line per answer: "> RCODE NAME TYPE SECONDS" (or
# "> T NAME TYPE" for a query it gave up on); kept as counts per kind of name.
tally() {
  awk '$1 == ">" {
    n = $3; kind = n ~ /\.hit\.soak$/ ? "hit" : n ~ /\.stale\.soak$/ ? "stale" : n ~ /\.tcp\.soak$/ ? "tcp" : "miss"
    rc = $2 == "T" ? "LOST" : $2
    count[kind " " rc]++
    if ($2 != "T" && $5 * 1000 > max[kind]) max[kind] = $5 * 1000
  }
  END {
    for (k in count) print "count", k, count[k]
    for (k in max) printf "max %s %.0f\n", k, max[k]
  }'
}
get() {  # FILE KIND RCODE -> count
  awk -v k="$2" -v r="$3" '$1 == "count" && $2 == k && $3 == r { print $4; f = 1 } END { if (!f) print 0 }' "$1"
}
getmax() {  # FILE KIND -> ms
  awk -v k="$2" '$1 == "max" && $2 == k { print $3; f = 1 } END { if (!f) print 0 }' "$1"
}
# The rcode a fresh name of each group gets in each phase ("any": NOERROR or SERVFAIL).
expect_miss() {
  case $1 in healthy) echo NOERROR ;; tcp-reset) echo NOERROR ;; *) echo SERVFAIL ;; esac
}
expect_tcp() {
  case $1 in healthy) echo NOERROR ;; tcp-reset) echo any ;; *) echo SERVFAIL ;; esac
}

ROWS=()
FAILS=()
k=0
T_START=$(date +%s)
for phase in $PHASES; do
  k=$((k + 1))
  secs=$PHASE_S
  [ "$phase" = recover ] && secs=$RECOVER_S
  upstream "$( [ "$phase" = recover ] && echo healthy || echo "$phase")"
  t0=$(now_ms)
  up0=$(upstream_counters) stale0=$(metric_sum coredns_cache_served_stale_total)
  queries $k $((RATE * secs * 12 / 10)) >"$TMP/q$k"
  dnsperf -s 127.0.0.1 -p "$PORT" -d "$TMP/q$k" -n 1 -l "$secs" -Q "$RATE" -c 8 -q 2000 -t 3 -v \
    >"$TMP/perf$k.out" 2>&1 &
  PERF_PID=$!
  probe_max=0 recovered_miss="" recovered_tcp="" p=0
  end=$((t0 + secs * 1000))
  while [ "$(now_ms)" -lt $end ]; do
    alive "in phase $phase"
    p=$((p + 1))
    read -r rc addr ms <<<"$(ask h$((p % HITS)).hit.soak)"
    [ "$rc $addr" = "NOERROR 192.0.2.1" ] || FAILS+=("$phase: cached name h$((p % HITS)).hit.soak answered $rc $addr")
    [ "$ms" -gt "$probe_max" ] && probe_max=$ms
    read -r rc addr ms <<<"$(ask s$((p % STALE)).stale.soak)"
    [ "$rc $addr" = "NOERROR 192.0.2.1" ] || FAILS+=("$phase: serve-stale name s$((p % STALE)).stale.soak answered $rc $addr")
    [ "$ms" -gt "$probe_max" ] && probe_max=$ms
    for group in miss tcp; do
      read -r rc addr ms <<<"$(ask probe$p.p$k.$group.soak)"
      [ "$ms" -gt "$probe_max" ] && probe_max=$ms
      if [ "$phase" = recover ]; then
        var=recovered_$group
        if [ -z "${!var}" ]; then
          [ "$rc $addr" = "NOERROR 192.0.2.1" ] && printf -v "$var" %d $(($(now_ms) - t0))
        elif [ "$rc $addr" != "NOERROR 192.0.2.1" ]; then
          FAILS+=("$phase: after recovering, $group name probe$p answered $rc $addr")
        fi
        continue
      fi
      want=$(expect_$group "$phase")
      case "$want $rc $addr" in
        "NOERROR NOERROR 192.0.2.1" | "SERVFAIL SERVFAIL -" | "any NOERROR 192.0.2.1" | "any SERVFAIL -") ;;
        *) FAILS+=("$phase: fresh $group name probe$p answered $rc $addr, expected $want") ;;
      esac
    done
    r=$(rss_kib) f=$(fds)
    [ "$r" -gt "$RSS_PEAK" ] && RSS_PEAK=$r
    [ "$f" -gt "$FDS_PEAK" ] && FDS_PEAK=$f
    sleep 0.1
  done
  wait $PERF_PID || fail "dnsperf failed in phase $phase: $(tail -5 "$TMP/perf$k.out")"
  PERF_PID=""
  up1=$(upstream_counters) stale1=$(metric_sum coredns_cache_served_stale_total)
  tally <"$TMP/perf$k.out" >"$TMP/tally$k"
  out=$TMP/perf$k.out
  sent=$(awk '/Queries sent:/ { print $3 }' "$out")
  done_=$(awk '/Queries completed:/ { print $3 }' "$out")
  lost=$(awk '/Queries lost:/ { print $3 }' "$out")
  maxlat=$(awk '$1 == "max" && $3 > m { m = $3 } END { print m + 0 }' "$TMP/tally$k")
  noerror=0 servfail=0
  for kind in hit stale miss tcp; do
    noerror=$((noerror + $(get "$TMP/tally$k" $kind NOERROR)))
    servfail=$((servfail + $(get "$TMP/tally$k" $kind SERVFAIL)))
  done
  other=$((done_ - noerror - servfail))
  m_ok=$(get "$TMP/tally$k" miss NOERROR) m_sf=$(get "$TMP/tally$k" miss SERVFAIL)
  t_ok=$(get "$TMP/tally$k" tcp NOERROR) t_sf=$(get "$TMP/tally$k" tcp SERVFAIL)
  rec="-"
  [ "$phase" = recover ] && rec="${recovered_miss:-never}/${recovered_tcp:-never}"
  udelta=$(awk -v a="$up0" -v b="$up1" 'BEGIN {
    split(a, x, "[ =]"); split(b, y, "[ =]")
    printf "%d/%d/%d", y[2] - x[2], y[4] - x[4], y[6] - x[6] }')
  ROWS+=("$phase $secs $sent $done_ $noerror $servfail $other $lost $maxlat $m_ok/$m_sf $t_ok/$t_sf $((stale1 - stale0)) $(getmax "$TMP/tally$k" hit) $probe_max $rec $udelta")

  # Assertions on dnsperf's view of the phase.
  [ "$lost" -eq 0 ] || FAILS+=("$phase: dnsperf lost $lost queries (unanswered after 3 s)")
  [ "$maxlat" -le $((DEADLINE_MS + SLACK_MS)) ] ||
    FAILS+=("$phase: an answer took $maxlat ms, over the deadline $DEADLINE_MS ms + $SLACK_MS ms")
  [ "$probe_max" -le $((DEADLINE_MS + SLACK_MS)) ] ||
    FAILS+=("$phase: a probe took $probe_max ms, over the deadline $DEADLINE_MS ms + $SLACK_MS ms")
  for kind in hit stale; do
    bad=$(($(awk -v k=$kind '$1 == "count" && $2 == k { s += $4 } END { print s + 0 }' "$TMP/tally$k") -
      $(get "$TMP/tally$k" $kind NOERROR)))
    [ "$bad" -eq 0 ] || FAILS+=("$phase: $bad answers for $kind names were not NOERROR")
  done
  case $phase in
    healthy)
      [ "$m_sf" -eq 0 ] && [ "$t_sf" -eq 0 ] || FAILS+=("$phase: misses got SERVFAIL ($m_sf UDP, $t_sf TCP)") ;;
    slow | dead | tc-silent-tcp | servfail)
      [ "$m_ok" -eq 0 ] && [ "$t_ok" -eq 0 ] ||
        FAILS+=("$phase: misses were answered NOERROR ($m_ok UDP, $t_ok TCP) by a failing upstream") ;;
    tcp-reset)
      [ "$m_sf" -eq 0 ] || FAILS+=("$phase: UDP misses got SERVFAIL ($m_sf)")
      [ "$(awk -v d="$udelta" 'BEGIN { split(d, x, "/"); print x[3] }')" -gt 1 ] ||
        FAILS+=("$phase: the upstream saw no reconnect after its resets") ;;
    recover)
      for group in miss tcp; do
        var=recovered_$group
        [ -n "${!var}" ] && [ "${!var}" -le $RECOVER_BOUND_MS ] ||
          FAILS+=("$phase: $group names answered again after ${!var:-never} ms, bound $RECOVER_BOUND_MS ms")
      done ;;
  esac
done
T_LOAD=$(($(date +%s) - T_START))

# --- back to idle, then a clean exit ---------------------------------------------
alive "after the load"
RSS_LOADED=$(rss_kib)
wait_idle $IDLE_WAIT_S "$FDS_BEFORE" ||
  FAILS+=("not back to idle after $IDLE_WAIT_S s: $IDLE_FDS descriptors (before: $FDS_BEFORE), in flight $IDLE_INFLIGHT, upstream TCP $IDLE_TCP")
FDS_AFTER=$IDLE_FDS INFLIGHT_AFTER=$IDLE_INFLIGHT RSS_AFTER=$(rss_kib)
[ "$RSS_PEAK" -le $LIMIT_KIB ] ||
  FAILS+=("resident memory peaked at $((RSS_PEAK / 1024)) MiB, over the cache budget $((CACHE_BYTES >> 20)) MiB + $OVERHEAD_MIB MiB")
CACHE_BYTES_NOW=$(metric_sum localdns_cache_bytes)
EVICTIONS=$(metric_sum coredns_cache_evictions_total)
STALE_SERVED=$(metric_sum coredns_cache_served_stale_total)
kill -TERM $LD_PID
rc=0
wait $LD_PID || rc=$?
LD_PID=""
[ $rc -eq 0 ] || FAILS+=("localdns exited with status $rc after SIGTERM")

# --- the report -----------------------------------------------------------------
echo "=== fault soak: $RATE qps for $T_LOAD s ($PHASE_S s per phase, $RECOVER_S s recovery windows)"
echo "deadline $DEADLINE_MS ms (timeout $TIMEOUT_MS ms x $ATTEMPTS attempts) + $SLACK_MS ms slack; recovery bound $RECOVER_BOUND_MS ms"
printf '%-13s %4s %7s %7s %7s %7s %5s %5s %6s %11s %11s %6s %6s %6s %9s %s\n' \
  phase s sent answered NOERROR SERVFAIL other lost max-ms udp-miss tcp-miss stale hit-ms probe recovered upstream
for r in "${ROWS[@]}"; do
  # shellcheck disable=SC2086
  printf '%-13s %4s %7s %7s %7s %7s %5s %5s %6s %11s %11s %6s %6s %6s %9s %s\n' $r
done
echo "(udp-miss, tcp-miss: NOERROR/SERVFAIL answers to never-asked names of the \".\" group (UDP) and the"
echo " TCP group; stale: stale answers served; hit-ms: slowest cached answer; probe: slowest dig probe, ms;"
echo " recovered: ms until a fresh UDP/TCP name answered again; upstream: UDP/TCP queries, TCP connections)"
echo "memory: VmRSS $((RSS_BEFORE / 1024)) MiB before, peak $((RSS_PEAK / 1024)) MiB, $((RSS_LOADED / 1024)) MiB after the load, $((RSS_AFTER / 1024)) MiB idle; limit $((LIMIT_KIB / 1024)) MiB (cache $((CACHE_BYTES >> 20)) MiB + $OVERHEAD_MIB MiB)"
echo "cache: $CACHE_BYTES_NOW bytes held, $EVICTIONS evictions, $STALE_SERVED stale answers"
echo "descriptors: $FDS_BEFORE before, peak $FDS_PEAK, $FDS_AFTER after; in flight after: $INFLIGHT_AFTER"
echo "localdns exit status after SIGTERM: $rc"
if [ ${#FAILS[@]} -gt 0 ]; then
  printf 'SOAK FAILED: %s\n' "${FAILS[@]}" | head -40
  [ ${#FAILS[@]} -le 40 ] || echo "(${#FAILS[@]} failures in all)"
  exit 1
fi
echo "soak passed"
