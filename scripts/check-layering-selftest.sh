#!/usr/bin/env bash
# Self-test of scripts/check-layering.py on throw-away trees: a clean tree
# passes; a forbidden include, a config include of a non-settings header, and
# a file over 600 lines each fail with their one line; an allow-list entry
# lets a known violation pass.
set -euo pipefail
check="$(cd "$(dirname "$0")" && pwd)/check-layering.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect NAME WANT_RC [PATTERN]: runs the check on $tree; the exit status must
# be WANT_RC and, when given, PATTERN (grep -E) must be in its output.
expect() {
  local name=$1 want=$2 pattern=${3:-} rc=0 out
  out=$(python3 "$check" --root "$tree" "${extra[@]}" 2>&1) || rc=$?
  if [ "$rc" -ne "$want" ]; then
    bad "$name: exit $rc, want $want; output: $out"
  elif [ -n "$pattern" ] && ! grep -Eq "$pattern" <<<"$out"; then
    bad "$name: output lacks /$pattern/: $out"
  else
    echo "ok: $name"
  fi
}
fresh() {
  tree="$tmp/$1"
  extra=()
  mkdir -p "$tree/src/dns" "$tree/src/upstream" "$tree/src/config" "$tree/include/localdns/cache"
  printf '#include <localdns/util/endpoint.hpp>\nint dns_a;\n' > "$tree/src/dns/a.cpp"
  printf '#include <localdns/dns/message.hpp>\n#include <localdns/metrics/top.hpp>\n' \
    > "$tree/src/upstream/b.cpp"
  printf '#include <localdns/upstream/settings.hpp>\n#include "private.hpp"\n' \
    > "$tree/src/config/c.cpp"
  printf '#include <localdns/dns/name.hpp>\n' > "$tree/include/localdns/cache/d.hpp"
}

fresh clean
expect "allowed includes pass" 0 "check-layering: ok"

fresh forbidden
printf '#include <localdns/util/endpoint.hpp>\n#include <localdns/config/config.hpp>\n' \
  > "$tree/src/dns/a.cpp"
expect "dns including config fails" 1 "^src/dns/a.cpp:2: dns may not include config"

fresh header
printf '#include <localdns/dns/name.hpp>\n#include "localdns/upstream/exchange.hpp"\n' \
  > "$tree/include/localdns/cache/d.hpp"
expect "a public header including a forbidden module fails" 1 \
  "^include/localdns/cache/d.hpp:2: cache may not include upstream"

fresh config_settings
printf '#include <localdns/server/tcp_listener.hpp>\n' > "$tree/src/config/c.cpp"
expect "config including the server's machinery fails" 1 "^src/config/c.cpp:1: config may not include server"

fresh settings_leaf
mkdir -p "$tree/include/localdns/server"
printf '#include <localdns/cache/packet_cache.hpp>\n' > "$tree/include/localdns/server/settings.hpp"
expect "a settings header including more than dns/ and util/ fails" 1 \
  "^include/localdns/server/settings.hpp:1: server may not include cache"

fresh config_other
printf '#include <localdns/upstream/exchange.hpp>\n' > "$tree/src/config/c.cpp"
expect "config including a module header other than settings.hpp fails" 1 \
  "^src/config/c.cpp:1: config may not include upstream"

fresh size
seq 601 | sed 's|^|// |' > "$tree/src/dns/long.cpp"
expect "a file over 600 lines fails" 1 "^src/dns/long.cpp: 601 lines, over 600"
seq 600 | sed 's|^|// |' > "$tree/src/dns/long.cpp"
expect "a file of 600 lines passes" 0

fresh allowed
printf '#include <localdns/config/config.hpp>\n' > "$tree/src/dns/a.cpp"
mkdir -p "$tree/scripts"
printf '# known\nsrc/dns/a.cpp: localdns/config/config.hpp\nsrc/dns/gone.cpp: size\n' \
  > "$tree/scripts/layering-allow.txt"
expect "an allow-listed violation passes, a stale entry is reported" 0 "stale allow-list entry.*gone"
extra=(--strict)
expect "a stale entry fails under --strict" 1

[ "$fails" -eq 0 ] || { echo "$fails self-test(s) failed"; exit 1; }
echo "check-layering self-test: all passed"
