// Upstream faults, injected by FakeUpstream: timeouts, failover, broken and
// reordered TCP, truncation, spoofed answers, overload, health and shutdown.
#include <future>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "fake_upstream.hpp"
#include "instance.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;
using Clock = std::chrono::steady_clock;

namespace {

Reply ask(const Endpoint& ep, const std::string& name, bool tcp = false,
          std::chrono::milliseconds timeout = 6000ms) {
  auto q = make_query(name, "A", {.id = static_cast<std::uint16_t>(name.size() * 7 + 1)});
  auto r = tcp ? tcp_query(ep, q, timeout) : udp_query(ep, q, timeout);
  REQUIRE(r.has_value());
  return decode(*r);
}

long elapsed_ms(Clock::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

// Sends `n` queries at once from separate threads; returns the replies.
std::vector<Reply> burst(const Endpoint& ep, int n, const std::string& prefix, bool tcp = false) {
  std::vector<std::future<Reply>> fs;
  for (int i = 0; i < n; ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] {
      auto name = prefix + std::to_string(i) + ".example";
      auto q = make_query(name, "A", {.id = static_cast<std::uint16_t>(i)});
      auto r = tcp ? tcp_query(ep, q, 8000ms) : udp_query(ep, q, 8000ms);
      return r ? decode(*r) : Reply{};
    }));
  }
  std::vector<Reply> out;
  for (auto& f : fs)
    out.push_back(f.get());
  return out;
}

config::UpstreamGroup fast(config::UpstreamGroup g, int timeout_ms = 300, unsigned attempts = 2) {
  g.timeout = std::chrono::milliseconds(timeout_ms);
  g.attempts = attempts;
  return g;
}

}  // namespace

TEST_CASE("a silent upstream gives SERVFAIL within the configured time", "[integration][faults]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  auto transport = GENERATE(Transport::Udp, Transport::Tcp);
  Instance ld({fast(group({"."}, {up.address()}, transport), 300, 2)});
  auto t0 = Clock::now();
  auto r = ask(ld.endpoint(), "silent.example");
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
  auto r = ask(ld.endpoint(), "slow.example");
  CHECK(r.rcode == "SERVFAIL");
  CHECK(elapsed_ms(t0) < 4000);
}

TEST_CASE("failover to the second server", "[integration][faults]") {
  FakeUpstream dead, alive;
  auto transport = GENERATE(Transport::Udp, Transport::Tcp);
  SECTION("first server drops queries") {
    dead.set({.mode = Behaviour::Mode::Drop});
    Instance ld({fast(group({"."}, {dead.address(), alive.address()}, transport), 300, 2)});
    auto r = ask(ld.endpoint(), "failover.example");
    CHECK(r.rcode == "NOERROR");
    CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
    CHECK(dead.queries() == 1);
    CHECK(alive.queries() == 1);
  }
  SECTION("first server port is closed: no wait for the timeout") {
    std::string closed = "127.0.0.1:" + std::to_string(free_port());
    Instance ld({fast(group({"."}, {closed, alive.address()}, transport), 1000, 2)});
    auto t0 = Clock::now();
    auto r = ask(ld.endpoint(), "refused.example");
    CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
    CHECK(elapsed_ms(t0) < 900);
  }
  SECTION("first server answers SERVFAIL") {
    dead.set({.mode = Behaviour::Mode::ServFail});
    Instance ld({fast(group({"."}, {dead.address(), alive.address()}, transport), 300, 2)});
    auto r = ask(ld.endpoint(), "servfail.example");
    CHECK(r.rcode == "NOERROR");
    CHECK(alive.queries() == 1);
  }
}

TEST_CASE("SERVFAIL from the only server is passed on, not retried forever",
          "[integration][faults]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::ServFail});
  Instance ld({fast(group({"."}, {up.address()}, Transport::Udp), 300, 2)});
  auto r = ask(ld.endpoint(), "sf.example");
  CHECK(r.rcode == "SERVFAIL");
  CHECK(up.queries() == 1);
}

TEST_CASE("a TCP upstream connection closed mid-stream loses no query", "[integration][faults]") {
  FakeUpstream up;
  up.set({.close_tcp_after = 5});  // the first connection dies at its 5th query
  auto g = fast(group({"."}, {up.address()}, Transport::Tcp), 1000, 2);
  Instance ld({g}, 1);
  auto replies = burst(ld.endpoint(), 40, "closed");
  int ok = 0;
  for (const auto& r : replies)
    ok += r.ok && r.rcode == "NOERROR" && r.answers.size() == 1;
  CHECK(ok == 40);
  CHECK(up.tcp_connections() > 1);
}

TEST_CASE("out-of-order TCP answers reach the right clients", "[integration][faults]") {
  FakeUpstream up;
  up.set({.reverse_tcp_batch = 8});
  auto g = fast(group({"."}, {up.address()}, Transport::Tcp), 2000, 1);
  g.tcp.connections = 1;  // all eight on one connection, answered last-first
  Instance ld({g}, 1);
  std::vector<std::future<bool>> fs;
  for (int i = 0; i < 8; ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] {
      auto name = "order" + std::to_string(i) + ".example";
      auto r = udp_query(ld.endpoint(),
                         make_query(name, "A", {.id = static_cast<std::uint16_t>(i)}), 5000ms);
      if (!r) return false;
      auto d = decode(*r);
      return d.id == i && d.qname == name + "." && d.rcode == "NOERROR";
    }));
  }
  int good = 0;
  for (auto& f : fs)
    good += f.get();
  CHECK(good == 8);
}

TEST_CASE("pipelined TCP upstream: many queries, few connections", "[integration][faults]") {
  FakeUpstream up;
  up.set({.delay = 50ms});
  auto g = group({"."}, {up.address()}, Transport::Tcp);
  g.tcp.connections = 2;
  Instance ld({g}, 1);
  auto replies = burst(ld.endpoint(), 100, "pipe");
  int ok = 0;
  for (const auto& r : replies)
    ok += r.rcode == "NOERROR";
  CHECK(ok == 100);
  CHECK(up.tcp_queries() == 100);
  CHECK(up.tcp_connections() <= 2);
}

TEST_CASE("TCP upstream connections retire after max_queries", "[integration][faults]") {
  FakeUpstream up;
  auto g = group({"."}, {up.address()}, Transport::Tcp);
  g.tcp.max_queries = 10;
  Instance ld({g}, 1);
  for (int i = 0; i < 30; ++i) {
    CHECK(ask(ld.endpoint(), "retire" + std::to_string(i) + ".example").rcode == "NOERROR");
  }
  CHECK(up.tcp_connections() >= 3);
  CHECK(up.max_open_tcp_connections() <= 2);
}

TEST_CASE("truncated UDP answers are retried over TCP", "[integration][faults]") {
  FakeUpstream up;
  up.set({.truncate_udp = true});
  Instance ld({group({"."}, {up.address()}, Transport::PreferUdp)});
  auto r = ask(ld.endpoint(), "trunc.example");
  CHECK_FALSE(r.tc);
  CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(up.udp_queries() == 1);
  CHECK(up.tcp_queries() == 1);

  SECTION("transport udp passes the truncation on") {
    FakeUpstream up2;
    up2.set({.truncate_udp = true});
    Instance ld2({group({"."}, {up2.address()}, Transport::Udp)});
    auto r2 = ask(ld2.endpoint(), "trunc.example");
    CHECK(r2.tc);
    CHECK(up2.tcp_queries() == 0);
  }
}

TEST_CASE("UDP answers with the wrong ID are ignored", "[integration][faults]") {
  FakeUpstream up;
  up.set({.spoof_first = true});
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  for (int i = 0; i < 20; ++i) {
    auto r = ask(ld.endpoint(), "spoof" + std::to_string(i) + ".example");
    CHECK(r.rcode == "NOERROR");
    CHECK(r.answers.size() == 1);
  }
}

TEST_CASE("over the in-flight cap, REFUSED at once", "[integration][faults]") {
  FakeUpstream up;
  up.set({.delay = 800ms});
  auto g = group({"."}, {up.address()}, Transport::Udp);
  g.max_in_flight = 5;
  Instance ld({g}, 1);
  auto t0 = Clock::now();
  auto replies = burst(ld.endpoint(), 20, "cap");
  int refused = 0, ok = 0;
  for (const auto& r : replies) {
    refused += r.rcode == "REFUSED";
    ok += r.rcode == "NOERROR";
  }
  CHECK(ok == 5);
  CHECK(refused == 15);
  CHECK(up.queries() == 5);
  CHECK(elapsed_ms(t0) < 3000);
}

TEST_CASE("a failing server is marked down, skipped, and probed back", "[integration][faults]") {
  FakeUpstream flaky, backup;
  flaky.set({.mode = Behaviour::Mode::Drop});
  auto g = fast(group({"."}, {flaky.address(), backup.address()}, Transport::Udp), 200, 2);
  g.fail_threshold = 2;
  g.probe_interval = 200ms;
  Instance ld({g}, 1);
  for (int i = 0; i < 2; ++i)
    ask(ld.endpoint(), "warm" + std::to_string(i) + ".example");
  // Now marked down: answers come straight from the backup, without a timeout.
  auto t0 = Clock::now();
  auto r = ask(ld.endpoint(), "skip.example");
  CHECK(r.rcode == "NOERROR");
  CHECK(elapsed_ms(t0) < 150);
  CHECK(flaky.queries_for("skip.example.") == 0);
  // It recovers; a probe (". NS") notices and it is used again.
  flaky.set({});
  std::this_thread::sleep_for(700ms);
  CHECK(flaky.queries_for(".") >= 1);
  ask(ld.endpoint(), "back.example");
  CHECK(flaky.queries_for("back.example.") == 1);
}

TEST_CASE("shutdown is bounded while queries hang upstream", "[integration][faults]") {
  auto transport = GENERATE(Transport::Tcp, Transport::Udp);
  auto client_tcp = GENERATE(false, true);
  CAPTURE(static_cast<int>(transport), client_tcp);
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  config::Config c;
  c.shutdown_grace = 300ms;
  c.forward = {fast(group({"."}, {up.address()}, transport), 10000, 1)};
  Instance ld(c);
  auto pending = std::async(std::launch::async, [&] {
    auto q = make_query("hang.example", "A");
    return client_tcp ? tcp_query(ld.endpoint(), q, 3000ms) : udp_query(ld.endpoint(), q, 3000ms);
  });
  auto deadline = Clock::now() + 3s;
  while (up.queries() == 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  REQUIRE(up.queries() == 1);
  auto took = ld.stop();
  CHECK(took < 1000ms);
  auto r = pending.get();
  // The query in flight gets SERVFAIL when the grace runs out: never silence.
  REQUIRE(r);
  CHECK(decode(*r).rcode == "SERVFAIL");
}

TEST_CASE("sequential queries reuse one upstream TCP connection", "[integration][faults]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Tcp)}, 1);
  for (int i = 0; i < 20; ++i) {
    CHECK(ask(ld.endpoint(), "reuse" + std::to_string(i) + ".example").rcode == "NOERROR");
  }
  CHECK(up.tcp_queries() == 20);
  CHECK(up.tcp_connections() == 1);
}

TEST_CASE("idle upstream TCP connections are closed and reopened on demand",
          "[integration][faults]") {
  FakeUpstream up;
  auto g = group({"."}, {up.address()}, Transport::Tcp);
  g.tcp.idle_timeout = 200ms;
  Instance ld({g}, 1);
  CHECK(ask(ld.endpoint(), "idle1.example").rcode == "NOERROR");
  std::this_thread::sleep_for(600ms);
  CHECK(up.open_tcp_connections() == 0);  // localdns closed it
  CHECK(ask(ld.endpoint(), "idle2.example").rcode == "NOERROR");
  CHECK(up.tcp_connections() == 2);  // the first was closed while idle
}
