// The bounds of the search-path walks through the real listeners, against
// the fault-injecting upstream with per-name delays: cname's longest hold of
// the first expansion (search_path.max_hold).
#include <chrono>

#include <catch2/catch.hpp>

#include "ask.hpp"
#include "fake_upstream.hpp"
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
