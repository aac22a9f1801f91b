// DNS over TCP from clients (RFC 7766): pipelining, out-of-order answers,
// split framing, idle timeout, connection caps and what one hostile client
// can cost (memory, connection slots).
#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <set>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/health.hpp>

#include "fake_upstream.hpp"
#include "http_get.hpp"
#include "instance.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

TEST_CASE("pipelined queries on one connection all come back", "[integration][tcp]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  TcpStream s(ld.endpoint());
  REQUIRE(s.connected());
  Packet all;
  for (std::uint16_t i = 0; i < 50; ++i) {
    auto q = make_query("p" + std::to_string(i) + ".example", "A", {.id = i});
    append_framed(all, q);
  }
  REQUIRE(s.send_raw(all.data(), all.size()));  // one write, 50 queries
  std::set<std::uint16_t> ids;
  for (int i = 0; i < 50; ++i) {
    auto r = s.read_framed();
    REQUIRE(r.has_value());
    auto d = decode(*r);
    CHECK(d.qname == "p" + std::to_string(d.id) + ".example.");
    CHECK(d.rcode == "NOERROR");
    ids.insert(d.id);
  }
  CHECK(ids.size() == 50);
}

TEST_CASE("answers are sent as they complete, out of order", "[integration][tcp]") {
  FakeUpstream slow, quick;
  slow.set({.delay = 300ms});
  Instance ld({group({"slow.example"}, {slow.address()}, Transport::Udp),
               group({"."}, {quick.address()}, Transport::Udp)});
  TcpStream s(ld.endpoint());
  REQUIRE(s.send_framed(make_query("a.slow.example", "A", {.id = 1})));
  REQUIRE(s.send_framed(make_query("b.quick.example", "A", {.id = 2})));
  auto first = s.read_framed();
  auto second = s.read_framed();
  REQUIRE(first);
  REQUIRE(second);
  CHECK(decode(*first).id == 2);
  CHECK(decode(*second).id == 1);
}

TEST_CASE("length prefix and message split across segments", "[integration][tcp]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  TcpStream s(ld.endpoint());
  auto q = make_query("split.example", "A", {.id = 77});
  for (std::uint8_t b : framed(q)) {
    REQUIRE(s.send_raw(&b, 1));
    std::this_thread::sleep_for(2ms);  // one segment per byte: the pause is the point
  }
  auto r = s.read_framed();
  REQUIRE(r);
  CHECK(decode(*r).id == 77);
}

TEST_CASE("an idle connection is closed idle_timeout after its last query, not before",
          "[integration][tcp]") {
  FakeUpstream up;
  config::Config c;
  c.tcp_clients.idle_timeout = 2000ms;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Instance ld(c);
  TcpStream s(ld.endpoint());
  REQUIRE(s.send_framed(make_query("idle.example", "A")));
  REQUIRE(s.read_framed());
  std::this_thread::sleep_for(1200ms);  // a second query restarts the idle time
  REQUIRE(s.send_framed(make_query("idle2.example", "A")));
  REQUIRE(s.read_framed());
  auto t1 = std::chrono::steady_clock::now();
  REQUIRE(s.wait_closed(5000ms));  // the server closes: EOF
  auto waited = std::chrono::steady_clock::now() - t1;
  INFO("closed " << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                 << " ms after the last answer");
  CHECK(waited >= 1950ms);
  CHECK(waited <= 2600ms);
}

TEST_CASE("over the connection cap, the idlest connection makes room", "[integration][tcp]") {
  FakeUpstream up;
  config::Config c;
  c.tcp_clients.max_connections = 2;
  c.threads = 1;  // the idlest of the accepting worker goes: one worker makes it a and not b
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Instance ld(c);
  TcpStream a(ld.endpoint()), b(ld.endpoint());
  REQUIRE(a.send_framed(make_query("a.example", "A")));
  REQUIRE(a.read_framed());
  std::this_thread::sleep_for(50ms);  // a's last query is older than b's
  REQUIRE(b.send_framed(make_query("b.example", "A")));
  REQUIRE(b.read_framed());
  TcpStream third(ld.endpoint());
  REQUIRE(third.send_framed(make_query("third.example", "A")));
  CHECK(third.read_framed().has_value());
  CHECK(a.wait_closed(2000ms));
  REQUIRE(b.send_framed(make_query("again.example", "A")));
  CHECK(b.read_framed().has_value());
}

TEST_CASE("the pipelining cap holds exactly max_pipelined queries at the upstream",
          "[integration][tcp]") {
  FakeUpstream up;
  up.set({.delay = 800ms});
  config::Config c;
  c.tcp_clients.max_pipelined = 3;
  auto g = group({"."}, {up.address()}, Transport::Udp);
  g.timeout = 4000ms;
  g.attempts = 1;
  c.forward = {g};
  Instance ld(c);
  TcpStream s(ld.endpoint());
  for (std::uint16_t i = 0; i < 12; ++i) {
    REQUIRE(s.send_framed(make_query("cap" + std::to_string(i) + ".example", "A", {.id = i})));
  }
  wait_until(
      within(3000ms), [&] { return up.queries() >= 3; }, 5ms);
  REQUIRE(up.queries() == 3);
  // None is answered for 800 ms: over most of that, no fourth query may arrive.
  auto window = std::chrono::steady_clock::now() + 500ms;
  unsigned most = 0;
  while (std::chrono::steady_clock::now() < window) {
    most = std::max(most, up.queries());
    std::this_thread::sleep_for(2ms);  // watching the window: the wait is the point
  }
  CHECK(most == 3);
  std::set<std::uint16_t> ids;
  for (unsigned answered = 0; answered < 12; ++answered) {
    auto r = s.read_framed(5000ms);
    REQUIRE(r);
    ids.insert(decode(*r).id);
  }
  CHECK(ids.size() == 12);
  CHECK(up.queries() == 12);
}

namespace {

// A client TCP connection from a chosen loopback source address (127.0.0.2,
// 127.0.0.3, ... are distinct sources to the server).
class Conn {
 public:
  Conn(const std::string& source, const Endpoint& ep) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, source.c_str(), &src.sin_addr);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(ep.port);
    ::inet_pton(AF_INET, ep.address.c_str(), &dst.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
        ::connect(fd_, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  bool connected() const { return fd_ >= 0; }
  bool send(const Packet& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  bool send_framed(const Packet& q) { return send(framed(q)); }
  // True when the server has closed the connection (EOF or reset), without waiting.
  bool closed_now() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) != 1) return false;
    std::uint8_t b[512];
    return ::recv(fd_, b, sizeof b, MSG_DONTWAIT) <= 0;
  }
  bool wait_closed(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) == 1) {
        std::uint8_t b[512];
        if (::recv(fd_, b, sizeof b, 0) <= 0) return true;
      }
    }
    return false;
  }
  std::optional<Packet> read_framed(std::chrono::milliseconds timeout = 3000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    Packet buf;
    while (std::chrono::steady_clock::now() < deadline) {
      if (buf.size() >= 2 && buf.size() >= 2 + ((std::size_t{buf[0]} << 8) | buf[1])) {
        return Packet(buf.begin() + 2, buf.begin() + 2 + ((buf[0] << 8) | buf[1]));
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) != 1) continue;
      std::uint8_t b[4096];
      auto n = ::recv(fd_, b, sizeof b, 0);
      if (n <= 0) return std::nullopt;
      buf.insert(buf.end(), b, b + n);
    }
    return std::nullopt;
  }

 private:
  int fd_ = -1;
};

const Packet kHalfPrefix{0x00};

unsigned count_closed(std::vector<std::unique_ptr<Conn>>& conns) {
  unsigned n = 0;
  for (auto& c : conns)
    n += c->closed_now() ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("one address holding half a length prefix on many connections locks nobody out",
          "[integration][tcp][lockout]") {
  FakeUpstream up;
  config::Config c;
  c.tcp_clients.max_connections = 32;
  c.tcp_clients.max_connections_per_source = 8;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Instance ld(c);
  auto health_port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr,
                             {boost::asio::ip::make_address("127.0.0.1"), health_port});
  // 127.0.0.1 is also where the health probe connects from: it must not be crowded out.
  std::vector<std::unique_ptr<Conn>> hog;
  for (int i = 0; i < 40; ++i) {
    hog.push_back(std::make_unique<Conn>("127.0.0.1", ld.endpoint()));
    REQUIRE(hog.back()->connected());
    hog.back()->send(kHalfPrefix);
  }
  // The connections past the per-source limit are closed at accept.
  unsigned closed = 0;
  wait_until(
      within(3000ms), [&] { return (closed = count_closed(hog)) >= 32; }, 20ms);
  CHECK(closed == 32);

  Conn other("127.0.0.3", ld.endpoint());
  REQUIRE(other.connected());
  REQUIRE(other.send_framed(make_query("other.example", "A", {.id = 9})));
  auto r = other.read_framed();
  CHECK(r.has_value());  // before: closed at accept
  if (r) CHECK(decode(*r).rcode == "NOERROR");

  // Let the health state refresh after the hog took its connections.
  std::this_thread::sleep_for(1500ms);
  auto [status, body] = http_get(health_port, "/health");
  INFO(body);
  CHECK(status == 200);
  CHECK(health.health_age() < 1100ms);  // refreshed since, not the state from the start
  CHECK(health.respond("/health").status == 200);
}

TEST_CASE("at the connection cap, a newcomer gets in and an idle holder is closed",
          "[integration][tcp][lockout]") {
  FakeUpstream up;
  config::Config c;
  c.tcp_clients.max_connections = 16;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Instance ld(c);
  auto health_port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr,
                             {boost::asio::ip::make_address("127.0.0.1"), health_port});
  std::vector<std::unique_ptr<Conn>> hog;
  for (int i = 0; i < 16; ++i) {
    hog.push_back(std::make_unique<Conn>("127.0.0.2", ld.endpoint()));
    REQUIRE(hog.back()->connected());
    // An answer shows the server has accepted the connection and holds a session for it.
    REQUIRE(hog.back()->send_framed(make_query("hog.example", "A", {.id = 7})));
    REQUIRE(hog.back()->read_framed().has_value());
    hog.back()->send(kHalfPrefix);
  }
  REQUIRE(count_closed(hog) == 0);
  Conn other("127.0.0.3", ld.endpoint());
  REQUIRE(other.connected());
  REQUIRE(other.send_framed(make_query("newcomer.example", "A", {.id = 5})));
  auto r = other.read_framed();
  CHECK(r.has_value());  // before: closed at accept
  if (r) CHECK(decode(*r).rcode == "NOERROR");
  // one of the hog's connections went
  CHECK(wait_until(
      within(2000ms), [&] { return count_closed(hog) != 0; }, 20ms));
  // Let the health state refresh after the hog took its connections.
  std::this_thread::sleep_for(1500ms);
  auto [status, body] = http_get(health_port, "/health");
  INFO(body);
  CHECK(status == 200);
  CHECK(health.health_age() < 1100ms);  // refreshed since, not the state from the start
}

TEST_CASE("a query trickled byte by byte that never completes is closed at idle_timeout",
          "[integration][tcp][lockout]") {
  FakeUpstream up;
  config::Config c;
  c.tcp_clients.idle_timeout = 500ms;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Instance ld(c);
  Conn s("127.0.0.2", ld.endpoint());
  REQUIRE(s.connected());
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(s.send(Packet{0x00, 0x40}));  // a 64-byte query follows, one byte at a time
  bool closed = false;
  for (int i = 0; i < 60 && !closed; ++i) {
    s.send(Packet{0x00});
    closed = s.wait_closed(100ms);
  }
  auto waited = std::chrono::steady_clock::now() - t0;
  INFO("closed after " << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                       << " ms");
  CHECK(closed);
  CHECK(waited >= 450ms);
  CHECK(waited <= 1500ms);
}

namespace {

long rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

// localdns as a process of its own (RSS is per process), on one worker.
struct Spawned {
  std::uint16_t port = free_port();
  pid_t pid = -1;
  Spawned(const std::string& upstream, const std::string& config_yaml = "") {
    std::string listen = "127.0.0.1:" + std::to_string(port);
    std::string fwd = ".=udp://" + upstream;
    std::string config = "/tmp/localdns-tcp-test-" + std::to_string(::getpid()) + "-" +
                         std::to_string(port) + ".yaml";
    std::ofstream(config) << (config_yaml.empty() ? "{}\n" : config_yaml);
    pid = ::fork();
    if (pid == 0) {
      ::execl(LOCALDNS_BINARY, LOCALDNS_BINARY, "--config", config.c_str(), "--listen",
              listen.c_str(), "--forward", fwd.c_str(), "--threads", "1", "--log-level", "warn",
              "--metrics", "off", "--health", "off", "--control", "off",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    std::optional<Packet> warm;
    wait_until(
        within(10s),
        [&] {
          warm = udp_query({"127.0.0.1", port}, make_query("cached.example", "A"), 100ms);
          return warm.has_value();
        },
        100ms);
    std::remove(config.c_str());
    ready = warm.has_value();  // the name is cached now
  }
  ~Spawned() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  bool ready = false;
};

struct Flood {
  long before_kib = 0, peak_kib = 0;
  unsigned closed = 0;  // connections the server closed
  std::size_t sent = 0;
  std::chrono::milliseconds took{0};
};

// `conns` connections that write pipelined queries as fast as the server
// reads them and never read; until the server has closed them all, `limit`
// passed, or RSS grew by 256 MiB. The queries are for a cached name, or with
// `unique_txt`, TXT queries for names under big.test never asked before (each
// answer comes later, from the upstream, and is about 3000 bytes).
Flood flood(const Spawned& ld, unsigned conns, std::chrono::seconds limit,
            bool unique_txt = false) {
  Flood f;
  f.before_kib = f.peak_kib = rss_kib(ld.pid);
  std::vector<int> fds;
  for (unsigned i = 0; i < conns; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(ld.port);
    ::inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
      ::close(fd);
      continue;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    fds.push_back(fd);
  }
  unsigned serial = 0;
  auto make_batch = [&] {
    Packet batch;
    for (int i = 0; i < 256; ++i) {
      auto q = unique_txt ? make_query("u" + std::to_string(serial++) + ".big.test", "TXT")
                          : make_query("cached.example", "A");
      append_framed(batch, q);
    }
    return batch;
  };
  std::vector<Packet> batches;
  for (std::size_t i = 0; i < fds.size(); ++i)
    batches.push_back(make_batch());
  std::vector<std::size_t> off(fds.size(), 0);
  std::vector<bool> gone(fds.size(), false);
  auto t0 = std::chrono::steady_clock::now();
  auto last_sample = t0;
  while (f.closed < fds.size() && std::chrono::steady_clock::now() - t0 < limit &&
         f.peak_kib - f.before_kib < 256 * 1024) {
    std::vector<pollfd> ps;
    for (auto fd : fds)
      ps.push_back({fd, POLLOUT, 0});
    ::poll(ps.data(), ps.size(), 20);
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (gone[i] || ps[i].revents == 0) continue;
      ssize_t n = (ps[i].revents & (POLLERR | POLLHUP))
                      ? -1
                      : ::send(fds[i], batches[i].data() + off[i], batches[i].size() - off[i],
                               MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN) continue;
      if (n <= 0) {
        gone[i] = true;
        ++f.closed;
        continue;
      }
      f.sent += static_cast<std::size_t>(n);
      off[i] += static_cast<std::size_t>(n);
      if (off[i] == batches[i].size()) {
        off[i] = 0;
        if (unique_txt) batches[i] = make_batch();
      }
    }
    if (std::chrono::steady_clock::now() - last_sample > 100ms) {
      last_sample = std::chrono::steady_clock::now();
      f.peak_kib = std::max(f.peak_kib, rss_kib(ld.pid));
    }
  }
  f.took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  f.peak_kib = std::max(f.peak_kib, rss_kib(ld.pid));
  for (auto fd : fds)
    ::close(fd);
  return f;
}

}  // namespace

TEST_CASE("a client that writes queries and never reads keeps memory bounded",
          "[integration][tcp][memory]") {
  FakeUpstream up;
  Spawned ld(up.address());  // default limits
  REQUIRE(ld.ready);
  auto f = flood(ld, 1, 15s);
  WARN("RSS " << f.before_kib / 1024 << " MiB -> peak " << f.peak_kib / 1024 << " MiB; "
              << f.sent / 1024 << " KiB of queries sent in " << f.took.count() << " ms");
  // Bound: 64 KiB queued per connection, 4 MiB for all; allow allocator slack.
  CHECK(f.peak_kib - f.before_kib < 24 * 1024);
  // Its writes make no progress, so the server closes it after write_timeout (5 s).
  CHECK(f.closed == 1);
  // The server still answers others.
  CHECK(udp_query({"127.0.0.1", ld.port}, make_query("cached.example", "A")).has_value());
}

TEST_CASE("non-reading clients together stay within the process-wide queue budget",
          "[integration][tcp][memory]") {
  FakeUpstream up;
  // 8 MiB allowed per connection, but 1 MiB for all of them.
  Spawned ld(up.address(),
             "tcp_clients: {max_queued_bytes: 8388608, "
             "max_queued_bytes_total: 1048576, write_timeout: 2s}\n");
  REQUIRE(ld.ready);
  auto f = flood(ld, 8, 8s);
  WARN("8 connections: RSS " << f.before_kib / 1024 << " MiB -> peak " << f.peak_kib / 1024
                             << " MiB; " << f.sent / 1024 << " KiB of queries sent in "
                             << f.took.count() << " ms");
  // Without the total, 8 x 8 MiB could be queued.
  CHECK(f.peak_kib - f.before_kib < 16 * 1024);
  CHECK(udp_query({"127.0.0.1", ld.port}, make_query("cached.example", "A")).has_value());
}

TEST_CASE("answers that complete later stay within the queue caps of a non-reading client",
          "[integration][tcp][memory]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Sanitizer shadow memory swamps the RSS figure, and a server slowed that
  // much answers too slowly for owed answers to pile up: the plain build runs it.
  WARN("not run in a sanitizer build");
  return;
#endif
  FakeUpstream up;
  // big.test over TCP to the upstream, so the TXT answers arrive whole (about
  // 3000 bytes); a small cache, so that what grows is what the connections hold.
  Spawned ld(up.address(),
             "tcp_clients: {max_queued_bytes_total: 1048576, write_timeout: 10s}\n"
             "cache: {max_bytes: 1048576}\n"
             "forward:\n"
             "  - zones: [big.test]\n"
             "    servers: ['" +
                 up.address() +
                 "']\n"
                 "    transport: tcp\n");
  REQUIRE(ld.ready);
  // 32 connections x 128 pipelined queries: the group's 4096 in flight, every
  // one a cache miss whose answer comes later.
  auto f = flood(ld, 32, 20s, true);
  WARN("32 connections, unique TXT names: RSS "
       << f.before_kib / 1024 << " MiB -> peak " << f.peak_kib / 1024 << " MiB; " << f.closed
       << " closed; " << f.sent / 1024 << " KiB of queries sent in " << f.took.count() << " ms");
  // About 20 MiB of it is the 4096 queries in flight upstream and the cache.
  // On top, the queues: 1 MiB for all plus one largest message, where without
  // a bound on answers that come later 128 answers of 3000 bytes pile up on
  // every connection (12 MiB in all), held until write_timeout (10 s) notices.
  CHECK(f.peak_kib - f.before_kib < 26 * 1024);
  CHECK(f.closed == 32);  // none is left holding memory
  // Closed as soon as its queue is past the caps with its socket full.
  CHECK(f.took < 7000ms);
  CHECK(udp_query({"127.0.0.1", ld.port}, make_query("cached.example", "A")).has_value());
}
