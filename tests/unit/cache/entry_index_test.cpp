// The cache's index (src/cache/entry_index.hpp) through the cache's own
// interface: many entries in one shard, so that the table grows several
// times and deletions shift long probe runs, and keys that differ only in
// letter case (one key) or the DO bit (two keys).
#include <array>
#include <string>

#include <catch2/catch.hpp>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>

#include "cache_query.hpp"
#include "dns_client.hpp"
#include "packets.hpp"

using namespace localdns;

namespace {

test::Packet answer_for(const test::Packet& query) {
  return test::ResponseBuilder::answering(query).answer(test::a_record(300, {10, 0, 0, 1})).build();
}

void put(cache::PacketCache& c, const test::CacheQuery& a) {
  auto ans = answer_for(a.query);
  auto rv = dns::parse_response(ans);
  REQUIRE(rv);
  c.insert(a.key, ans, *rv, 300);
}

bool hits(cache::PacketCache& c, const test::CacheQuery& a) {
  std::array<std::uint8_t, 4096> out{};
  return c.lookup(a.key, a.shape, out).size != 0;
}

std::string name(int i) {
  return "n" + std::to_string(i) + ".index.example";
}

}  // namespace

TEST_CASE("one shard holds 20,000 entries; erasing half leaves the rest findable", "[cache]") {
  cache::CacheSettings s;
  s.shards = 1;
  s.max_entries = 20'000;
  s.max_bytes = std::size_t{64} << 20;
  cache::PacketCache c(s);
  for (int i = 0; i < 20'000; ++i)
    put(c, test::cache_query(name(i)));
  CHECK(c.stats().entries == 20'000);
  CHECK(c.stats().evictions == 0);
  int missing = 0;
  for (int i = 0; i < 20'000; ++i)
    missing += !hits(c, test::cache_query(name(i)));
  CHECK(missing == 0);
  // Erase every odd name: each erase shifts the probe run behind it.
  std::size_t erased = 0;
  for (int i = 1; i < 20'000; i += 2) {
    auto wire = *dns::name_from_text(name(i));
    erased +=
        c.erase_name(dns::Bytes(reinterpret_cast<const std::uint8_t*>(wire.data()), wire.size()));
  }
  CHECK(erased == 10'000);
  int wrong = 0;
  for (int i = 0; i < 20'000; ++i)
    wrong += hits(c, test::cache_query(name(i))) != (i % 2 == 0);
  CHECK(wrong == 0);
  // Past the budget: the least recently used go, the rest stay findable.
  for (int i = 20'000; i < 40'000; ++i)
    put(c, test::cache_query(name(i)));
  CHECK(c.stats().entries == 20'000);
  int found = 0;
  for (int i = 20'000; i < 40'000; ++i)
    found += hits(c, test::cache_query(name(i)));
  CHECK(found == 20'000);
  c.clear();
  CHECK(c.stats().entries == 0);
  CHECK_FALSE(hits(c, test::cache_query(name(20'000))));
  put(c, test::cache_query(name(7)));
  CHECK(hits(c, test::cache_query(name(7))));
}

TEST_CASE("keys that differ only in letter case or the DO bit", "[cache]") {
  cache::CacheSettings s;
  s.shards = 1;
  cache::PacketCache c(s);
  put(c, test::cache_query("Same.Example"));
  CHECK(hits(c, test::cache_query("same.example")));
  CHECK(hits(c, test::cache_query("SAME.EXAMPLE")));
  const test::QueryOptions with_do{.edns = true, .do_bit = true};
  CHECK_FALSE(hits(c, test::cache_query("same.example", with_do)));
  put(c, test::cache_query("same.example", with_do));
  CHECK(hits(c, test::cache_query("same.example", with_do)));
  CHECK(hits(c, test::cache_query("same.example")));
  CHECK(c.stats().entries == 2);
}

TEST_CASE("one shard past 2^20 index slots: entries stay findable and evictable", "[cache]") {
  // 900,000 entries need 2^21 slots, where the index recomputes an entry's
  // hash to find its home slot (its slots keep 20 bits of the hash).
  constexpr int kEntries = 900'000;
  cache::CacheSettings s;
  s.shards = 1;
  s.max_entries = kEntries;
  s.max_bytes = std::size_t{1} << 30;
  cache::PacketCache c(s);
  for (int i = 0; i < kEntries; ++i)
    put(c, test::cache_query(name(i)));
  CHECK(c.stats().entries == static_cast<std::size_t>(kEntries));
  // A smaller budget evicts the older half (nothing was asked, so the LRU
  // order is the insertion order), each eviction a backward shift.
  c.set_limits(kEntries / 2, s.max_bytes);
  int wrong = 0;
  for (int i = 0; i < kEntries; i += 5)
    wrong += hits(c, test::cache_query(name(i))) != (i >= kEntries / 2);
  CHECK(wrong == 0);
}
