#!/usr/bin/env bash
# The echo ceiling two ways: echo_server.cpp (poll + recvmmsg/sendmmsg) against
# uring_echo.cpp (io_uring multishot recvmsg + sendmsg), measured the way
# bench/run.sh measures its servers: server pinned to CPU 0, dnsperf on CPU 1
# (-c 16 -q 512), loopback of a network namespace this script creates, qps
# divided by the server's CPU share (/proc/PID/stat) = qps per busy core.
# Runs alternate between the servers (pairs, order swapped every pair) so that
# drift from other load falls on both; the table shows medians.
# Then, per server, one run under `perf stat -e raw_syscalls:sys_enter`
# (syscalls per query, unperturbed) and one under `strace -c -f` (which calls).
#
#   bench/echo/compare.sh [--pairs N (5)] [--duration SECONDS (5)]
#                         [--servers "echo uring uring-nodefer"]
#
# Needs root (network namespace), dnsperf, g++ and liburing-dev; strace and
# perf are optional. Starts and stops only its own processes, by PID.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD
PAIRS=5 DURATION=5 SERVERS="echo uring"
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) PAIRS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
  shift
done
if [ "$(id -u)" -ne 0 ]; then echo "compare.sh needs root (network namespace)"; exit 2; fi
if [ "$(nproc)" -lt 2 ]; then echo "compare.sh needs 2 CPUs"; exit 2; fi
command -v dnsperf >/dev/null || { echo "compare.sh needs dnsperf"; exit 2; }
[ -f /usr/include/liburing.h ] || { echo "compare.sh needs liburing-dev"; exit 2; }

NS=ldecho-$$
TMP=$(mktemp -d /tmp/localdns-echo-XXXXXX)
g++ -O2 -o "$TMP/echo_server" "$HERE/echo_server.cpp"
g++ -std=c++23 -O2 -o "$TMP/uring_echo" "$HERE/uring_echo.cpp" -luring
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
PORT=5353
HZ=$(getconf CLK_TCK)
for i in $(seq 0 999); do echo "svc-$i.default.svc.cluster.local A"; done > "$TMP/hits"

SPID=""
start_server() {  # NAME: pinned to CPU 0; sets SPID, waits until it answers
  # A new port for every start: an io_uring's socket outlives its process for
  # a moment (the ring is torn down asynchronously), so the old port may still
  # be bound.
  PORT=$((PORT + 1))
  case $1 in
    echo) ip netns exec "$NS" taskset -c 0 "$TMP/echo_server" $PORT 2>"$TMP/$1.log" & ;;
    uring) ip netns exec "$NS" taskset -c 0 "$TMP/uring_echo" $PORT 2>"$TMP/$1.log" & ;;
    uring-nodefer)
      ip netns exec "$NS" taskset -c 0 "$TMP/uring_echo" $PORT --no-defer 2>"$TMP/$1.log" & ;;
    *) echo "unknown server $1"; exit 2 ;;
  esac
  SPID=$!  # ip netns exec and taskset exec: this is the server itself
  PIDS+=("$SPID")
  for _ in $(seq 1 50); do
    ip netns exec "$NS" dig +short +time=1 +tries=1 -p $PORT @127.0.0.1 x.example A >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "$1 does not answer"; cat "$TMP/$1.log"; exit 1
}
forget() {  # PID: it has been waited for, cleanup must not signal it again
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
stop_server() { kill "$SPID"; wait "$SPID" 2>/dev/null || true; forget "$SPID"; }
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # jiffies, user + system
user_of() { awk '{print $14}' "/proc/$1/stat"; }
ns_of() { cat /proc/"$1"/task/*/schedstat | awk '{ n += $1 } END { printf "%.0f\n", n }'; }  # ns on CPU
# dnsperf for D seconds; prints "qps completed run_time".
load() {
  ip netns exec "$NS" taskset -c 1 dnsperf -s 127.0.0.1 -p $PORT -d "$TMP/hits" -l "$1" \
    -t 1 -T 1 -c 16 -q 512 > "$TMP/dnsperf.out" 2>&1 &
  local dp=$!
  wait $dp
  awk '/Queries completed:/ { done = $3 } /Queries per second:/ { qps = $4 }
       /Run time \(s\):/ { run = $4 } END { printf "%.0f %d %s\n", qps, done, run }' "$TMP/dnsperf.out"
}
# One measured run: prints "qps share qps_per_core cpu_us_per_query
# sched_us_per_query user_fraction load1". share and cpu_us come from
# /proc/PID/stat (jiffies, as bench/run.sh); sched_us from /proc/PID/schedstat
# (nanoseconds, summed over the server's threads; it should have one, but an
# io_uring worker thread would count).
measure() {
  local c0 c1 u0 u1 n0 n1 r
  c0=$(cpu_of "$SPID"); u0=$(user_of "$SPID"); n0=$(ns_of "$SPID")
  r=$(load "$DURATION")
  c1=$(cpu_of "$SPID"); u1=$(user_of "$SPID"); n1=$(ns_of "$SPID")
  echo "$r" | awk -v d=$((c1 - c0)) -v u=$((u1 - u0)) -v ns=$((n1 - n0)) -v hz="$HZ" \
      -v l="$(cut -d' ' -f1 /proc/loadavg)" '{
    share = d / hz / $3
    printf "%d %.3f %.0f %.2f %.2f %.2f %s\n", $1, share, (share > 0 ? $1 / share : 0),
      ($2 > 0 ? d / hz / $2 * 1e6 : 0), ($2 > 0 ? ns / 1e3 / $2 : 0), (d > 0 ? u / d : 0), l }'
}

echo "uptime: $(uptime)"
for s in $SERVERS; do : > "$TMP/runs.$s"; done
order=($SERVERS)
for pair in $(seq 1 "$PAIRS"); do
  for s in "${order[@]}"; do
    start_server "$s"
    load 1 >/dev/null  # warm-up
    row=$(measure)
    echo "$row" >> "$TMP/runs.$s"
    printf 'pair %d %-14s qps %s share %s qps/core %s cpu_us/q %s sched_us/q %s user %s load %s\n' \
      "$pair" "$s" $row
    stop_server
  done
  # Swap the order for the next pair: neither always runs first.
  order=($(printf '%s\n' "${order[@]}" | tac))
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
echo
printf '%-14s %9s %7s %10s %9s %11s %6s\n' server qps share qps/core "cpu_us/q" "sched_us/q" user
for s in $SERVERS; do
  printf '%-14s' "$s"
  widths=(9 7 10 9 11 6)
  for col in 1 2 3 4 5 6; do
    printf ' %*s' "${widths[col - 1]}" "$(cut -d' ' -f$col "$TMP/runs.$s" | median)"
  done
  echo
done
echo "medians of $PAIRS runs each, ${DURATION} s; uptime after: $(uptime)"
# The same pair's runs are seconds apart: their ratio cancels most of the drift.
first=${SERVERS%% *}
for s in $SERVERS; do
  [ "$s" = "$first" ] && continue
  paste -d' ' "$TMP/runs.$s" "$TMP/runs.$first" | awk '{ print $3 / $10 }' > "$TMP/ratio.$s"
  printf '%s / %s qps/core, per pair: median %.3f, range %.3f-%.3f\n' "$s" "$first" \
    "$(median < "$TMP/ratio.$s")" "$(sort -n "$TMP/ratio.$s" | head -1)" "$(sort -n "$TMP/ratio.$s" | tail -1)"
done

# Syscalls per query: perf counts every syscall entry of the server without
# slowing it; strace -c -f shows which calls (it slows the server, so batches
# grow and its per-query figure is a lower bound).
echo
STRACE_S=2
for s in $SERVERS; do
  start_server "$s"
  load 1 >/dev/null
  if command -v perf >/dev/null; then
    perf stat -e raw_syscalls:sys_enter -x, -o "$TMP/perf.out" -p "$SPID" &
    tp=$!
    PIDS+=("$tp")
    sleep 0.2
    r=$(load "$STRACE_S")
    kill -INT "$tp"; wait "$tp" 2>/dev/null || true; forget "$tp"
    calls=$(awk -F, '/raw_syscalls/ { print $1 }' "$TMP/perf.out")
    echo "$r" | awk -v s="$s" -v c="$calls" '{ printf "%-14s perf: %d syscalls, %d queries, %.3f syscalls/query (qps %d)\n", s, c, $2, c / $2, $1 }'
  fi
  if command -v strace >/dev/null; then
    strace -c -f -o "$TMP/strace.out" -p "$SPID" 2>/dev/null &
    tp=$!
    PIDS+=("$tp")
    sleep 0.5
    r=$(load "$STRACE_S")
    kill -INT "$tp"; wait "$tp" 2>/dev/null || true; forget "$tp"
    total=$(awk '$NF == "total" { print $4 }' "$TMP/strace.out")
    echo "$r" | awk -v s="$s" -v c="$total" '{ printf "%-14s strace: %d syscalls, %d queries, %.3f syscalls/query (qps %d under strace)\n", s, c, $2, c / $2, $1 }'
    awk '$NF != "total" && $4 ~ /^[0-9]+$/ { printf "    %-16s %s\n", $NF, $4 }' "$TMP/strace.out"
  fi
  stop_server
done
