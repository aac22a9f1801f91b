// The per-client limiter: token buckets on a ManualClock, the bounded table
// and its LRU eviction, IPv6 prefix grouping, the allow-list, exemptions.
#include <catch2/catch.hpp>

#include <localdns/server/client_limits.hpp>

using namespace localdns;
using server::ClientAddress;
using server::ClientLimiter;
using server::ClientLimits;
using namespace std::chrono_literals;

namespace {

ClientAddress addr(const char* text) {
  return ClientAddress::of(boost::asio::ip::make_address(text));
}

ClientLimits rate(unsigned qps, unsigned burst = 0, std::size_t table = 4096) {
  ClientLimits l;
  l.rate_limit.qps = qps;
  l.rate_limit.burst = burst;
  l.rate_limit.table_size = table;
  l.rate_limit.exempt_node_addresses = false;
  return l;
}

// Queries admitted out of `n` asked at once.
int admitted(ClientLimiter& lim, const ClientAddress& a, int n) {
  int ok = 0;
  for (int i = 0; i < n; ++i)
    ok += lim.admit(a).ok ? 1 : 0;
  return ok;
}

server::ClientNetwork net(const char* base, unsigned prefix) {
  return {boost::asio::ip::make_address(base), prefix};
}

}  // namespace

TEST_CASE("a client gets its burst at once, then qps per second", "[client-limits]") {
  util::ManualClock clock;
  ClientLimiter lim(rate(10, 5), {}, clock);
  auto a = addr("10.1.2.3");
  CHECK(admitted(lim, a, 20) == 5);
  clock.advance(100ms);  // one token back
  CHECK(admitted(lim, a, 5) == 1);
  clock.advance(250ms);  // two and a half
  CHECK(admitted(lim, a, 5) == 2);
  clock.advance(50ms);  // the half left over and this make one more
  CHECK(admitted(lim, a, 5) == 1);
  clock.advance(10s);  // refills to the burst, never past it
  CHECK(admitted(lim, a, 50) == 5);
}

TEST_CASE("burst 0 means twice qps", "[client-limits]") {
  util::ManualClock clock;
  ClientLimiter lim(rate(7), {}, clock);
  CHECK(admitted(lim, addr("192.0.2.1"), 100) == 14);
  // A steady client at exactly qps is never refused.
  util::ManualClock steady;
  ClientLimiter lim2(rate(100, 1), {}, steady);
  auto a = addr("192.0.2.2");
  int refused = 0;
  for (int i = 0; i < 1000; ++i) {
    refused += lim2.admit(a).ok ? 0 : 1;
    steady.advance(10ms);
  }
  CHECK(refused == 0);
}

TEST_CASE("clients have buckets of their own", "[client-limits]") {
  util::ManualClock clock;
  ClientLimiter lim(rate(1, 2), {}, clock);
  CHECK(admitted(lim, addr("10.0.0.1"), 10) == 2);
  CHECK(admitted(lim, addr("10.0.0.2"), 10) == 2);
  CHECK(admitted(lim, addr("10.0.0.1"), 10) == 0);
  CHECK(lim.tracked() == 2);
}

TEST_CASE("the table is bounded: the least recently seen client is evicted, and counted",
          "[client-limits]") {
  util::ManualClock clock;
  ClientLimiter lim(rate(1, 1, 3), {}, clock);
  REQUIRE(lim.capacity() == 3);
  auto a = addr("10.0.0.1"), b = addr("10.0.0.2"), c = addr("10.0.0.3"), d = addr("10.0.0.4");
  CHECK(lim.admit(a).ok);
  CHECK(lim.admit(b).ok);
  CHECK(lim.admit(c).ok);
  // a asked again (refused: its bucket is empty) is now the most recent; b is the oldest.
  auto again = lim.admit(a);
  CHECK_FALSE(again.ok);
  CHECK_FALSE(again.evicted);
  auto fresh = lim.admit(d);
  CHECK(fresh.ok);
  CHECK(fresh.evicted);
  CHECK(lim.tracked() == 3);
  // a and c are still tracked (empty buckets), b was forgotten (a full one again).
  CHECK_FALSE(lim.admit(a).ok);
  CHECK_FALSE(lim.admit(c).ok);
  auto b2 = lim.admit(b);
  CHECK(b2.ok);
  CHECK(b2.evicted);  // d was the oldest by then
  // Many clients through a small table: every entry stays findable (the
  // index's deletions keep its probe runs whole).
  ClientLimiter big(rate(1, 1, 64), {}, clock);
  int evictions = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 1000; ++i) {
      auto x = addr(("10.9." + std::to_string(i / 256) + "." + std::to_string(i % 256)).c_str());
      auto r = big.admit(x);
      evictions += r.evicted ? 1 : 0;
      // Asked again at once: found, so refused, and no new eviction.
      auto r2 = big.admit(x);
      CHECK_FALSE(r2.ok);
      CHECK_FALSE(r2.evicted);
    }
  }
  CHECK(evictions == 3 * 1000 - 64);
  CHECK(big.tracked() == 64);
}

TEST_CASE("IPv6 clients share a bucket per prefix", "[client-limits]") {
  util::ManualClock clock;
  auto limits = rate(1, 3);
  SECTION("the default /64") {
    ClientLimiter lim(limits, {}, clock);
    CHECK(lim.admit(addr("2001:db8:1:2::1")).ok);
    CHECK(lim.admit(addr("2001:db8:1:2:ffff::9")).ok);
    CHECK(lim.admit(addr("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).ok);
    CHECK_FALSE(lim.admit(addr("2001:db8:1:2::77")).ok);
    CHECK(lim.admit(addr("2001:db8:1:3::1")).ok);  // another /64
    CHECK(lim.tracked() == 2);
  }
  SECTION("a /128 prefix keeps every address apart") {
    limits.rate_limit.ipv6_prefix = 128;
    ClientLimiter lim(limits, {}, clock);
    for (int i = 1; i <= 5; ++i)
      CHECK(admitted(lim, addr(("2001:db8::" + std::to_string(i)).c_str()), 5) == 3);
    CHECK(lim.tracked() == 5);
  }
  SECTION("IPv4 clients are never grouped") {
    limits.rate_limit.ipv6_prefix = 8;
    ClientLimiter lim(limits, {}, clock);
    CHECK(admitted(lim, addr("10.0.0.1"), 5) == 3);
    CHECK(admitted(lim, addr("10.0.0.2"), 5) == 3);
    // An IPv4-mapped IPv6 address is the IPv4 client.
    CHECK(admitted(lim, addr("::ffff:10.0.0.2"), 5) == 0);
  }
}

TEST_CASE("the allow-list admits IPv4 and IPv6 networks and nothing else", "[client-limits]") {
  ClientLimits l;
  l.allow = {net("10.0.0.0", 8), net("192.168.1.0", 24), net("fd00::", 8), net("2001:db8::1", 128)};
  ClientLimiter lim(l, {});
  CHECK(lim.has_allow_list());
  CHECK(lim.allowed(addr("10.200.3.4")));
  CHECK(lim.allowed(addr("192.168.1.255")));
  CHECK_FALSE(lim.allowed(addr("192.168.2.1")));
  CHECK_FALSE(lim.allowed(addr("11.0.0.1")));
  CHECK(lim.allowed(addr("::ffff:10.1.1.1")));  // a dual-stack socket's IPv4 client
  CHECK(lim.allowed(addr("fd12:3456::1")));
  CHECK(lim.allowed(addr("2001:db8::1")));
  CHECK_FALSE(lim.allowed(addr("2001:db8::2")));
  CHECK_FALSE(lim.allowed(addr("fe80::1")));
  // An IPv4 network never holds an IPv6 client, nor the reverse.
  ClientLimits v4only;
  v4only.allow = {net("0.0.0.0", 0)};
  ClientLimiter lim4(v4only, {});
  CHECK(lim4.allowed(addr("203.0.113.9")));
  CHECK_FALSE(lim4.allowed(addr("2001:db8::9")));
  // No allow-list: everyone.
  ClientLimiter open(ClientLimits{}, {});
  CHECK(open.allowed(addr("203.0.113.9")));
  CHECK(open.allowed(addr("2001:db8::9")));
}

TEST_CASE("node addresses and loopback are exempt from the rate limit by default",
          "[client-limits]") {
  util::ManualClock clock;
  auto limits = rate(1, 1);
  limits.rate_limit.exempt_node_addresses = true;
  limits.node_addresses = {boost::asio::ip::make_address("169.254.20.10")};
  std::vector<boost::asio::ip::address> interfaces = {boost::asio::ip::make_address("10.0.0.5"),
                                                      boost::asio::ip::make_address("2001:db8::5")};
  ClientLimiter lim(limits, interfaces, clock);
  for (const char* a :
       {"10.0.0.5", "2001:db8::5", "169.254.20.10", "127.0.0.1", "127.3.4.5", "::1"})
    CHECK(admitted(lim, addr(a), 50) == 50);
  CHECK(lim.tracked() == 0);
  CHECK(admitted(lim, addr("10.0.0.6"), 50) == 1);  // a pod next to the node
  limits.rate_limit.exempt_node_addresses = false;
  ClientLimiter strict(limits, interfaces, clock);
  CHECK(admitted(strict, addr("10.0.0.5"), 50) == 1);
  CHECK(admitted(strict, addr("127.0.0.1"), 50) == 1);
}

TEST_CASE("the rate limit off admits everything and tracks nothing", "[client-limits]") {
  ClientLimiter lim(ClientLimits{}, {});
  CHECK_FALSE(lim.limits_rate());
  CHECK(admitted(lim, addr("10.0.0.1"), 1000) == 1000);
  CHECK(lim.tracked() == 0);
  CHECK(lim.capacity() == 0);
}

TEST_CASE("interface_addresses finds loopback", "[client-limits]") {
  auto all = server::interface_addresses();
  CHECK(std::any_of(all.begin(), all.end(), [](const auto& a) { return a.is_loopback(); }));
}
