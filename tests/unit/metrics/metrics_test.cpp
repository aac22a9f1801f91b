#include <random>

#include <catch2/catch.hpp>

#include <localdns/dns/name.hpp>
#include <localdns/metrics/query_metrics.hpp>
#include <localdns/metrics/top.hpp>

using namespace localdns;
using namespace localdns::metrics;

TEST_CASE("space-saving ranks a heavy hitter first among thousands of names", "[metrics][top]") {
  SpaceSaving s(256);
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    s.add("name" + std::to_string(rng() % 5000) + ".example");
    if (i % 10 == 0) s.add("heavy.example");
  }
  auto top = s.top(3);
  REQUIRE(top.size() == 3);
  CHECK(top[0].key == "heavy.example");
  // Never an underestimate; the overestimate is bounded by the error.
  CHECK(top[0].count >= 2000);
  CHECK(top[0].count - top[0].error <= 2000);
  CHECK(s.size() == 256);
}

TEST_CASE("space-saving memory stays bounded with a million distinct names", "[metrics][top]") {
  SpaceSaving s(1024);
  for (int i = 0; i < 1'000'000; ++i) {
    s.add("unique-" + std::to_string(i) + ".example");
    if (i % 100 == 0) s.add("planted.example");
  }
  CHECK(s.size() == 1024);  // never more keys than the capacity
  auto top = s.top(1);
  REQUIRE(top.size() == 1);
  CHECK(top[0].key == "planted.example");
}

TEST_CASE("NXDOMAIN names are split from the cluster search suffix", "[metrics][top]") {
  auto key = [](const char* n) { return TopTracker::nxdomain_key(n, "cluster.local"); };
  CHECK(key("api.example.com.team1.svc.cluster.local.") ==
        "api.example.com [search team1.svc.cluster.local]");
  CHECK(key("api.example.com.cluster.local.") == "api.example.com [search cluster.local]");
  CHECK(key("kubernetes.svc.cluster.local") == "kubernetes [search svc.cluster.local]");
  CHECK(key("example.org.") == "example.org");
  CHECK(key("cluster.local.") == "cluster.local");
  CHECK(key("notcluster.local.") == "notcluster.local");
}

TEST_CASE("a top tracker samples 1 in N and weights by N", "[metrics][top]") {
  TopTracker t(64, 4);
  auto wire = *dns::name_from_text("X.example");
  std::span<const std::uint8_t> name(reinterpret_cast<const std::uint8_t*>(wire.data()),
                                     wire.size());
  int sampled = 0;
  for (int i = 0; i < 400; ++i) {
    if (t.should_sample()) {
      ++sampled;
      t.record_name(TopKind::Names, name);
    }
  }
  // Random 1-in-4 sampling: 100 expected, sd ~8.7.
  CHECK(sampled > 60);
  CHECK(sampled < 140);
  auto top = t.top(TopKind::Names, 1);
  REQUIRE(top.size() == 1);
  CHECK(top[0].key == "x.example.");  // shown in text, lower case
  CHECK(top[0].count == static_cast<std::uint64_t>(sampled) * 4);
  CHECK(t.top(TopKind::Clients, 1).empty());
}

TEST_CASE("a top tracker formats clients and NXDOMAINs when drained", "[metrics][top]") {
  TopTracker t(64, 1);
  const std::uint8_t v4[] = {10, 0, 0, 7};
  std::uint8_t v6[16] = {0xfd};
  v6[15] = 1;
  t.record_client(v4);
  t.record_client(v4);
  t.record_client(v6);
  t.record_client(std::string_view("192.0.2.9"));
  auto nx = *dns::name_from_text("api.example.com.team1.svc.cluster.local");
  t.record_name(TopKind::NxDomain, {reinterpret_cast<const std::uint8_t*>(nx.data()), nx.size()});
  auto clients = t.top(TopKind::Clients, 3);
  REQUIRE(clients.size() == 3);
  CHECK(clients[0].key == "10.0.0.7");
  CHECK(clients[0].count == 2);
  auto nxs = t.top(TopKind::NxDomain, 1);
  REQUIRE(nxs.size() == 1);
  CHECK(nxs[0].key == "api.example.com [search team1.svc.cluster.local]");
  CHECK(t.dropped() == 0);
}

TEST_CASE("a full sample ring drops instead of growing", "[metrics][top]") {
  TopTracker t(64, 1);
  const std::uint8_t v4[] = {10, 0, 0, 7};
  for (int i = 0; i < 5000; ++i)
    t.record_client(v4);
  CHECK(t.dropped() == 5000 - 1024);
  auto clients = t.top(TopKind::Clients, 1);
  REQUIRE(clients.size() == 1);
  CHECK(clients[0].count == 1024);
  t.record_client(v4);  // room again after the drain
  CHECK(t.top(TopKind::Clients, 1)[0].count == 1025);
}

TEST_CASE("query metrics land in CoreDNS's buckets", "[metrics]") {
  QueryMetrics m(2);
  m.request(0, Proto::Udp, Family::V4, 1, 40);
  m.request(0, Proto::Udp, Family::V4, 28, 40);
  m.request(1, Proto::Tcp, Family::V6, 99, 600);
  m.response(0, Proto::Udp, 0, 100, 0);            // <= 0.25 ms
  m.response(0, Proto::Udp, 3, 101, 251);          // (0.25, 0.5] ms
  m.response(1, Proto::Tcp, 9, 70000, 9'000'000);  // beyond 8.192 s: +Inf; rcode "other"
  CHECK(m.requests(0, Proto::Udp, Family::V4, type_index(1)) == 1);
  CHECK(m.requests(0, Proto::Udp, Family::V4, type_index(28)) == 1);
  CHECK(m.requests(1, Proto::Tcp, Family::V6, kTypeNames.size() - 1) == 1);
  CHECK(m.responses(0, 0) == 1);
  CHECK(m.responses(0, 3) == 1);
  CHECK(m.responses(1, kRcodeNames.size() - 1) == 1);
  CHECK(m.duration(0).buckets[0].get() == 1);
  CHECK(m.duration(0).buckets[1].get() == 1);
  CHECK(m.duration(0).sum.get() == 251);
  CHECK(m.duration(1).buckets[kDurationBuckets].get() == 1);
  CHECK(m.response_size(0, Proto::Udp).buckets[1].get() == 1);  // 100 -> le=100
  CHECK(m.response_size(0, Proto::Udp).buckets[2].get() == 1);  // 101 -> le=200
  CHECK(m.response_size(1, Proto::Tcp).buckets[kSizeBounds.size()].get() == 1);
  CHECK(m.request_size(1, Proto::Tcp).buckets[6].get() == 1);  // 600 -> le=1023
  CHECK(duration_bound_seconds(0) == Approx(0.00025));
  CHECK(duration_bound_seconds(15) == Approx(8.192));
}
