// Reloads that change routing: zones added, removed and moved between groups,
// groups added, removed and reordered. Each upstream is a FakeUpstream of its
// own, so which one a name reached (and whether the cache answered instead)
// shows in its per-name query counts.
#include <atomic>
#include <future>
#include <memory>
#include <thread>

#include <catch2/catch.hpp>

#include "reload_support.hpp"

using namespace localdns::test;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kAddr = FakeUpstream::answer_address();

// localdns over upstreams a, b, c and root ("."), from a YAML file the test
// rewrites and reloads with SIGHUP (--no-watch). It starts with a.test on a
// and "." on root.
struct Routed {
  FakeUpstream a, b, c, root;
  TempDir dir;
  ReloadConfig cfg;
  std::string path;
  Endpoint ep;
  std::unique_ptr<Daemon> d;
  double reloaded = 0;

  Routed() {
    cfg.port = free_port();
    cfg.metrics_port = free_port();
    cfg.health_port = free_port();
    cfg.control_socket = dir.file("ctl.sock");
    ep = Endpoint{"127.0.0.1", cfg.port};
    path = dir.file("localdns.yaml");
    replace_file(path, cfg.yaml({{{"a.test"}, a.address()}, {{"."}, root.address()}}));
    d = std::make_unique<Daemon>(std::vector<std::string>{"--config", path, "--no-watch"},
                                 dir.file("log"));
    REQUIRE(d->wait_ready(ep, 10s));
  }
  // Writes `groups`, sends SIGHUP, waits until the reload succeeded (a
  // sanitizer build beside another test may take seconds); on failure the
  // log says why.
  bool reload(const std::vector<ReloadGroup>& groups) {
    replace_file(path, cfg.yaml(groups));
    d->signal(SIGHUP);
    reloaded += 1;
    bool ok = wait_until(
        within(15s), [&] { return reloads(cfg.metrics_port, "success") >= reloaded; }, 20ms);
    if (!ok) UNSCOPED_INFO(d->log());
    return ok;
  }
  std::string ask(const std::string& name) { return answer(ep, name); }
  unsigned ready_status() {
    try {
      return http_get(cfg.health_port, "/ready").first;
    } catch (const std::exception&) {
      return 0;
    }
  }
  bool stop() { return d->terminate(10s); }
};

}  // namespace

TEST_CASE("reload routing: a zone added starts going to its new upstream, the rest stay cached",
          "[integration][reload]") {
  Routed r;
  REQUIRE(r.ask("x.a.test") == kAddr);
  REQUIRE(r.ask("y.b.test") == kAddr);  // under "." for now
  REQUIRE(r.ask("z.example") == kAddr);
  REQUIRE(r.root.queries_for("y.b.test.") == 1);

  REQUIRE(r.reload(
      {{{"a.test"}, r.a.address()}, {{"b.test"}, r.b.address()}, {{"."}, r.root.address()}}));
  CHECK(r.ask("y.b.test") == kAddr);  // dropped: it came from root
  CHECK(r.ask("new.b.test") == kAddr);
  CHECK(r.ask("x.a.test") == kAddr);   // cached
  CHECK(r.ask("z.example") == kAddr);  // cached
  INFO(r.d->log());
  CHECK(r.b.queries_for("y.b.test.") == 1);
  CHECK(r.b.queries_for("new.b.test.") == 1);
  CHECK(r.root.queries_for("y.b.test.") == 1);
  CHECK(r.root.queries_for("new.b.test.") == 0);
  CHECK(r.a.queries() == 1);
  CHECK(r.root.queries() == 2);
  CHECK(r.d->log_count("dropped 1 cached answers") == 1);
  CHECK(r.ready_status() == 200);
  CHECK(r.stop());
}

TEST_CASE("reload routing: a zone removed falls back to the root group", "[integration][reload]") {
  Routed r;
  REQUIRE(r.reload({{{"a.test"}, r.a.address()},
                    {{"b.test", "c.test"}, r.b.address()},
                    {{"."}, r.root.address()}}));
  REQUIRE(r.ask("y.b.test") == kAddr);
  REQUIRE(r.ask("y.c.test") == kAddr);
  REQUIRE(r.ask("x.a.test") == kAddr);
  REQUIRE(r.b.queries() == 2);

  // b.test leaves its group; the group stays for c.test.
  REQUIRE(r.reload(
      {{{"a.test"}, r.a.address()}, {{"c.test"}, r.b.address()}, {{"."}, r.root.address()}}));
  CHECK(r.ask("y.b.test") == kAddr);  // dropped, now root's
  CHECK(r.ask("new.b.test") == kAddr);
  CHECK(r.ask("y.c.test") == kAddr);  // cached
  CHECK(r.ask("x.a.test") == kAddr);  // cached
  INFO(r.d->log());
  CHECK(r.root.queries_for("y.b.test.") == 1);
  CHECK(r.root.queries_for("new.b.test.") == 1);
  CHECK(r.b.queries() == 2);
  CHECK(r.a.queries() == 1);
  CHECK(r.d->log_count("3 groups (were 2), 2 kept their connections") == 1);
  CHECK(r.d->log_count("3 groups (were 3), 3 kept their connections") == 1);
  CHECK(r.stop());
}

TEST_CASE("reload routing: a group added and a group removed in one reload, the rest reordered",
          "[integration][reload]") {
  Routed r;
  REQUIRE(r.reload(
      {{{"a.test"}, r.a.address()}, {{"b.test"}, r.b.address()}, {{"."}, r.root.address()}}));
  REQUIRE(r.ask("x.a.test") == kAddr);
  REQUIRE(r.ask("y.b.test") == kAddr);
  REQUIRE(r.ask("z.example") == kAddr);

  // b.test's group goes, c.test's comes; root and a.test swap places and
  // keep their pools.
  REQUIRE(r.reload(
      {{{"."}, r.root.address()}, {{"c.test"}, r.c.address()}, {{"a.test"}, r.a.address()}}));
  CHECK(r.ask("y.b.test") == kAddr);  // dropped, now root's
  CHECK(r.ask("w.c.test") == kAddr);
  CHECK(r.ask("x.a.test") == kAddr);   // cached, its group at another index
  CHECK(r.ask("z.example") == kAddr);  // cached
  CHECK(r.ask("v.a.test") == kAddr);
  INFO(r.d->log());
  CHECK(r.root.queries_for("y.b.test.") == 1);
  CHECK(r.c.queries_for("w.c.test.") == 1);
  CHECK(r.a.queries_for("x.a.test.") == 1);
  CHECK(r.a.queries_for("v.a.test.") == 1);
  CHECK(r.root.queries_for("z.example.") == 1);
  CHECK(r.b.queries() == 1);
  CHECK(r.d->log_count("3 groups (were 3), 2 kept their connections") == 1);
  // The forward metrics follow the new groups.
  auto body = http_get(r.cfg.metrics_port, "/metrics").second;
  CHECK(body.find("localdns_inflight_queries{zones=\"c.test") != std::string::npos);
  CHECK(body.find("localdns_inflight_queries{zones=\"b.test") == std::string::npos);
  CHECK(metric(r.cfg.metrics_port, "coredns_dns_requests_total", {"zone=\"c.test.\""}) == 1);
  CHECK(r.ready_status() == 200);
  CHECK(r.stop());
}

TEST_CASE(
    "reload routing: a query in flight on a moved zone's old group holds no query of its new group",
    "[integration][reload]") {
  Routed r;
  const std::vector<ReloadGroup> before{
      {{"a.test"}, r.a.address()}, {{"b.test"}, r.b.address(), "2s"}, {{"."}, r.root.address()}};
  REQUIRE(r.reload(before));
  // Silent: the old group's query ends in SERVFAIL at its 2 s timeout. Late:
  // it is answered after 1.5 s, with TTL 77 (a's answers have 300).
  bool late = false;
  SECTION("the old group silent") {
    r.b.set(Behaviour{.drop_prefix = "stuck"});
  }
  SECTION("the old group answering late") {
    late = true;
    r.b.set(Behaviour{.delay = 1500ms, .answer_ttl = 77});
  }
  auto pending = std::async(std::launch::async, [&] {
    auto p = udp_query(r.ep, make_query("stuck.b.test", "A"), 3000ms);
    return p ? std::optional(decode(*p)) : std::nullopt;
  });
  REQUIRE(wait_until(within(5s), [&] { return r.b.queries_for("stuck.b.test.") == 1; }));

  // b.test moves to a's group while b still sits on the query.
  REQUIRE(r.reload({{{"a.test", "b.test"}, r.a.address()},
                    {{"c.test"}, r.b.address(), "2s"},
                    {{"."}, r.root.address()}}));
  auto t0 = Clock::now();
  auto moved = r.ask("stuck.b.test");
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  auto old = pending.get();
  INFO(r.d->log());
  WARN("the moved name answered by its new group after " << ms << " ms");
  CHECK(moved == kAddr);
  CHECK(ms < 1000);  // not coalesced onto the old group's query
  CHECK(r.a.queries_for("stuck.b.test.") == 1);
  REQUIRE(old);
  if (late) {
    // The query finished on the group it started on...
    CHECK(old->rcode == "NOERROR");
    REQUIRE(old->answer_ttls.size() == 1);
    CHECK(old->answer_ttls[0] == 77);
  } else {
    CHECK(old->rcode == "SERVFAIL");
  }
  // ...and its answer, from the old upstream, replaced nothing in the cache.
  auto again = udp_query(r.ep, make_query("stuck.b.test", "A"), 3000ms);
  REQUIRE(again);
  auto d = decode(*again);
  REQUIRE(d.answer_ttls.size() == 1);
  CHECK(d.answer_ttls[0] > 77);
  CHECK(r.a.queries_for("stuck.b.test.") == 1);
  CHECK(r.stop());
}

TEST_CASE("reload routing: zones moved back and forth under a query loop lose no query",
          "[integration][reload]") {
  Routed r;
  const std::vector<ReloadGroup> home{
      {{"a.test"}, r.a.address()}, {{"b.test"}, r.b.address()}, {{"."}, r.root.address()}};
  const std::vector<ReloadGroup> away{{{"a.test", "b.test"}, r.a.address()},
                                      {{"c.test"}, r.b.address()},
                                      {{"."}, r.root.address()}};
  REQUIRE(r.reload(home));
  REQUIRE(r.ask("probe.a.test") == kAddr);
  REQUIRE(r.ask("probe.example") == kAddr);

  std::atomic<bool> going{true};
  struct Tally {
    unsigned sent = 0, answered = 0;
    std::vector<std::string> bad;
  };
  auto client = [&](int id) {
    Tally t;
    const char* zones[] = {".a.test", ".b.test", ".c.test", ".example"};
    for (unsigned i = 0; going || i < 50; ++i) {
      // Hot names (hits, except just after their zone moved) and new names.
      std::string name =
          (i % 3 == 0 ? "hot" : "q" + std::to_string(id) + "-" + std::to_string(i)) + zones[i % 4];
      ++t.sent;
      auto got = r.ask(name);
      if (got == kAddr) {
        ++t.answered;
      } else if (t.bad.size() < 10) {
        t.bad.push_back(name + ": " + got);
      }
    }
    return t;
  };
  std::vector<std::future<Tally>> clients;
  for (int id = 0; id < 4; ++id)
    clients.push_back(std::async(std::launch::async, client, id));
  // Each move drops probe.b.test (asked once after each reload: a miss on its
  // new upstream, then a hit); probe.a.test and probe.example never move.
  unsigned misses_a = 0, misses_b = 0;
  bool probes_ok = true;
  for (int n = 1; n <= 6; ++n) {
    bool to_a = n % 2 == 1;
    REQUIRE(r.reload(to_a ? away : home));
    auto& owner = to_a ? r.a : r.b;
    unsigned before = owner.queries_for("probe.b.test.");
    probes_ok = probes_ok && r.ask("probe.b.test") == kAddr && r.ask("probe.b.test") == kAddr;
    probes_ok = probes_ok && owner.queries_for("probe.b.test.") == before + 1;
    (to_a ? misses_a : misses_b) += owner.queries_for("probe.b.test.") - before;
  }
  going = false;
  unsigned sent = 0, answered = 0;
  std::vector<std::string> bad;
  for (auto& c : clients) {
    auto t = c.get();
    sent += t.sent;
    answered += t.answered;
    bad.insert(bad.end(), t.bad.begin(), t.bad.end());
  }
  WARN("6 zone moves under load: "
       << sent << " queries sent, " << answered << " answered; upstreams a " << r.a.queries()
       << ", b " << r.b.queries() << ", root " << r.root.queries() << "; probe.b.test misses on a "
       << misses_a << ", on b " << misses_b);
  INFO(r.d->log());
  for (const auto& b : bad)
    INFO(b);
  CHECK(sent >= 200);
  CHECK(answered == sent);
  CHECK(probes_ok);
  CHECK(misses_a == 3);
  CHECK(misses_b == 3);
  CHECK(r.a.queries_for("probe.a.test.") == 1);
  CHECK(r.root.queries_for("probe.example.") == 1);
  CHECK(reloads(r.cfg.metrics_port, "failure") == 0);
  CHECK(r.stop());
}
