// Upstream faults, injected by FakeUpstream: silent and slow servers,
// timeouts and deadlines, failover, and server health (marked down, probed
// back).
#include <thread>

#include <catch2/catch.hpp>

#include "faults_support.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

TEST_CASE("a silent upstream gives SERVFAIL within the configured time", "[integration][faults]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  auto transport = GENERATE(Transport::Udp, Transport::Tcp);
  Instance ld({fast(group({"."}, {up.address()}, transport), 300, 2)});
  auto t0 = Clock::now();
  auto r = ask_a(ld.endpoint(), "silent.example");
  long ms = elapsed_ms(t0);
  CHECK(r.rcode == "SERVFAIL");
  CHECK(ms >= 550);  // both attempts were made
  CHECK(ms < 1500);  // and no more
  CHECK(up.queries() == 2);
}

TEST_CASE("default timeouts answer SERVFAIL before the 5 s glibc timeout",
          "[integration][faults]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  Instance ld({group({"."}, {up.address()}, Transport::Tcp)});
  auto t0 = Clock::now();
  auto r = ask_a(ld.endpoint(), "slow.example");
  CHECK(r.rcode == "SERVFAIL");
  CHECK(elapsed_ms(t0) < 4000);
}

TEST_CASE("failover to the second server", "[integration][faults]") {
  FakeUpstream dead, alive;
  auto transport = GENERATE(Transport::Udp, Transport::Tcp);
  SECTION("first server drops queries") {
    dead.set({.mode = Behaviour::Mode::Drop});
    Instance ld({fast(group({"."}, {dead.address(), alive.address()}, transport), 300, 2)});
    auto r = ask_a(ld.endpoint(), "failover.example");
    CHECK(r.rcode == "NOERROR");
    CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
    CHECK(dead.queries() == 1);
    CHECK(alive.queries() == 1);
  }
  SECTION("first server port is closed: no wait for the timeout") {
    std::string closed = "127.0.0.1:" + std::to_string(free_port());
    Instance ld({fast(group({"."}, {closed, alive.address()}, transport), 1000, 2)});
    auto t0 = Clock::now();
    auto r = ask_a(ld.endpoint(), "refused.example");
    CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
    CHECK(elapsed_ms(t0) < 900);
  }
  SECTION("first server answers SERVFAIL") {
    dead.set({.mode = Behaviour::Mode::ServFail});
    Instance ld({fast(group({"."}, {dead.address(), alive.address()}, transport), 300, 2)});
    auto r = ask_a(ld.endpoint(), "servfail.example");
    CHECK(r.rcode == "NOERROR");
    CHECK(alive.queries() == 1);
  }
}

TEST_CASE("SERVFAIL from the only server is passed on, not retried forever",
          "[integration][faults]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::ServFail});
  Instance ld({fast(group({"."}, {up.address()}, Transport::Udp), 300, 2)});
  auto r = ask_a(ld.endpoint(), "sf.example");
  CHECK(r.rcode == "SERVFAIL");
  CHECK(up.queries() == 1);
}

TEST_CASE("a failing server is marked down, skipped, and probed back", "[integration][faults]") {
  FakeUpstream flaky, backup;
  flaky.set({.mode = Behaviour::Mode::Drop});
  auto g = fast(group({"."}, {flaky.address(), backup.address()}, Transport::Udp), 200, 2);
  g.fail_threshold = 2;
  g.probe_interval = 200ms;
  Instance ld({g}, 1);
  for (int i = 0; i < 2; ++i)
    ask_a(ld.endpoint(), "warm" + std::to_string(i) + ".example");
  // Now marked down: answers come straight from the backup, without a timeout.
  auto t0 = Clock::now();
  auto r = ask_a(ld.endpoint(), "skip.example");
  CHECK(r.rcode == "NOERROR");
  CHECK(elapsed_ms(t0) < 150);
  CHECK(flaky.queries_for("skip.example.") == 0);
  // It recovers; a probe (". NS") notices and it is used again.
  flaky.set({});
  auto& flaky_health = *ld.server().groups()[0]->health[0];
  CHECK(wait_until(within(3000ms), [&] { return !flaky_health.is_down(); }));
  CHECK(flaky.queries_for(".") >= 1);
  ask_a(ld.endpoint(), "back.example");
  CHECK(flaky.queries_for("back.example.") == 1);
}

TEST_CASE("truncation followed by a silent TCP upstream ends in SERVFAIL within the deadline",
          "[integration][faults]") {
  FakeUpstream up;
  up.set({.truncate_udp = true, .drop_tcp = true});
  auto g = fast(group({"."}, {up.address()}, Transport::PreferUdp), 300, 2);
  g.max_in_flight = 3;
  Instance ld({g}, 1);
  // More names than max_in_flight: a stuck exchange would keep its slot and
  // turn the later ones into REFUSED.
  for (int i = 0; i < 5; ++i) {
    auto t0 = Clock::now();
    auto r = ask_a(ld.endpoint(), "tcsilent" + std::to_string(i) + ".example", 4000ms);
    long ms = elapsed_ms(t0);
    INFO("query " << i << " answered in " << ms << " ms");
    CHECK(r.rcode == "SERVFAIL");
    CHECK(ms < 1500);  // deadline 2 x 300 ms, plus scheduling margin
  }
  // The coalescer entry completed: a later asker of the same name is answered.
  CHECK(ask_a(ld.endpoint(), "tcsilent0.example", 4000ms).rcode == "SERVFAIL");
  CHECK(up.tcp_queries() >= 5);
  CHECK(wait_until(within(2000ms), [&] { return ld.server().groups()[0]->in_flight.load() == 0; }));
}

TEST_CASE("an answer slower than one attempt is still used", "[integration][faults]") {
  FakeUpstream up;
  up.set({.delay = 600ms});
  auto transport = GENERATE(Transport::Udp, Transport::Tcp);
  INFO("transport " << config::to_string(transport));
  // Attempts of 500 ms, overall deadline 1.5 s: the first attempt's answer
  // comes at 600 ms. Every answer arrives after its own attempt's end (the
  // second's at 1.1 s, the third's past the deadline): code that dropped late
  // answers would give SERVFAIL at 1.5 s.
  Instance ld({fast(group({"."}, {up.address()}, transport), 500, 3)}, 1);
  auto t0 = Clock::now();
  auto r = ask_a(ld.endpoint(), "late.example", 4000ms);
  long ms = elapsed_ms(t0);
  INFO("answered in " << ms << " ms");
  CHECK(r.rcode == "NOERROR");
  CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(ms >= 550);
  CHECK(ms < 1400);
  CHECK(up.queries() >= 2);  // the second attempt was sent while the first was awaited
}

TEST_CASE("with one attempt a server that times out is marked down and its probes count",
          "[integration][faults]") {
  FakeUpstream blackhole, backup;
  blackhole.set({.mode = Behaviour::Mode::Drop});
  // One attempt per query, as health probes always have: the only attempt's
  // timeout is also the exchange's deadline, and must still count.
  auto g = fast(group({"."}, {blackhole.address(), backup.address()}, Transport::Udp), 300, 1);
  g.fail_threshold = 2;
  g.policy = config::Policy::Sequential;
  g.probe_interval = 200ms;
  Instance ld({g}, 1);
  for (int i = 0; i < 2; ++i)
    ask_a(ld.endpoint(), "timeout" + std::to_string(i) + ".example");
  auto& group_state = *ld.server().groups()[0];
  CHECK(wait_until(within(2000ms), [&] { return group_state.health[0]->is_down(); }));
  CHECK(counters(ld, 0).failures.load() >= 2);
  // Later queries go straight to the healthy server.
  for (int i = 0; i < 3; ++i) {
    auto t0 = Clock::now();
    auto name = "healthy" + std::to_string(i) + ".example";
    auto r = ask_a(ld.endpoint(), name);
    long ms = elapsed_ms(t0);
    INFO(name << " answered in " << ms << " ms");
    CHECK(r.rcode == "NOERROR");
    CHECK(ms < 250);  // no wait for the 300 ms timeout
    CHECK(blackhole.queries_for(name + ".") == 0);
  }
  // Probes of the silent server time out: each is a health-check failure.
  CHECK(
      wait_until(within(3000ms), [&] { return counters(ld, 0).healthcheck_failures.load() >= 2; }));
  CHECK(blackhole.queries_for(".") >= 2);
}
