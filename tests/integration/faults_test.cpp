// Upstream faults, injected by FakeUpstream: timeouts, failover, broken and
// reordered TCP, truncation, spoofed answers, overload, health and shutdown.
#include <cstdlib>
#include <fcntl.h>
#include <future>
#include <netinet/in.h>
#include <set>
#include <sys/resource.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <localdns/upstream/forwarder.hpp>

#include "fake_upstream.hpp"
#include "instance.hpp"
#include "netns.hpp"

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

TEST_CASE("UDP answers with the wrong ID or the wrong question are ignored",
          "[integration][faults]") {
  FakeUpstream up;
  // Each spoof arrives first and carries other data (198.51.100.x): accepting
  // it would show in the answer.
  SECTION("wrong ID") {
    up.set({.spoof_first = true});
  }
  SECTION("right ID, wrong question") {
    up.set({.spoof_question = true});
  }
  SECTION("both") {
    up.set({.spoof_first = true, .spoof_question = true});
  }
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  for (int i = 0; i < 20; ++i) {
    auto r = ask(ld.endpoint(), "spoof" + std::to_string(i) + ".example");
    CHECK(r.rcode == "NOERROR");
    CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  }
  CHECK(up.udp_queries() == 20);
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

namespace {

// Polls `pred` until it holds or `limit` passes; returns its last value.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
  auto end = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() >= end) return pred();
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

upstream::ForwardCounters& counters(Instance& ld, std::size_t server = 0) {
  return ld.server().groups()[0]->health[server]->counters();
}

}  // namespace

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
    auto r = ask(ld.endpoint(), "tcsilent" + std::to_string(i) + ".example", false, 4000ms);
    long ms = elapsed_ms(t0);
    INFO("query " << i << " answered in " << ms << " ms");
    CHECK(r.rcode == "SERVFAIL");
    CHECK(ms < 1500);  // deadline 2 x 300 ms, plus scheduling margin
  }
  // The coalescer entry completed: a later asker of the same name is answered.
  CHECK(ask(ld.endpoint(), "tcsilent0.example", false, 4000ms).rcode == "SERVFAIL");
  CHECK(up.tcp_queries() >= 5);
  CHECK(eventually([&] { return ld.server().groups()[0]->in_flight.load() == 0; }, 2000ms));
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
  auto r = ask(ld.endpoint(), "late.example", false, 4000ms);
  long ms = elapsed_ms(t0);
  INFO("answered in " << ms << " ms");
  CHECK(r.rcode == "NOERROR");
  CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(ms >= 550);
  CHECK(ms < 1400);
  CHECK(up.queries() >= 2);  // the second attempt was sent while the first was awaited
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
  REQUIRE(eventually([&] { return busy_ok.load() > 0; }, 5000ms));
  auto t0 = Clock::now();
  auto r = ask(ld.endpoint(), "hole.example", false, 4000ms);
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
  CHECK(ask(ld.endpoint(), "noanswer.example").rcode == "SERVFAIL");
  REQUIRE(up.tcp_connections() == 1);
  // 200 ms until the query timed out, then 300 ms idle.
  auto t0 = Clock::now();
  bool closed = eventually([&] { return up.open_tcp_connections() == 0; }, 3000ms);
  INFO("open after " << elapsed_ms(t0) << " ms: " << up.open_tcp_connections());
  CHECK(closed);
}

namespace {

// Takes every free descriptor of this process (localdns runs in it) but one,
// for the test's own client socket; gives them back on destruction.
class FdExhaustion {
 public:
  FdExhaustion() {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    int probe = ::dup(0);
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(probe) + 256;
    ::close(probe);
    if (low.rlim_cur < saved_.rlim_cur) ::setrlimit(RLIMIT_NOFILE, &low);
    for (int i = 0; i < 100000; ++i) {
      int fd = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) break;
      fds_.push_back(fd);
    }
    if (!fds_.empty()) {
      ::close(fds_.back());  // for the client's socket
      fds_.pop_back();
    }
  }
  ~FdExhaustion() {
    for (int fd : fds_)
      ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }
  std::size_t taken() const { return fds_.size(); }

 private:
  rlimit saved_{};
  std::vector<int> fds_;
};

}  // namespace

TEST_CASE("running out of descriptors is a local error, not a server failure",
          "[integration][faults]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Sanitizer runtimes open descriptors (pipes to probe memory) while the
  // process is out of them, and then report false errors. The plain build
  // runs this test; the firewall test covers local errors everywhere.
  WARN("not run in a sanitizer build");
  return;
#endif
  FakeUpstream a, b;
  auto transport = GENERATE(Transport::Tcp, Transport::Udp);
  INFO("transport " << config::to_string(transport));
  auto g = fast(group({"."}, {a.address(), b.address()}, transport), 500, 2);
  g.fail_threshold = 1;  // a single counted failure would mark a server down
  g.policy = config::Policy::Sequential;
  Instance ld({g}, 1);
  std::optional<Reply> during;
  std::size_t taken = 0;
  {
    // No assertion in here: sanitizer runtimes need descriptors themselves.
    auto q = make_query("emfile.example", "A", {.id = 77});
    FdExhaustion exhausted;
    taken = exhausted.taken();
    auto r = udp_query(ld.endpoint(), q, 3000ms);
    if (r) during = decode(*r);
  }
  REQUIRE(taken > 0);
  REQUIRE(during.has_value());
  CHECK(during->rcode == "SERVFAIL");
  auto& group_state = *ld.server().groups()[0];
  CHECK_FALSE(group_state.health[0]->is_down());
  CHECK_FALSE(group_state.health[1]->is_down());
  CHECK(counters(ld, 0).failures.load() == 0);
  CHECK(counters(ld, 0).local_errors.load() >= 1);
  // Descriptors are back: the first server answers again, once the short
  // connect backoff of a local error is over (until then the second answers).
  int tries = 0;
  bool first_again = eventually(
      [&] {
        auto name = "after" + std::to_string(tries++) + ".example";
        return ask(ld.endpoint(), name).rcode == "NOERROR" && a.queries_for(name + ".") == 1;
      },
      3000ms);
  INFO("queries until the first server answered: " << tries);
  CHECK(first_again);
  CHECK_FALSE(group_state.health[0]->is_down());
  CHECK(counters(ld, 0).failures.load() == 0);
}

TEST_CASE("a local firewall refusing UDP to the upstream is a local error, not a server failure",
          "[integration][faults][root]") {
  if (::geteuid() != 0) {
    const char* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true") FAIL("needs root (a network namespace and iptables)");
    WARN("needs root (a network namespace and iptables): not run");
    return;
  }
  // The upstreams, localdns and this client live in a fresh namespace; a DROP
  // rule in its OUTPUT chain makes UDP sends to the first server fail with
  // EPERM, as a node firewall would. (A dropped TCP SYN is retried by the
  // kernel and looks like a dead server: no local error to see there.)
  ScopedNetns ns;
  FakeUpstream a, b;
  sh("iptables -A OUTPUT -p udp -d 127.0.0.1 --dport " + std::to_string(a.port()) + " -j DROP");
  auto g = fast(group({"."}, {a.address(), b.address()}, Transport::Udp), 500, 2);
  g.fail_threshold = 1;  // a single counted failure would mark a server down
  g.policy = config::Policy::Sequential;
  Instance ld({g}, 1);
  for (int i = 0; i < 3; ++i) {
    auto t0 = Clock::now();
    auto r = ask(ld.endpoint(), "eperm" + std::to_string(i) + ".example");
    CHECK(r.rcode == "NOERROR");         // from the second server
    CHECK(elapsed_ms(t0) < 400);         // no wait for a timeout
    std::this_thread::sleep_for(150ms);  // past the short pause after a local connect error
  }
  auto& group_state = *ld.server().groups()[0];
  CHECK_FALSE(group_state.health[0]->is_down());
  CHECK(counters(ld, 0).failures.load() == 0);
  CHECK(counters(ld, 0).local_errors.load() >= 3);
  CHECK(b.queries() == 3);
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
    std::this_thread::sleep_for(50ms);
  }
  INFO("queries sent: " << sent << " in " << elapsed_ms(t0) << " ms");
  CHECK(counters(ld).tcp_connects.load() >= 2);
  // The stalled connection is closed (its writes made no progress).
  bool closed = eventually(
      [&] {
        while (::recv(fd, sink, sizeof sink, 0) > 0) {
        }
        return counters(ld).tcp_connects.load() - static_cast<std::uint64_t>(std::max<std::int64_t>(
                                                      0, counters(ld).tcp_open.load())) >=
               1;
      },
      5000ms);
  CHECK(closed);
  ::close(fd);
}

TEST_CASE("a truncated answer in the shutdown window opens no upstream connection",
          "[integration][faults]") {
  FakeUpstream up;
  up.set({.delay = 300ms, .truncate_udp = true});
  boost::asio::io_context ctx;
  auto state = std::make_shared<upstream::GroupState>(
      fast(group({"."}, {up.address()}, Transport::PreferUdp), 2000, 1));
  static const std::uint8_t kName[] = {4,   's', 'h', 'u', 't', 7,   'e',
                                       'x', 'a', 'm', 'p', 'l', 'e', 0};
  std::optional<upstream::Status> got;
  {
    upstream::Forwarder fwd(ctx, state, util::Clock::real(), util::Random::system());
    upstream::Request req;
    req.question = {dns::Bytes(kName, sizeof kName), 1, 1};
    fwd.resolve(req, [&](const upstream::Result& r) { got = r.status; });
    ctx.run_for(100ms);  // the UDP query is out; its TC answer comes at 300 ms
    REQUIRE(up.udp_queries() == 1);
    REQUIRE_FALSE(got.has_value());
    fwd.shutdown();
    auto t0 = Clock::now();
    while (!got && elapsed_ms(t0) < 3000)
      ctx.run_for(20ms);
    ctx.run_for(300ms);  // anything the exchange would still start
  }
  REQUIRE(got.has_value());
  CHECK(*got == upstream::Status::Failed);
  CHECK(up.tcp_connections() == 0);
  CHECK(up.tcp_queries() == 0);
}

TEST_CASE("the wire form of upstream queries", "[integration][faults]") {
  FakeUpstream up;
  auto transport = GENERATE(Transport::Udp, Transport::Tcp);
  INFO("transport " << config::to_string(transport));
  Instance ld({group({"."}, {up.address()}, transport)}, 1);
  const int n = 24;
  for (int i = 0; i < n; ++i) {
    // The client's ID is the same every time; the upstream's must not be.
    auto r = ask(ld.endpoint(), "WiRe" + std::to_string(i) + ".ExAmPle", false, 3000ms);
    CHECK(r.rcode == "NOERROR");
  }
  auto seen = up.seen_queries();
  REQUIRE(seen.size() == static_cast<std::size_t>(n));
  std::set<std::uint16_t> ids, ports;
  int sequential = 0;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    const auto& q = seen[i].packet;
    REQUIRE(q.size() > 12);
    CHECK(seen[i].tcp == (transport == Transport::Tcp));
    std::uint16_t id = static_cast<std::uint16_t>((q[0] << 8) | q[1]);
    ids.insert(id);
    if (i > 0) {
      const auto& p = seen[i - 1].packet;
      std::uint16_t prev = static_cast<std::uint16_t>((p[0] << 8) | p[1]);
      sequential += static_cast<std::uint16_t>(id - prev) < 4;
    }
    ports.insert(seen[i].source_port);
    // The name in lower case, byte for byte.
    std::size_t pos = 12;
    bool lower = true;
    while (pos < q.size() && q[pos] != 0) {
      std::size_t len = q[pos];
      REQUIRE(pos + 1 + len < q.size());
      for (std::size_t k = 1; k <= len; ++k)
        lower = lower && !(q[pos + k] >= 'A' && q[pos + k] <= 'Z');
      pos += 1 + len;
    }
    CHECK(lower);
    REQUIRE(pos + 5 <= q.size());
    pos += 5;  // root label, type, class
    // Exactly one additional record: an OPT (type 41) advertising 1232 bytes.
    CHECK(((q[10] << 8) | q[11]) == 1);
    REQUIRE(pos + 11 <= q.size());
    CHECK(q[pos] == 0);
    CHECK(((q[pos + 1] << 8) | q[pos + 2]) == 41);
    CHECK(((q[pos + 3] << 8) | q[pos + 4]) == 1232);
    CHECK(pos + 11 == q.size());
  }
  // Random IDs: nearly all distinct (a 16-bit collision among 24 is rare but
  // possible) and not a counter.
  CHECK(ids.size() >= static_cast<std::size_t>(n - 2));
  CHECK(sequential <= 2);
  if (transport == Transport::Udp) {
    // A fresh socket, so a fresh random source port, for every query.
    CHECK(ports.size() >= static_cast<std::size_t>(n - 2));
  } else {
    CHECK(ports.size() == 1);  // one pipelined connection, reused
  }
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
    ask(ld.endpoint(), "timeout" + std::to_string(i) + ".example");
  auto& group_state = *ld.server().groups()[0];
  CHECK(eventually([&] { return group_state.health[0]->is_down(); }, 2000ms));
  CHECK(counters(ld, 0).failures.load() >= 2);
  // Later queries go straight to the healthy server.
  for (int i = 0; i < 3; ++i) {
    auto t0 = Clock::now();
    auto name = "healthy" + std::to_string(i) + ".example";
    auto r = ask(ld.endpoint(), name);
    long ms = elapsed_ms(t0);
    INFO(name << " answered in " << ms << " ms");
    CHECK(r.rcode == "NOERROR");
    CHECK(ms < 250);  // no wait for the 300 ms timeout
    CHECK(blackhole.queries_for(name + ".") == 0);
  }
  // Probes of the silent server time out: each is a health-check failure.
  CHECK(eventually([&] { return counters(ld, 0).healthcheck_failures.load() >= 2; }, 3000ms));
  CHECK(blackhole.queries_for(".") >= 2);
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
    auto r = ask(ld.endpoint(), name, false, 4000ms);
    INFO(name);
    CHECK(r.rcode == "NOERROR");
    CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  }
  CHECK(up.tcp_queries() == 10);
  CHECK(up.tcp_connections() == 1);
  CHECK(counters(ld, 0).failures.load() == 0);
  CHECK_FALSE(ld.server().groups()[0]->health[0]->is_down());
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
    std::this_thread::sleep_for(20ms);
  }
  drain();
  INFO("queries sent: " << sent << " in " << elapsed_ms(t0) << " ms; SERVFAIL " << servfail);
  CHECK(up.tcp_connections() <= 2);
  CHECK(counters(ld).tcp_connects.load() <= 2);
  CHECK(servfail >= 500);  // the pool was full: queries failed rather than opened connections
  ::close(fd);
}
