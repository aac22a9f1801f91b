// Upstream faults over TCP, injected by FakeUpstream: connections closed
// mid-stream, reordered and late answers, pipelining, retirement and idle
// closing, queries without an answer, and an upstream that stops reading.
#include <future>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/upstream/forwarder.hpp>

#include "faults_support.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

TEST_CASE("a TCP upstream connection closed mid-stream loses no query", "[integration][faults]") {
  FakeUpstream up;
  up.set({.close_tcp_after = 5});  // the first connection dies at its 5th query
  // One attempt: only the resend on a fresh connection can save the queries
  // that were in flight on the closed one.
  auto g = fast(group({"."}, {up.address()}, Transport::Tcp), 3000, 1);
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
    CHECK(ask_a(ld.endpoint(), "retire" + std::to_string(i) + ".example").rcode == "NOERROR");
  }
  CHECK(up.tcp_connections() >= 3);
  CHECK(up.max_open_tcp_connections() <= 2);
}

TEST_CASE("sequential queries reuse one upstream TCP connection", "[integration][faults]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Tcp)}, 1);
  for (int i = 0; i < 20; ++i) {
    CHECK(ask_a(ld.endpoint(), "reuse" + std::to_string(i) + ".example").rcode == "NOERROR");
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
  CHECK(ask_a(ld.endpoint(), "idle1.example").rcode == "NOERROR");
  // localdns closes it once idle for 200 ms
  CHECK(wait_until(within(3000ms), [&] { return up.open_tcp_connections() == 0; }));
  CHECK(ask_a(ld.endpoint(), "idle2.example").rcode == "NOERROR");
  CHECK(up.tcp_connections() == 2);  // the first was closed while idle
}

TEST_CASE("a pipelined TCP query without an answer times out while others keep the connection busy",
          "[integration][faults]") {
  FakeUpstream up;
  up.set({.drop_prefix = "hole"});
  auto g = fast(group({"."}, {up.address()}, Transport::Tcp), 300, 2);
  g.tcp.connections = 1;
  g.tcp.max_queries = 0;  // never retired: one connection carries everything
  Instance ld({g}, 1);
  std::atomic<bool> stop{false};
  std::atomic<int> busy_ok{0};
  auto busy = std::async(std::launch::async, [&] {
    for (int i = 0; i < 20000 && !stop; ++i) {  // bounded: stops when the hole is answered
      auto q = make_query("busy" + std::to_string(i) + ".example", "A");
      auto r = udp_query(ld.endpoint(), q, 2000ms);
      if (r && decode(*r).rcode == "NOERROR") ++busy_ok;
    }
  });
  // The busy loop is running: its queries keep the connection busy.
  REQUIRE(wait_until(within(5000ms), [&] { return busy_ok.load() > 0; }));
  auto t0 = Clock::now();
  auto r = ask_a(ld.endpoint(), "hole.example", 4000ms);
  long ms = elapsed_ms(t0);
  stop = true;
  busy.get();
  INFO("answered in " << ms << " ms; busy answers " << busy_ok.load());
  CHECK(r.rcode == "SERVFAIL");
  CHECK(ms >= 550);
  CHECK(ms < 1500);
  CHECK(busy_ok.load() > 0);
  CHECK(up.tcp_connections() == 1);  // all on the one busy connection
}

TEST_CASE("a TCP upstream connection whose queries all timed out closes when idle",
          "[integration][faults]") {
  FakeUpstream up;
  up.set({.drop_tcp = true});
  auto g = fast(group({"."}, {up.address()}, Transport::Tcp), 200, 1);
  g.tcp.idle_timeout = 300ms;
  Instance ld({g}, 1);
  CHECK(ask_a(ld.endpoint(), "noanswer.example").rcode == "SERVFAIL");
  REQUIRE(up.tcp_connections() == 1);
  // 200 ms until the query timed out, then 300 ms idle.
  auto t0 = Clock::now();
  bool closed = wait_until(within(3000ms), [&] { return up.open_tcp_connections() == 0; });
  INFO("open after " << elapsed_ms(t0) << " ms: " << up.open_tcp_connections());
  CHECK(closed);
}

TEST_CASE("a late TCP answer carrying a reused ID is not taken for the new query's answer",
          "[integration][faults]") {
  FakeUpstream up;
  // Before each answer comes one for the connection's previous question, with
  // the new query's ID (198.51.100.88): a late answer to a query whose ID was
  // given again. It must be skipped, not count as a failure, and the real
  // answer that follows must be used.
  up.set({.tcp_stale_answer = true});
  auto g = fast(group({"."}, {up.address()}, Transport::Tcp), 1000, 1);
  g.tcp.connections = 1;
  g.tcp.max_queries = 0;
  g.tcp.max_age = {};
  Instance ld({g}, 1);
  for (int i = 0; i < 10; ++i) {
    auto name = "reused" + std::to_string(i) + ".example";
    auto r = ask_a(ld.endpoint(), name, 4000ms);
    INFO(name);
    CHECK(r.rcode == "NOERROR");
    CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  }
  CHECK(up.tcp_queries() == 10);
  CHECK(up.tcp_connections() == 1);
  CHECK(counters(ld, 0).failures.load() == 0);
  CHECK_FALSE(ld.server().groups()[0]->health[0]->is_down());
}

TEST_CASE("an upstream that stops reading: the connection is given up, not buffered without bound",
          "[integration][faults]") {
  FakeUpstream up;
  up.set({.tcp_no_read = true});
  auto g = fast(group({"."}, {up.address()}, Transport::Tcp), 1000, 1);
  g.tcp.connections = 1;
  g.tcp.max_age = {};
  g.tcp.max_queries = 0;
  g.tcp.idle_timeout = {};
  // Below the per-connection cap of pending queries: only the bound on the
  // bytes queued can make localdns give up on the connection.
  g.max_in_flight = 2000;
  static_assert(upstream::kMaxPendingPerConnection > 2000);
  Instance ld({g}, 1);

  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(ld.endpoint().port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string long_labels = "." + std::string(60, 'a') + "." + std::string(60, 'b') + "." +
                                  std::string(60, 'c') + ".example";
  // Distinct names of about 200 bytes, 2000 a second (the in-flight cap
  // REFUSEs the excess); stops once localdns has given up on the first
  // connection and opened another.
  int sent = 0;
  auto t0 = Clock::now();
  std::uint8_t sink[4096];
  while (sent < 40000 && elapsed_ms(t0) < 30000 && counters(ld).tcp_connects.load() < 2) {
    for (int k = 0; k < 100; ++k, ++sent) {
      auto q = make_query("n" + std::to_string(sent) + long_labels, "A",
                          {.id = static_cast<std::uint16_t>(sent)});
      ::sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    }
    while (::recv(fd, sink, sizeof sink, 0) > 0) {
    }
    std::this_thread::sleep_for(50ms);  // the pace: 100 queries per 50 ms
  }
  INFO("queries sent: " << sent << " in " << elapsed_ms(t0) << " ms");
  CHECK(counters(ld).tcp_connects.load() >= 2);
  // The stalled connection is closed (its writes made no progress).
  bool closed = wait_until(within(5000ms), [&] {
    while (::recv(fd, sink, sizeof sink, 0) > 0) {
    }
    return counters(ld).tcp_connects.load() - static_cast<std::uint64_t>(std::max<std::int64_t>(
                                                  0, counters(ld).tcp_open.load())) >=
           1;
  });
  CHECK(closed);
  ::close(fd);
}

TEST_CASE("an upstream that stops reading gets no more TCP connections than tcp.connections",
          "[integration][faults]") {
  FakeUpstream up;
  up.set({.tcp_no_read = true});
  // A timeout longer than the test: no write-stall close, so no replacement
  // connection; no retirement by age or count either. The bound is exact.
  auto g = fast(group({"."}, {up.address()}, Transport::Tcp), 20000, 1);
  g.tcp.connections = 2;
  g.tcp.max_age = {};
  g.tcp.max_queries = 0;
  g.tcp.idle_timeout = {};
  g.max_in_flight = 20000;
  Instance ld({g}, 1);

  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(ld.endpoint().port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string long_labels = "." + std::string(60, 'a') + "." + std::string(60, 'b') + "." +
                                  std::string(60, 'c') + ".example";
  // Distinct names of about 200 bytes: a few hundred fill a connection's
  // queue. Once both are full, further queries fail at once (SERVFAIL).
  int sent = 0, servfail = 0;
  auto t0 = Clock::now();
  std::uint8_t sink[4096];
  auto drain = [&] {
    ssize_t n;
    while ((n = ::recv(fd, sink, sizeof sink, 0)) > 0) {
      if (n >= 4 && (sink[3] & 0x0f) == 2) ++servfail;
    }
  };
  while (sent < 20000 && elapsed_ms(t0) < 10000 && up.tcp_connections() <= 2 && servfail < 500) {
    for (int k = 0; k < 100; ++k, ++sent) {
      auto q = make_query("n" + std::to_string(sent) + long_labels, "A",
                          {.id = static_cast<std::uint16_t>(sent)});
      ::sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    }
    drain();
    std::this_thread::sleep_for(20ms);  // the pace: 100 queries per 20 ms
  }
  drain();
  INFO("queries sent: " << sent << " in " << elapsed_ms(t0) << " ms; SERVFAIL " << servfail);
  CHECK(up.tcp_connections() <= 2);
  CHECK(counters(ld).tcp_connects.load() <= 2);
  CHECK(servfail >= 500);  // the pool was full: queries failed rather than opened connections
  ::close(fd);
}
