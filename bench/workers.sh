#!/usr/bin/env bash
# The whole binary with two workers: localdns --threads 2 against --threads 1
# on cache hits (workload A's 1,000 names), in a network namespace this script
# creates, Knot DNS as the upstream.
#
#   1 worker:  localdns pinned to CPU 0, dnsperf (1 thread) pinned to CPU 1
#   2 workers: localdns and dnsperf (2 threads) unpinned on both CPUs: the
#              load generator shares the cores with the server, so raw qps
#              understates the server; compare qps per busy server core
#
#   bench/workers.sh [--reps N (3)] [--duration S (5)] [--localdns PATH]
#
# Prints every run and the medians. Needs root. Starts and stops only its own
# processes, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=3 DURATION=5 LOCALDNS=$PWD/build/release/localdns
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --localdns) LOCALDNS=$(realpath "$2"); shift ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
  shift
done
if [ "$(id -u)" -ne 0 ]; then echo "bench/workers.sh needs root (network namespace)"; exit 2; fi
if [ "$(nproc)" -lt 2 ]; then echo "bench/workers.sh needs 2 CPUs"; exit 2; fi
for t in dnsperf knotd dig; do command -v $t >/dev/null || { echo "needs $t (bench/run.sh installs it)"; exit 2; }; done
[ -x "$LOCALDNS" ] || { echo "no localdns binary at $LOCALDNS (--localdns PATH)"; exit 2; }

NS=ldworkers-$$
TMP=$(mktemp -d /tmp/localdns-workers-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
x() { ip netns exec "$NS" "$@"; }
PORT=5353 UP=5300 HZ=$(getconf CLK_TCK)

{
  echo "\$ORIGIN cluster.local."
  echo "\$TTL 3600"
  echo "@ IN SOA ns hostmaster 1 7200 1800 86400 30"
  echo "@ IN NS ns"
  echo "ns IN A 10.0.0.53"
  for i in $(seq 0 999); do echo "svc-$i.default.svc IN A 10.96.$((i / 256)).$((i % 256))"; done
} > "$TMP/zone"
cat > "$TMP/knot.conf" <<CONF
server:
  rundir: "$TMP"
  listen: 127.0.0.1@$UP
log:
  - target: stderr
    any: error
database:
  storage: "$TMP"
zone:
  - domain: cluster.local
    storage: "$TMP"
    file: "zone"
CONF
ip netns exec "$NS" knotd -c "$TMP/knot.conf" >"$TMP/knot.log" 2>&1 &
PIDS+=($!)
for i in $(seq 0 999); do echo "svc-$i.default.svc.cluster.local A"; done > "$TMP/hits"
for _ in $(seq 1 100); do
  x dig +short +time=1 +tries=1 -p $UP @127.0.0.1 svc-1.default.svc.cluster.local >/dev/null 2>&1 && break
  sleep 0.1
done

cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Per thread "tid jiffies" (the comm field has no spaces in localdns).
threads_of() { for t in /proc/"$1"/task/*; do awk '{print $1, $14 + $15}' "$t/stat"; done 2>/dev/null; }
start() {  # WORKERS: sets SPID
  local pin=(taskset -c 0)
  [ "$1" -gt 1 ] && pin=()
  ip netns exec "$NS" "${pin[@]}" "$LOCALDNS" --listen 127.0.0.1:$PORT --forward .=tcp://127.0.0.1:$UP \
    --threads "$1" --metrics off --health off --control off --log-level warn >"$TMP/localdns.log" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
  for _ in $(seq 1 100); do
    x dig +short +time=1 +tries=1 -p $PORT @127.0.0.1 svc-1.default.svc.cluster.local 2>/dev/null | grep -q 10.96 && break
    sleep 0.1
  done
  x dnsperf -s 127.0.0.1 -p $PORT -d "$TMP/hits" -n 1 -q 100 >/dev/null 2>&1
}
stop() {
  kill "$SPID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
}
run() {  # WORKERS: prints "qps server_share qps_per_core lost busiest/second_thread_share"
  local pin=(taskset -c 1) threads=1 c0 c1
  [ "$1" -gt 1 ] && pin=() threads=2
  c0=$(cpu_of "$SPID")
  threads_of "$SPID" > "$TMP/threads0"
  ip netns exec "$NS" "${pin[@]}" dnsperf -s 127.0.0.1 -p $PORT -d "$TMP/hits" -l "$DURATION" -t 1 \
    -c 16 -q 512 -T $threads > "$TMP/dnsperf.out" 2>&1 &
  wait $!
  c1=$(cpu_of "$SPID")
  threads_of "$SPID" > "$TMP/threads1"
  # The two busiest threads' CPU shares: both workers should carry load.
  local busiest
  busiest=$(awk 'NR == FNR { a[$1] = $2; next } { print $2 - a[$1] }' "$TMP/threads0" "$TMP/threads1" |
    sort -rn | head -2 | tr '\n' ' ')
  awk -v dcpu=$((c1 - c0)) -v hz="$HZ" -v busiest="$busiest" '
    /Queries lost:/ { lost = $3 } /Queries per second:/ { qps = $4 } /Run time \(s\):/ { run = $4 }
    END { share = dcpu / hz / run; split(busiest, b, " ")
          printf "%.0f %.2f %.0f %d %.2f/%.2f\n", qps, share, qps / (share > 0.01 ? share : 0.01), lost, b[1] / hz / run, b[2] / hz / run }' \
    "$TMP/dnsperf.out"
}

echo "# $(date -u +%FT%TZ) bench/workers.sh: $("$LOCALDNS" --version), ${DURATION}s runs, $REPS reps; load: $(uptime | sed 's/.*load/load/')"
: > "$TMP/runs"
for rep in $(seq 1 "$REPS"); do
  for w in 1 2; do
    start "$w"
    row=$(run "$w")
    stop
    echo "$w $row" >> "$TMP/runs"
    echo "  rep $rep, $w worker(s): qps/server CPU share/qps per busy core/lost/two busiest threads = $row"
  done
done
awk 'function median(a, n,   i, j, t) {
       for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
       return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  { n[$1]++; q[$1, n[$1]] = $2; s[$1, n[$1]] = $3; p[$1, n[$1]] = $4; l[$1] += $5 }
  END {
    print "| workers | qps | server CPU (cores) | qps per busy server core | lost |"
    print "|---|---|---|---|---|"
    for (w = 1; w <= 2; w++) {
      for (i = 1; i <= n[w]; i++) { a[i] = q[w, i]; b[i] = s[w, i]; c[i] = p[w, i] }
      printf "| %d | %.0f | %.2f | %.0f | %d |\n", w, median(a, n[w]), median(b, n[w]), median(c, n[w]), l[w]
    }
  }' "$TMP/runs"
