// Upgrade handover under continuous load, through the real binary: instance A
// serves UDP and pipelined TCP clients (hits and misses, some misses held
// 400 ms by a slow upstream so that they are in flight), instance B starts
// with the same configuration and takes A's sockets over the control socket,
// A gets SIGTERM, the load goes on. No query may be lost or answered later
// than 1 s, and /metrics and /health answer throughout. The hidden
// [.handover-loss] case does the same as a plain restart (--no-handover:
// B binds beside A with SO_REUSEPORT) and shows what that loses.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/handover.hpp>

#include "daemon.hpp"
#include "endpoints.hpp"
#include "fake_upstream.hpp"
#include "handover_load.hpp"
#include "http_get.hpp"
#include "wait.hpp"

using namespace localdns::test;
using namespace std::chrono_literals;

namespace {

// Queries per second of each of the 4 UDP clients: a rate that keeps
// datagrams queued in a release build, lower where a sanitizer makes
// localdns several times slower (the point is the handover, not the load the
// build can take).
#if defined(__SANITIZE_THREAD__)
constexpr unsigned kUdpQps = 500;
#elif defined(__SANITIZE_ADDRESS__)
constexpr unsigned kUdpQps = 2000;
#else
constexpr unsigned kUdpQps = 6000;
#endif

// GETs /health and /metrics every 20 ms; counts what did not answer 200.
class HttpPoller {
 public:
  HttpPoller(std::uint16_t health, std::uint16_t metrics)
      : thread_([this, health, metrics] {
          while (!stop_.load()) {
            for (auto [port, path] :
                 {std::pair{health, "/health"}, std::pair{metrics, "/metrics"}}) {
              ++asked_;
              try {
                auto [status, body] = http_get(port, path);
                if (status != 200)
                  fail(std::string(path) + ": " + std::to_string(status) + " " + body);
              } catch (const std::exception& e) {
                fail(std::string(path) + ": " + e.what());
              }
            }
            std::this_thread::sleep_for(20ms);  // pacing, not synchronization
          }
        }) {}
  ~HttpPoller() { stop(); }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  unsigned asked() const { return asked_.load(); }
  unsigned failed() const { return failed_.load(); }
  std::string first_failure() {
    std::lock_guard lock(mu_);
    return first_failure_;
  }

 private:
  void fail(const std::string& what) {
    ++failed_;
    std::lock_guard lock(mu_);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count() %
              60000;
    if (failed_ < 5) first_failure_ += " [" + std::to_string(ms) + "] " + what;
  }
  std::mutex mu_;
  std::string first_failure_;
  std::atomic<bool> stop_{false};
  std::atomic<unsigned> asked_{0}, failed_{0};
  std::thread thread_;
};

struct Setup {
  FakeUpstream fast, slow;
  std::uint16_t port = free_port(), health = free_port(), metrics = free_port();
  std::string control = temp_socket();
  std::string config_path;

  Setup() {
    Behaviour b;
    b.delay = 400ms;
    slow.set(b);
    config_path = write(2);
  }
  // The configuration with `threads` workers.
  std::string write(unsigned threads) const {
    static int serial = 0;
    auto path = "/tmp/localdns-handover-" + std::to_string(::getpid()) + "-" +
                std::to_string(++serial) + ".yaml";
    std::ofstream(path) << "listen: [\"127.0.0.1:" << port << "\"]\n"
                        << "threads: " << threads << "\n"
                        << "log_level: info\n"
                        << "shutdown_grace: 2s\n"
                        << "metrics: \"127.0.0.1:" << metrics << "\"\n"
                        << "health: \"127.0.0.1:" << health << "\"\n"
                        << "control_socket: " << control << "\n"
                        << "forward:\n"
                        << "  - zones: [slow.test]\n"
                        << "    servers: [\"" << slow.address() << "\"]\n"
                        << "    timeout: 2s\n"
                        << "    attempts: 1\n"
                        << "  - zones: [.]\n"
                        << "    servers: [\"" << fast.address() << "\"]\n"
                        << "    timeout: 2s\n"
                        << "    attempts: 1\n";
    return path;
  }
  ~Setup() {
    std::remove(config_path.c_str());
    ::unlink(control.c_str());
  }
  Endpoint dns() const { return {"127.0.0.1", port}; }
};

struct Result {
  LoadTotals load;
  unsigned http_asked = 0, http_failed = 0;
  std::string http_failure;
  std::string phases;  // ms from the load's start
  std::string a_log, b_log;
};

// A serves, the load starts, B starts (with `b_args` added), A gets SIGTERM
// once B serves (and, with a handover, once A says it handed over), the load
// goes on for a second after A exited.
Result run_upgrade(Setup& s, const std::vector<std::string>& b_args, bool handover) {
  std::vector<std::string> args{"--config", s.config_path};
  Daemon a(args);
  REQUIRE(a.wait_ready(s.dns(), 5s));
  for (std::size_t k = 0; k < HandoverLoad::kHits; ++k)
    REQUIRE(udp_query(s.dns(), make_query(HandoverLoad::hit_name(k), "A"), 1s));
  // /health says 503 until its first probe pass after the start (at most 500 ms).
  REQUIRE(wait_until(within(3s), [&] {
    try {
      return http_get(s.health, "/health").first == 200;
    } catch (const std::exception&) {
      return false;
    }
  }));
  Result r;
  {
    HttpPoller http(s.health, s.metrics);
    HandoverLoad load(s.port, 4, kUdpQps, 2);
    auto t0 = std::chrono::steady_clock::now();
    auto mark = [&](const char* what) {
      r.phases += std::string(r.phases.empty() ? "" : ", ") + what + " " +
                  std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - t0)
                                     .count());
    };
    std::this_thread::sleep_for(700ms);  // the load runs on A alone for a while
    auto b_all = args;
    b_all.insert(b_all.end(), b_args.begin(), b_args.end());
    mark("B started");
    Daemon b(b_all);
    if (handover) {
      CHECK(b.wait_log("handover: serving on", 1, 5s));
      mark("B serves");
      CHECK(a.wait_log("handover: handed over to pid", 1, 5s));
      mark("A handed over");
    } else {
      CHECK(b.wait_log("listening on", 1, 5s));
      CHECK(wait_until(within(5s), [&] { return b.log_count("health on") == 1; }));
      mark("B serves");
    }
    a.signal(SIGTERM);
    auto status = a.wait_exit(5s);
    CHECK((status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0));
    mark("A exited");
    auto exited = std::chrono::steady_clock::now();
    // A second more on B alone.
    wait_until(
        exited + 1s, [] { return false; }, 50ms);
    r.load = load.finish();
    mark("load done");
    http.stop();
    r.http_asked = http.asked();
    r.http_failed = http.failed();
    r.http_failure = http.first_failure();
    r.a_log = a.log();
    r.b_log = b.log();
    CHECK(b.terminate(5s));
  }
  return r;
}

}  // namespace

TEST_CASE("handover: an upgrade under load loses no query and delays none past 1 s", "[handover]") {
  Setup s;
  auto r = run_upgrade(s, {}, true);
  INFO("load: " << r.load.text());
  INFO("http: " << r.http_asked << " asked, " << r.http_failed << " failed, first "
                << r.http_failure);
  INFO("A:\n" << r.a_log << "\nB:\n" << r.b_log);
  WARN("handover under load: " << r.load.text() << "; http " << r.http_asked << " asked, "
                               << r.http_failed << " failed; ms: " << r.phases);
  CHECK(r.load.sent > 4 * kUdpQps);  // at least a second's worth
  CHECK(r.load.tcp_sent > 100);
  CHECK(r.load.lost == 0);
  CHECK(r.load.late == 0);
  CHECK(r.load.servfail == 0);
  CHECK(r.http_asked > 50);
  CHECK(r.http_failed == 0);
  // B took every socket: 2 workers x (UDP + TCP) and the two HTTP ones.
  CHECK(r.b_log.find("serving on 6 of the 6 sockets") != std::string::npos);
  // A did not answer SERVFAIL to what it had in flight: it finished it.
  CHECK(r.a_log.find("answering SERVFAIL") == std::string::npos);
  // The slow upstream saw misses, so some were in flight at the handover.
  CHECK(s.slow.queries() > 20);
}

TEST_CASE("handover: ctl reaches the new instance, and the old one leaves its socket alone",
          "[handover]") {
  Setup s;
  std::vector<std::string> args{"--config", s.config_path};
  Daemon a(args);
  REQUIRE(a.wait_ready(s.dns(), 5s));
  Daemon b(args);
  REQUIRE(b.wait_log("handover: serving on", 1, 5s));
  REQUIRE(a.wait_log("handover: handed over to pid", 1, 5s));
  auto ctl_pid = [&] {
    // The control socket's peer is the process that bound it.
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, s.control.c_str(), sizeof addr.sun_path - 1);
    pid_t pid = 0;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) pid = cred.pid;
    }
    ::close(fd);
    return pid;
  };
  CHECK(ctl_pid() == b.pid());
  REQUIRE(a.terminate(5s));
  CHECK(a.log().find("node setup: left in place") == std::string::npos);  // it had none
  // A's exit did not unlink B's socket.
  CHECK(ctl_pid() == b.pid());
  CHECK(udp_query(s.dns(), make_query("after.load.test", "A"), 1s).has_value());
  // A third instance takes over from B in turn.
  Daemon c(args);
  CHECK(c.wait_log("handover: serving on 6 of the 6 sockets", 1, 5s));
  CHECK(b.wait_log("handover: handed over to pid", 1, 5s));
  CHECK(ctl_pid() == c.pid());
}

TEST_CASE("handover: fewer or more workers than the donor take every socket", "[handover]") {
  Setup s;
  auto one = s.write(1), three = s.write(3);
  Daemon a({"--config", s.config_path});
  REQUIRE(a.wait_ready(s.dns(), 5s));
  // One worker takes both workers' sockets: none is left unread.
  Daemon b({"--config", one});
  REQUIRE(b.wait_log("handover: serving on 6 of the 6 sockets", 1, 5s));
  REQUIRE(a.wait_log("handover: handed over to pid", 1, 5s));
  REQUIRE(a.terminate(5s));
  for (int i = 0; i < 20; ++i)
    CHECK(udp_query(s.dns(), make_query("b" + std::to_string(i) + ".load.test", "A"), 1s));
  // B's one worker holds two UDP and two TCP sockets; three workers take
  // one of each apiece and the third binds its own beside them.
  Daemon c({"--config", three});
  REQUIRE(c.wait_log("handover: serving on 6 of the 6 sockets", 1, 5s));
  REQUIRE(b.wait_log("handover: handed over to pid", 1, 5s));
  REQUIRE(b.terminate(5s));
  for (int i = 0; i < 20; ++i) {
    CHECK(udp_query(s.dns(), make_query("c" + std::to_string(i) + ".load.test", "A"), 1s));
    CHECK(tcp_query(s.dns(), make_query("t" + std::to_string(i) + ".load.test", "A"), 1s));
  }
  CHECK(c.terminate(5s));
  std::remove(one.c_str());
  std::remove(three.c_str());
}

TEST_CASE("handover: the old instance stops when its successor dies, and a new one serves",
          "[handover]") {
  Setup s;
  std::vector<std::string> args{"--config", s.config_path};
  Daemon a(args);
  REQUIRE(a.wait_ready(s.dns(), 5s));
  {
    Daemon b(args);
    REQUIRE(b.wait_log("handover: serving on 6 of the 6 sockets", 1, 5s));
    REQUIRE(a.wait_log("handover: handed over to pid", 1, 5s));
    CHECK(udp_query(s.dns(), make_query("b.load.test", "A"), 1s).has_value());
    b.signal(SIGKILL);
    REQUIRE(b.wait_exit(5s));
  }
  // A's paused sockets would take a share of the flows unread: it stops by itself.
  auto status = a.wait_exit(5s);
  INFO("A:\n" << a.log());
  REQUIRE(status);
  CHECK((WIFEXITED(*status) && WEXITSTATUS(*status) == 0));
  CHECK(a.log_count("the successor pid") == 1);
  // The control socket is B's, dead: C binds afresh and serves everything.
  Daemon c(args);
  REQUIRE(c.wait_ready(s.dns(), 5s));
  INFO("C:\n" << c.log());
  CHECK(c.log_count("handover: serving on") == 0);
  for (int i = 0; i < 20; ++i) {
    CHECK(udp_query(s.dns(), make_query("c" + std::to_string(i) + ".load.test", "A"), 1s));
    CHECK(tcp_query(s.dns(), make_query("t" + std::to_string(i) + ".load.test", "A"), 1s));
  }
  CHECK(c.terminate(5s));
}

TEST_CASE("handover: the old instance refuses a reload once it handed its sockets over",
          "[handover]") {
  Setup s;
  std::vector<std::string> args{"--config", s.config_path};
  Daemon a(args);
  REQUIRE(a.wait_ready(s.dns(), 5s));
  a.signal(SIGHUP);  // before: reloads as usual
  REQUIRE(a.wait_log("reload (SIGHUP): generation", 1, 5s));
  CHECK(a.log_count("failed with") == 0);
  Daemon b(args);
  REQUIRE(b.wait_log("handover: serving on 6 of the 6 sockets", 1, 5s));
  REQUIRE(a.wait_log("handover: handed over to pid", 1, 5s));
  // Its metrics endpoint is B's now: the log tells.
  a.signal(SIGHUP);
  INFO("A:\n" << a.log());
  CHECK(a.wait_log("reload (SIGHUP): this instance handed its sockets over to pid " +
                       std::to_string(b.pid()) + " and exits at SIGTERM; reload the new one",
                   1, 5s));
  CHECK(a.wait_log("reload (SIGHUP) failed with 1 error", 1, 5s));
  // The new one reloads.
  b.signal(SIGHUP);
  CHECK(b.wait_log("reload (SIGHUP): generation", 1, 5s));
  CHECK(b.log_count("failed with") == 0);
  CHECK(a.terminate(5s));
  CHECK(b.terminate(5s));
}

TEST_CASE("handover: a successor gone before taken leaves the old one serving and reloading",
          "[handover]") {
  Setup s;
  std::vector<std::string> args{"--config", s.config_path};
  Daemon a(args);
  REQUIRE(a.wait_ready(s.dns(), 5s));
  {
    // Got the sockets, closed the connection without "taken".
    auto t = localdns::app::request_handover(s.control);
    REQUIRE(t.has_value());
    CHECK(t->pool.received() == 6);
  }
  INFO("A:\n" << a.log());
  REQUIRE(a.wait_log("the peer closed the connection; serving on", 1, 5s));
  CHECK(udp_query(s.dns(), make_query("a.load.test", "A"), 1s).has_value());
  a.signal(SIGHUP);
  CHECK(a.wait_log("reload (SIGHUP): generation", 1, 5s));
  // A later handover goes through.
  Daemon b(args);
  CHECK(b.wait_log("handover: serving on 6 of the 6 sockets", 1, 5s));
  CHECK(a.wait_log("handover: handed over to pid", 1, 5s));
  CHECK(a.terminate(5s));
  CHECK(b.terminate(5s));
}

TEST_CASE("handover: a plain restart beside the old instance loses queries", "[.handover-loss]") {
  Setup s;
  auto r = run_upgrade(s, {"--no-handover"}, false);
  WARN("plain restart under load: " << r.load.text() << "; http " << r.http_asked << " asked, "
                                    << r.http_failed << " failed; ms: " << r.phases);
  INFO("A:\n" << r.a_log << "\nB:\n" << r.b_log);
  CHECK(r.b_log.find("handover:") == std::string::npos);
  CHECK(r.load.lost > 0);
}
