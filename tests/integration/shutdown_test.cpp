// Signals and shutdown of the localdns executable: SIGHUP reloads and keeps it serving,
// and every query in flight at SIGTERM gets its answer or SERVFAIL before exit.
#include <chrono>
#include <fcntl.h>
#include <fstream>
#include <future>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

#include "daemon.hpp"
#include "fake_upstream.hpp"
#include "http_get.hpp"
#include "instance.hpp"
#include "wait.hpp"

using namespace localdns::test;
using Clock = std::chrono::steady_clock;

namespace {

std::chrono::milliseconds since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

std::string write_config(const std::string& text) {
  static int serial = 0;
  std::string path = "/tmp/localdns-shutdown-" + std::to_string(::getpid()) + "-" +
                     std::to_string(++serial) + ".yaml";
  std::ofstream(path) << text;
  return path;
}

// Two zones on one fake upstream: one forwarded over UDP, one over TCP.
std::string two_zone_config(std::uint16_t port, std::uint16_t metrics_port, const FakeUpstream& up,
                            const std::string& grace, const std::string& timeout) {
  std::ostringstream y;
  y << "listen: [\"127.0.0.1:" << port << "\"]\n"
    << "threads: 2\n"
    << "log_level: info\n"
    << "shutdown_grace: " << grace << "\n"
    << "metrics: \"127.0.0.1:" << metrics_port << "\"\n"
    << "health: off\n"
    << "control_socket: off\n"
    << "forward:\n";
  for (const char* t : {"udp", "tcp"}) {
    y << "  - zones: [" << t[0] << ".test]\n"
      << "    servers: [\"" << up.address() << "\"]\n"
      << "    transport: " << t << "\n"
      << "    timeout: " << timeout << "\n"
      << "    attempts: 1\n";
  }
  return y.str();
}

struct Outcome {
  std::string what;  // rcode, or "no reply"
  std::vector<std::string> answers;
  std::chrono::milliseconds after_signal{0};  // negative: before the signal
};

// Every combination of client transport and upstream transport, plus names
// asked twice (once over UDP, once over TCP) so that one waits on the
// other's upstream query.
struct Load {
  struct Ask {
    std::string name;
    bool tcp;
  };
  std::vector<Ask> asks;
  unsigned distinct = 0;  // upstream queries they cause

  explicit Load(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      for (const char* zone : {"u.test", "t.test"}) {
        std::string base = std::to_string(i) + "." + zone;
        asks.push_back({"udp" + base, false});
        asks.push_back({"tcp" + base, true});
        asks.push_back({"both" + base, false});
        asks.push_back({"both" + base, true});
        distinct += 3;
      }
    }
  }
};

// Queries answered or counted by localdns so far (its query metrics).
double requests_seen(std::uint16_t metrics_port) {
  try {
    auto [status, body] = http_get(metrics_port, "/metrics");
    return status == 200 ? metric_sum(body, "coredns_dns_requests_total") : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

// Every query of `load` sent at once; `sig` sent once localdns has read all of
// them and the upstream has seen each distinct one.
struct InFlight {
  std::vector<std::future<Outcome>> clients;
  Clock::time_point signalled;

  InFlight(Daemon& d, const Endpoint& ep, std::uint16_t metrics_port, const Load& load,
           const FakeUpstream& up, int sig) {
    auto sent_at = std::make_shared<std::atomic<Clock::rep>>(0);
    std::uint16_t id = 100;
    for (const auto& a : load.asks) {
      QueryOptions o;
      o.id = id++;
      auto q = make_query(a.name, "A", o);
      clients.push_back(std::async(std::launch::async, [ep, sent_at, q, tcp = a.tcp] {
        auto r = tcp ? tcp_query(ep, q, 8000ms) : udp_query(ep, q, 8000ms);
        Outcome out;
        auto when = Clock::now();
        if (r) {
          auto rep = decode(*r);
          out.what = rep.rcode;
          out.answers = rep.answers;
        } else {
          out.what = "no reply";
        }
        auto t = sent_at->load();
        out.after_signal = t == 0 ? -1ms
                                  : std::chrono::duration_cast<std::chrono::milliseconds>(
                                        when - Clock::time_point(Clock::duration(t)));
        return out;
      }));
    }
    auto all = static_cast<double>(load.asks.size());
    wait_until(
        within(5s),
        [&] { return up.queries() >= load.distinct && requests_seen(metrics_port) >= all; }, 5ms);
    CHECK(up.queries() == load.distinct);
    CHECK(requests_seen(metrics_port) == all);
    signalled = Clock::now();
    sent_at->store(signalled.time_since_epoch().count());
    d.signal(sig);
  }
  std::vector<Outcome> outcomes() {
    std::vector<Outcome> out;
    for (auto& c : clients)
      out.push_back(c.get());
    return out;
  }
};

}  // namespace

TEST_CASE("SIGHUP reloads and localdns keeps serving", "[integration][shutdown][signals]") {
  FakeUpstream up;
  auto port = free_port();
  Endpoint ep{"127.0.0.1", port};
  Daemon d({"--listen", "127.0.0.1:" + std::to_string(port), "--forward", ".=udp://" + up.address(),
            "--threads", "2", "--log-level", "info", "--metrics", "off", "--health", "off",
            "--control", "off"});
  REQUIRE(d.wait_ready(ep, 10s));
  // Flags only: each SIGHUP reloads the same configuration, and says so.
  const std::string line = "reload (SIGHUP): generation ";
  // The log line says the signal was handled; after it, the process must still serve.
  for (std::size_t n = 1; n <= 2; ++n) {  // the handler is re-armed after each
    d.signal(SIGHUP);
    bool logged = d.wait_log(line, n, 5s);
    INFO("after SIGHUP #" << n << ": "
                          << (d.alive() ? std::string("running") : describe(*d.wait_exit(0ms)))
                          << "\n"
                          << d.log());
    REQUIRE(d.alive());
    CHECK(logged);
    auto r = n == 1 ? udp_query(ep, make_query("after-hup.example", "A"), 3000ms)
                    : tcp_query(ep, make_query("after-hup2.example", "A"), 3000ms);
    REQUIRE(r);
    CHECK(decode(*r).answers == std::vector<std::string>{FakeUpstream::answer_address()});
  }
  d.signal(SIGTERM);
  auto status = d.wait_exit(10s);
  REQUIRE(status);
  CHECK(describe(*status) == "exit 0");
}

TEST_CASE("SIGTERM: queries to a silent upstream get SERVFAIL at the end of the grace",
          "[integration][shutdown]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  auto port = free_port();
  Endpoint ep{"127.0.0.1", port};
  // Attempts far longer than the grace: only the shutdown can end them.
  auto metrics_port = free_port();
  auto cfg = write_config(two_zone_config(port, metrics_port, up, "1s", "20s"));
  Daemon d({"--config", cfg});
  REQUIRE(d.wait_ready(ep, 10s));
  Load load(4);  // 32 clients: 16 over UDP, 16 over TCP
  InFlight flight(d, ep, metrics_port, load, up, SIGTERM);
  auto status = d.wait_exit(10s);
  auto exited_after = since(flight.signalled);
  auto outcomes = flight.outcomes();
  std::remove(cfg.c_str());
  std::map<std::string, unsigned> udp_seen, tcp_seen;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    const auto& o = outcomes[i];
    (load.asks[i].tcp ? tcp_seen : udp_seen)[o.what]++;
    INFO(load.asks[i].name << (load.asks[i].tcp ? " over tcp: " : " over udp: ") << o.what << " "
                           << o.after_signal.count() << " ms after SIGTERM");
    CHECK(o.what == "SERVFAIL");
    if (o.what == "SERVFAIL") {
      // Not before the grace ran out (the upstream might still have answered)...
      CHECK(o.after_signal >= 900ms);
      // ...and at its end, not at the end of the 20 s attempt.
      CHECK(o.after_signal < 3000ms);
    }
  }
  for (const auto& [what, n] : udp_seen)
    UNSCOPED_INFO("udp clients: " << n << " " << what);
  for (const auto& [what, n] : tcp_seen)
    UNSCOPED_INFO("tcp clients: " << n << " " << what);
  INFO(d.log());
  REQUIRE(status);
  CHECK(describe(*status) == "exit 0");
  // Grace (1 s) plus the fixed bound for writing the SERVFAILs, with room for a loaded machine.
  CHECK(exited_after < 3500ms);
}

TEST_CASE("SIGTERM: answers arriving within the grace reach their clients",
          "[integration][shutdown]") {
  FakeUpstream up;
  up.set({.delay = 700ms});
  auto port = free_port();
  Endpoint ep{"127.0.0.1", port};
  auto metrics_port = free_port();
  auto cfg = write_config(two_zone_config(port, metrics_port, up, "3s", "5s"));
  Daemon d({"--config", cfg});
  REQUIRE(d.wait_ready(ep, 10s));
  Load load(4);
  InFlight flight(d, ep, metrics_port, load, up, SIGTERM);
  auto status = d.wait_exit(10s);
  auto exited_after = since(flight.signalled);
  auto outcomes = flight.outcomes();
  std::remove(cfg.c_str());
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    const auto& o = outcomes[i];
    INFO(load.asks[i].name << (load.asks[i].tcp ? " over tcp: " : " over udp: ") << o.what << " "
                           << o.after_signal.count() << " ms after SIGTERM");
    CHECK(o.what == "NOERROR");
    CHECK(o.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  }
  INFO(d.log());
  REQUIRE(status);
  CHECK(describe(*status) == "exit 0");
  // Nothing left in flight once the answers are out: no need to wait out the grace.
  CHECK(exited_after < 2500ms);
}
