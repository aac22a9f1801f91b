// sd_notify readiness: the real binary, NOTIFY_SOCKET pointing at a Unix
// datagram socket this test owns (as systemd's Type=notify does).
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/notify.hpp>
#include <localdns/config/duration.hpp>

#include "fake_upstream.hpp"
#include "instance.hpp"
#include "wait.hpp"

using namespace localdns::test;
using namespace std::chrono_literals;

namespace {

// The service manager's end: a Unix datagram socket, by path or abstract (@name).
class NotifySocket {
 public:
  explicit NotifySocket(bool abstract) {
    static int n = 0;
    std::string name = "localdns-notify-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    socklen_t len = 0;
    if (abstract) {
      env_ = "@" + name;
      std::memcpy(a.sun_path + 1, name.data(), name.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    } else {
      path_ = "/tmp/" + name + ".sock";
      env_ = path_;
      ::unlink(path_.c_str());
      std::memcpy(a.sun_path, path_.data(), path_.size());
      len = static_cast<socklen_t>(sizeof a);
    }
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0) {
      FAIL("cannot bind the notify socket: " << std::strerror(errno));
    }
  }
  ~NotifySocket() {
    ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  const std::string& env() const { return env_; }
  // The next datagram, or nothing within `timeout`.
  std::optional<std::string> next(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
  }

 private:
  int fd_ = -1;
  std::string path_, env_;
};

// A localdns started by spawn(), its output in `log`.
struct Child {
  pid_t pid = -1;
  std::string log;
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::remove(log.c_str());
  }
  // Exit status after SIGTERM, or -1 when it did not exit within 5 s.
  int terminate() {
    ::kill(pid, SIGTERM);
    return wait_exit();
  }
  // Exit status once it exits by itself (a signal already sent), or -1 when
  // it did not within 5 s. A second SIGTERM during shutdown would race its end.
  int wait_exit() {
    int status = 0;
    if (!wait_until(within(5s), [&] { return ::waitpid(pid, &status, WNOHANG) == pid; })) return -1;
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string output() const {
    std::ifstream f(log);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
};

// The test's own environment (sanitizer options and all) without any
// NOTIFY_SOCKET or WATCHDOG_* it may have inherited, plus `env`.
void spawn(Child& c, const std::vector<std::string>& args, const std::vector<std::string>& env) {
  static int n = 0;
  c.log = "/tmp/localdns-notify-" + std::to_string(::getpid()) + "-" + std::to_string(++n) + ".log";
  std::vector<char*> argv{const_cast<char*>(LOCALDNS_BINARY)};
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> all;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view v(*e);
    if (!v.starts_with("NOTIFY_SOCKET=") && !v.starts_with("WATCHDOG_")) all.emplace_back(v);
  }
  all.insert(all.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (const auto& e : all)
    envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_addopen(&fa, 1, c.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ::posix_spawn_file_actions_adddup2(&fa, 1, 2);
  int r = ::posix_spawn(&c.pid, LOCALDNS_BINARY, &fa, nullptr, argv.data(), envp.data());
  ::posix_spawn_file_actions_destroy(&fa);
  REQUIRE(r == 0);
}

// The files a process maps (/proc/PID/maps).
std::string mapped_files(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/maps");
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

struct Ports {
  std::uint16_t dns = free_port();
  std::uint16_t health = free_port();
  std::string control = "/tmp/localdns-notify-ctl-" + std::to_string(::getpid()) + ".sock";
};

std::vector<std::string> args_for(const Ports& p, const FakeUpstream& up) {
  return {"--listen",         "127.0.0.1:" + std::to_string(p.dns),
          "--forward",        ".=tcp://" + up.address(),
          "--threads",        "2",
          "--metrics",        "off",
          "--health",         "127.0.0.1:" + std::to_string(p.health),
          "--control-socket", p.control};
}

}  // namespace

TEST_CASE("READY=1 comes once the listeners answer, STOPPING=1 on SIGTERM",
          "[integration][notify]") {
  const bool abstract = GENERATE(false, true);
  INFO((abstract ? "abstract NOTIFY_SOCKET" : "NOTIFY_SOCKET path"));
  FakeUpstream up;
  NotifySocket ns(abstract);
  Ports p;
  Child c;
  spawn(c, args_for(p, up), {"NOTIFY_SOCKET=" + ns.env()});
  auto ready = ns.next(10s);
  REQUIRE(ready);
  INFO("first notification: " << *ready << "\nlog:\n" << c.output());
  CHECK_THAT(*ready, Catch::StartsWith("READY=1\n"));
  CHECK_THAT(*ready, Catch::Contains("STATUS=serving on 127.0.0.1:" + std::to_string(p.dns) +
                                     "; forwarding . to " + up.address()));
  // Right after READY, without retries: UDP, TCP, the health port and the
  // control socket all answer.
  Endpoint ep{"127.0.0.1", p.dns};
  auto u = udp_query(ep, make_query("ready.example", "A"), 2000ms);
  REQUIRE(u);
  CHECK(decode(*u).answers == std::vector<std::string>{FakeUpstream::answer_address()});
  auto t = tcp_query(ep, make_query("ready-tcp.example", "A"), 2000ms);
  REQUIRE(t);
  CHECK(decode(*t).rcode == "NOERROR");
  TcpStream health(Endpoint{"127.0.0.1", p.health});
  CHECK(health.connected());
  CHECK(::access(p.control.c_str(), F_OK) == 0);
  // Sent by libsystemd's sd_notify, loaded for NOTIFY_SOCKET.
  CHECK_THAT(mapped_files(c.pid), Catch::Contains("libsystemd.so.0"));
  // Nothing else until shutdown.
  CHECK_FALSE(ns.next(200ms));
  ::kill(c.pid, SIGTERM);
  auto stopping = ns.next(5s);
  REQUIRE(stopping);
  CHECK_THAT(*stopping, Catch::StartsWith("STOPPING=1\n"));
  CHECK(c.wait_exit() == 0);
  CHECK_THAT(c.output(), !Catch::Contains("cannot notify"));
}

TEST_CASE("without NOTIFY_SOCKET localdns serves as before and sends nothing",
          "[integration][notify]") {
  FakeUpstream up;
  NotifySocket ns(false);  // exists, but is not announced to the child
  Ports p;
  Child c;
  spawn(c, args_for(p, up), {});
  std::optional<Packet> r;
  wait_until(
      within(15s),
      [&] {
        r = udp_query({"127.0.0.1", p.dns}, make_query("plain.example", "A"), 100ms);
        return r.has_value();
      },
      50ms);
  REQUIRE(r);
  CHECK(decode(*r).answers == std::vector<std::string>{FakeUpstream::answer_address()});
  // libsystemd is loaded only for a service manager: not mapped at all.
  const std::string maps = mapped_files(c.pid);
  CHECK_THAT(maps, Catch::Contains("libc.so"));
  CHECK_THAT(maps, !Catch::Contains("libsystemd"));
  CHECK(c.terminate() == 0);
  CHECK_FALSE(ns.next(100ms));
  CHECK_THAT(c.output(), !Catch::Contains("service manager"));
}

TEST_CASE("an unusable NOTIFY_SOCKET is a warning, and localdns still serves",
          "[integration][notify]") {
  FakeUpstream up;
  Ports p;
  Child c;
  spawn(c, args_for(p, up),
        {"NOTIFY_SOCKET=/tmp/localdns-no-such-notify-" + std::to_string(::getpid())});
  std::optional<Packet> r;
  wait_until(
      within(15s),
      [&] {
        r = udp_query({"127.0.0.1", p.dns}, make_query("warn.example", "A"), 100ms);
        return r.has_value();
      },
      50ms);
  REQUIRE(r);
  CHECK(c.terminate() == 0);
  CHECK_THAT(c.output(), Catch::Contains("cannot notify the service manager (READY=1)"));
}

TEST_CASE("WATCHDOG_USEC: WATCHDOG=1 keeps coming while the listeners answer",
          "[integration][notify]") {
  FakeUpstream up;
  NotifySocket ns(false);
  Ports p;
  Child c;
  spawn(c, args_for(p, up), {"NOTIFY_SOCKET=" + ns.env(), "WATCHDOG_USEC=1000000"});
  auto ready = ns.next(10s);
  REQUIRE(ready);
  CHECK_THAT(*ready, Catch::StartsWith("READY=1\n"));
  // Every 250 ms (a quarter of 1 s): 8 in 2 s; at least 4 however busy the machine.
  int pings = 0;
  auto until = std::chrono::steady_clock::now() + 2000ms;
  while (std::chrono::steady_clock::now() < until) {
    auto m = ns.next(500ms);
    if (m && *m == "WATCHDOG=1") ++pings;
  }
  CHECK(pings >= 4);
  ::kill(c.pid, SIGTERM);
  std::optional<std::string> m;
  for (int i = 0; i < 100 && !(m && m->starts_with("STOPPING=1")); ++i)
    m = ns.next(5s);
  REQUIRE(m);
  CHECK_THAT(*m, Catch::StartsWith("STOPPING=1\n"));
  CHECK(c.wait_exit() == 0);
}

TEST_CASE("the watchdog's check: every listen address answers the health name",
          "[integration][notify]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, localdns::config::Transport::Udp)});
  auto here = *localdns::config::parse_endpoint(
      ld.endpoint().address + ":" + std::to_string(ld.endpoint().port), 53);
  CHECK(localdns::app::listeners_answer({here}, 500ms));
  auto nothing = *localdns::config::parse_endpoint("127.0.0.1:" + std::to_string(free_port()), 53);
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(localdns::app::listeners_answer({here, nothing}, 300ms));
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK_FALSE(localdns::app::listeners_answer({}, 300ms));
  CHECK(up.udp_queries() + up.tcp_queries() == 0);  // answered by localdns itself
}
