# Workload E of bench/run.sh (sourced by it): latency at fixed rates with
# bench/latency/paced_client. Uses run.sh's NS, PORT, SPID, KNOT, HZ, TMP,
# DURATION, RESULTS, idle, E_RATES, E_RT, E_TICK_US, cpu_of, busy_total and
# rss_kib. bench/README.md describes the workload and why it runs SCHED_FIFO.

# E, latency: one paced-client run at RATE against the running server, sending
# on 100 us ticks (one query per tick at 10,000/s, five at 50,000/s: a client
# woken for every query at 50,000/s would need most of its core). Prints
# "qps cpu_share lost mean_ms 0 other_cpu received p50 p99 p99.9 max
# sender_p99 sender_max sent steal_ms" (ms; qps = replies per second of the
# send schedule; other_cpu as in measure(), the client's own CPU time taken
# out; steal_ms = the time the hypervisor ran something else on either CPU,
# /proc/stat's steal, summed over the two).
steal_total() { awk '/^cpu[01] /{s += $9} END {print s}' /proc/stat; }
measure_latency() {  # RATE
  local rate=$1 c0 b0 k0 t0 s0 c1 b1 k1 t1 s1 rt=()
  [ "$E_RT" -eq 1 ] && rt=(chrt -f 20)
  c0=$(cpu_of "$SPID"); k0=$(cpu_of "$KNOT"); b0=$(busy_total); s0=$(steal_total); t0=$(date +%s.%N)
  ip netns exec "$NS" "${rt[@]}" taskset -c 1 "$TMP/paced_client" -s 127.0.0.1 -p $PORT -d "$TMP/hits" \
    -Q "$rate" -l "$DURATION" -c 64 -t 1 -g "$E_TICK_US" > "$TMP/paced.out" 2>&1 &
  wait $!
  c1=$(cpu_of "$SPID"); k1=$(cpu_of "$KNOT"); b1=$(busy_total); s1=$(steal_total); t1=$(date +%s.%N)
  awk -v dcpu=$((c1 - c0)) -v dknot=$((k1 - k0)) -v dbusy=$((b1 - b0)) -v dsteal=$((s1 - s0)) -v hz=$HZ -v t0=$t0 -v t1=$t1 '
    /^RESULT / { for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] } }
    END {
      if (!("sent" in r)) { print "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"; exit }
      wall = t1 - t0; run = (r["run_s"] > 0 ? r["run_s"] : wall)
      other = (dbusy - dcpu - dknot) / hz / wall - r["cpu_s"] / wall; if (other < 0) other = 0
      printf "%.0f %.3f %d %.3f 0 %.2f %d %s %s %s %s %s %s %d %.0f\n", r["received"] / run, dcpu / hz / run,
        r["lost"], r["mean"], other, r["received"], r["p50"], r["p99"], r["p999"], r["max"],
        r["sender_p99"], r["sender_max"], r["sent"], dsteal * 1000 / hz
    }' "$TMP/paced.out"
}

# --halt-poll NS: the guest's cpuidle-haltpoll driver (a KVM guest) polls an
# idle vCPU for up to NS before it halts; a halted vCPU is woken by the host,
# which on this machine takes from tens of microseconds to milliseconds. Set for
# E only, and put back after each E (and by run.sh's cleanup on exit).
HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns HALT_POLL_SAVED=""
halt_poll_set() {
  [ -n "$E_HALT_POLL" ] || return 0
  [ -w "$HALT_POLL" ] || { echo "--halt-poll: no $HALT_POLL (not a KVM guest with cpuidle-haltpoll)"; exit 2; }
  HALT_POLL_SAVED=$(cat "$HALT_POLL")
  echo "$E_HALT_POLL" > "$HALT_POLL"
}
halt_poll_restore() {
  [ -n "$HALT_POLL_SAVED" ] || return 0
  echo "$HALT_POLL_SAVED" > "$HALT_POLL"
  HALT_POLL_SAVED=""
}
halt_poll_now() { cat "$HALT_POLL" 2>/dev/null || echo none; }

# E for the running server $1 in repetition $2: every rate of E_RATES, each
# run repeated once when other processes took more than a quarter core. With
# E_RT the server (all its threads) and the client run SCHED_FIFO for E only.
latency_runs() {  # SERVER REP
  local s=$1 rep=$2 rate try row other
  [ "$E_RT" -eq 1 ] && chrt -a -f -p 20 "$SPID" >/dev/null
  halt_poll_set
  for rate in $E_RATES; do
    for try in 1 2; do
      row=$(measure_latency "$rate")
      other=$(echo "$row" | awk '{print $6}')
      if [ "$try" -eq 1 ] && awk -v o="$other" 'BEGIN { exit !(o > 0.25) }'; then
        echo "  $s E at $rate/s: other processes used $other of a core; repeating"
        continue
      fi
      break
    done
    # Columns as for the other workloads (p50 p99 p99.9 in 11-13, RSS in
    # 14-15), then max, the sender's p99 and max lateness, queries sent and
    # the hypervisor's steal.
    echo "$s E$rate $rep $(echo "$row" | cut -d' ' -f1-10) $idle $(rss_kib "$SPID") $(echo "$row" | cut -d' ' -f11-)" >> "$RESULTS"
    echo "  rep $rep $s E at $rate/s: qps/share/lost/mean_ms/-/other/received/p50/p99/p99.9/max/sender_p99/sender_max/sent/steal_ms = $row"
  done
  halt_poll_restore
  [ "$E_RT" -eq 1 ] && chrt -a -o -p 0 "$SPID" >/dev/null
  return 0
}

