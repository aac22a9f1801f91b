#!/usr/bin/env bash
# Installs the Debian 12 packages localdns needs to build, test and run.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --build  build dependencies only (the image's build stage)
#   scripts/install-deps.sh --run    runtime libraries only (container image)
set -euo pipefail

# The libraries localdns links (ldd; libc6 and libgcc-s1 are in every Debian
# base), iptables and nftables: node setup drives them for the NOTRACK rules.
# libsystemd: sd_notify readiness under systemd (Type=notify).
runtime=(libstdc++6 libyaml-cpp0.7 libspdlog1.10 libfmt9 libnl-3-200 libnl-route-3-200 libnl-nf-3-200
  libprometheus-cpp-core1.0 libsystemd0 iptables nftables)
build=(
  build-essential cmake ninja-build pkg-config clang-format
  libboost1.81-dev libldns-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libnl-3-dev libnl-route-3-dev libnl-nf-3-dev prometheus-cpp-dev libsystemd-dev
  catch2 libbenchmark-dev clang-14 libclang-rt-14-dev
  knot dnsutils iproute2 iptables nftables util-linux
  systemd  # systemd-analyze verify/security for deploy/systemd/localdns.service (tests)
)
# buildah and debootstrap: scripts/image-test.sh builds the container image
# from a Debian base it makes locally.
image=(buildah debootstrap)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

want=("${build[@]}" "${image[@]}")
if [ "${1:-}" = "--run" ]; then want=("${runtime[@]}"); fi
if [ "${1:-}" = "--build" ]; then want=("${build[@]}"); fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The knot package starts a system knotd on port 53; the tests run their own.
if [ -x /usr/bin/systemctl ] && systemctl is-active --quiet knot 2>/dev/null; then
  $sudo systemctl disable --now knot || true
fi
