// SearchPrefetch's cap on the walks in flight on one worker, through a
// QueryHandler as a worker runs it, against the fault-injecting upstream:
// the cap is a constructor parameter, so a few walks stand for the 1024.
#include <catch2/catch.hpp>

#include <localdns/server/search_prefetch.hpp>

#include "dns_client.hpp"
#include "fake_upstream.hpp"
#include "handler_harness.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;

namespace {

// A pod's search list for `n` in namespace default: F, then the candidates.
std::vector<std::string> walk_of(const std::string& n) {
  return {n + ".default.svc.cluster.local", n + ".svc.cluster.local.", n + ".cluster.local.",
          n + ".corp.example.", n + "."};
}

}  // namespace

TEST_CASE("search path: past max_sets walks in flight on a worker, a first expansion starts none",
          "[server][search-path]") {
  FakeUpstream up;
  // Every answer takes 300 ms, so the walks stay in flight while F's are asked.
  up.set({.delay = 300ms, .nx_suffixes = {"cluster.local.", "corp.example."}});
  Setup s(up);
  TestWorker w(*s.router, s.group, s.wiring);
  server::SearchPathSettings sp;
  sp.mode = server::SearchPathMode::Warm;
  sp.host_search = {"corp.example."};
  w.set_search_path(sp, 2);

  const std::vector<std::string> ns = {"one", "two", "three"};
  Client a("127.0.0.2"), b("127.0.0.3"), c("127.0.0.4");
  std::vector<Client*> clients = {&a, &b, &c};
  for (std::size_t i = 0; i < ns.size(); ++i) {
    auto q = make_query(walk_of(ns[i])[0], "A", {.id = static_cast<std::uint16_t>(i + 1)});
    CHECK(w.ask(q, clients[i]->ref()).action == server::Action::Async);
  }
  // Two walks fill the cap; the third F is forwarded alone.
  CHECK(w.search_in_flight() == 2);
  auto st = w.stats();
  CHECK(st.search_sets == 2);
  CHECK(st.search_skipped_in_flight == 1);
  for (auto* cl : clients)
    CHECK(decoded(cl->receive()).rcode == "NXDOMAIN");
  // The two walks run to their end; by then the third's in-cluster
  // candidates, sent with its F had it walked, would be upstream too.
  REQUIRE(wait_until(within(5s), [&] {
    return up.queries_for(walk_of("one")[4]) == 1 && up.queries_for(walk_of("two")[4]) == 1;
  }));
  for (std::size_t i = 1; i < 5; ++i) {
    INFO(walk_of("three")[i]);
    CHECK(up.queries_for(walk_of("three")[i]) == 0);
  }
  CHECK(up.queries() == 3 + 2 * 4);
  CHECK(w.stats().search_sent == 2 * 4);

  // The walks settled: room again, and the cap counts the walks in flight only.
  REQUIRE(wait_until(within(3s), [&] { return w.search_in_flight() == 0; }));
  Client d("127.0.0.5");
  CHECK(w.ask(make_query(walk_of("four")[0], "A", {.id = 4}), d.ref()).action ==
        server::Action::Async);
  CHECK(decoded(d.receive()).rcode == "NXDOMAIN");
  st = w.stats();
  CHECK(st.search_sets == 3);
  CHECK(st.search_skipped_in_flight == 1);
  REQUIRE(wait_until(within(5s), [&] { return up.queries_for(walk_of("four")[4]) == 1; }));
}
