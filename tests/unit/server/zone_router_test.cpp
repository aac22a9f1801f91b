#include <catch2/catch.hpp>

#include <localdns/dns/name.hpp>
#include <localdns/server/zone_router.hpp>

using namespace localdns;

namespace {
int route(const server::ZoneRouter& r, const char* name) {
  auto wire = *dns::name_from_text(name);
  // Give the router mixed case, as clients send it.
  if (wire.size() > 2) wire[1] = static_cast<char>(std::toupper(wire[1]));
  return r.route(dns::Bytes(reinterpret_cast<const std::uint8_t*>(wire.data()), wire.size()));
}
std::vector<std::string> zones(std::vector<std::string> z) {
  return z;
}
}  // namespace

TEST_CASE("the longest matching zone suffix wins", "[server][router]") {
  server::ZoneRouter r({zones({"cluster.local.", "in-addr.arpa.", "ip6.arpa."}), zones({"."}),
                        zones({"svc.cluster.local."})});
  CHECK(route(r, "kube-dns.kube-system.svc.cluster.local") == 2);
  CHECK(route(r, "svc.cluster.local") == 2);
  CHECK(route(r, "pod.cluster.local") == 0);
  CHECK(route(r, "cluster.local") == 0);
  CHECK(route(r, "10.0.96.10.in-addr.arpa") == 0);
  CHECK(route(r, "example.org") == 1);
  CHECK(route(r, "notcluster.local") == 1);  // label boundaries, not string suffixes
  CHECK(route(r, ".") == 1);
}

TEST_CASE("without a root zone, other names have no route", "[server][router]") {
  server::ZoneRouter r({zones({"cluster.local."})});
  CHECK(route(r, "example.org") == -1);
  CHECK(route(r, "a.cluster.local") == 0);
}
