#!/usr/bin/env bash
# Builds the container image with buildah and checks that it works: a Debian
# 12 base made locally (debootstrap, no registry), the Dockerfile built on it,
# then in the image: `localdns --version`, the entrypoint, root as the user,
# the shared libraries (every one the binary needs comes from a package of
# `scripts/install-deps.sh --run`, and every library listed there is needed),
# iptables (legacy and nft) and nft, and localdns serving a real answer on
# loopback, forwarded to a Knot DNS this script starts; then README.md's
# non-root Dockerfile built on the image, run as uid 65532 in a network
# namespace of the test's own (node setup with iptables-nft works and answers,
# iptables-legacy and no_new_privs fail as the README says). Prints the
# image's size and package count, and each phase's duration.
#   scripts/image-test.sh [--binary PATH]   the `prebuilt` target around PATH
#                                           (default build/ci/localdns, stripped
#                                           here): what CI runs
#   scripts/image-test.sh --full            the full multi-stage build, compiling
#                                           inside the image (the documented build)
# Needs root (buildah's vfs storage, chroot isolation). The debootstrap base is
# cached in build/image/ (delete build/image/base-*.tar to refresh it); the
# storage, containers and images this script makes are removed on exit.
# IMAGE_MAX_MB (default 100) is the largest image size that passes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

FULL=0 BINARY=build/ci/localdns
while [ $# -gt 0 ]; do
  case $1 in
    --full) FULL=1 ;;
    --binary)
      [ $# -ge 2 ] || { echo "image-test.sh: --binary needs a path" >&2; exit 2; }
      BINARY=$2
      shift
      ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "image-test.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "FAIL: the image test needs root (buildah vfs storage, chroot isolation) and CI=true"
    exit 1
  fi
  echo "SKIPPED: the image test needs root (buildah vfs storage, chroot isolation)"
  exit 77
fi
for tool in buildah debootstrap knotd dig strip ss tar ip iptables-nft-save; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (scripts/install-deps.sh installs it)"; exit 1; }
done
if [ $FULL -eq 0 ]; then
  [ -x "$BINARY" ] || { echo "FAIL: $BINARY is not an executable (build it, or pass --binary PATH)"; exit 1; }
fi
MAX_MB=${IMAGE_MAX_MB:-100}

START=$SECONDS PHASE="" PHASE_T0=$SECONDS
TIMES=()
phase() {  # phase NAME: ends the current phase (printing its duration) and starts NAME
  local now=$SECONDS
  if [ -n "$PHASE" ]; then
    TIMES+=("$(printf '%-12s %5d s' "$PHASE" $((now - PHASE_T0)))")
    echo "== $PHASE: $((now - PHASE_T0)) s"
  fi
  PHASE=$1 PHASE_T0=$now
  [ -z "$PHASE" ] || echo "== $PHASE"
}

mkdir -p build/image
id=$$
WORK=$(mktemp -d "$ROOT/build/image/run-XXXXXX")
STORE=$WORK/storage
B=(buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs)
BASE_IMAGE=localhost/localdns-test-base:$id
IMAGE=localhost/localdns-test:$id
CTRS=()
KNOT_PID="" RUN_PID="" KNOT2_PID="" NS=""

cleanup() {
  local rc=$?
  if [ -n "$RUN_PID" ]; then stop_localdns; fi
  for p in $KNOT_PID $KNOT2_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "$NS" ]; then ip netns del "$NS" 2>/dev/null || true; fi
  local t0=$SECONDS
  # The containers through buildah (it unmounts what they hold); the images
  # with the store this script made for itself: vfs keeps every layer as a
  # plain directory tree, and the whole store goes (never across a mount
  # point a run may have left behind).
  for c in "${CTRS[@]}"; do "${B[@]}" rm "$c" >/dev/null 2>&1 || true; done
  rm -rf --one-file-system "$WORK"
  echo "cleanup: $((SECONDS - t0)) s" >&2
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT

fail() {
  echo "FAIL: $*"
  local f
  for f in "$WORK/localdns.log" "$WORK/out/localdns.log"; do
    if [ -f "$f" ]; then echo "--- ${f#"$WORK/"} (last 20 lines)"; tail -20 "$f"; fi
  done
  exit 1
}

# --- the base: debootstrap --variant=minbase, trimmed as debian:bookworm-slim --
# The mirrors are the host's (deb822 .sources or one-line .list entries for
# bookworm and bookworm-security), else deb.debian.org.
mirror_for() {  # mirror_for SUITE
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$1" '
      /^[ \t]*$/ { if (ok && uri != "") { print uri; exit } ok = 0; uri = ""; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want) ok = 1 }
      /^Enabled:[ \t]*no/ { ok = 0; uri = ""; nope = 1 }
      END { if (ok && uri != "" && !nope) print uri }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v want="$1" '$1 == "deb" { u = ""; for (i = 2; i <= NF; i++) { if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; continue }
      if (u == "") u = $i; else { if ($i == want) print u; break } } }' "$f"
  done
}
MIRROR=$(mirror_for bookworm | head -1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(mirror_for bookworm-security | head -1)
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
BASE_TAR=build/image/base-bookworm-minbase.tar
BASE_STAMP="$MIRROR $SECURITY"

phase base
if [ -f "$BASE_TAR" ] && [ "$(cat "$BASE_TAR.mirror" 2>/dev/null)" = "$BASE_STAMP" ]; then
  echo "cached base $BASE_TAR (from $MIRROR)"
else
  rootfs=$WORK/rootfs
  echo "debootstrap --variant=minbase bookworm from $MIRROR"
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
  # As the official slim image: no documentation, manual pages or
  # translations (copyright files stay), no apt lists or downloaded packages.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/* \
    "$rootfs"/etc/apt/sources.list
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  tar -C "$rootfs" --numeric-owner -cf "$BASE_TAR.tmp" .
  rm -rf "$rootfs"
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  echo "$BASE_STAMP" >"$BASE_TAR.mirror"
fi
ctr=$("${B[@]}" from scratch)
CTRS+=("$ctr")
"${B[@]}" add "$ctr" "$BASE_TAR" / >/dev/null
"${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd bash "$ctr"
"${B[@]}" commit -q "$ctr" "$BASE_IMAGE" >/dev/null
"${B[@]}" rm "$ctr" >/dev/null

# --- the image -----------------------------------------------------------------
BUD=("${B[@]}" bud --isolation chroot --pull=never --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE")
if [ $FULL -eq 1 ]; then
  phase build-full
  "${BUD[@]}" -f Dockerfile . || fail "buildah bud (full multi-stage build) failed"
else
  phase build
  mkdir -p "$WORK/bin"
  strip -o "$WORK/bin/localdns" "$BINARY"
  "${BUD[@]}" --target prebuilt --build-context "localdns-bin=$WORK/bin" -f Dockerfile . ||
    fail "buildah bud --target prebuilt failed"
fi

phase inspect
entry=$("${B[@]}" inspect --type image --format "{{.OCIv1.Config.Entrypoint}}" "$IMAGE")
[ "$entry" = "[/usr/local/bin/localdns]" ] || fail "the entrypoint is $entry, not [/usr/local/bin/localdns]"
user=$("${B[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")
[ -z "$user" ] || [ "$user" = root ] || [ "$user" = 0 ] || fail "the image runs as '$user', not as root"
ctr=$("${B[@]}" from --pull=never "$IMAGE")
CTRS+=("$ctr")
run() { "${B[@]}" run --isolation chroot --network host "$ctr" -- "$@"; }

version=$(run /usr/local/bin/localdns --version) || fail "localdns --version failed in the image"
echo "in the image: $version"
grep -q '^localdns ' <<<"$version" || fail "localdns --version printed '$version'"
if [ $FULL -eq 1 ]; then
  from=CMakeLists.txt want="localdns $(sed -n 's/^project(localdns VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)"
else
  from=$BINARY want=$("$BINARY" --version)
fi
[ "$version" = "$want" ] || fail "the image's localdns says '$version', $from says '$want'"

mnt=$("${B[@]}" mount "$ctr")
for f in config/*; do
  cmp -s "$mnt/etc/localdns/$(basename "$f")" "$f" || fail "the image's /etc/localdns/$(basename "$f") is not $f"
done
"${B[@]}" umount "$ctr" >/dev/null
run /usr/local/bin/localdns --check-config /etc/localdns/standalone.yaml >/dev/null ||
  fail "the image's /etc/localdns/standalone.yaml does not pass --check-config"
for t in iptables-legacy iptables-nft ip6tables-legacy ip6tables-nft iptables-legacy-restore \
  iptables-nft-restore iptables-legacy-save iptables-nft-save nft; do
  run "$t" --version >/dev/null 2>&1 || fail "$t is missing from the image"
done

# Libraries: what the binary needs, by package, against the --run list.
runtime_list=$(bash -c 'source <(sed -n "/^runtime=(/,/)/p" scripts/install-deps.sh); echo "${runtime[@]}"')
needed=$(run sh -c 'ldd /usr/local/bin/localdns' | tee "$WORK/ldd") || fail "ldd failed in the image"
grep -q 'not found' <<<"$needed" && fail "the image lacks libraries: $(grep 'not found' <<<"$needed" | tr -s ' \t' ' ')"
# Only what localdns links itself (its ELF NEEDED entries, read on the host
# from the image's copy of the binary): the libraries those pull in come with
# their packages' dependencies.
run cat /usr/local/bin/localdns > "$WORK/localdns.bin" || fail "cannot read the binary out of the image"
direct=$(readelf -d "$WORK/localdns.bin" | awk '/\(NEEDED\)/ { gsub(/[][]/, "", $5); print $5 }')
[ -n "$direct" ] || fail "readelf found no NEEDED entries in localdns"
libs=$(for so in $direct; do
  awk -v so="$so" '$1 == so && $2 == "=>" && $3 ~ /^\// { print $3 }' "$WORK/ldd"
done)
pkgs=$(run sh -c 'for l in "$@"; do dpkg -S "$(readlink -f "$l")" 2>/dev/null || dpkg -S "$l"; done' sh $libs |
  cut -d: -f1 | sort -u)
# libc6 and libgcc-s1 are in every Debian base (libc6 needs libgcc-s1).
for p in $pkgs; do
  case " $runtime_list libc6 libgcc-s1 " in
    *" $p "*) ;;
    *) fail "localdns links a library of $p, which scripts/install-deps.sh --run does not list" ;;
  esac
done
# libsystemd0 is not linked: app/notify.cpp opens it (dlopen) when NOTIFY_SOCKET is set.
run sh -c 'for f in $(dpkg -L libsystemd0); do case $f in */libsystemd.so.0) [ -e "$f" ] && exit 0 ;; esac; done; exit 1' ||
  fail "the image lacks libsystemd.so.0, which localdns loads under systemd"
for p in $runtime_list; do
  case $p in iptables | nftables | libsystemd0) continue ;; esac
  grep -qx "$p" <<<"$pkgs" || fail "scripts/install-deps.sh --run lists $p, which localdns does not link"
done
echo "libraries from: $(echo $pkgs)"

# --- a real answer through the image ------------------------------------------
phase serve
port_free() { ! ss -Hlntu "( sport = :$1 )" | grep -q .; }
free_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_free "$p" && { echo "$p"; return; }
  done
  fail "no free port found"
}
KPORT=$(free_port)
mkdir -p "$WORK/knot"
cat >"$WORK/knot/zone" <<'ZONE'
$ORIGIN cluster.local.
$TTL 30
@ IN SOA ns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
@ IN NS ns
ns IN A 10.0.0.53
image-test.default.svc IN A 10.96.77.7
ZONE
knot_conf() {  # knot_conf DIR ADDRESS PORT: a config serving the zone in $WORK/knot/zone
  mkdir -p "$1"
  cp "$WORK/knot/zone" "$1/zone" 2>/dev/null || true
  cat >"$1/knot.conf" <<CONF
server:
  rundir: "$1"
  listen: $2@$3
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$1"
log:
  - target: stderr
    any: error
zone:
  - domain: cluster.local
    storage: "$1"
    file: "zone"
CONF
}
knot_conf "$WORK/knot" 127.0.0.1 "$KPORT"
knotd -c "$WORK/knot/knot.conf" >"$WORK/knot.log" 2>&1 &
KNOT_PID=$!
NAME=image-test.default.svc.cluster.local WANT=10.96.77.7
ask() { dig +short +time=1 +tries=1 "$@" "$NAME" A 2>/dev/null || true; }
for _ in $(seq 1 100); do
  [ "$(ask @127.0.0.1 -p "$KPORT")" = "$WANT" ] && break
  kill -0 "$KNOT_PID" 2>/dev/null || { cat "$WORK/knot.log"; fail "knotd exited"; }
  sleep 0.1
done
[ "$(ask @127.0.0.1 -p "$KPORT")" = "$WANT" ] || { cat "$WORK/knot.log"; fail "knotd does not answer $NAME"; }

LPORT=$(free_port)
[ "$LPORT" != "$KPORT" ] || LPORT=$(free_port)
# buildah run (chroot isolation) in the host's network and PID namespaces:
# localdns is its child; it is stopped by PID, with SIGTERM (a clean exit).
stop_localdns() {
  local p
  for p in $(cat "/proc/$RUN_PID/task/"*/children 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$RUN_PID" 2>/dev/null || true
  wait "$RUN_PID" 2>/dev/null || true
  RUN_PID=""
}
run /usr/local/bin/localdns --listen "127.0.0.1:$LPORT" --forward ".=udp://127.0.0.1:$KPORT" \
  --metrics off --health off --control-socket off >"$WORK/localdns.log" 2>&1 &
RUN_PID=$!
got=""
for _ in $(seq 1 150); do
  got=$(ask @127.0.0.1 -p "$LPORT")
  [ "$got" = "$WANT" ] && break
  kill -0 "$RUN_PID" 2>/dev/null || fail "localdns in the image exited"
  sleep 0.2
done
[ "$got" = "$WANT" ] || fail "localdns in the image answered '$got' for $NAME over UDP, not $WANT"
got=$(ask +tcp @127.0.0.1 -p "$LPORT")
[ "$got" = "$WANT" ] || fail "localdns in the image answered '$got' for $NAME over TCP, not $WANT"
echo "localdns in the image on 127.0.0.1:$LPORT answers $NAME A $got (UDP and TCP), from Knot DNS on :$KPORT"
stop_localdns

# --- as a non-root user, as README.md's "Container image" says ----------------
# Its Dockerfile snippet, built on this image; run in a network namespace of
# this test's own (with buildah in it: the host network of a chroot-isolated
# container is the namespace buildah runs in), with the pod's capabilities.
phase nonroot
snippet=$(awk '/^### Running it as a non-root user/ { s = 1 } s && /^```Dockerfile/ { d = 1; next }
  d && /^```/ { exit } d { print }' README.md)
grep -q '^FROM localdns$' <<<"$snippet" || fail "README.md has no non-root Dockerfile snippet (FROM localdns)"
mkdir -p "$WORK/nonroot"
sed "s|^FROM localdns\$|FROM $IMAGE|" <<<"$snippet" >"$WORK/nonroot/Dockerfile"
"${B[@]}" bud --isolation chroot --pull=never -t "$IMAGE-nonroot" -f "$WORK/nonroot/Dockerfile" "$WORK/nonroot" \
  >"$WORK/nonroot/bud.log" 2>&1 || { tail -20 "$WORK/nonroot/bud.log"; fail "the README's non-root Dockerfile does not build"; }
nr=$("${B[@]}" from --pull=never "$IMAGE-nonroot")
CTRS+=("$nr")
NS=ld-image-$id
ip netns add "$NS"
ip -n "$NS" link set lo up
KPORT2=5300
knot_conf "$WORK/knot2" 127.0.0.1 "$KPORT2"
ip netns exec "$NS" knotd -c "$WORK/knot2/knot.conf" >"$WORK/knot2.log" 2>&1 &
KNOT2_PID=$!
for _ in $(seq 1 100); do
  [ "$(ip netns exec "$NS" dig +short +time=1 +tries=1 @127.0.0.1 -p $KPORT2 "$NAME" A)" = "$WANT" ] && break
  sleep 0.1
done
# nonroot_run LOG [--wrap CMD] LOCALDNS-FLAGS...: localdns as the image's user in $NS
# (a bridge as its interface: not every kernel has the dummy module).
# LOG is written by the container itself (a directory of the test's, mounted
# at /out and writable by uid 65532), not copied out by buildah: buildah's
# chroot isolation can drop the output of a process that exits at once (seen
# here: the no_new_privs run's exit 1 with none of localdns's lines). buildah's
# own messages go to LOG.buildah.
nonroot_run() {
  local log=$1 wrap=()
  shift
  if [ "$1" = --wrap ]; then read -ra wrap <<<"$2"; shift 2; fi
  mkdir -p "$(dirname "$log")" && chmod 1777 "$(dirname "$log")"
  ip netns exec "$NS" "${B[@]}" run --isolation chroot --network host \
    --cap-add CAP_NET_ADMIN --cap-add CAP_NET_BIND_SERVICE --cap-add CAP_NET_RAW \
    -v /run/xtables.lock:/run/xtables.lock -v "$(dirname "$log"):/out" "$nr" -- \
    sh -c 'exec "$@" >"/out/$0" 2>&1' "$(basename "$log")" "${wrap[@]}" /usr/local/bin/localdns \
    --local-ip 169.254.20.10 --interface-kind bridge --forward ".=udp://127.0.0.1:$KPORT2" \
    --sync-interval 1h --metrics off --health off --control-socket off "$@" >"$log.buildah" 2>&1
}
# The pod mounts the node's lock (hostPath, FileOrCreate): so does this test.
touch /run/xtables.lock
uid=$("${B[@]}" run --isolation chroot "$nr" -- id -u)
[ "$uid" = 65532 ] || fail "the non-root image runs as uid $uid, not 65532"
nonroot_run "$WORK/out/localdns.log" --rules-backend iptables-nft &
RUN_PID=$!
got=""
for _ in $(seq 1 150); do
  got=$(ip netns exec "$NS" dig +short +time=1 +tries=1 @169.254.20.10 "$NAME" A 2>/dev/null || true)
  [ "$got" = "$WANT" ] && break
  kill -0 "$RUN_PID" 2>/dev/null || fail "localdns as uid 65532 (iptables-nft) exited"
  sleep 0.2
done
[ "$got" = "$WANT" ] || fail "localdns as uid 65532 answered '$got' on 169.254.20.10:53, not $WANT"
ip netns exec "$NS" iptables-nft-save -t raw | grep -q 'localdns:' ||
  fail "localdns as uid 65532 installed no iptables-nft rules"
echo "as uid 65532 with file capabilities: interface, iptables-nft rules, 169.254.20.10:53 answers $got"
stop_localdns
rc=0
nonroot_run "$WORK/out/legacy.log" --rules-backend iptables-legacy || rc=$?
[ $rc -eq 1 ] && grep -q 'iptables-legacy.*Permission denied' "$WORK/out/legacy.log" ||
  { cat "$WORK/out/legacy.log"*; fail "iptables-legacy as uid 65532 did not fail as the README says (exit $rc)"; }
echo "as uid 65532, iptables-legacy fails: $(grep -m1 -o 'iptables-legacy[^[]*Permission denied' "$WORK/out/legacy.log")"
rc=0
nonroot_run "$WORK/out/nnp.log" --wrap "setpriv --no-new-privs" --rules-backend iptables-nft || rc=$?
[ $rc -eq 1 ] && grep -q 'managing interfaces needs CAP_NET_ADMIN' "$WORK/out/nnp.log" ||
  { cat "$WORK/out/nnp.log"*; fail "with no_new_privs, localdns as uid 65532 did not fail as the README says (exit $rc)"; }
echo "as uid 65532 with no_new_privs (allowPrivilegeEscalation: false): node setup refused"

phase report
size=$("${B[@]}" images --format '{{.Size}}' "$IMAGE" | head -1)
count=$(run sh -c 'dpkg -l | grep -c ^ii')
bytes=$(du -sb "$("${B[@]}" mount "$ctr")" | cut -f1)
"${B[@]}" umount "$ctr" >/dev/null
mb=$(((bytes + 999999) / 1000000))
echo "image: $size ($mb MB of files), $count packages ($([ $FULL -eq 1 ] && echo full build || echo "prebuilt $BINARY"))"
[ "$mb" -le "$MAX_MB" ] || fail "the image holds $mb MB, over IMAGE_MAX_MB=$MAX_MB"
phase ""
printf '%s\n' "${TIMES[@]}"
echo "image test passed in $((SECONDS - START)) s"
