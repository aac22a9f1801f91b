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

TEST_CASE("a reload's router keeps every zone's label index and appends new zones",
          "[server][router][reload]") {
  server::ZoneRouter first({zones({"cluster.local."}), zones({"b.test.", "."})});
  REQUIRE(first.zone_labels() == std::vector<std::string>{"cluster.local.", "b.test.", "."});
  // b.test. removed, c.test. added, "." moved to the first group.
  server::ZoneRouter second({zones({"c.test.", "."}), zones({"CLUSTER.local"})}, first, 8);
  CHECK(second.zone_labels() ==
        std::vector<std::string>{"cluster.local.", "b.test.", ".", "c.test."});
  auto wire = [](const char* name) { return *dns::name_from_text(name); };
  auto zone_of = [&](const server::ZoneRouter& r, const char* name) {
    auto w = wire(name);
    return r.route_zone(dns::Bytes(reinterpret_cast<const std::uint8_t*>(w.data()), w.size()));
  };
  CHECK(zone_of(second, "x.cluster.local").zone == 0);
  CHECK(zone_of(second, "x.cluster.local").group == 1);
  CHECK(zone_of(second, "x.c.test").zone == 3);
  CHECK(zone_of(second, "x.c.test").group == 0);
  CHECK(zone_of(second, "x.b.test").zone == 2);  // now under "."
  CHECK(zone_of(second, "x.b.test").group == 0);
  CHECK(route(second, "example.org") == 0);
}

TEST_CASE("past its label budget a reload's new zones share the label other",
          "[server][router][reload]") {
  server::ZoneRouter first({zones({"a.test.", "."})});
  server::ZoneRouter second({zones({"a.test.", "b.test.", "c.test.", "d.test.", "."})}, first, 4);
  CHECK(second.zone_labels() == std::vector<std::string>{"a.test.", ".", "b.test.", "other"});
  auto w = *dns::name_from_text("x.d.test");
  auto r = second.route_zone(dns::Bytes(reinterpret_cast<const std::uint8_t*>(w.data()), w.size()));
  CHECK(r.group == 0);
  CHECK(r.zone == 3);
  // The budget holds across reloads.
  server::ZoneRouter third({zones({"e.test.", "f.test."})}, second, 4);
  CHECK(third.zone_labels().size() == 4);
}
