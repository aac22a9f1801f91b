// Proves that a cache hit does not touch the heap: this executable replaces
// the global operator new and counts calls around lookup().
#include <array>
#include <atomic>
#include <cstdlib>
#include <new>

#include <catch2/catch.hpp>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/message.hpp>

#include "dns_client.hpp"

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
  test::Packet a = q;
  a.resize(q.size() - 11);  // drop the OPT
  a[2] = 0x81;
  a[3] = 0x80;
  a[7] = 1;
  a[11] = 0;
  a.insert(a.end(), {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 0, 1});
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
