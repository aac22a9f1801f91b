// Proves that a cache hit does not touch the heap: this executable replaces
// the global operator new and counts calls around lookup().
#include <arpa/inet.h>
#include <array>
#include <atomic>
#include <cstdlib>
#include <new>

#include <catch2/catch.hpp>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/search_prefetch.hpp>
#include <localdns/server/zone_router.hpp>

#include "dns_client.hpp"
#include "packets.hpp"

// The replacement pairs malloc with free on purpose; GCC cannot see that.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<long> g_allocations{0};
}

void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

using namespace localdns;

TEST_CASE("a cache hit does not allocate", "[cache][alloc]") {
  cache::PacketCache c({});
  auto q = test::make_query("api.default.svc.cluster.local", "A", {.id = 7, .edns = true});
  auto v = dns::parse_query(q);
  auto key = cache::Key::make(v.question, false, false);
  auto shape = dns::make_reply_shape(v, v.udp_reply_limit());
  // The stored answer: the query turned into a response with one A record.
  auto a = test::ResponseBuilder::answering(q).answer(test::a_record(30, {10, 96, 0, 1})).build();
  c.insert(key, a, *dns::parse_response(a), 30);
  std::array<std::uint8_t, 1232> out{};
  long before = g_allocations.load();
  std::size_t n = 0;
  for (int i = 0; i < 1000; ++i)
    n += c.lookup(key, shape, out).size;
  long after = g_allocations.load();
  CHECK(n > 0);
  CHECK(after - before == 0);
}

TEST_CASE("a hit through the query handler does not allocate, metrics and top sampling on",
          "[server][alloc]") {
  server::ZoneRouter router(server::GroupZones{{"."}});
  std::vector<std::unique_ptr<upstream::Forwarder>> forwarders;  // hits only
  cache::PacketCache c({});
  server::CacheWiring wiring;
  wiring.cache = &c;
  wiring.policies = {cache::TtlPolicy{}};
  auto q = test::make_query("api.default.svc.cluster.local", "A", {.id = 7, .edns = true});
  auto v = dns::parse_query(q);
  auto answer = test::make_query("api.default.svc.cluster.local", "A", {.id = 7});
  answer[2] |= 0x80;  // an answer with no records: cached like NODATA
  auto rv = dns::parse_response(answer);
  REQUIRE(rv);
  c.insert(cache::Key::make(v.question, false, false), answer, *rv, 300);
  boost::asio::io_context io;
  // Every query sampled into the top sketches, every answer counted.
  server::QueryHandler handler(router, forwarders, wiring, io.get_executor(),
                               {.metrics = true, .top_sample = 1});
  server::UdpClient udp;
  udp.addr.ss_family = AF_INET;
  udp.addr_len = sizeof(sockaddr_in);
  server::ClientRef client = udp;
  std::array<std::uint8_t, 4096> out{};
  REQUIRE(handler.handle(q, server::Transport::Udp, client, out).len >
          0);  // first use of thread-locals
  long before = g_allocations.load();
  for (int i = 0; i < 500; ++i) {
    auto r = handler.handle(q, server::Transport::Udp, client, out);
    REQUIRE(r.action == server::Action::Reply);
  }
  CHECK(g_allocations.load() - before == 0);
  CHECK(handler.stats().cache_hits.get() == 501);
  // The samples went somewhere: 501 queries, the ring keeps 1024.
  CHECK(handler.top()->top(metrics::TopKind::Names, 1).at(0).count == 501);
}

TEST_CASE("a hit on a first search expansion does not allocate, search path on",
          "[server][alloc][search-path]") {
  server::ZoneRouter router(server::GroupZones{{"."}});
  std::vector<std::unique_ptr<upstream::Forwarder>> forwarders;  // hits only
  cache::PacketCache c({});
  server::QueryCoalescer coalescer;
  server::CacheWiring wiring;
  wiring.cache = &c;
  wiring.coalescer = &coalescer;
  wiring.policies = {cache::TtlPolicy{}};
  // A pod's first expansion of www.external.test, cached.
  const char* f = "www.external.test.default.svc.cluster.local";
  auto q = test::make_query(f, "A", {.id = 7, .edns = true});
  auto v = dns::parse_query(q);
  auto answer = test::make_query(f, "A", {.id = 7});
  answer[2] |= 0x80;
  auto rv = dns::parse_response(answer);
  REQUIRE(rv);
  c.insert(cache::Key::make(v.question, false, false), answer, *rv, 300);
  boost::asio::io_context io;
  server::QueryHandler handler(router, forwarders, wiring, io.get_executor(), {});
  server::SearchPathSettings sp;
  sp.mode = server::SearchPathMode::Warm;
  sp.host_search = {"corp.example."};
  server::SpeculationBudget budget;
  handler.set_search_path(sp, &budget);
  REQUIRE(handler.search_path() != nullptr);
  server::UdpClient udp;
  udp.addr.ss_family = AF_INET;
  udp.addr_len = sizeof(sockaddr_in);
  server::ClientRef client = udp;
  std::array<std::uint8_t, 4096> out{};
  REQUIRE(handler.handle(q, server::Transport::Udp, client, out).len > 0);
  long before = g_allocations.load();
  for (int i = 0; i < 500; ++i)
    REQUIRE(handler.handle(q, server::Transport::Udp, client, out).action == server::Action::Reply);
  CHECK(g_allocations.load() - before == 0);
  CHECK(handler.stats().cache_hits.get() == 501);
  // A hit starts no walk, and posts nothing.
  CHECK(handler.stats().search_sets.get() == 0);
  CHECK(io.poll() == 0);
}

TEST_CASE("the client limits allocate nothing per query: allow-list, buckets, eviction",
          "[server][alloc][client-limits]") {
  server::ZoneRouter router(server::GroupZones{{"."}});
  std::vector<std::unique_ptr<upstream::Forwarder>> forwarders;  // hits and refusals only
  cache::PacketCache c({});
  server::CacheWiring wiring;
  wiring.cache = &c;
  wiring.policies = {cache::TtlPolicy{}};
  auto q = test::make_query("api.default.svc.cluster.local", "A", {.id = 7, .edns = true});
  auto v = dns::parse_query(q);
  auto answer = test::make_query("api.default.svc.cluster.local", "A", {.id = 7});
  answer[2] |= 0x80;
  auto rv = dns::parse_response(answer);
  REQUIRE(rv);
  c.insert(cache::Key::make(v.question, false, false), answer, *rv, 300);
  boost::asio::io_context io;
  server::QueryHandler handler(router, forwarders, wiring, io.get_executor(), {});
  // Every hit counted (exempt_cache_hits off), a table of 16 for 64
  // clients: new buckets, evictions and refusals all the time.
  server::ClientLimits limits;
  limits.allow = {{boost::asio::ip::make_address("10.0.0.0"), 8}};
  limits.rate_limit.qps = 1;
  limits.rate_limit.burst = 2;
  limits.rate_limit.exempt_cache_hits = false;
  limits.rate_limit.exempt_node_addresses = false;
  limits.rate_limit.table_size = 16;
  handler.set_client_limits(limits);
  auto client_at = [](std::uint32_t host) {
    server::UdpClient udp;
    auto& in = reinterpret_cast<sockaddr_in&>(udp.addr);
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(host);
    udp.addr_len = sizeof(sockaddr_in);
    return server::ClientRef(udp);
  };
  std::vector<server::ClientRef> clients;
  for (std::uint32_t i = 0; i < 64; ++i)
    clients.push_back(client_at(0x0a000000u + i));  // 10.0.0.i
  auto outsider = client_at(0xc0000201u);           // 192.0.2.1
  auto heavy = client_at(0x0a010001u);              // 10.1.0.1, asked every time
  std::array<std::uint8_t, 4096> out{};
  REQUIRE(handler.handle(q, server::Transport::Udp, clients[0], out).len > 0);
  long before = g_allocations.load();
  for (int i = 0; i < 640; ++i) {
    auto r =
        handler.handle(q, server::Transport::Udp, clients[static_cast<std::size_t>(i % 64)], out);
    REQUIRE(r.action == server::Action::Reply);
    REQUIRE(handler.handle(q, server::Transport::Udp, outsider, out).action ==
            server::Action::Reply);
    REQUIRE(handler.handle(q, server::Transport::Udp, heavy, out).action == server::Action::Reply);
  }
  CHECK(g_allocations.load() - before == 0);
  const auto& st = handler.stats();
  CHECK(st.client_not_allowed.get() == 640);
  CHECK(st.client_evictions.get() > 0);
  CHECK(st.client_rate_limited.get() > 0);
  CHECK(st.cache_hits.get() > 0);
}
