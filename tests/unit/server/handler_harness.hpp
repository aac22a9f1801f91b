// A QueryHandler on its own, as a worker runs it, for the handler's unit
// tests: TestWorker (an io_context on its own thread, the group's forwarder,
// the handler), Client (a UDP socket on a loopback address of its own, which
// the handler answers through as through a listener's) and Setup (one group
// for every zone, served by a FakeUpstream, with a cache and a coalescer).
#pragma once

#include <arpa/inet.h>
#include <array>
#include <cstring>
#include <future>
#include <memory>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <spdlog/details/os.h>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/search_prefetch.hpp>
#include <localdns/server/zone_router.hpp>
#include <localdns/upstream/forwarder.hpp>
#include <localdns/util/clock.hpp>
#include <localdns/util/random.hpp>

#include "dns_client.hpp"
#include "fake_upstream.hpp"

namespace localdns::test {

using namespace std::chrono_literals;

// One worker's share: an io_context run by its own thread, the group's
// forwarder and a handler, like app::Worker.
class TestWorker {
 public:
  TestWorker(const server::ZoneRouter& router, std::shared_ptr<upstream::GroupState> group,
             const server::CacheWiring& wiring)
      : guard_(boost::asio::make_work_guard(io_)) {
    forwarders_.push_back(std::make_unique<upstream::Forwarder>(
        io_, std::move(group), util::Clock::real(), util::Random::system()));
    // Every answer in the query log: its line is written by the thread that
    // builds the reply.
    handler_.emplace(router, forwarders_, wiring, io_.get_executor(),
                     server::HandlerOptions{.query_log_sample = 1});
    thread_ = std::thread([this] { io_.run(); });
    thread_id_ = call([] { return spdlog::details::os::thread_id(); });
  }
  ~TestWorker() {
    guard_.reset();
    io_.stop();
    thread_.join();
  }
  TestWorker(const TestWorker&) = delete;
  TestWorker& operator=(const TestWorker&) = delete;

  // Runs `f` on the worker's thread and waits for its result.
  template <class F>
  std::invoke_result_t<F> call(F f) {
    std::packaged_task<std::invoke_result_t<F>()> task(std::move(f));
    auto result = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return result.get();
  }

  // The query from `client`, as a UDP listener hands it over. A reply made at
  // once is in reply_bytes().
  server::Outcome ask(const Packet& q, const server::ClientRef& client) {
    return call([&] { return handler_->handle(q, server::Transport::Udp, client, out_); });
  }
  Packet reply_bytes(const server::Outcome& o) const {
    return Packet(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(o.len));
  }

  struct Stats {
    std::uint64_t forwarded, coalesced, cache_hits, servfail;
    std::uint64_t search_sets, search_sent, search_skipped_busy, search_skipped_in_flight;
  };
  // Read on the handler's thread: what it counted so far.
  Stats stats() {
    return call([this] {
      const auto& s = handler_->stats();
      return Stats{s.forwarded.get(),           s.coalesced.get(),
                   s.cache_hits.get(),          s.servfail.get(),
                   s.search_sets.get(),         s.search_sent.get(),
                   s.search_skipped_busy.get(), s.search_skipped_in_flight.get()};
    });
  }
  // The search-path prefetch on this worker (no max_qps budget), with at
  // most `max_sets` walks in flight.
  void set_search_path(const server::SearchPathSettings& settings, std::size_t max_sets) {
    call([&] { handler_->set_search_path(settings, nullptr, max_sets); });
  }
  // The walks in flight on this worker.
  std::size_t search_in_flight() {
    return call([this] {
      const auto* sp = handler_->search_path();
      return sp ? sp->in_flight() : std::size_t{0};
    });
  }
  void fail_upstreams() {
    call([this] {
      for (auto& f : forwarders_)
        f->shutdown();
    });
  }
  std::size_t thread_id() const { return thread_id_; }

 private:
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::unique_ptr<upstream::Forwarder>> forwarders_;
  std::optional<server::QueryHandler> handler_;
  std::array<std::uint8_t, dns::kMaxMessageSize> out_{};
  std::thread thread_;
  std::size_t thread_id_ = 0;
};

// A client: a UDP socket of its own on a loopback address. The handler sends
// through the same socket, as through a listener's.
class Client {
 public:
  explicit Client(const char* address) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    REQUIRE(::inet_pton(AF_INET, address, &a.sin_addr) == 1);
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    ref_.fd = fd_;
    std::memcpy(&ref_.addr, &a, sizeof a);
    ref_.addr_len = sizeof a;
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  server::ClientRef ref() const { return ref_; }
  std::optional<Packet> receive(std::chrono::milliseconds timeout = 3000ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    Packet buf(dns::kMaxMessageSize);
    auto n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n <= 0) return std::nullopt;
    buf.resize(static_cast<std::size_t>(n));
    return buf;
  }

 private:
  int fd_ = -1;
  server::UdpClient ref_;
};

// One group for every zone, served by the fake upstream.
struct Setup {
  explicit Setup(const FakeUpstream& up, std::chrono::milliseconds timeout = 1500ms) {
    upstream::GroupSettings g;
    g.servers = {util::Endpoint{boost::asio::ip::make_address("127.0.0.1"), up.port()}};
    g.timeout = timeout;
    g.attempts = 1;
    router = std::make_unique<server::ZoneRouter>(server::GroupZones{{"."}});
    group = std::make_shared<upstream::GroupState>(g);
    wiring.cache = &cache;
    wiring.policies = {cache::TtlPolicy{}};
    wiring.coalescer = &coalescer;
  }
  std::unique_ptr<server::ZoneRouter> router;
  std::shared_ptr<upstream::GroupState> group;
  cache::PacketCache cache{{}};
  server::QueryCoalescer coalescer;
  server::CacheWiring wiring;
};

inline Reply decoded(const std::optional<Packet>& p) {
  REQUIRE(p);
  auto r = decode(*p);
  REQUIRE(r.ok);
  return r;
}

}  // namespace localdns::test
