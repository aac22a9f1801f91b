// Reloading a running localdns: SIGHUP, `localdns ctl reload` and a change of
// its config file apply a new configuration without a restart; an invalid one
// changes nothing; no query is lost; SIGTERM still stops it in time.
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <future>
#include <memory>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>

#include <catch2/catch.hpp>

#include "reload_support.hpp"
#include "run_binary.hpp"

using namespace localdns::test;
using Clock = std::chrono::steady_clock;

namespace {

// Two zones, a.test on `a` and b.test on `b`, from a YAML file in `dir`.
struct Running {
  FakeUpstream a1, a2, b;
  TempDir dir;
  ReloadConfig cfg;
  std::string config_path;
  Endpoint ep;
  std::unique_ptr<Daemon> d;

  // `config_path` empty: dir/localdns.yaml, written here.
  explicit Running(std::string path = "") : config_path(std::move(path)) {
    cfg.port = free_port();
    cfg.metrics_port = free_port();
    cfg.health_port = free_port();
    cfg.control_socket = dir.file("ctl.sock");
    cfg.a_upstream = a1.address();
    cfg.b_upstream = b.address();
    ep = Endpoint{"127.0.0.1", cfg.port};
    if (config_path.empty()) {
      config_path = dir.file("localdns.yaml");
      replace_file(config_path, cfg.yaml());
    }
  }
  // Without `watch`, only SIGHUP and `ctl reload` reload (--no-watch), so
  // that the tests' own edits of the file trigger nothing by themselves.
  void start(bool watch = false) {
    std::vector<std::string> args{"--config", config_path};
    if (!watch) args.push_back("--no-watch");
    d = std::make_unique<Daemon>(args, dir.file("log"));
    REQUIRE(d->wait_ready(ep, 10s));
    // The watcher starts just after the workers serve: a change made before
    // it watches is not seen.
    if (watch) REQUIRE(d->wait_log("reload: watching", 1, 10s));
  }
  // Until `n` reloads have succeeded (the metric); false on timeout.
  bool wait_reloads(double n, std::chrono::milliseconds timeout = 5s) {
    return wait_until(
        within(timeout), [&] { return reloads(cfg.metrics_port, "success") >= n; }, 20ms);
  }
  Run ctl(const std::string& cmd) { return run("ctl --socket " + cfg.control_socket + " " + cmd); }
  unsigned ready_status() {
    try {
      return http_get(cfg.health_port, "/ready").first;
    } catch (const std::exception&) {
      return 0;
    }
  }
};

const std::string kAddr = FakeUpstream::answer_address();

}  // namespace

TEST_CASE("reload: SIGHUP moves a zone to a new upstream and drops only its cached answers",
          "[integration][reload]") {
  Running r;
  r.start();
  REQUIRE(answer(r.ep, "x.a.test") == kAddr);
  REQUIRE(answer(r.ep, "y.b.test") == kAddr);
  REQUIRE(answer(r.ep, "x.a.test") == kAddr);  // cached
  REQUIRE(answer(r.ep, "y.b.test") == kAddr);
  REQUIRE(r.a1.queries_for("x.a.test.") == 1);
  REQUIRE(r.b.queries_for("y.b.test.") == 1);
  REQUIRE(wait_until(within(5s), [&] { return r.ready_status() == 200; }));

  // /ready, sampled all through the reload.
  std::atomic<bool> sampling{true};
  std::atomic<unsigned> not_ready{0}, samples{0};
  std::thread ready([&] {
    while (sampling) {
      if (r.ready_status() != 200) ++not_ready;
      ++samples;
      std::this_thread::sleep_for(10ms);
    }
  });
  r.cfg.a_upstream = r.a2.address();
  replace_file(r.config_path, r.cfg.yaml());
  r.d->signal(SIGHUP);
  bool reloaded = r.wait_reloads(1);
  // New queries of a.test reach the new upstream, the cached one included.
  auto x = answer(r.ep, "x.a.test");
  auto fresh = answer(r.ep, "fresh.a.test");
  auto y = answer(r.ep, "y.b.test");
  sampling = false;
  ready.join();
  INFO(r.d->log());
  REQUIRE(reloaded);
  CHECK(x == kAddr);
  CHECK(fresh == kAddr);
  CHECK(y == kAddr);
  CHECK(r.a2.queries_for("x.a.test.") == 1);  // dropped from the cache with its zone
  CHECK(r.a2.queries_for("fresh.a.test.") == 1);
  CHECK(r.a1.queries_for("x.a.test.") == 1);
  CHECK(r.a1.queries_for("fresh.a.test.") == 0);
  CHECK(r.b.queries_for("y.b.test.") == 1);  // b.test's answer stayed cached
  CHECK(r.b.queries() == 1);
  CHECK(samples > 0);
  CHECK(not_ready == 0);
  CHECK(r.d->log_count("generation 1 serving") == 1);
  CHECK(metric(r.cfg.metrics_port, "localdns_config_info") == 1);
  CHECK(reloads(r.cfg.metrics_port, "failure") == 0);
  r.d->signal(SIGTERM);
  CHECK(r.d->wait_exit(10s));
}

TEST_CASE(
    "reload: an invalid config is refused with --check-config's errors and the old one serves",
    "[integration][reload]") {
  Running r;
  r.start();
  REQUIRE(answer(r.ep, "one.a.test") == kAddr);
  auto good = r.cfg.yaml();
  // Line 12 is the first group's timeout.
  r.cfg.a_timeout = "soon";
  r.cfg.a_upstream = r.a2.address();
  replace_file(r.config_path, r.cfg.yaml());
  auto check = run("--check-config " + r.config_path);
  REQUIRE(check.status == 2);
  auto expected = r.config_path + ":12: forward[0].timeout: expected a duration";
  REQUIRE(check.output.find(expected) != std::string::npos);

  auto res = r.ctl("reload");
  INFO(res.output << "\n" << r.d->log());
  CHECK(res.status == 1);
  CHECK(res.output.find("error: reload failed") != std::string::npos);
  CHECK(res.output.find(expected) != std::string::npos);
  CHECK(reloads(r.cfg.metrics_port, "failure") == 1);
  CHECK(reloads(r.cfg.metrics_port, "success") == 0);
  CHECK(r.d->log_count(expected) >= 1);
  // Still the old configuration: a.test on a1.
  CHECK(answer(r.ep, "two.a.test") == kAddr);
  CHECK(r.a1.queries_for("two.a.test.") == 1);
  CHECK(r.a2.queries() == 0);
  CHECK(r.ready_status() == 200);

  // A key that needs a restart is refused by name.
  auto moved = r.cfg;
  moved.a_timeout = "1s";
  moved.threads = 3;
  replace_file(r.config_path, moved.yaml());
  res = r.ctl("reload");
  CHECK(res.status == 1);
  CHECK(res.output.find("threads cannot change on reload; restart") != std::string::npos);
  CHECK(reloads(r.cfg.metrics_port, "failure") == 2);

  // Fixed: `ctl reload` says so and applies it.
  replace_file(r.config_path, good);
  res = r.ctl("reload");
  CHECK(res.status == 0);
  CHECK(res.output == "reloaded: generation 1\n");
  CHECK(reloads(r.cfg.metrics_port, "success") == 1);
  r.d->signal(SIGTERM);
  CHECK(r.d->wait_exit(10s));
}

TEST_CASE("reload: a changed config file applies without a signal", "[integration][reload]") {
  SECTION("a new file renamed over it") {
    Running r;
    r.start(true);
    REQUIRE(answer(r.ep, "w1.a.test") == kAddr);
    r.cfg.a_upstream = r.a2.address();
    auto t0 = Clock::now();
    replace_file(r.config_path, r.cfg.yaml());
    bool applied = r.wait_reloads(1, 10s);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    INFO(r.d->log());
    REQUIRE(applied);
    WARN("file change applied after " << ms << " ms (debounce 1000 ms)");
    CHECK(ms >= 900);  // debounced
    CHECK(r.d->log_count("reload (file change)") == 1);
    CHECK(answer(r.ep, "w2.a.test") == kAddr);
    CHECK(r.a2.queries_for("w2.a.test.") == 1);
    CHECK(r.a1.queries_for("w2.a.test.") == 0);
  }
  SECTION("a ConfigMap volume's ..data symlink swapped") {
    TempDir vol;
    std::filesystem::create_directory(vol.file("..2026_01"));
    std::filesystem::create_directory_symlink("..2026_01", vol.file("..data"));
    std::filesystem::create_symlink("..data/localdns.yaml", vol.file("localdns.yaml"));
    Running r(vol.file("localdns.yaml"));
    replace_file(vol.file("..2026_01/localdns.yaml"), r.cfg.yaml());
    r.start(true);
    REQUIRE(answer(r.ep, "k1.a.test") == kAddr);
    // As the kubelet does: a new timestamped directory, a new ..data
    // symlink beside the old one, renamed over it.
    r.cfg.a_upstream = r.a2.address();
    std::filesystem::create_directory(vol.file("..2026_02"));
    replace_file(vol.file("..2026_02/localdns.yaml"), r.cfg.yaml());
    std::filesystem::create_directory_symlink("..2026_02", vol.file("..data_tmp"));
    std::filesystem::rename(vol.file("..data_tmp"), vol.file("..data"));
    std::filesystem::remove_all(vol.file("..2026_01"));
    bool applied = r.wait_reloads(1, 10s);
    INFO(r.d->log());
    REQUIRE(applied);
    CHECK(answer(r.ep, "k2.a.test") == kAddr);
    CHECK(r.a2.queries_for("k2.a.test.") == 1);
    CHECK(r.a1.queries_for("k2.a.test.") == 0);
  }
}

TEST_CASE("reload: five reloads under continuous queries lose none", "[integration][reload]") {
  Running r;
  r.start();
  std::atomic<bool> going{true};
  struct Tally {
    unsigned sent = 0, answered = 0;
    std::vector<std::string> bad;
  };
  auto client = [&](int id) {
    Tally t;
    for (unsigned i = 0; going || i < 50; ++i) {
      // New names (misses, half of them on the zone that moves) and repeats (hits).
      std::string name = (i % 3 == 0 ? "hot" : "q" + std::to_string(id) + "-" + std::to_string(i)) +
                         (i % 2 ? ".a.test" : ".b.test");
      ++t.sent;
      auto got = answer(r.ep, name);
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
  for (int n = 1; n <= 6; ++n) {
    r.cfg.a_upstream = (n % 2 ? r.a2 : r.a1).address();
    r.cfg.a_timeout = n % 3 == 0 ? "1200ms" : "1s";
    replace_file(r.config_path, r.cfg.yaml());
    r.d->signal(SIGHUP);
    REQUIRE(r.wait_reloads(n));
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
  WARN("under 6 reloads: " << sent << " queries sent, " << answered << " answered; upstreams a1 "
                           << r.a1.queries() << ", a2 " << r.a2.queries() << ", b "
                           << r.b.queries());
  INFO(r.d->log());
  for (const auto& b : bad)
    INFO(b);
  CHECK(sent >= 200);
  CHECK(answered == sent);
  CHECK(r.a2.queries() > 0);
  CHECK(reloads(r.cfg.metrics_port, "failure") == 0);
  r.d->signal(SIGTERM);
  CHECK(r.d->wait_exit(10s));
}

TEST_CASE("reload: SIGTERM right after SIGHUP still stops within the grace and its bound",
          "[integration][reload]") {
  Running r;
  r.cfg.a_timeout = "5s";  // longer than the grace: only the shutdown ends the query below
  replace_file(r.config_path, r.cfg.yaml());
  r.start();
  REQUIRE(answer(r.ep, "t1.a.test") == kAddr);
  // A silent upstream keeps a query in flight for the whole grace; the
  // reload then retires its group with the query still in flight.
  r.a1.set(Behaviour{.mode = Behaviour::Mode::Drop});
  auto pending = std::async(std::launch::async, [&] { return answer(r.ep, "stuck.a.test"); });
  REQUIRE(wait_until(within(5s), [&] { return r.a1.queries_for("stuck.a.test.") == 1; }));
  r.cfg.a_upstream = r.a2.address();
  replace_file(r.config_path, r.cfg.yaml());
  auto t0 = Clock::now();
  r.d->signal(SIGHUP);
  r.d->signal(SIGTERM);
  auto status = r.d->wait_exit(10s);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  INFO(r.d->log());
  REQUIRE(status);
  WARN("SIGHUP then SIGTERM: exited after " << ms << " ms (grace 500 ms)");
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  // The grace (500 ms), the flush bound (1 s), a reload (at most 1 s) and slack.
  CHECK(ms < 3500);
  CHECK(pending.get() == "SERVFAIL");
}

TEST_CASE("reload: node-local-dns's Corefile (-conf) applies when it changes",
          "[integration][reload]") {
  FakeUpstream a1, a2;
  TempDir dir;
  auto port = free_port();
  Endpoint ep{"127.0.0.1", port};
  auto corefile = [&](const FakeUpstream& up) {
    return "a.test:" + std::to_string(port) + " {\n  bind 127.0.0.1\n  forward . " + up.address() +
           "\n}\n";
  };
  const auto path = dir.file("Corefile");
  replace_file(path, corefile(a1));
  Daemon d({"-conf", path, "--control-socket", "off", "--threads", "2"}, dir.file("log"));
  REQUIRE(d.wait_ready(ep, 10s));
  REQUIRE(d.wait_log("reload: watching", 1, 10s));
  REQUIRE(answer(ep, "c1.a.test") == kAddr);
  REQUIRE(a1.queries_for("c1.a.test.") == 1);
  replace_file(path, corefile(a2));
  bool applied = d.wait_log("reload (file change): generation 1 serving", 1, 10s);
  INFO(d.log());
  REQUIRE(applied);
  CHECK(answer(ep, "c2.a.test") == kAddr);
  CHECK(a2.queries_for("c2.a.test.") == 1);
  CHECK(a1.queries_for("c2.a.test.") == 0);
  d.signal(SIGTERM);
  CHECK(d.wait_exit(10s));
}

namespace {

// A UDP query to `ep` is refused (ICMP port unreachable: nothing bound there).
bool udp_refused(const Endpoint& ep) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(ep.port);
  ::inet_pton(AF_INET, ep.address.c_str(), &sa.sin_addr);
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  auto q = make_query("refused.a.test", "A");
  bool refused = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      ::send(fd, q.data(), q.size(), 0) == static_cast<ssize_t>(q.size())) {
    pollfd p{fd, POLLIN, 0};
    std::uint8_t buf[512];
    refused =
        ::poll(&p, 1, 500) == 1 && ::recv(fd, buf, sizeof buf, 0) < 0 && errno == ECONNREFUSED;
  }
  ::close(fd);
  return refused;
}

bool tcp_refused(const Endpoint& ep) {
  return !TcpStream(ep).connected();
}

std::string tcp_answer(const Endpoint& ep, const std::string& name) {
  auto r = tcp_query(ep, make_query(name, "A"), 3000ms);
  if (!r) return "no reply";
  auto d = decode(*r);
  if (d.rcode != "NOERROR" || d.answers.empty()) return d.rcode;
  return d.answers.front();
}

// Queries `ep` over UDP and TCP, hits and misses, until stopped; counts what
// got no answer.
class QueryLoop {
 public:
  explicit QueryLoop(Endpoint ep) : ep_(std::move(ep)) {
    for (int id = 0; id < 2; ++id)
      clients_.push_back(std::async(std::launch::async, [this, id] { return loop(id); }));
  }
  struct Tally {
    unsigned sent = 0, answered = 0;
    std::vector<std::string> bad;
  };
  Tally stop() {
    going_ = false;
    Tally all;
    for (auto& c : clients_) {
      auto t = c.get();
      all.sent += t.sent;
      all.answered += t.answered;
      all.bad.insert(all.bad.end(), t.bad.begin(), t.bad.end());
    }
    return all;
  }

 private:
  Tally loop(int id) {
    Tally t;
    for (unsigned i = 0; going_ || i < 20; ++i) {
      std::string name =
          (i % 3 == 0 ? "hot" : "l" + std::to_string(id) + "-" + std::to_string(i)) + ".b.test";
      ++t.sent;
      auto got = i % 4 == 1 ? tcp_answer(ep_, name) : answer(ep_, name);
      if (got == kAddr) {
        ++t.answered;
      } else if (t.bad.size() < 10) {
        t.bad.push_back(name + ": " + got);
      }
    }
    return t;
  }
  Endpoint ep_;
  std::atomic<bool> going_{true};
  std::vector<std::future<Tally>> clients_;
};

}  // namespace

TEST_CASE(
    "reload: a listen address added by SIGHUP answers, removed it stops, the other loses "
    "nothing",
    "[integration][reload]") {
  Running r;
  r.start();
  const Endpoint second{"127.0.0.2", r.cfg.port};
  REQUIRE(udp_refused(second));
  QueryLoop loop(r.ep);

  r.cfg.extra_listen = {"127.0.0.2:" + std::to_string(r.cfg.port)};
  replace_file(r.config_path, r.cfg.yaml());
  r.d->signal(SIGHUP);
  REQUIRE(r.wait_reloads(1));
  INFO(r.d->log());
  CHECK(answer(second, "add1.a.test") == kAddr);
  CHECK(tcp_answer(second, "add2.a.test") == kAddr);
  CHECK(r.d->log_count("now listening on 127.0.0.2:" + std::to_string(r.cfg.port)) == 1);
  // /health probes the addresses serving now.
  CHECK(wait_until(within(5s), [&] {
    try {
      return http_get(r.cfg.health_port, "/health").first == 200;
    } catch (const std::exception&) {
      return false;
    }
  }));

  r.cfg.extra_listen.clear();
  replace_file(r.config_path, r.cfg.yaml());
  auto t0 = Clock::now();
  r.d->signal(SIGHUP);
  REQUIRE(r.wait_reloads(2));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  // The reload returns once the removed listeners are closed.
  CHECK(wait_until(within(3s), [&] { return udp_refused(second) && tcp_refused(second); }));
  CHECK(answer(r.ep, "after.a.test") == kAddr);
  CHECK(tcp_answer(r.ep, "after2.a.test") == kAddr);
  CHECK(wait_until(within(5s), [&] {
    try {
      return http_get(r.cfg.health_port, "/health").first == 200;
    } catch (const std::exception&) {
      return false;
    }
  }));
  CHECK(r.ready_status() == 200);
  CHECK(r.d->log_count("no longer listening on 127.0.0.2:" + std::to_string(r.cfg.port)) == 1);

  auto t = loop.stop();
  for (const auto& b : t.bad)
    INFO(b);
  WARN("listen added and removed under a query loop: "
       << t.sent << " sent, " << t.answered << " answered; the removal took " << ms << " ms");
  CHECK(t.sent >= 50);
  CHECK(t.answered == t.sent);
  CHECK(reloads(r.cfg.metrics_port, "failure") == 0);
  CHECK(r.d->terminate(10s));
}

TEST_CASE("reload: a listen address that cannot be bound fails the reload and changes nothing",
          "[integration][reload]") {
  Running r;
  r.start();
  const Endpoint good{"127.0.0.3", r.cfg.port};
  auto port = std::to_string(r.cfg.port);

  SECTION("not on any interface") {
    // TEST-NET-1 (RFC 5737): on no interface of this host. The good address
    // comes first: bound, then closed again when the second fails.
    r.cfg.extra_listen = {"127.0.0.3:" + port, "192.0.2.1:" + port};
    replace_file(r.config_path, r.cfg.yaml());
    auto res = r.ctl("reload");
    INFO(res.output << "\n" << r.d->log());
    CHECK(res.status == 1);
    CHECK(res.output.find("listen: cannot listen on udp 192.0.2.1:" + port) != std::string::npos);
    CHECK(res.output.find("not on this host") != std::string::npos);
    CHECK(r.d->log_count("cannot listen on udp 192.0.2.1:" + port) >= 1);
  }
  SECTION("a port another socket holds") {
    // Bound without SO_REUSEPORT: localdns's sockets cannot join it.
    auto other = static_cast<std::uint16_t>(r.cfg.port + 1);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(other);
    ::inet_pton(AF_INET, "127.0.0.4", &sa.sin_addr);
    int held = ::socket(AF_INET, SOCK_DGRAM, 0);
    REQUIRE(::bind(held, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    r.cfg.extra_listen = {"127.0.0.3:" + port, "127.0.0.4:" + std::to_string(other)};
    replace_file(r.config_path, r.cfg.yaml());
    auto res = r.ctl("reload");
    ::close(held);
    INFO(res.output << "\n" << r.d->log());
    CHECK(res.status == 1);
    CHECK(res.output.find("cannot listen on udp 127.0.0.4:" + std::to_string(other)) !=
          std::string::npos);
    CHECK(res.output.find("another socket holds it") != std::string::npos);
  }
  CHECK(reloads(r.cfg.metrics_port, "failure") == 1);
  CHECK(reloads(r.cfg.metrics_port, "success") == 0);
  // Nothing half-applied: the address bound before the failure is closed.
  CHECK(wait_until(within(3s), [&] { return udp_refused(good) && tcp_refused(good); }));
  CHECK(answer(r.ep, "still.a.test") == kAddr);
  CHECK(tcp_answer(r.ep, "still2.a.test") == kAddr);
  CHECK(r.ready_status() == 200);
  // The good address alone applies.
  r.cfg.extra_listen = {"127.0.0.3:" + port};
  replace_file(r.config_path, r.cfg.yaml());
  auto res = r.ctl("reload");
  CHECK(res.output == "reloaded: generation 1\n");
  CHECK(answer(good, "good.a.test") == kAddr);
  CHECK(r.d->terminate(10s));
}

TEST_CASE("reload: answers in flight on a removed listen address are still written",
          "[integration][reload]") {
  Running r;
  const Endpoint second{"127.0.0.2", r.cfg.port};
  r.cfg.extra_listen = {"127.0.0.2:" + std::to_string(r.cfg.port)};
  replace_file(r.config_path, r.cfg.yaml());
  r.start();
  REQUIRE(answer(second, "warm.a.test") == kAddr);
  // The upstream answers 400 ms late: both queries are upstream when the
  // reload removes the address they came in on.
  r.a1.set(Behaviour{.delay = 400ms});
  auto udp = std::async(std::launch::async, [&] { return answer(second, "slow1.a.test"); });
  auto tcp = std::async(std::launch::async, [&] { return tcp_answer(second, "slow2.a.test"); });
  REQUIRE(wait_until(within(3s), [&] {
    return r.a1.queries_for("slow1.a.test.") == 1 && r.a1.queries_for("slow2.a.test.") == 1;
  }));
  r.cfg.extra_listen.clear();
  replace_file(r.config_path, r.cfg.yaml());
  r.d->signal(SIGHUP);
  REQUIRE(r.wait_reloads(1));
  INFO(r.d->log());
  CHECK(udp.get() == kAddr);
  CHECK(tcp.get() == kAddr);
  CHECK(wait_until(within(3s), [&] { return udp_refused(second) && tcp_refused(second); }));
  CHECK(answer(r.ep, "kept.a.test") == kAddr);
  CHECK(r.d->terminate(10s));
}
