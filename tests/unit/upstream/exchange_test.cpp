// Exchange against the fake upstream: one group's Forwarder on a test
// io_context, no server around it. Query IDs come from a fixed sequence.
#include <memory>
#include <optional>
#include <vector>

#include <catch2/catch.hpp>

#include <localdns/upstream/forwarder.hpp>

#include "upstream_fixture.hpp"

using namespace localdns;
using namespace std::chrono_literals;
using test::Behaviour;
using test::FakeUpstream;
using test::run_until;
using upstream::Status;
using upstream::Transport;

namespace {

struct Outcome {
  Status status = Status::Failed;
  std::vector<std::uint8_t> answer;
  std::uint16_t rcode = 0xffff;
  bool tc = false;
};

upstream::GroupSettings settings(std::vector<util::Endpoint> servers, Transport transport,
                                 util::Duration timeout = 200ms, unsigned attempts = 2) {
  upstream::GroupSettings s;
  s.servers = std::move(servers);
  s.transport = transport;
  s.timeout = timeout;
  s.attempts = attempts;
  return s;
}

struct Rig {
  explicit Rig(upstream::GroupSettings s, std::vector<std::uint32_t> ids = {0x1234},
               const util::Clock& clock = util::Clock::real())
      : random(std::move(ids)),
        group(std::make_shared<upstream::GroupState>(std::move(s))),
        fwd(ctx, group, clock, random) {}

  // Starts a resolution; the outcome is filled when it completes.
  std::shared_ptr<std::optional<Outcome>> start(const std::string& name) {
    auto out = std::make_shared<std::optional<Outcome>>();
    test::TestQuestion q(name);
    upstream::Request req;
    req.question = q.question;  // the exchange copies the question into its query
    fwd.resolve(req, [out](const upstream::Result& r) {
      Outcome o;
      o.status = r.status;
      o.answer.assign(r.answer.begin(), r.answer.end());
      if (r.view) {
        o.rcode = r.view->rcode();
        o.tc = r.view->header.tc();
      }
      *out = o;
    });
    return out;
  }
  Outcome resolve(const std::string& name) {
    auto out = start(name);
    REQUIRE(run_until(ctx, [&] { return out->has_value(); }));
    return **out;
  }
  const upstream::ForwardCounters& counters(std::size_t server) const {
    return group->health[server]->counters();
  }

  boost::asio::io_context ctx;
  util::SequenceRandom random;
  std::shared_ptr<upstream::GroupState> group;
  upstream::Forwarder fwd;
};

std::uint16_t id_of(const std::vector<std::uint8_t>& packet) {
  return static_cast<std::uint16_t>((packet.at(0) << 8) | packet.at(1));
}

}  // namespace

TEST_CASE("an exchange returns the upstream's answer", "[upstream][exchange]") {
  FakeUpstream up;
  Rig rig(settings({test::endpoint_of(up)}, Transport::Udp));
  auto o = rig.resolve("Answer.Example");
  CHECK(o.status == Status::Ok);
  CHECK(o.rcode == 0);
  REQUIRE(o.answer.size() > 12);
  CHECK(id_of(o.answer) == 0x1234);  // the ID from the random source
  auto seen = up.seen_queries();
  REQUIRE(seen.size() == 1);
  CHECK_FALSE(seen[0].tcp);
  CHECK(id_of(seen[0].packet) == 0x1234);
  CHECK(up.queries_for("answer.example.") == 1);  // asked in lower case
  CHECK(rig.counters(0).requests.load() == 1);
  CHECK(rig.counters(0).failures.load() == 0);
  CHECK(rig.counters(0).answered.load());
  CHECK(rig.group->in_flight.load() == 0);  // the ticket is released
}

TEST_CASE("an attempt that times out moves to the next server", "[upstream][exchange]") {
  FakeUpstream dead, alive;
  dead.set({.mode = Behaviour::Mode::Drop});
  Rig rig(settings({test::endpoint_of(dead), test::endpoint_of(alive)}, Transport::Udp));
  auto o = rig.resolve("next.example");
  CHECK(o.status == Status::Ok);
  CHECK(o.rcode == 0);
  CHECK(dead.queries() == 1);
  CHECK(alive.queries() == 1);
  CHECK(rig.counters(0).failures.load() == 1);  // the timeout counts against the first
  CHECK(rig.counters(1).failures.load() == 0);
}

TEST_CASE("a SERVFAIL is kept while other servers are tried", "[upstream][exchange]") {
  FakeUpstream failing, other;
  failing.set({.mode = Behaviour::Mode::ServFail});
  SECTION("another server answers: its answer wins") {
    Rig rig(settings({test::endpoint_of(failing), test::endpoint_of(other)}, Transport::Udp));
    auto o = rig.resolve("fallback.example");
    CHECK(o.status == Status::Ok);
    CHECK(o.rcode == 0);
    CHECK(failing.queries() == 1);
    CHECK(other.queries() == 1);
  }
  SECTION("the other server is silent: the SERVFAIL beats a timeout") {
    other.set({.mode = Behaviour::Mode::Drop});
    Rig rig(settings({test::endpoint_of(failing), test::endpoint_of(other)}, Transport::Udp));
    auto o = rig.resolve("fallback.example");
    CHECK(o.status == Status::Ok);
    CHECK(o.rcode == 2);
    CHECK(failing.queries() == 1);
    CHECK(other.queries() == 1);
  }
}

TEST_CASE("a truncated UDP answer is asked again over TCP", "[upstream][exchange]") {
  FakeUpstream up;
  up.set({.truncate_udp = true});
  Rig rig(settings({test::endpoint_of(up)}, Transport::PreferUdp));
  auto o = rig.resolve("big.example");
  CHECK(o.status == Status::Ok);
  CHECK(o.rcode == 0);
  CHECK_FALSE(o.tc);
  CHECK(up.udp_queries() == 1);
  CHECK(up.tcp_queries() == 1);
  CHECK(rig.counters(0).requests.load() == 2);
  CHECK(rig.counters(0).failures.load() == 0);  // truncation is not a failure
}

TEST_CASE("an exchange ends at its deadline, timeout x attempts", "[upstream][exchange]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  Rig rig(settings({test::endpoint_of(up)}, Transport::Udp, 150ms, 2));
  const auto t0 = std::chrono::steady_clock::now();
  auto o = rig.resolve("silent.example");
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(o.status == Status::Timeout);
  CHECK(up.udp_queries() == 2);  // one server: both attempts go to it
  CHECK(rig.counters(0).failures.load() == 2);
  CHECK(took >= 300ms);
  CHECK(took < 2000ms);
}

TEST_CASE("past the group's in-flight cap nothing is sent", "[upstream][exchange]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  auto s = settings({test::endpoint_of(up)}, Transport::Udp, 150ms, 1);
  s.max_in_flight = 1;
  Rig rig(s);
  auto first = rig.start("one.example");
  auto second = rig.start("two.example");
  REQUIRE(second->has_value());  // at once
  CHECK((*second)->status == Status::Overloaded);
  CHECK(rig.group->rejects.load() == 1);
  REQUIRE(run_until(rig.ctx, [&] { return first->has_value(); }));
  CHECK((*first)->status == Status::Timeout);
  CHECK(up.udp_queries() == 1);
}

TEST_CASE("an exchange measures its deadline on the forwarder's clock", "[upstream][exchange]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  util::ManualClock clock;
  Rig rig(settings({test::endpoint_of(up)}, Transport::Udp, 300ms, 3), {0x1234}, clock);
  auto out = rig.start("late.example");
  REQUIRE(run_until(rig.ctx, [&] { return up.udp_queries() == 1; }));
  // The whole deadline (900 ms) passes on the clock while the first attempt
  // waits: when its timer fires the exchange ends, with no second attempt.
  clock.advance(1s);
  REQUIRE(run_until(rig.ctx, [&] { return out->has_value(); }));
  CHECK((*out)->status == Status::Timeout);
  CHECK(up.udp_queries() == 1);  // on the real clock: three attempts
  CHECK(rig.counters(0).failures.load() == 1);
}
