// TcpPool and TcpConnection against the fake upstream, driven through the
// PendingQuery interface (no Exchange), with the pool's clock and random
// source fixed by the test.
#include <array>
#include <memory>
#include <optional>

#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include <localdns/dns/builder.hpp>
#include <localdns/upstream/tcp_connection.hpp>

#include "upstream_fixture.hpp"

using namespace localdns;
using namespace std::chrono_literals;
using test::FakeUpstream;
using test::run_until;

namespace {

// One query as a TCP connection sees it, recording what it was told.
class Query final : public upstream::PendingQuery {
 public:
  explicit Query(const std::string& name) : q_(name) {
    len_ = dns::build_query({q_.question, 0, true, false, false}, buf_);
  }
  dns::MutableBytes bytes() { return {buf_.data(), len_}; }

  const dns::Question& question() const override { return q_.question; }
  void on_tcp_answer(const upstream::TcpConnection*, std::uint16_t id, dns::Bytes msg,
                     const dns::ResponseView* rv) override {
    ++answers;
    answered_id = id;
    parsed = rv != nullptr;
    if (rv) rcode = rv->rcode();
    answer_id = msg.size() >= 2 ? static_cast<std::uint16_t>((msg[0] << 8) | msg[1]) : 0;
  }
  void on_tcp_lost(const upstream::TcpConnection*, std::uint16_t) override { ++lost; }

  int answers = 0;
  int lost = 0;
  std::uint16_t answered_id = 0;
  std::uint16_t answer_id = 0;
  bool parsed = false;
  std::uint16_t rcode = 0xffff;

 private:
  test::TestQuestion q_;
  std::array<std::uint8_t, 512> buf_{};
  std::size_t len_ = 0;
};

struct Rig {
  Rig(const util::Endpoint& server, upstream::TcpPoolSettings tcp,
      std::vector<std::uint32_t> ids = {0x4000})
      : random(std::move(ids)),
        health(server, 3),
        pool(ctx, tcp, util::Duration(2000), health, clock, random) {}

  std::optional<upstream::TcpPool::Sent> send(const std::shared_ptr<Query>& q) {
    return pool.send(q, q->bytes());
  }

  boost::asio::io_context ctx;
  util::ManualClock clock;
  util::SequenceRandom random;
  upstream::ServerHealth health;
  upstream::TcpPool pool;
};

upstream::TcpPoolSettings one_connection() {
  upstream::TcpPoolSettings t;
  t.connections = 1;
  t.max_age = {};
  t.max_queries = 0;
  t.idle_timeout = {};
  return t;
}

// A loopback port nothing listens on (bound once, then released).
util::Endpoint refused_port() {
  boost::asio::io_context ctx;
  boost::asio::ip::tcp::acceptor a(ctx, {boost::asio::ip::make_address("127.0.0.1"), 0});
  util::Endpoint ep{a.local_endpoint().address(), a.local_endpoint().port()};
  a.close();
  return ep;
}

}  // namespace

TEST_CASE("a TCP pool pipelines queries on one connection and matches answers by ID",
          "[upstream][tcp_pool]") {
  FakeUpstream up;
  up.set({.reverse_tcp_batch = 8});  // answers held until all 8 are due, then sent reversed
  // Every ID the random source gives is 0x4000: the connection must step past
  // the ones in use.
  Rig rig(test::endpoint_of(up), one_connection(), {0x4000});
  std::vector<std::shared_ptr<Query>> qs;
  std::optional<upstream::TcpPool::Sent> first;
  for (int i = 0; i < 8; ++i) {
    qs.push_back(std::make_shared<Query>("pipe" + std::to_string(i) + ".example"));
    auto sent = rig.send(qs.back());
    REQUIRE(sent.has_value());
    CHECK(sent->id == 0x4000 + i);
    if (!first) first = sent;
    CHECK(sent->conn == first->conn);
  }
  REQUIRE(run_until(rig.ctx, [&] {
    for (auto& q : qs)
      if (q->answers == 0) return false;
    return true;
  }));
  for (int i = 0; i < 8; ++i) {
    INFO("query " << i);
    CHECK(qs[i]->answers == 1);
    CHECK(qs[i]->lost == 0);
    CHECK(qs[i]->parsed);
    CHECK(qs[i]->answered_id == 0x4000 + i);
    CHECK(qs[i]->answer_id == 0x4000 + i);
    CHECK(qs[i]->rcode == 0);
  }
  CHECK(up.tcp_connections() == 1);
  CHECK(up.tcp_queries() == 8);
  CHECK(rig.health.counters().tcp_connects.load() == 1);
  CHECK(rig.health.counters().tcp_open.load() == 1);
}

TEST_CASE("a TCP pool backs off after failed connects, doubling up to 5 s",
          "[upstream][tcp_pool]") {
  Rig rig(refused_port(), one_connection());
  const std::chrono::milliseconds schedule[] = {100ms,  200ms,  400ms,  800ms,
                                                1600ms, 3200ms, 5000ms, 5000ms};
  for (std::size_t k = 0; k < std::size(schedule); ++k) {
    INFO("failed connect " << k + 1);
    auto q = std::make_shared<Query>("backoff.example");
    REQUIRE(rig.send(q).has_value());  // a connect starts
    REQUIRE(run_until(rig.ctx, [&] { return q->lost == 1; }));
    CHECK(q->answers == 0);
    CHECK(rig.health.counters().failures.load() == k + 1);
    CHECK(rig.pool.next_connect() - rig.clock.now() == schedule[k]);
    // No connect, so no query taken, until the backoff is over.
    auto early = std::make_shared<Query>("early.example");
    CHECK_FALSE(rig.send(early).has_value());
    rig.clock.advance(schedule[k] - 1ms);
    CHECK_FALSE(rig.send(early).has_value());
    rig.clock.advance(1ms);
  }
  CHECK(rig.health.counters().tcp_connects.load() == 0);
  CHECK(rig.health.counters().local_errors.load() == 0);
}

TEST_CASE("a TCP connection retires by age on the pool's clock", "[upstream][tcp_pool]") {
  FakeUpstream up;
  auto tcp = one_connection();
  tcp.max_age = 60s;
  Rig rig(test::endpoint_of(up), tcp);

  auto q1 = std::make_shared<Query>("age1.example");
  auto s1 = rig.send(q1);
  REQUIRE(s1.has_value());
  REQUIRE(run_until(rig.ctx, [&] { return q1->answers == 1; }));

  // Younger than max_age: the same connection.
  rig.clock.advance(59s);
  auto q2 = std::make_shared<Query>("age2.example");
  auto s2 = rig.send(q2);
  REQUIRE(s2.has_value());
  CHECK(s2->conn == s1->conn);
  // It comes of age with q2 in flight: it closes once q2 is answered.
  rig.clock.advance(1s);
  REQUIRE(run_until(rig.ctx, [&] { return q2->answers == 1; }));
  CHECK(run_until(rig.ctx, [&] { return up.open_tcp_connections() == 0; }));
  CHECK(q2->lost == 0);

  auto q3 = std::make_shared<Query>("age3.example");
  auto s3 = rig.send(q3);
  REQUIRE(s3.has_value());
  CHECK(s3->conn != s1->conn);
  REQUIRE(run_until(rig.ctx, [&] { return q3->answers == 1; }));
  CHECK(up.tcp_connections() == 2);
  CHECK(up.tcp_queries() == 3);
}

TEST_CASE("a TCP connection retires after max_queries", "[upstream][tcp_pool]") {
  FakeUpstream up;
  auto tcp = one_connection();
  tcp.max_queries = 2;
  Rig rig(test::endpoint_of(up), tcp);
  std::vector<std::shared_ptr<Query>> qs;
  std::vector<std::shared_ptr<upstream::TcpConnection>> conns;
  for (int i = 0; i < 5; ++i) {
    qs.push_back(std::make_shared<Query>("count" + std::to_string(i) + ".example"));
    auto sent = rig.send(qs.back());
    REQUIRE(sent.has_value());
    conns.push_back(sent->conn);
    REQUIRE(run_until(rig.ctx, [&] { return qs.back()->answers == 1; }));
  }
  // Two queries per connection: 0 and 1, 2 and 3, then 4 on a third.
  CHECK(conns[0] == conns[1]);
  CHECK(conns[1] != conns[2]);
  CHECK(conns[2] == conns[3]);
  CHECK(conns[3] != conns[4]);
  CHECK(up.tcp_connections() == 3);
  // The retired ones closed once drained.
  CHECK(run_until(rig.ctx, [&] { return up.open_tcp_connections() == 1; }));
}

TEST_CASE("an idle TCP connection closes when the pool's clock says it idled",
          "[upstream][tcp_pool]") {
  FakeUpstream up;
  auto tcp = one_connection();
  tcp.idle_timeout = 50ms;
  Rig rig(test::endpoint_of(up), tcp);
  auto q = std::make_shared<Query>("idle.example");
  REQUIRE(rig.send(q).has_value());
  REQUIRE(run_until(rig.ctx, [&] { return q->answers == 1; }));
  REQUIRE(up.open_tcp_connections() == 1);
  // The idle timer fires every 50 ms of real time, but the clock has not
  // moved: the connection is not idle yet and stays open.
  CHECK_FALSE(run_until(
      rig.ctx, [&] { return up.open_tcp_connections() == 0; }, 300ms));
  rig.clock.advance(50ms);
  CHECK(run_until(rig.ctx, [&] { return up.open_tcp_connections() == 0; }));
  CHECK(q->lost == 0);
}
