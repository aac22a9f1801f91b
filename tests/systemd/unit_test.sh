#!/usr/bin/env bash
# deploy/systemd/localdns.service passes `systemd-analyze verify` with no
# message at all (unknown keys and bad values are only warnings there, with
# exit status 0, so any output fails the test), keeps its exposure score
# (`systemd-analyze security --offline`) at or below 4.0, starts the binary
# and config the README installs, and that config passes --check-config.
# systemd need not be running: verify reads unit files only. It insists that
# ExecStart's binary exists, so the unit is verified as a copy whose
# /usr/local/bin/localdns is the binary under test, and nothing else changed.
#   unit_test.sh LOCALDNS SOURCE_DIR
set -euo pipefail

LOCALDNS=$(realpath "$1") SRC=$2
UNIT=$SRC/deploy/systemd/localdns.service
CONFIG=$SRC/config/bare-metal.yaml
command -v systemd-analyze >/dev/null || { echo "FAIL: systemd-analyze not found (Debian: systemd)"; exit 1; }
TMP=$(mktemp -d /tmp/localdns-unit-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# verify FILE: exit status 0 and not one line of output.
verify() {
  local out rc=0
  out=$(systemd-analyze verify "$1" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
    echo "systemd-analyze verify $(basename "$1"): exit $rc"
    echo "$out"
    return 1
  fi
}

grep -qx 'ExecStart=/usr/local/bin/localdns --config /etc/localdns/bare-metal.yaml' "$UNIT" ||
  fail "ExecStart is not the installed binary with /etc/localdns/bare-metal.yaml (README install steps)"
sed "s|^ExecStart=/usr/local/bin/localdns |ExecStart=$LOCALDNS |" "$UNIT" >"$TMP/localdns.service"
[ "$(diff "$UNIT" "$TMP/localdns.service" | grep -c '^>')" = 1 ] || fail "the copy differs in more than ExecStart"
verify "$TMP/localdns.service" || fail "the unit does not verify"
echo "ok: systemd-analyze verify is silent"

# The check catches what it should: a misspelt key, a bad value, a missing binary.
mkdir "$TMP/broken"
sed 's/^Type=notify/Typ=notify/' "$TMP/localdns.service" >"$TMP/broken/localdns.service"
verify "$TMP/broken/localdns.service" >/dev/null && fail "a misspelt key passed verify"
sed 's/^Restart=on-failure/Restart=sometimes/' "$TMP/localdns.service" >"$TMP/broken/localdns.service"
verify "$TMP/broken/localdns.service" >/dev/null && fail "a bad Restart= value passed verify"
sed "s|^ExecStart=$LOCALDNS|ExecStart=$TMP/no-such-localdns|" "$TMP/localdns.service" >"$TMP/broken/localdns.service"
verify "$TMP/broken/localdns.service" >/dev/null && fail "a missing ExecStart binary passed verify"
echo "ok: a misspelt key, a bad value and a missing binary fail verify"

# Hardening does not silently erode: every setting the README documents is there.
for line in Type=notify WatchdogSec=30s User=localdns ProtectSystem=strict RuntimeDirectory=localdns \
  ReadWritePaths=/run/xtables.lock NoNewPrivileges=yes Restart=on-failure \
  'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW' \
  'AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW' \
  'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK'; do
  grep -qxF "$line" "$UNIT" || fail "missing: $line"
done
out=$(systemd-analyze security --offline=yes --threshold=40 "$TMP/localdns.service" 2>&1) ||
  fail "exposure above 4.0: $(echo "$out" | tail -1)"
echo "ok: $(echo "$out" | grep -o 'Overall exposure level.*')"

# The config the unit starts: valid once the install has written the upstream
# file (here a copy reading a temporary one instead; nothing else changed),
# its control socket where the unit lets localdns write (RuntimeDirectory=),
# and a loop through the upstream file is refused, naming the key and file.
grep -qx 'resolv_conf: /etc/localdns/upstream.conf' "$CONFIG" || fail "resolv_conf is not /etc/localdns/upstream.conf"
grep -qx 'control_socket: /run/localdns/localdns.sock' "$CONFIG" || fail "control_socket is not under /run/localdns"
check() { # check UPSTREAM_FILE: --check-config on the copy; output, exit status in $rc
  sed "s|^resolv_conf: /etc/localdns/upstream.conf|resolv_conf: $1|" "$CONFIG" >"$TMP/bare-metal.yaml"
  rc=0
  out=$("$LOCALDNS" --check-config "$TMP/bare-metal.yaml" 2>&1) || rc=$?
}
printf '# the host upstreams\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n' >"$TMP/upstream.conf"
check "$TMP/upstream.conf"
[ "$rc" = 0 ] && [ "$out" = "$TMP/bare-metal.yaml: OK" ] || fail "--check-config bare-metal.yaml (exit $rc): $out"
echo "ok: $out"
printf 'nameserver 192.0.2.53\nnameserver 169.254.20.10\n' >"$TMP/loop.conf"
check "$TMP/loop.conf"
[ "$rc" = 2 ] || fail "an upstream file listing 169.254.20.10 passed --check-config (exit $rc): $out"
echo "$out" | grep -qF "forward[0].servers: 169.254.20.10:53 (from $TMP/loop.conf) is one of our own listen addresses" ||
  fail "the loop error does not name the key and the file: $out"
echo "ok: a loop is refused: $(echo "$out" | head -1)"
if [ ! -e /etc/localdns/upstream.conf ]; then
  rc=0
  out=$("$LOCALDNS" --check-config "$CONFIG" 2>&1) || rc=$?
  [ "$rc" = 2 ] && echo "$out" | grep -qF "cannot read /etc/localdns/upstream.conf" ||
    fail "a missing upstream file is not a clear error (exit $rc): $out"
  echo "ok: without the upstream file: $(echo "$out" | head -1)"
fi
