// QueryHandler on its own, against the fault-injecting upstream: each handler
// runs on its own io_context and thread, as a worker's does, and its clients
// are UDP sockets on loopback addresses of their own.
#include <arpa/inet.h>
#include <array>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
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
#include <spdlog/spdlog.h>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/zone_router.hpp>
#include <localdns/upstream/forwarder.hpp>
#include <localdns/util/clock.hpp>
#include <localdns/util/random.hpp>

#include "dns_client.hpp"
#include "fake_upstream.hpp"
#include "log_capture.hpp"

using namespace localdns;
using namespace std::chrono_literals;

namespace {

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
  server::Outcome ask(const test::Packet& q, const server::ClientRef& client) {
    return call([&] { return handler_->handle(q, server::Transport::Udp, client, out_); });
  }
  test::Packet reply_bytes(const server::Outcome& o) const {
    return test::Packet(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(o.len));
  }

  struct Stats {
    std::uint64_t forwarded, coalesced, cache_hits, servfail;
  };
  // Read on the handler's thread: what it counted so far.
  Stats stats() {
    return call([this] {
      const auto& s = handler_->stats();
      return Stats{s.forwarded.get(), s.coalesced.get(), s.cache_hits.get(), s.servfail.get()};
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
  std::optional<test::Packet> receive(std::chrono::milliseconds timeout = 3000ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    test::Packet buf(dns::kMaxMessageSize);
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
  explicit Setup(const test::FakeUpstream& up, std::chrono::milliseconds timeout = 1500ms) {
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

test::Reply decoded(const std::optional<test::Packet>& p) {
  REQUIRE(p);
  auto r = test::decode(*p);
  REQUIRE(r.ok);
  return r;
}

}  // namespace

TEST_CASE("query handler: a cache hit is answered inline, without the upstream",
          "[server][handler]") {
  test::FakeUpstream up;
  Setup s(up);
  auto q = test::make_query("cached.example", "A", {.id = 41});
  auto v = dns::parse_query(q);
  auto answer = test::make_query("cached.example", "A", {.id = 41});
  answer[2] |= 0x80;  // an answer with no records: cached like NODATA
  s.cache.insert(cache::Key::make(v.question, false, false), answer, *dns::parse_response(answer),
                 300);
  TestWorker w(*s.router, s.group, s.wiring);
  Client client("127.0.0.1");
  auto o = w.ask(q, client.ref());
  REQUIRE(o.action == server::Action::Reply);
  auto r = test::decode(w.reply_bytes(o));
  CHECK(r.ok);
  CHECK(r.id == 41);
  CHECK(r.rcode == "NOERROR");
  CHECK(w.stats().cache_hits == 1);
  CHECK(w.stats().forwarded == 0);
  CHECK(up.queries() == 0);
  CHECK_FALSE(client.receive(50ms).has_value());  // nothing sent later on top
}

TEST_CASE("query handler: a miss is answered from the upstream, then from the cache",
          "[server][handler]") {
  test::FakeUpstream up;
  Setup s(up);
  TestWorker w(*s.router, s.group, s.wiring);
  Client client("127.0.0.1");
  auto q = test::make_query("miss.example", "A", {.id = 7});
  CHECK(w.ask(q, client.ref()).action == server::Action::Async);
  auto r = decoded(client.receive());
  CHECK(r.id == 7);
  CHECK(r.rcode == "NOERROR");
  CHECK(r.answers == std::vector<std::string>{test::FakeUpstream::answer_address()});
  CHECK(up.queries_for("miss.example.") == 1);
  CHECK(w.stats().forwarded == 1);

  auto again = w.ask(test::make_query("miss.example", "A", {.id = 8}), client.ref());
  REQUIRE(again.action == server::Action::Reply);
  CHECK(test::decode(w.reply_bytes(again)).answers ==
        std::vector<std::string>{test::FakeUpstream::answer_address()});
  CHECK(w.stats().cache_hits == 1);
  CHECK(up.queries_for("miss.example.") == 1);
  CHECK(s.coalescer.pending_keys() == 0);
}

TEST_CASE(
    "query handler: clients of two workers share one upstream query, each answered "
    "on its own worker's thread",
    "[server][handler][coalescer]") {
  test::FakeUpstream up;
  up.set({.delay = 300ms});  // both askers join before the answer comes
  Setup s(up);
  test::LogCapture log;
  TestWorker leader(*s.router, s.group, s.wiring);
  TestWorker other(*s.router, s.group, s.wiring);
  REQUIRE(leader.thread_id() != other.thread_id());
  Client a("127.0.0.2"), b("127.0.0.3"), c("127.0.0.4");
  CHECK(leader.ask(test::make_query("shared.example", "A", {.id = 1}), a.ref()).action ==
        server::Action::Async);
  CHECK(other.ask(test::make_query("shared.example", "A", {.id = 2}), b.ref()).action ==
        server::Action::Async);
  CHECK(other.ask(test::make_query("SHARED.example", "A", {.id = 3}), c.ref()).action ==
        server::Action::Async);
  CHECK(s.coalescer.pending_keys() == 1);

  auto ra = decoded(a.receive());
  auto rb = decoded(b.receive());
  auto rc = decoded(c.receive());
  CHECK(ra.id == 1);
  CHECK(rb.id == 2);
  CHECK(rc.id == 3);
  CHECK(rc.qname == "SHARED.example.");  // each reply built for its own client
  for (const auto* r : {&ra, &rb, &rc})
    CHECK(r->answers == std::vector<std::string>{test::FakeUpstream::answer_address()});
  CHECK(up.queries() == 1);
  CHECK(leader.stats().forwarded == 1);
  CHECK(other.stats().forwarded == 0);
  CHECK(other.stats().coalesced == 2);
  CHECK(s.coalescer.pending_keys() == 0);

  // Each reply was built (and logged) on the thread of its client's worker.
  auto on_leader = log.lines_with("client=127.0.0.2 ", 1);
  auto on_other_b = log.lines_with("client=127.0.0.3 ", 1);
  auto on_other_c = log.lines_with("client=127.0.0.4 ", 1);
  REQUIRE(on_leader.size() == 1);
  REQUIRE(on_other_b.size() == 1);
  REQUIRE(on_other_c.size() == 1);
  CHECK(on_leader[0].thread == leader.thread_id());
  CHECK(on_other_b[0].thread == other.thread_id());
  CHECK(on_other_c[0].thread == other.thread_id());
}

TEST_CASE("query handler: an upstream timeout is answered SERVFAIL", "[server][handler]") {
  test::FakeUpstream up;
  up.set({.mode = test::Behaviour::Mode::Drop});
  Setup s(up, 100ms);
  TestWorker w(*s.router, s.group, s.wiring);
  Client client("127.0.0.1");
  CHECK(w.ask(test::make_query("lost.example", "A", {.id = 9}), client.ref()).action ==
        server::Action::Async);
  auto r = decoded(client.receive());
  CHECK(r.id == 9);
  CHECK(r.rcode == "SERVFAIL");
  CHECK(r.answers.empty());
  CHECK(up.queries() == 1);
  CHECK(w.stats().servfail == 1);
}

TEST_CASE(
    "query handler: a coalesced query failed at shutdown is answered SERVFAIL by each "
    "client's own worker",
    "[server][handler][coalescer]") {
  test::FakeUpstream up;
  up.set({.mode = test::Behaviour::Mode::Drop});  // only the shutdown ends the query
  Setup s(up);
  test::LogCapture log;
  TestWorker leader(*s.router, s.group, s.wiring);
  TestWorker other(*s.router, s.group, s.wiring);
  Client a("127.0.0.5"), b("127.0.0.6");
  CHECK(leader.ask(test::make_query("down.example", "A", {.id = 1}), a.ref()).action ==
        server::Action::Async);
  CHECK(other.ask(test::make_query("down.example", "A", {.id = 2}), b.ref()).action ==
        server::Action::Async);
  // As app::Worker::fail_upstreams: the leader's worker fails its exchanges.
  // The other worker's completion is queued on it before this returns.
  leader.fail_upstreams();
  CHECK(decoded(a.receive(500ms)).rcode == "SERVFAIL");
  CHECK(decoded(b.receive(500ms)).rcode == "SERVFAIL");
  CHECK(other.stats().servfail == 1);
  CHECK(leader.stats().servfail == 1);
  auto lines = log.lines_with("client=127.0.0.6 ", 1);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].thread == other.thread_id());
}
