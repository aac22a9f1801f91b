#!/usr/bin/env bash
# localdns as deploy/systemd/localdns.service runs it, without systemd: user
# nobody (not root), only CAP_NET_ADMIN, CAP_NET_BIND_SERVICE and CAP_NET_RAW
# (bounding and ambient), no_new_privs, / and /run read-only but for the
# runtime directory /run/localdns and /run/xtables.lock (ProtectSystem=strict,
# RuntimeDirectory=, ReadWritePaths=). In a network namespace, with Knot DNS as
# the upstream, config/bare-metal.yaml sets up 169.254.20.10 with each rules
# backend, answers, `localdns ctl` finds its socket without flags, and SIGTERM
# removes everything. iptables-legacy needs the lock readable by localdns's
# group, which the test makes it by running the unit's own ExecStartPre= line;
# with the lock root's and 0600 (as iptables creates it) node setup fails,
# naming the lock. Then `localdns doctor` next to a systemd-resolved stub.
#   nonroot_test.sh LOCALDNS SOURCE_DIR
set -euo pipefail

if [ "${1:-}" = inner ]; then
  # In the test's network namespace and a private mount namespace, as root:
  #   inner LOCALDNS TMP CONFIG LOCK_MODE
  LOCALDNS=$2 TMP=$3 CONFIG=$4 LOCK_MODE=$5
  RUNAS=65534
  mount --make-rprivate /
  mount -t tmpfs -o mode=0755 tmpfs /run
  mkdir -m 0750 /run/localdns && chown $RUNAS:$RUNAS /run/localdns
  if [ "$LOCK_MODE" = group ]; then
    # The unit's own ExecStartPre= line, with uid 65534's group for localdns.
    pre=$(sed -n 's/^ExecStartPre=+//p' "$UNIT" | sed "s/chgrp localdns /chgrp $RUNAS /")
    [ -n "$pre" ] || { echo "NO_EXECSTARTPRE"; exit 0; }
    eval "$pre"
  else
    touch /run/xtables.lock && chmod 0600 /run/xtables.lock  # as iptables creates it
  fi
  for p in /run/localdns /run/xtables.lock; do mount --bind "$p" "$p"; done
  # systemd-resolved's list of servers, for the doctor run.
  mkdir -p /run/systemd/resolve && echo "nameserver 192.0.2.53" >/run/systemd/resolve/resolv.conf
  mount --bind "$TMP" "$TMP"  # the test's own files (the log) stay writable
  exec 3>"$TMP/localdns.log"
  # ProtectSystem=strict: everything read-only but the two paths above.
  mount -o remount,bind,ro /
  mount -o remount,bind,ro /run
  setpriv --reuid=$RUNAS --regid=$RUNAS --clear-groups --no-new-privs \
    --inh-caps=-all,+net_admin,+net_bind_service,+net_raw \
    --ambient-caps=-all,+net_admin,+net_bind_service,+net_raw \
    --bounding-set=-all,+net_admin,+net_bind_service,+net_raw \
    "$LOCALDNS" --config "$CONFIG" "${@:6}" >&3 2>&3 &
  pid=$!
  ok=""
  for _ in $(seq 100); do
    if [ "$(dig +short +time=1 +tries=1 @169.254.20.10 www.example.test 2>/dev/null)" = 192.0.2.80 ]; then ok=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$ok" ]; then
    kill -9 $pid 2>/dev/null || true
    wait $pid && rc=0 || rc=$?
    echo "NOANSWER exit=$rc"
    exit 0
  fi
  echo "ANSWER"
  grep CapEff "/proc/$pid/status" | sed 's/^/STATUS /'
  echo "UID $(awk '/^Uid:/ {print $3}' "/proc/$pid/status")"
  "$LOCALDNS" ctl stats >"$TMP/ctl.out" 2>&1 && echo "CTL ok" || echo "CTL fail: $(cat "$TMP/ctl.out")"
  if [ -n "${DOCTOR:-}" ]; then
    "$LOCALDNS" doctor --config "$CONFIG" >"$TMP/doctor.out" 2>&1 && rc=0 || rc=$?
    echo "DOCTOR $rc"
  fi
  nft list ruleset 2>/dev/null | grep -c 'localdns:' | sed 's/^/NFT /' || true
  iptables-legacy-save 2>/dev/null | grep -c 'localdns:' | sed 's/^/LEGACY /' || true
  iptables-nft-save 2>/dev/null | grep -c 'localdns:' | sed 's/^/XTNFT /' || true
  kill -TERM $pid
  wait $pid && rc=0 || rc=$?
  echo "EXIT $rc"
  nft list ruleset 2>/dev/null | grep -c 'localdns:' | sed 's/^/NFT_AFTER /' || true
  iptables-legacy-save 2>/dev/null | grep -c 'localdns:' | sed 's/^/LEGACY_AFTER /' || true
  iptables-nft-save 2>/dev/null | grep -c 'localdns:' | sed 's/^/XTNFT_AFTER /' || true
  exit 0
fi

LOCALDNS=$(realpath "$1") SRC=$2
if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = true ]; then
    echo "FAIL: the non-root service test needs root (namespaces, setpriv); CI=true does not allow skipping it"
    exit 1
  fi
  echo "SKIPPED: the non-root service test needs root (namespaces, setpriv)"
  exit 77
fi
PATH=$PATH:/usr/sbin:/sbin
for tool in ip setpriv unshare nft iptables-legacy-save iptables-nft-save knotd dig; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (scripts/install-deps.sh installs it)"; exit 1; }
done

NS=ld-sd-$$
TMP=$(mktemp -d /tmp/localdns-nonroot-XXXXXX)
chmod 0755 "$TMP"
KNOT=""
cleanup() {
  [ -n "$KNOT" ] && { kill -9 "$KNOT" 2>/dev/null || true; wait "$KNOT" 2>/dev/null || true; }
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  [ -f "$TMP/localdns.log" ] && { echo "--- localdns log"; tail -30 "$TMP/localdns.log"; }
  exit 1
}

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 192.0.2.53/32 dev lo
# This kernel may lack the dummy link type: bridge then, as the netns tests do.
KIND=dummy
if ! ip -n "$NS" link add ld-probe type dummy 2>/dev/null; then KIND=bridge; fi
ip -n "$NS" link del ld-probe 2>/dev/null || true

mkdir -p "$TMP/knot"
printf '$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 192.0.2.53\nwww IN A 192.0.2.80\n' >"$TMP/knot/zone"
cat >"$TMP/knot/knot.conf" <<CONF
server:
  rundir: "$TMP/knot"
  listen: 192.0.2.53@53
database:
  storage: "$TMP/knot"
log:
  - target: stderr
    any: error
zone:
  - domain: example.test
    storage: "$TMP/knot"
    file: "zone"
CONF
ip netns exec "$NS" knotd -c "$TMP/knot/knot.conf" >"$TMP/knot.log" 2>&1 &
KNOT=$!
for _ in $(seq 50); do
  [ -n "$(ip netns exec "$NS" dig +short +time=1 +tries=1 @192.0.2.53 www.example.test 2>/dev/null)" ] && break
  sleep 0.1
done

# config/bare-metal.yaml as shipped, but for the upstream file (the install
# writes /etc/localdns/upstream.conf) and, without dummy, the link kind.
echo "nameserver 192.0.2.53" >"$TMP/upstream.conf"
sed -e "s|^resolv_conf: /etc/localdns/upstream.conf|resolv_conf: $TMP/upstream.conf|" \
  -e "s|kind: dummy|kind: $KIND|" "$SRC/config/bare-metal.yaml" >"$TMP/bare-metal.yaml"
chmod 0644 "$TMP"/*.conf "$TMP/bare-metal.yaml"

scenario() {  # LOCK_MODE [localdns flags]
  UNIT=$SRC/deploy/systemd/localdns.service ip netns exec "$NS" unshare --mount "$0" inner "$LOCALDNS" "$TMP" "$TMP/bare-metal.yaml" "$@"
}
expect() {  # OUTPUT LINE
  grep -qxF "$2" <<<"$1" || fail "expected '$2' in: $1"
}

for backend in nftables iptables-nft iptables-legacy; do
  out=$(scenario group --rules-backend "$backend")
  expect "$out" ANSWER
  expect "$out" "UID 65534"
  # After start localdns keeps net_admin and net_bind_service, net_raw only
  # for iptables-legacy.
  case $backend in
    iptables-legacy) expect "$out" "STATUS CapEff:	0000000000003400" ;;
    *) expect "$out" "STATUS CapEff:	0000000000001400" ;;
  esac
  expect "$out" "CTL ok"
  case $backend in
    nftables) grep -qE '^NFT [1-9]' <<<"$out" || fail "$backend: no rules in nft: $out" ;;
    iptables-nft) grep -qE '^XTNFT [1-9]' <<<"$out" || fail "$backend: no iptables-nft rules: $out" ;;
    iptables-legacy) grep -qE '^LEGACY [1-9]' <<<"$out" || fail "$backend: no legacy rules: $out" ;;
  esac
  expect "$out" "EXIT 0"
  expect "$out" "NFT_AFTER 0"
  expect "$out" "LEGACY_AFTER 0"
  expect "$out" "XTNFT_AFTER 0"
  echo "ok: $backend as uid 65534 with three capabilities: answers, ctl, clean exit"
done

# The lock as iptables leaves it (root, 0600): nftables needs none...
out=$(scenario root --rules-backend nftables)
expect "$out" ANSWER
expect "$out" "EXIT 0"
echo "ok: nftables does not need the xtables lock"
# ...iptables-legacy cannot start, and says why.
out=$(scenario root --rules-backend iptables-legacy)
expect "$out" "NOANSWER exit=1"
grep -q "can't open lock file /run/xtables.lock: Permission denied" "$TMP/localdns.log" ||
  fail "iptables-legacy without lock access: the log does not name the lock"
echo "ok: iptables-legacy with a root-only lock fails: $(grep -m1 -o "node setup failed.*" "$TMP/localdns.log" | cut -c1-160)"

# `localdns doctor` on this host next to a systemd-resolved stub: another
# DNS server on 127.0.0.53:53 (a second localdns), the namespace's
# /etc/resolv.conf (ip netns exec mounts /etc/netns/NS/resolv.conf) first at
# the stub, then at localdns.
ip netns exec "$NS" "$LOCALDNS" --listen 127.0.0.53:53 --forward .=udp://192.0.2.53 --control off \
  --metrics off --health off >"$TMP/stub.log" 2>&1 &
STUB=$!
mkdir -p "/etc/netns/$NS"
NETNS_ETC=/etc/netns/$NS
trap '{ kill -9 $STUB; wait $STUB; } 2>/dev/null || true; rm -rf "$NETNS_ETC"; cleanup' EXIT
for _ in $(seq 50); do
  [ -n "$(ip netns exec "$NS" dig +short +time=1 +tries=1 @127.0.0.53 www.example.test 2>/dev/null)" ] && break
  sleep 0.1
done
printf 'nameserver 127.0.0.53\noptions edns0 trust-ad\n' >"$NETNS_ETC/resolv.conf"
out=$(DOCTOR=1 scenario group)
expect "$out" ANSWER
grep -q '^DOCTOR [12]$' <<<"$out" || fail "doctor with the host on resolved's stub: $out"
for line in "[warn] 4. Resolver configuration" \
  "systemd-resolved's stub listener is on 127.0.0.53:53 (/proc/net/udp)" \
  "systemd-resolved forwards to 192.0.2.53 (/run/systemd/resolve/resolv.conf)" \
  "/etc/resolv.conf names 127.0.0.53: host lookups go through systemd-resolved to 192.0.2.53, not through localdns" \
  "DNSStubListener=no in /etc/systemd/resolved.conf"; do
  grep -qF -- "$line" "$TMP/doctor.out" || { cat "$TMP/doctor.out"; fail "doctor: missing '$line'"; }
done
[ -n "${KEEP_DOCTOR:-}" ] && cp "$TMP/doctor.out" "$KEEP_DOCTOR"
echo "ok: doctor reports the stub in front of localdns and the two fixes"
printf 'nameserver 169.254.20.10\n' >"$NETNS_ETC/resolv.conf"
out=$(DOCTOR=1 scenario group)
expect "$out" ANSWER
for line in "[ok  ] 4. Resolver configuration" "nameserver 169.254.20.10: served by localdns" \
  "directly (and nss-resolve in nsswitch.conf) bypass localdns" "[ok  ] 5. localdns on this node"; do
  grep -qF -- "$line" "$TMP/doctor.out" || { cat "$TMP/doctor.out"; fail "doctor: missing '$line'"; }
done
echo "ok: doctor with /etc/resolv.conf at localdns: check 4 and 5 ok, the stub noted"
