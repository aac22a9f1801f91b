// The UDP and TCP listeners when their socket keeps failing: a receive that
// fails every time, an accept out of descriptors. Real sockets on loopback,
// the listener's io_context run on the test's thread; the handler answers
// every name REFUSED itself (no zone), so no upstream is involved.
#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <localdns/server/query_handler.hpp>
#include <localdns/server/tcp_listener.hpp>
#include <localdns/server/udp_listener.hpp>
#include <localdns/server/zone_router.hpp>
#include <localdns/upstream/forwarder.hpp>

#include "dns_client.hpp"
#include "log_capture.hpp"

using namespace localdns;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A worker's io_context and a handler without zones, upstreams or cache.
struct Harness {
  boost::asio::io_context ctx{1};
  server::ZoneRouter router{server::GroupZones{}};
  std::vector<std::unique_ptr<upstream::Forwarder>> forwarders;
  server::CacheWiring wiring;
  server::QueryHandler handler{router, forwarders, wiring, ctx.get_executor(),
                               server::HandlerOptions{.metrics = false, .top_sample = 0}};

  // Runs the context in short slices until `pred` holds or `limit` passes.
  template <class Pred>
  bool run_until(Clock::duration limit, Pred pred) {
    const auto deadline = Clock::now() + limit;
    while (!pred()) {
      if (Clock::now() >= deadline) return pred();
      ctx.run_for(5ms);
    }
    return true;
  }
};

util::Endpoint loopback() {
  return {boost::asio::ip::make_address("127.0.0.1"), 0};
}

sockaddr_in to(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

// Every descriptor number free below a soft RLIMIT_NOFILE lowered to just
// above the highest one open, so the next socket or accept fails with
// EMFILE; undone by the destructor.
class NoDescriptors {
 public:
  NoDescriptors() {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    int highest = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (auto* e = ::readdir(d))
        highest = std::max(highest, std::atoi(e->d_name));
      ::closedir(d);
    }
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(highest) + 8;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    for (int fd; (fd = ::dup(0)) >= 0;)
      held_.push_back(fd);
    REQUIRE(errno == EMFILE);
  }
  ~NoDescriptors() {
    for (int fd : held_)
      ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }
  NoDescriptors(const NoDescriptors&) = delete;
  NoDescriptors& operator=(const NoDescriptors&) = delete;

 private:
  rlimit saved_{};
  std::vector<int> held_;
};

}  // namespace

TEST_CASE("udp listener: a receive that fails every time is paced, not spun, then serves again",
          "[server][listener]") {
  test::LogCapture log;
  Harness h;
  auto sock = server::open_udp_socket(h.ctx, loopback());
  const auto port = sock.local_endpoint().port();
  const int fd = sock.native_handle();
  server::UdpListener listener(std::move(sock), h.handler);
  // The listener's descriptor number now names a TCP socket that never
  // connected: every receive on it, Asio's recv and drain's recvmmsg alike,
  // fails at once with ENOTCONN, as a socket in a persistent error state does.
  const int udp = ::dup(fd);
  REQUIRE(udp >= 0);
  const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(tcp >= 0);
  REQUIRE(::dup2(tcp, fd) == fd);
  ::close(tcp);
  char byte = 0;
  REQUIRE(::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) < 0);
  REQUIRE(errno == ENOTCONN);

  listener.start();
  const auto t0 = Clock::now();
  const auto ran = h.ctx.run_for(300ms);
  const auto took = Clock::now() - t0;
  // A few receives at once, then one receive and one timer per pause of 1,
  // 2, 4 ... 64, 100 ms: about 20 handlers in 300 ms, where a receive
  // retried at once each time runs hundreds of thousands.
  INFO(ran << " handlers in " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
           << " ms");
  CHECK(ran > server::UdpListener::kRetriesBeforeBackoff);
  CHECK(ran < 60);
  // Logged once for the whole run of failures, with the error.
  auto warned = log.lines_with("receive failing", 0);
  REQUIRE(warned.size() == 1);
  CHECK(warned[0].text.find(std::strerror(ENOTCONN)) != std::string::npos);

  // The UDP socket back under its number: the next pause ends in a receive
  // that succeeds, and a query is answered.
  REQUIRE(::dup2(udp, fd) == fd);
  ::close(udp);
  const int client = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(client >= 0);
  const auto q = test::make_query("anything.test", "A", {.id = 777});
  const auto dst = to(port);
  REQUIRE(::sendto(client, q.data(), q.size(), 0, reinterpret_cast<const sockaddr*>(&dst),
                   sizeof dst) == static_cast<ssize_t>(q.size()));
  REQUIRE(h.run_until(3s, [&] { return readable(client); }));
  test::Packet buf(512);
  const auto n = ::recv(client, buf.data(), buf.size(), 0);
  ::close(client);
  REQUIRE(n > 0);
  buf.resize(static_cast<std::size_t>(n));
  const auto reply = test::decode(buf);
  CHECK(reply.id == 777);
  CHECK(reply.rcode == "REFUSED");
  CHECK(log.lines_with("receiving again", 0).size() == 1);
  CHECK(log.lines_with("receive failing", 0).size() == 1);
}

// Not in the AddressSanitizer build: UBSan's vptr check probes memory through
// a pipe, and with no descriptor free it reports Asio's reactor as an invalid
// object. The ci and TSan builds run it.
#ifndef __SANITIZE_ADDRESS__
TEST_CASE("tcp listener: accept out of descriptors is logged once, retried, then accepts",
          "[server][listener]") {
  test::LogCapture log;
  Harness h;
  auto acceptor = server::open_tcp_acceptor(h.ctx, loopback());
  const auto port = acceptor.local_endpoint().port();
  server::TcpClientLimits limits;
  server::TcpClientBudget budget;
  server::TcpListener listener(std::move(acceptor), limits, h.handler, budget);
  listener.start();
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(client >= 0);
  {
    NoDescriptors none;
    const auto dst = to(port);
    // Loopback completes the handshake in the kernel: the listener's accept
    // is what fails, with EMFILE, and is retried every 100 ms.
    REQUIRE(::connect(client, reinterpret_cast<const sockaddr*>(&dst), sizeof dst) == 0);
    h.ctx.run_for(550ms);
    CHECK(listener.session_count() == 0);
    auto warned = log.lines_with("tcp accept failed", 0);
    REQUIRE(warned.size() == 1);
    CHECK(warned[0].text.find(std::strerror(EMFILE)) != std::string::npos);
  }
  // Descriptors free again: the waiting connection is accepted and served.
  CHECK(h.run_until(3s, [&] { return listener.session_count() == 1; }));
  CHECK(log.lines_with("accepting again", 0).size() == 1);
  CHECK(log.lines_with("tcp accept failed", 0).size() == 1);
  ::close(client);
  listener.stop(server::TcpListener::Sessions::close);
  h.ctx.run_for(10ms);
}
#endif  // __SANITIZE_ADDRESS__
