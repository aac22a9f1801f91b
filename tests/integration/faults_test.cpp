// Upstream faults, injected by FakeUpstream: truncation, spoofed answers,
// the in-flight cap, local errors (no descriptors, a firewall), shutdown
// while queries hang, and the wire form of upstream queries.
#include <cstdlib>
#include <fcntl.h>
#include <future>
#include <set>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <localdns/upstream/forwarder.hpp>

#include "faults_support.hpp"
#include "netns.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

TEST_CASE("truncated UDP answers are retried over TCP", "[integration][faults]") {
  FakeUpstream up;
  up.set({.truncate_udp = true});
  Instance ld({group({"."}, {up.address()}, Transport::PreferUdp)});
  auto r = ask_a(ld.endpoint(), "trunc.example");
  CHECK_FALSE(r.tc);
  CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(up.udp_queries() == 1);
  CHECK(up.tcp_queries() == 1);

  SECTION("transport udp passes the truncation on") {
    FakeUpstream up2;
    up2.set({.truncate_udp = true});
    Instance ld2({group({"."}, {up2.address()}, Transport::Udp)});
    auto r2 = ask_a(ld2.endpoint(), "trunc.example");
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
    auto r = ask_a(ld.endpoint(), "spoof" + std::to_string(i) + ".example");
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
  wait_until(
      within(3s), [&] { return up.queries() != 0; }, 5ms);
  REQUIRE(up.queries() == 1);
  auto took = ld.stop();
  CHECK(took < 1000ms);
  auto r = pending.get();
  // The query in flight gets SERVFAIL when the grace runs out: never silence.
  REQUIRE(r);
  CHECK(decode(*r).rcode == "SERVFAIL");
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
  bool first_again = wait_until(within(3000ms), [&] {
    auto name = "after" + std::to_string(tries++) + ".example";
    return ask_a(ld.endpoint(), name).rcode == "NOERROR" && a.queries_for(name + ".") == 1;
  });
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
    auto r = ask_a(ld.endpoint(), "eperm" + std::to_string(i) + ".example");
    CHECK(r.rcode == "NOERROR");  // from the second server
    CHECK(elapsed_ms(t0) < 400);  // no wait for a timeout
    // Past the short pause after a local connect error, which nothing outside
    // localdns can see end: the wait is the point here.
    std::this_thread::sleep_for(150ms);
  }
  auto& group_state = *ld.server().groups()[0];
  CHECK_FALSE(group_state.health[0]->is_down());
  CHECK(counters(ld, 0).failures.load() == 0);
  CHECK(counters(ld, 0).local_errors.load() >= 3);
  CHECK(b.queries() == 3);
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
    auto r = ask_a(ld.endpoint(), "WiRe" + std::to_string(i) + ".ExAmPle", 3000ms);
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
