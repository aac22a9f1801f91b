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
#include "handler_harness.hpp"
#include "log_capture.hpp"

using namespace localdns;
using namespace std::chrono_literals;

using test::Client;
using test::decoded;
using test::Setup;
using test::TestWorker;

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
