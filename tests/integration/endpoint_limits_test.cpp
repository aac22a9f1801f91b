// The HTTP endpoints and the control socket under pressure: out of
// descriptors, idle and oversized clients, a slow node check, and how fresh
// /health's state stays.
#include <algorithm>
#include <arpa/inet.h>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/control.hpp>
#include <localdns/app/health.hpp>
#include <localdns/app/http.hpp>
#include <localdns/app/metrics.hpp>

#include "endpoints.hpp"
#include "fake_upstream.hpp"
#include "http_get.hpp"
#include "instance.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

namespace {

// A raw client connection (TCP to 127.0.0.1:port, or a Unix socket path).
int connect_tcp(std::uint16_t port, const char* source = "127.0.0.1") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in src{}, dst{};
  src.sin_family = dst.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &src.sin_addr);
  ::inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
  dst.sin_port = htons(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Everything the peer sends until it closes or `timeout` passes; `closed` tells which.
std::string read_all(int fd, std::chrono::milliseconds timeout, bool* closed = nullptr) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (closed) *closed = false;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) != 1) continue;
    char b[4096];
    auto n = ::recv(fd, b, sizeof b, 0);
    if (n <= 0) {
      if (closed) *closed = true;
      break;
    }
    out.append(b, static_cast<std::size_t>(n));
  }
  return out;
}

// A localdns process with /health on its own port, for resource limits
// (RLIMIT_NOFILE) and CPU time measured from /proc.
struct Process {
  pid_t pid = -1;
  std::uint16_t dns_port = free_port();
  std::uint16_t health_port = free_port();
  explicit Process(const std::string& upstream) {
    std::string listen = "127.0.0.1:" + std::to_string(dns_port);
    std::string health = "127.0.0.1:" + std::to_string(health_port);
    std::string fwd = ".=udp://" + upstream;
    pid = ::fork();
    if (pid == 0) {
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execl(LOCALDNS_BINARY, LOCALDNS_BINARY, "--listen", listen.c_str(), "--forward",
              fwd.c_str(), "--threads", "1", "--metrics", "off", "--health", health.c_str(),
              "--control", "off", static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Process() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  // /health status, or 0 when no answer came within the HTTP client's 5 s.
  unsigned health() const {
    try {
      return http_get(health_port, "/health").first;
    } catch (const std::exception&) {
      return 0;
    }
  }
  bool wait_healthy(std::chrono::milliseconds timeout) const {
    return wait_until(
        within(timeout), [&] { return health() == 200; }, 100ms);
  }
  std::size_t open_fds() const {
    std::size_t n = 0;
    for ([[maybe_unused]] auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
      ++n;
    return n;
  }
  // Sets the soft limit only: the hard one stays, so it can be raised again.
  void limit_fds(rlim_t n) const {
    rlimit r{};
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, nullptr, &r) == 0);
    r.rlim_cur = std::min(n, r.rlim_max);
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &r, nullptr) == 0);
  }
  double cpu_seconds() const {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), {});
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::string field;
    unsigned long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stoul(field);
      if (i == 15) stime = std::stoul(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
};

}  // namespace

TEST_CASE("out of descriptors, the HTTP endpoint backs off instead of spinning",
          "[integration][health][limits]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer runtimes in the spawned localdns open descriptors of their
  // own (pipes to probe memory) and report false errors when there are none
  // left; the plain build runs this test.
  WARN("not run in a sanitizer build");
  return;
#endif
  FakeUpstream up;
  Process ld(up.address());
  REQUIRE(ld.wait_healthy(5000ms));
  auto limit = ld.open_fds() + 4;
  ld.limit_fds(limit);
  // Idle DNS connections take the last descriptors; then an HTTP client waits.
  std::vector<int> hog;
  for (int i = 0; i < 12; ++i)
    hog.push_back(connect_tcp(ld.dns_port, "127.0.0.2"));
  // Until localdns has accepted them up to its limit (bounded: the CPU check
  // below is what this test asserts).
  wait_until(within(2000ms), [&] { return ld.open_fds() >= limit; });
  int waiting = connect_tcp(ld.health_port);
  REQUIRE(waiting >= 0);
  // Time for the HTTP endpoint to fail its accept and back off, which shows
  // nowhere outside localdns but in the CPU time measured next.
  std::this_thread::sleep_for(300ms);
  double cpu0 = ld.cpu_seconds();
  std::this_thread::sleep_for(2000ms);  // the window the CPU time is measured over
  double cpu = ld.cpu_seconds() - cpu0;
  WARN("CPU time while out of descriptors: " << cpu << " s in 2 s");
  CHECK(cpu < 0.4);
  for (int fd : hog)
    if (fd >= 0) ::close(fd);
  ::close(waiting);
  ld.limit_fds(1024);
  CHECK(ld.wait_healthy(5000ms));  // recovers once descriptors are back
}

TEST_CASE("idle HTTP connections do not keep /health from answering",
          "[integration][health][limits]") {
  FakeUpstream up;
  Process ld(up.address());
  REQUIRE(ld.wait_healthy(5000ms));
  // Room for the connection cap and the probes, not for every idle client.
  ld.limit_fds(ld.open_fds() + app::HttpServer::kMaxConnections + 8);
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i)
    idle.push_back(connect_tcp(ld.health_port));
  // Until localdns has accepted all of them: past its cap it closes the
  // oldest, so all but kMaxConnections see their peer close (bounded: what
  // this test asserts is the /health answer below).
  auto peer_closed = [](int fd) {
    pollfd p{fd, POLLRDHUP, 0};
    return fd >= 0 && ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP)) != 0;
  };
  wait_until(within(3000ms), [&] {
    return static_cast<std::size_t>(std::count_if(idle.begin(), idle.end(), peer_closed)) >=
           idle.size() - app::HttpServer::kMaxConnections;
  });
  auto t0 = std::chrono::steady_clock::now();
  auto status = ld.health();
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  WARN("/health behind 100 idle connections: " << status << " in " << took.count() << " ms");
  CHECK(status == 200);
  CHECK(took < 1500ms);
  for (int fd : idle)
    if (fd >= 0) ::close(fd);
}

TEST_CASE("an oversized HTTP request gets an error and is closed", "[integration][health]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr, loopback(port));
  int fd = connect_tcp(port);
  REQUIRE(fd >= 0);
  std::string req =
      "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  bool closed = false;
  auto answer = read_all(fd, 3000ms, &closed);
  ::close(fd);
  CHECK_THAT(answer, Catch::StartsWith("HTTP/1.1 431"));
  CHECK(closed);
  CHECK(http_get(port, "/health").first == 200);
}

TEST_CASE("/health answers from refreshed state, at most about a second old",
          "[integration][health]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr, loopback(port));
  // A burst of requests is answered without a probe each: every TCP probe
  // leaves its connection to the DNS port in TIME_WAIT, so count those.
  auto probes_seen = [&] {
    std::ifstream f("/proc/net/tcp");
    std::string line;
    std::getline(f, line);
    char port_hex[8];
    std::snprintf(port_hex, sizeof port_hex, ":%04X", ld.endpoint().port);
    unsigned n = 0;
    while (std::getline(f, line)) {
      std::istringstream in(line);
      std::string slot, local, remote, state;
      in >> slot >> local >> remote >> state;
      if (remote.ends_with(port_hex) && state == "06") ++n;
    }
    return n;
  };
  auto seen0 = probes_seen();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i)
    REQUIRE(http_get(port, "/health").first == 200);
  auto burst =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  auto probes = probes_seen() - seen0;
  WARN("100 requests in " << burst.count() << " ms ran " << probes << " TCP probes");
  // One pass per refresh period (and one at start), not one per request.
  CHECK(probes <= burst / app::HealthEndpoint::kRefreshEvery + 2);
  // The state keeps being refreshed: a dead refresher would leave it as old as the wait.
  std::this_thread::sleep_for(1500ms);
  CHECK(health.health_age() < 1100ms);
  ld.stop();
  CHECK(http_get(port, "/health").first == 503);  // stopping shows at once
}

TEST_CASE("/health stays 200 while the node check is slow; /ready says it is stale",
          "[integration][health]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  // A node check that turns slow (an iptables-save behind a repair holding its
  // lock), until released.
  std::mutex m;
  std::condition_variable cv;
  bool slow = false, released = false;
  auto node_check = [&]() -> std::string {
    std::unique_lock lock(m);
    if (slow) cv.wait_for(lock, 6000ms, [&] { return released; });
    return "";
  };
  auto port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr, loopback(port), node_check);
  {
    std::lock_guard lock(m);
    slow = true;
  }
  unsigned asked = 0, healthy = 0;
  bool ready_stale = false;
  std::string last_health, last_ready;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < 4000ms) {
    auto [hs, hb] = http_get(port, "/health");
    ++asked;
    if (hs == 200) ++healthy;
    last_health = hb;
    auto [rs, rb] = http_get(port, "/ready");
    if (rs == 503 && rb.find("node setup") != std::string::npos) ready_stale = true;
    last_ready = rb;
    std::this_thread::sleep_for(100ms);  // the pace of the probes over the 4 s
  }
  auto health_age = health.health_age();
  auto node_age = health.node_age();
  {
    std::lock_guard lock(m);
    released = true;
  }
  cv.notify_all();
  INFO("/health: " << last_health << "/ready: " << last_ready);
  WARN("node check blocked for 4 s: /health 200 "
       << healthy << " of " << asked << " times; health state " << health_age.count()
       << " ms old, node state " << node_age.count() << " ms old");
  CHECK(healthy == asked);
  CHECK(health_age < 1100ms);
  CHECK(ready_stale);
  CHECK(node_age > app::HealthEndpoint::kMaxAge);
}

TEST_CASE("the control socket caps command size and connection time", "[integration][ctl]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto path = temp_socket();
  app::ControlServer ctl(ld.server(), nullptr, path);

  int big = connect_unix(path);
  REQUIRE(big >= 0);
  std::string line(app::ControlServer::kMaxCommandBytes + 100, 'x');
  ::send(big, line.data(), line.size(), MSG_NOSIGNAL);
  bool closed = false;
  auto answer = read_all(big, 3000ms, &closed);
  ::close(big);
  CHECK_THAT(answer, Catch::StartsWith("error: command longer than 4096 bytes"));
  CHECK(closed);

  // Idle connections past the cap do not lock out a command; each is closed in time.
  std::vector<int> idle;
  for (std::size_t i = 0; i < app::ControlServer::kMaxConnections + 4; ++i)
    idle.push_back(connect_unix(path));
  int cmd = connect_unix(path);
  REQUIRE(cmd >= 0);
  std::string stats = "stats\n";
  ::send(cmd, stats.data(), stats.size(), MSG_NOSIGNAL);
  CHECK(read_all(cmd, 3000ms).find("queries") != std::string::npos);
  ::close(cmd);
  auto t0 = std::chrono::steady_clock::now();
  read_all(idle.back(), app::ControlServer::kCommandTime + 3000ms, &closed);
  CHECK(closed);
  CHECK(std::chrono::steady_clock::now() - t0 <= app::ControlServer::kCommandTime + 2000ms);
  for (int fd : idle)
    if (fd >= 0) ::close(fd);
}
