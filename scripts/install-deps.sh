#!/usr/bin/env bash
# Installs the Debian 12 packages localdns needs to build, test and run.
#   scripts/install-deps.sh          build and test dependencies
#   scripts/install-deps.sh --build  build dependencies only (the image's build stage)
#   scripts/install-deps.sh --run    runtime libraries only (container image)
set -euo pipefail

# The libraries localdns links (ldd; libc6 and libgcc-s1 are in every Debian
# base), iptables and nftables: node setup drives them for the NOTRACK rules.
# libsystemd: sd_notify readiness under systemd (Type=notify), loaded (dlopen) only
# when NOTIFY_SOCKET is set, so ldd does not list it. libcap-ng: dropping the
# capabilities a run no longer needs, bounding set included.
# zlib1g: the CRC-32 of the warm-restart cache file.
runtime=(libstdc++6 libyaml-cpp0.7 libspdlog1.10 libfmt9 libnl-3-200 libnl-route-3-200 libnl-nf-3-200
  libprometheus-cpp-core1.0 libsystemd0 libcap-ng0 zlib1g iptables nftables)
# What compiling localdns needs (the image's build stage installs only these).
build=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libnl-3-dev libnl-route-3-dev libnl-nf-3-dev prometheus-cpp-dev libsystemd-dev libcap-ng-dev
  zlib1g-dev
)
# What the tests, the benchmark, fuzzing and the format check add.
test=(
  clang-format libldns-dev catch2 libbenchmark-dev clang-14 libclang-rt-14-dev
  knot dnsutils iproute2 iptables nftables util-linux
  python3     # scripts/check-layering.py: the include graph and the 600-line rule
  systemd     # systemd-analyze verify/security for deploy/systemd/localdns.service
  prometheus  # promtool: the alert rules in deploy/monitoring
  dnsperf curl  # tests/soak/soak.sh: the load, and the metrics it reads
  # tests/e2e/search_path_e2e.sh: the musl and Go resolvers' clients (built
  # offline, the standard library only).
  musl-tools golang-go
  # scripts/image-test.sh builds the container image from a Debian base it
  # makes locally.
  buildah debootstrap
)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

mode="${1:-all}"
case "$mode" in
  all) want=("${build[@]}" "${test[@]}") ;;
  --build) want=("${build[@]}") ;;
  --run) want=("${runtime[@]}") ;;
  *) echo "usage: $0 [--build|--run]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# For the deploy/ tests (prometheus above: promtool): kubectl (kustomize) from
# Debian's kubernetes-client, node and npm from Debian, each unless another
# package already provides the command (a kubectl or a Node.js from elsewhere
# would conflict with Debian's).
if [ "$mode" = all ]; then
  command -v kubectl >/dev/null || missing+=(kubernetes-client)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi

npm_deps() {
  # The deploy/ tests' npm packages (kubernetes-models), pinned by
  # tests/deploy/package-lock.json; skipped when node_modules matches it, and
  # when the tree is not here (the image's build stage copies only this script).
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/deploy"
  [ "$mode" = all ] && [ -f "$dir/package-lock.json" ] || return 0
  if [ -f "$dir/node_modules/.package-lock.json" ] &&
     [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then return 0; fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

if [ ${#missing[@]} -eq 0 ]; then npm_deps; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The knot package starts a system knotd on port 53; the tests run their own.
if [ -x /usr/bin/systemctl ] && systemctl is-active --quiet knot 2>/dev/null; then
  $sudo systemctl disable --now knot || true
fi
npm_deps
