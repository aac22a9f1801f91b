#!/usr/bin/env bash
# Builds a localdns overlay and fills its __PILLAR__...__ placeholders, as
# node-local-dns's installation does with sed. Prints the manifests.
#   deploy/render.sh --dns-server IP --upstream IP [--local-dns IP] [--domain D]
#                    [--no-traffic-distribution] OVERLAY
#     --local-dns   the link-local address pods ask (default 169.254.20.10)
#     --dns-server  the kube-dns Service's ClusterIP (iptables mode captures it)
#     --domain      the cluster domain (default cluster.local)
#     --upstream    the kube-dns-upstream Service's ClusterIP (localdns's misses)
#     --no-traffic-distribution  leave spec.trafficDistribution out of
#                   kube-dns-upstream (Kubernetes before 1.30 rejects the field)
# Example:
#   kubectl apply -f deploy/base/kube-dns-upstream.yaml
#   deploy/render.sh --dns-server "$(kubectl -n kube-system get svc kube-dns -o jsonpath='{.spec.clusterIP}')" \
#     --upstream "$(kubectl -n kube-system get svc kube-dns-upstream -o jsonpath='{.spec.clusterIP}')" \
#     deploy/overlays/iptables | kubectl apply -f -
# KUBECTL: the kubectl to build with (default: kubectl on PATH).
# Exit status 2 for a usage error or a placeholder left without a value.
set -euo pipefail

usage() { echo "render.sh: $*" >&2; sed -n '4,11p' "$0" >&2; exit 2; }
local_dns=169.254.20.10 dns_server="" domain=cluster.local upstream="" overlay="" traffic_distribution=1
while [ $# -gt 0 ]; do
  case "$1" in
    --local-dns|--dns-server|--domain|--upstream)
      [ $# -ge 2 ] || usage "$1 needs a value"
      case "$1" in
        --local-dns) local_dns=$2 ;; --dns-server) dns_server=$2 ;;
        --domain) domain=$2 ;; --upstream) upstream=$2 ;;
      esac
      shift 2 ;;
    --no-traffic-distribution) traffic_distribution=""; shift ;;
    -*) usage "unknown flag $1" ;;
    *) [ -z "$overlay" ] || usage "one overlay only"; overlay=$1; shift ;;
  esac
done
[ -n "$overlay" ] || usage "which overlay? (deploy/overlays/iptables, link-local, cilium)"
[ -f "$overlay/kustomization.yaml" ] || usage "$overlay: no kustomization.yaml"

ipv4='^([0-9]{1,3}\.){3}[0-9]{1,3}$'
check_ip() {  # an IPv4 address, or nothing when the overlay does not use it
  [ -z "$2" ] || [[ "$2" =~ $ipv4 ]] || usage "$1 '$2' is not an IPv4 address"
}
check_ip --local-dns "$local_dns"
check_ip --dns-server "$dns_server"
check_ip --upstream "$upstream"
[[ "$domain" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || usage "--domain '$domain' is not a domain name"

# The placeholders are filled in a copy of deploy/ before kustomize builds it,
# so the ConfigMap's name suffix is the hash of the filled configuration:
# rendering with other values rolls the DaemonSet.
root=$(cd "$(dirname "$0")" && pwd)
rel=$(realpath --relative-to="$root" "$overlay")
case "$rel" in ..*) usage "$overlay is not inside $root" ;; esac
tmp=$(mktemp -d /tmp/localdns-render-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tree=$tmp/deploy
mkdir "$tree"
cp -r "$root/." "$tree/"
if [ -z "$traffic_distribution" ]; then
  sed -i '/^  trafficDistribution: /d' "$tree/base/kube-dns-upstream.yaml"
  ! grep -q trafficDistribution "$tree/base/kube-dns-upstream.yaml" || usage "cannot drop trafficDistribution from base/kube-dns-upstream.yaml"
fi
# build [final]: kustomize's messages go to stderr (from the final build, or
# from any build that fails), except the deprecation notices kustomize v5
# (kubectl 1.27 and later) prints for `bases` and `patchesStrategicMerge`:
# these manifests keep both so that kubectl 1.20's kustomize v2 builds them.
build() {
  local status=0
  out=$("${KUBECTL:-kubectl}" kustomize "$tree/$rel" 2>"$tmp/stderr") || status=$?
  [ "$status" -ne 0 ] || [ -n "${1:-}" ] || return 0
  grep -vxF \
    -e "# Warning: 'bases' is deprecated. Please use 'resources' instead. Run 'kustomize edit fix' to update your Kustomization automatically." \
    -e "# Warning: 'patchesStrategicMerge' is deprecated. Please use 'patches' instead. Run 'kustomize edit fix' to update your Kustomization automatically." \
    "$tmp/stderr" >&2 || true
  [ "$status" -eq 0 ] || exit 1
}
build
sub() {  # placeholder, value, flag: fail when the overlay needs a value not given
  if [ -z "$2" ] && grep -q "$1" <<<"$out"; then usage "$overlay needs $3"; fi
  find "$tree" -type f \( -name '*.yaml' -o -name '*.json' \) -exec sed -i "s/$1/$2/g" {} +
}
sub __PILLAR__LOCAL__DNS__ "$local_dns" --local-dns
sub __PILLAR__DNS__SERVER__ "$dns_server" --dns-server
sub __PILLAR__DNS__DOMAIN__ "$domain" --domain
sub __PILLAR__CLUSTER__DNS__ "$upstream" --upstream
build final
if left=$(grep -o '__PILLAR__[A-Z_]*__' <<<"$out" | sort -u | tr '\n' ' ') && [ -n "$left" ]; then
  usage "placeholders without a value: $left"
fi
printf '%s\n' "$out"
