// What a reload does to the cache: erase_if drops the entries of the zones it
// names and keeps the rest; set_limits shrinks (evicting) and grows budgets.
#include <array>

#include <catch2/catch.hpp>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>

#include "cache_query.hpp"
#include "dns_client.hpp"
#include "ldns_records.hpp"
#include "packets.hpp"

using namespace localdns;

namespace {

using Asked = test::CacheQuery;
Asked ask(const std::string& name) {
  return test::cache_query(name);
}

void put(cache::PacketCache& c, const std::string& name) {
  auto b = test::ResponseBuilder::answering(test::make_query(name, "A", {.id = 0}));
  b.answer(test::a_record(300, {10, 0, 0, 1}));
  auto p = b.build();
  auto rv = dns::parse_response(p);
  REQUIRE(rv);
  c.insert(ask(name).key, p, *rv, 300);
}

bool cached(cache::PacketCache& c, const std::string& name) {
  std::array<std::uint8_t, 4096> out{};
  auto a = ask(name);
  return c.lookup(a.key, a.shape, out).size != 0;
}

bool under(dns::Bytes qname, const std::string& zone) {
  auto text = dns::name_to_text(qname);
  return text.size() >= zone.size() && text.ends_with(zone);
}

}  // namespace

TEST_CASE("erase_if drops one zone's entries and keeps the others", "[cache][reload]") {
  cache::PacketCache c(cache::CacheSettings{1000, 1 << 20, 4});
  for (int i = 0; i < 20; ++i) {
    put(c, "n" + std::to_string(i) + ".old.test");
    put(c, "n" + std::to_string(i) + ".kept.test");
  }
  REQUIRE(c.stats().entries == 40);
  auto erased = c.erase_if([](dns::Bytes q) { return under(q, ".old.test."); });
  CHECK(erased == 20);
  CHECK(c.stats().entries == 20);
  CHECK_FALSE(cached(c, "n3.old.test"));
  CHECK(cached(c, "n3.kept.test"));
  CHECK(cached(c, "N19.KEPT.test"));
}

TEST_CASE("set_limits evicts down to a smaller budget and admits more after growing",
          "[cache][reload]") {
  cache::PacketCache c(cache::CacheSettings{64, 1 << 20, 1});
  for (int i = 0; i < 64; ++i)
    put(c, "n" + std::to_string(i) + ".test");
  REQUIRE(c.stats().entries == 64);
  c.set_limits(8, 1 << 20);
  CHECK(c.stats().entries == 8);
  CHECK(c.stats().evictions == 56);
  CHECK(cached(c, "n63.test"));  // the most recent stay
  CHECK_FALSE(cached(c, "n0.test"));
  c.set_limits(100, 1 << 20);
  for (int i = 0; i < 100; ++i)
    put(c, "m" + std::to_string(i) + ".test");
  CHECK(c.stats().entries == 100);
}
