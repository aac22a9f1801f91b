# Workload E of bench/run.sh (sourced by it): latency at fixed rates with
# bench/latency/paced_client. Uses run.sh's NS, PORT, SPID, KNOT, HZ, TMP,
# DURATION, RESULTS, idle, E_RATES, E_RT, E_TICK_US, cpu_of, busy_total and
# rss_kib. bench/README.md describes the workload and why it runs SCHED_FIFO.

# E, latency: one paced-client run at RATE against the running server, sending
# on 100 us ticks (one query per tick at 10,000/s, five at 50,000/s: a client
# woken for every query at 50,000/s would need most of its core). Prints
# "qps cpu_share lost mean_ms 0 other_cpu received p50 p99 p99.9 max
# sender_p99 sender_max sent" (ms; qps = replies per second of the send
# schedule; other_cpu as in measure(), the client's own CPU time taken out).
measure_latency() {  # RATE
  local rate=$1 c0 b0 k0 t0 c1 b1 k1 t1 rt=()
  [ "$E_RT" -eq 1 ] && rt=(chrt -f 20)
  c0=$(cpu_of "$SPID"); k0=$(cpu_of "$KNOT"); b0=$(busy_total); t0=$(date +%s.%N)
  ip netns exec "$NS" "${rt[@]}" taskset -c 1 "$TMP/paced_client" -s 127.0.0.1 -p $PORT -d "$TMP/hits" \
    -Q "$rate" -l "$DURATION" -c 64 -t 1 -g "$E_TICK_US" > "$TMP/paced.out" 2>&1 &
  wait $!
  c1=$(cpu_of "$SPID"); k1=$(cpu_of "$KNOT"); b1=$(busy_total); t1=$(date +%s.%N)
  awk -v dcpu=$((c1 - c0)) -v dknot=$((k1 - k0)) -v dbusy=$((b1 - b0)) -v hz=$HZ -v t0=$t0 -v t1=$t1 '
    /^RESULT / { for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] } }
    END {
      if (!("sent" in r)) { print "0 0 0 0 0 0 0 0 0 0 0 0 0 0"; exit }
      wall = t1 - t0; run = (r["run_s"] > 0 ? r["run_s"] : wall)
      other = (dbusy - dcpu - dknot) / hz / wall - r["cpu_s"] / wall; if (other < 0) other = 0
      printf "%.0f %.3f %d %.3f 0 %.2f %d %s %s %s %s %s %s %d\n", r["received"] / run, dcpu / hz / run,
        r["lost"], r["mean"], other, r["received"], r["p50"], r["p99"], r["p999"], r["max"],
        r["sender_p99"], r["sender_max"], r["sent"]
    }' "$TMP/paced.out"
}

# E for the running server $1 in repetition $2: every rate of E_RATES, each
# run repeated once when other processes took more than a quarter core. With
# E_RT the server (all its threads) and the client run SCHED_FIFO for E only.
latency_runs() {  # SERVER REP
  local s=$1 rep=$2 rate try row other
  [ "$E_RT" -eq 1 ] && chrt -a -f -p 20 "$SPID" >/dev/null
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
    # 14-15), then max, the sender's p99 and max lateness, and queries sent.
    echo "$s E$rate $rep $(echo "$row" | cut -d' ' -f1-10) $idle $(rss_kib "$SPID") $(echo "$row" | cut -d' ' -f11-)" >> "$RESULTS"
    echo "  rep $rep $s E at $rate/s: qps/share/lost/mean_ms/-/other/received/p50/p99/p99.9/max/sender_p99/sender_max/sent = $row"
  done
  [ "$E_RT" -eq 1 ] && chrt -a -o -p 0 "$SPID" >/dev/null
  return 0
}

