#!/usr/bin/env bash
# localdns as root in a network namespace: after start CapEff, CapPrm and
# CapBnd of every thread hold exactly net_admin and net_bind_service (and
# net_raw with iptables-legacy), CapInh and CapAmb are 0, and the sync loop
# still restores a deleted rule through iptables-restore/nft. Standalone on an
# unprivileged port: nothing at all.
#   privileges_test.sh LOCALDNS
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  [ "${CI:-}" = true ] && { echo "FAIL: needs root (network namespaces); CI=true does not allow skipping"; exit 1; }
  echo "SKIPPED: needs root (network namespaces)"; exit 77
fi
LOCALDNS=$(realpath "$1")
PATH=$PATH:/usr/sbin:/sbin
NS=ld-caps-$$
TMP=$(mktemp -d /tmp/localdns-caps-XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && { kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$TMP/log" ] && tail -20 "$TMP/log"; exit 1; }
in_ns() { ip netns exec "$NS" "$@"; }

# Every thread's sets: "EFF PRM BND INH AMB" lines, one per thread.
thread_sets() {
  for t in /proc/$PID/task/*; do
    awk '/^CapEff/{e=$2} /^CapPrm/{p=$2} /^CapBnd/{b=$2} /^CapInh/{i=$2} /^CapAmb/{a=$2} END{print e, p, b, i, a}' "$t/status"
  done | sort -u
}
start() {  # ARGS...
  : >"$TMP/log"
  # nsenter execs localdns itself (ip netns exec forks): $! is its pid.
  nsenter --net="/run/netns/$NS" "$LOCALDNS" "$@" >"$TMP/log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$TMP/log" && return 0
    kill -0 "$PID" 2>/dev/null || fail "localdns exited: $*"
    sleep 0.1
  done
  fail "localdns did not start: $*"
}
stop() { kill -TERM "$PID"; wait "$PID" || fail "exit status $?"; PID=""; }
# The drop happens before any other thread starts, so each thread inherits
# the reduced sets: wait for the dropping line and for the workers' threads.
await_threads() {  # WHAT
  for _ in $(seq 100); do
    grep -q "capabilities:" "$TMP/log" && [ "$(ls /proc/$PID/task | wc -l)" -gt 1 ] && return 0
    sleep 0.1
  done
  fail "$1: no capabilities line, or a single thread, after 10 s"
}

fresh_ns() {  # iptables-legacy's tables outlive its rules: a new namespace each time
  ip netns del "$NS" 2>/dev/null || true
  ip netns add "$NS"
  in_ns ip link set lo up
}
for backend in iptables-legacy nftables; do
  fresh_ns
  cat >"$TMP/conf.yaml" <<CONF
node:
  local_addresses: ["169.254.20.10"]
  interface: {setup: true, name: ldcaps0, kind: bridge}
  rules: {setup: true, backend: $backend, fallback: off}
  sync_interval: 1s
metrics: off
health: off
listen: []
control_socket: off
forward:
  - zones: ["."]
    servers: ["127.0.0.1:9"]
CONF
  start --config "$TMP/conf.yaml"
  await_threads "$backend"
  if [ $backend = iptables-legacy ]; then mask=0000000000003400; else mask=0000000000001400; fi
  sets=$(thread_sets)
  [ "$sets" = "$mask $mask $mask 0000000000000000 0000000000000000" ] ||
    fail "$backend: thread capability sets: $sets (want $mask in effective, permitted, bounding)"
  # Delete one of localdns's rules: the sync loop restores it.
  if [ $backend = iptables-legacy ]; then
    count() { in_ns iptables-legacy-save | grep -c '"localdns:' || true; }
    want=$(count)
    in_ns iptables-legacy -w -t raw -D PREROUTING 1
  else
    count() { in_ns nft list table inet localdns | grep -c 'localdns:' || true; }
    want=$(count)
    h=$(in_ns nft -a list table inet localdns | grep 'localdns:' | head -1 | sed 's/.*# handle //')
    ch=$(in_ns nft -a list table inet localdns | awk -v h="# handle $h" '/chain /{c=$2} index($0,h){print c; exit}')
    in_ns nft delete rule inet localdns "$ch" handle "$h"
  fi
  [ "$(count)" -lt "$want" ] || fail "$backend: the rule was not deleted"
  ok=""
  for _ in $(seq 100); do [ "$(count)" -eq "$want" ] && { ok=1; break; }; sleep 0.1; done
  [ -n "$ok" ] || fail "$backend: the sync loop did not restore the rule within 10 s"
  stop
  echo "ok: $backend: $mask in every thread, deleted rule restored"
done

fresh_ns
start --listen 127.0.0.1:25353 --forward .=udp://127.0.0.1:9 --control off --metrics off --health off
await_threads standalone
sets=$(thread_sets)
z=0000000000000000
[ "$sets" = "$z $z $z $z $z" ] || fail "standalone: $sets"
grep -q "capabilities: kept none" "$TMP/log" || fail "standalone: no log line"
stop
echo "ok: standalone on 127.0.0.1:25353 as root keeps no capability"
