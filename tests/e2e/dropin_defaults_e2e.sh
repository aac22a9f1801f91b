#!/usr/bin/env bash
# node-cache's default paths, in a private mount namespace whose /etc is a
# copy (the host's /etc is never written): /etc/coredns/Corefile.base is read
# when node-cache flags are used, and only then; /etc/kube-dns is the default
# kube-dns ConfigMap; --config keeps the template out, with a warning; a run
# writes the rendered Corefile to /etc/Corefile, node-cache's default -conf.
#   dropin_defaults_e2e.sh LOCALDNS TEMPLATE
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "FAIL: the default-paths test needs root (a mount namespace) and CI=true"
    exit 1
  fi
  echo "SKIPPED: the default-paths test needs root (a mount namespace)"
  exit 77
fi

if [ "${1:-}" != "--inside" ]; then
  TMP=$(mktemp -d /tmp/localdns-dropin-e2e-XXXXXX)
  trap 'rm -rf "$TMP"' EXIT
  # The mounts die with the namespace's last process: nothing to unmount.
  status=0
  unshare --mount --propagation private "$0" --inside "$1" "$2" "$TMP" || status=$?
  exit $status
fi

shift
LOCALDNS=$1 TEMPLATE=$2 TMP=$3
mkdir -p "$TMP/etc"
cp -a /etc/. "$TMP/etc/"
mount --bind "$TMP/etc" /etc
rm -rf /etc/coredns /etc/kube-dns /etc/Corefile
mkdir -p /etc/coredns
sed 's/__PILLAR__LOCAL__DNS__/169.254.20.10/g; s/__PILLAR__DNS__DOMAIN__/cluster.local/g; s/__PILLAR__DNS__SERVER__/10.96.0.10/g' \
  "$TEMPLATE" > /etc/coredns/Corefile.base
export KUBE_DNS_UPSTREAM_SERVICE_HOST=10.96.0.11

fail() { echo "FAIL: $*"; exit 1; }
out=$TMP/out err=$TMP/err

# node-cache flags and the default template: the template is read.
"$LOCALDNS" -localip 169.254.20.10,10.96.0.10 -upstreamsvc kube-dns-upstream --print-config >"$out" 2>"$err" ||
  fail "print-config with the default template: $(cat "$err")"
grep -q 'zones: \["cluster.local."\]' "$out" || fail "the default template was not read: $(cat "$out")"
grep -q '"10.96.0.11:53"' "$out" || fail "kube-dns-upstream's ClusterIP is missing"
echo "ok: node-cache flags read /etc/coredns/Corefile.base"

# /etc/kube-dns, the default -kubednscm.
mkdir -p /etc/kube-dns
echo '{"acme.local": ["10.150.0.1"]}' > /etc/kube-dns/stubDomains
"$LOCALDNS" -localip 169.254.20.10,10.96.0.10 -upstreamsvc kube-dns-upstream --print-config >"$out" 2>"$err" ||
  fail "print-config with /etc/kube-dns: $(cat "$err")"
grep -q 'zones: \["acme.local."\]' "$out" || fail "/etc/kube-dns/stubDomains was not read"
echo "ok: /etc/kube-dns is the default kube-dns ConfigMap"

# Without node-cache flags the template is not read.
"$LOCALDNS" --print-config --listen 127.0.0.1:5300 >"$out" 2>"$err" || fail "plain print-config: $(cat "$err")"
grep -q 'zones: \["cluster.local."\]' "$out" && fail "the template was read without node-cache flags"
echo "ok: without node-cache flags, no Corefile"

# --config wins over the default template, and says so.
echo 'listen: ["127.0.0.1:5300"]' > "$TMP/l.yaml"
"$LOCALDNS" --config "$TMP/l.yaml" -setupiptables=false --print-config >"$out" 2>"$err" ||
  fail "--config with a node-cache flag: $(cat "$err")"
grep -q 'zones: \["cluster.local."\]' "$out" && fail "--config: the template was read too"
grep -q "warning: --config $TMP/l.yaml is used; /etc/coredns/Corefile.base is not read" "$err" ||
  fail "--config: no warning about the template: $(cat "$err")"
echo "ok: --config keeps the template out, with a warning"

# A run writes the rendered Corefile to /etc/Corefile (node-cache's -corefile).
rm -rf /etc/kube-dns
port=$((20000 + RANDOM % 20000))
printf 'cluster.local {\n    bind 127.0.0.1\n    forward . __PILLAR__CLUSTER__DNS__\n    health 127.0.0.1:%s\n}\n' \
  "$((port + 1))" > /etc/coredns/Corefile.base
"$LOCALDNS" -setupinterface=false -setupiptables=false -upstreamsvc kube-dns-upstream \
  -dns.port "$port" -pidfile "$TMP/pid" --metrics off --control-socket off --threads 1 >"$TMP/log" 2>&1 &
lpid=$!
for _ in $(seq 100); do [ -s "$TMP/pid" ] && break; sleep 0.05; done
[ -s "$TMP/pid" ] || { kill -9 "$lpid" 2>/dev/null || true; fail "no pid file: $(cat "$TMP/log")"; }
grep -q "127.0.0.1:$port" "$TMP/log" || { kill -9 "$lpid"; fail "not on -dns.port: $(cat "$TMP/log")"; }
grep -q 'forward . 10.96.0.11' /etc/Corefile || { kill -9 "$lpid"; fail "/etc/Corefile: $(cat /etc/Corefile 2>&1)"; }
kill "$lpid"
wait "$lpid" || fail "exit status $? after SIGTERM: $(cat "$TMP/log")"
echo "ok: a run writes the rendered Corefile to /etc/Corefile"
