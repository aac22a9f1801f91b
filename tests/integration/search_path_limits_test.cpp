// The bounds of the search-path walks through the real listeners, against
// the fault-injecting upstream with per-name delays: cname's longest hold of
// the first expansion (search_path.max_hold), and no walk while the group is
// busy. (The cap on walks in flight per worker: tests/unit/server.)
#include <chrono>
#include <future>
#include <optional>
#include <vector>

#include <catch2/catch.hpp>

#include <localdns/app/metrics.hpp>

#include "ask.hpp"
#include "endpoints.hpp"
#include "fake_upstream.hpp"
#include "http_get.hpp"
#include "instance.hpp"
#include "search_support.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using namespace std::chrono_literals;
using config::Transport;

TEST_CASE("cname: a walk slower than search_path.max_hold answers the first expansion as it is",
          "[integration][search-path]") {
  constexpr auto kHold = 300ms;
  // The node domain's NXDOMAINs, within the group's 1.5 s timeout: the
  // walk needs them before it can choose www.external.test.
  constexpr auto kSlow = 1200ms;
  FakeUpstream up;
  auto b = cold_cluster(0ms);
  b.name_delays = {{std::string(kHostDomain) + ".", kSlow}};
  up.set(b);
  auto cfg =
      make_config({group({"."}, {up.address()}, Transport::Udp)}, server::SearchPathMode::Cname, 1);
  cfg.search_path.max_hold = kHold;
  Instance ld(cfg);
  const auto names = walk_of("www.external.test");

  const auto t0 = Clock::now();
  auto f = ask(ld.endpoint(), names[0]);
  const auto took = Clock::now() - t0;
  INFO("F answered after " << ms(took) << " ms");
  // F's own NXDOMAIN, at the deadline: held (cname) but not until the walk
  // could choose, kSlow later.
  CHECK(f.rcode == "NXDOMAIN");
  CHECK(f.authority == 1);
  CHECK(took >= kHold);
  CHECK(took < kHold + 500ms);
  auto st = ld.server().stats();
  CHECK(st.search_deadline == 1);
  CHECK(st.search_cname == 0);

  // The walk went on as in warm: the pod's next names are cached or in
  // flight, so each went upstream once per type the walk asks (A and AAAA),
  // and the last has the address.
  auto rest = walk(ld, {names.begin() + 1, names.end()});
  CHECK(rest.back().reply.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(up.queries_for(fqdn(names[0])) == 1);
  for (std::size_t i = 1; i < names.size(); ++i) {
    INFO(names[i]);
    CHECK(up.queries_for(fqdn(names[i])) == 2);
  }
  // F's NXDOMAIN was cached as it came, not replaced by a CNAME.
  CHECK(ask(ld.endpoint(), names[0]).rcode == "NXDOMAIN");
  CHECK(up.queries_for(fqdn(names[0])) == 1);
  st = ld.server().stats();
  CHECK(st.search_cname == 0);
  CHECK(st.search_deadline == 1);
}

TEST_CASE(
    "cname: a first expansion whose own answer comes after search_path.max_hold is sent "
    "on as it comes",
    "[integration][search-path]") {
  constexpr auto kHold = 200ms;
  constexpr auto kF = 500ms;  // F's own NXDOMAIN
  FakeUpstream up;
  auto b = cold_cluster(0ms);
  // The first suffix that matches wins: F (in default.svc), then the node domain.
  b.name_delays = {{"default.svc.cluster.local.", kF}, {std::string(kHostDomain) + ".", 1200ms}};
  up.set(b);
  auto cfg =
      make_config({group({"."}, {up.address()}, Transport::Udp)}, server::SearchPathMode::Cname, 1);
  cfg.search_path.max_hold = kHold;
  Instance ld(cfg);
  const auto names = walk_of("www.external.test");

  const auto t0 = Clock::now();
  auto f = ask(ld.endpoint(), names[0]);
  const auto took = Clock::now() - t0;
  INFO("F answered after " << ms(took) << " ms");
  // Past the deadline F is not held any more: its NXDOMAIN goes out when it
  // comes, not a CNAME once the node domain's answers are in.
  CHECK(f.rcode == "NXDOMAIN");
  CHECK(f.answers.empty());
  CHECK(took >= kF);
  CHECK(took < kF + 500ms);
  CHECK(ld.server().stats().search_deadline == 1);
  CHECK(ld.server().stats().search_cname == 0);
}

TEST_CASE("warm: no walk starts while the group has more than half its max_in_flight in flight",
          "[integration][search-path]") {
  FakeUpstream up;
  auto b = cold_cluster(0ms);
  b.name_delays = {{"slow.test.", 800ms}};
  up.set(b);
  auto g = group({"."}, {up.address()}, Transport::Udp);
  g.max_in_flight = 4;
  Instance ld(make_config({g}, server::SearchPathMode::Warm, 1));
  const auto port = free_port();
  app::MetricsEndpoint metrics(ld.server(), nullptr, loopback(port));
  // Three client queries in flight: above half of 4.
  std::vector<std::future<std::optional<Packet>>> slow;
  for (const char* n : {"a.slow.test", "b.slow.test", "c.slow.test"}) {
    slow.push_back(std::async(std::launch::async, [&ld, n] {
      return udp_query(ld.endpoint(), make_query(n, "A"), 3000ms);
    }));
  }
  REQUIRE(wait_until(within(2s), [&] { return up.queries() == 3; }));
  const auto names = walk_of("www.external.test");
  // F itself goes upstream (the fourth of four); its walk does not start.
  CHECK(ask(ld.endpoint(), names[0]).rcode == "NXDOMAIN");
  for (auto& f : slow)
    CHECK(f.get().has_value());
  // A query behind it on the one worker: what a walk had sent would be
  // upstream by now.
  ask(ld.endpoint(), "sync.example");
  for (std::size_t i = 1; i < names.size(); ++i) {
    INFO(names[i]);
    CHECK(up.queries_for(fqdn(names[i])) == 0);
  }
  CHECK(up.queries() == 5);
  auto st = ld.server().stats();
  CHECK(st.search_skipped_busy == 1);
  CHECK(st.search_sets == 0);
  CHECK(st.search_sent == 0);
  auto [status, text] = http_get(port, "/metrics");
  REQUIRE(status == 200);
  CHECK(metric_sum(text, "localdns_search_path_skipped_total", {"reason=\"group_busy\""}) == 1);
  CHECK(metric_sum(text, "localdns_search_path_skipped_total") == 1);
  CHECK(metric_sum(text, "localdns_search_path_walks_total") == 0);

  // The slow queries answered: a first expansion walks again.
  const auto later = walk_of("api.external.test");
  CHECK(ask(ld.endpoint(), later[0]).rcode == "NXDOMAIN");
  REQUIRE(wait_until(within(3s), [&] { return up.queries_for(fqdn(later[4])) == 1; }));
  st = ld.server().stats();
  CHECK(st.search_sets == 1);
  CHECK(st.search_sent == 4);
  CHECK(st.search_skipped_busy == 1);
}
