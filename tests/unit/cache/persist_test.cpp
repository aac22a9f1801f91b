// The warm-restart file (cache/persist.hpp): what comes back, with which
// TTLs, and that no damaged file is believed.
#include <array>
#include <cstdio>
#include <filesystem>
#include <unistd.h>
#include <zlib.h>

#include <catch2/catch.hpp>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/cache/persist.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/util/clock.hpp>

#include "cache_query.hpp"
#include "dns_client.hpp"
#include "packets.hpp"

using namespace localdns;
using namespace std::chrono_literals;

namespace {

constexpr cache::WallSeconds kWall = 1'800'000'000;  // the save's wall clock

cache::NowFn now_of(const util::ManualClock& clock) {
  return [&clock] { return clock.now(); };
}

test::Packet answer(const std::string& name, std::uint32_t ttl, unsigned rcode = 0,
                    test::Packet ede = {}) {
  auto b = test::ResponseBuilder::answering(test::make_query(name, "A", {.id = 0}));
  b.rcode(rcode);
  // NOERROR: an answer and an additional record; else the SOA.
  if (rcode != 0) {
    b.authority(test::soa_record(ttl, ttl));
  } else {
    for (std::uint8_t i = 0; i < 2; ++i) {
      auto rr = test::a_record(ttl, {10, i, i, static_cast<std::uint8_t>(i + 1)});
      if (i == 0) {
        b.answer(rr);
      } else {
        b.additional(rr);
      }
    }
  }
  return b.opt(test::Opt{.options = std::move(ede)}).build();
}

using Asked = test::CacheQuery;
Asked ask(const std::string& name) {
  return test::cache_query(name, {.edns = true});
}

std::optional<test::Packet> hit(cache::PacketCache& c, const std::string& name,
                                cache::Freshness f = cache::Freshness::Fresh) {
  auto a = ask(name);
  std::array<std::uint8_t, 65535> out{};
  std::size_t n = c.lookup(a.key, a.shape, out, f).size;
  if (n == 0) return std::nullopt;
  return test::Packet(out.begin(), out.begin() + static_cast<long>(n));
}

void insert(cache::PacketCache& c, const std::string& name, const test::Packet& ans,
            std::uint32_t lifetime, std::uint32_t stale_window = 0) {
  auto rv = dns::parse_response(ans);
  REQUIRE(rv);
  c.insert(ask(name).key, ans, *rv, lifetime, stale_window);
}

std::vector<std::uint8_t> encode(const cache::PacketCache& c, cache::WallSeconds now = kWall) {
  std::size_t n = 0;
  return cache::encode_cache(c, now, n);
}

// Rewrites the header's body length and CRC after a test edited the body.
void reseal(std::vector<std::uint8_t>& f) {
  const std::size_t body = f.size() - cache::kPersistHeaderSize;
  for (int i = 0; i < 8; ++i)
    f[16 + i] = static_cast<std::uint8_t>(std::uint64_t{body} >> (56 - 8 * i));
  auto crc = static_cast<std::uint32_t>(::crc32(
      ::crc32(0, Z_NULL, 0), f.data() + cache::kPersistHeaderSize, static_cast<uInt>(body)));
  dns::write_u32(f.data() + 24, crc);
}

cache::LoadOptions stale_allowed(std::uint32_t window) {
  cache::LoadOptions o;
  o.max_stale_window = window;
  return o;
}

// A cache of three entries: a positive answer with an additional record, one
// with an upstream Extended DNS Error, an NXDOMAIN with its SOA.
struct Filled {
  util::ManualClock clock{util::TimePoint(1000s)};
  cache::PacketCache cache{cache::CacheSettings{}, now_of(clock)};
  Filled() {
    insert(cache, "a.example", answer("a.example", 300), 300);
    insert(cache, "b.example", answer("b.example", 300, 0, test::ede_option(3, "old")), 300);
    insert(cache, "nx.example", answer("nx.example", 200, 3), 200);
  }
};

}  // namespace

TEST_CASE("persisted entries come back as they were, byte for byte", "[cache][persist]") {
  Filled f;
  f.clock.advance(100s);
  auto file = encode(f.cache);
  util::ManualClock later(util::TimePoint(5000s));
  cache::PacketCache back(cache::CacheSettings{}, now_of(later));
  // Loaded 20 s of wall time later; the original aged as much.
  auto r = cache::decode_cache(back, file, kWall + 20, {});
  INFO(r.error);
  REQUIRE(r.ok);
  CHECK(r.loaded == 3);
  CHECK(r.skipped == 0);
  f.clock.advance(20s);
  for (const char* name : {"a.example", "b.example", "nx.example"}) {
    INFO(name);
    auto want = hit(f.cache, name);
    auto got = hit(back, name);
    REQUIRE(want);
    REQUIRE(got);
    CHECK(*got == *want);  // TTLs, additional records, EDE, RCODE: all the same
  }
  auto reply = test::decode(*hit(back, "a.example"));
  REQUIRE(reply.answer_ttls.size() == 1);
  CHECK(reply.answer_ttls[0] == 180);
}

TEST_CASE("restored entries keep their remaining TTL and expire when they would have",
          "[cache][persist]") {
  util::ManualClock clock(util::TimePoint(1000s));
  cache::PacketCache c(cache::CacheSettings{}, now_of(clock));
  insert(c, "a.example", answer("a.example", 300), 300);
  clock.advance(100s);  // 200 s left
  auto file = encode(c);

  util::ManualClock clock2(util::TimePoint(77s));  // a new boot: another steady epoch
  cache::PacketCache back(cache::CacheSettings{}, now_of(clock2));
  REQUIRE(cache::decode_cache(back, file, kWall + 50, {}).loaded == 1);  // down 50 s
  auto r = hit(back, "a.example");
  REQUIRE(r);
  CHECK(test::decode(*r).answer_ttls.at(0) == 150);
  clock2.advance(149s);
  r = hit(back, "a.example");
  REQUIRE(r);
  CHECK(test::decode(*r).answer_ttls.at(0) == 1);
  clock2.advance(1s);
  CHECK_FALSE(hit(back, "a.example"));
}

TEST_CASE("expired entries are neither saved nor restored", "[cache][persist]") {
  util::ManualClock clock(util::TimePoint(1000s));
  cache::PacketCache c(cache::CacheSettings{}, now_of(clock));
  insert(c, "old.example", answer("old.example", 60), 60);
  insert(c, "new.example", answer("new.example", 300), 300);
  clock.advance(61s);
  std::size_t n = 0;
  auto file = cache::encode_cache(c, kWall, n);
  CHECK(n == 1);  // old.example expired before the save

  cache::PacketCache back(cache::CacheSettings{}, now_of(clock));
  auto r = cache::decode_cache(back, file, kWall + 239, {});  // new.example: 0 s left
  REQUIRE(r.ok);
  CHECK(r.loaded == 0);
  CHECK(r.expired == 1);
  CHECK(back.stats().entries == 0);
}

TEST_CASE("expired entries inside their stale window stay for serve-stale", "[cache][persist]") {
  util::ManualClock clock(util::TimePoint(1000s));
  cache::PacketCache c(cache::CacheSettings{}, now_of(clock));
  insert(c, "s.example", answer("s.example", 60), 60, 3600);
  clock.advance(100s);  // expired 40 s ago, still saved: inside its window
  auto file = encode(c);

  SECTION("serve-stale enabled") {
    cache::PacketCache back(cache::CacheSettings{}, now_of(clock));
    auto r = cache::decode_cache(back, file, kWall + 60, stale_allowed(3600));
    REQUIRE(r.loaded == 1);
    CHECK_FALSE(hit(back, "s.example"));  // not fresh
    auto stale = hit(back, "s.example", cache::Freshness::AllowStale);
    REQUIRE(stale);
    CHECK(test::decode(*stale).answer_ttls.at(0) <= cache::kStaleAnswerTtl);
  }
  SECTION("window now shorter than the entry's age") {
    cache::PacketCache back(cache::CacheSettings{}, now_of(clock));
    auto r = cache::decode_cache(back, file, kWall + 60, stale_allowed(60));
    CHECK(r.loaded == 0);
    CHECK(r.expired == 1);
  }
  SECTION("serve-stale now off") {
    cache::PacketCache back(cache::CacheSettings{}, now_of(clock));
    auto r = cache::decode_cache(back, file, kWall + 60, {});
    CHECK(r.loaded == 0);
    CHECK(r.expired == 1);
    CHECK_FALSE(hit(back, "s.example", cache::Freshness::AllowStale));
  }
}

TEST_CASE("a truncated file is ignored at every length", "[cache][persist]") {
  Filled f;
  auto file = encode(f.cache);
  REQUIRE(file.size() > cache::kPersistHeaderSize + 100);
  for (std::size_t len = 0; len < file.size(); ++len) {
    cache::PacketCache back(cache::CacheSettings{});
    auto r = cache::decode_cache(back, std::span(file).first(len), kWall, {});
    INFO("length " << len);
    CHECK_FALSE(r.ok);
    CHECK(back.stats().entries == 0);
  }
}

TEST_CASE("a flipped byte anywhere is rejected", "[cache][persist]") {
  Filled f;
  const auto file = encode(f.cache);
  for (std::size_t i = 0; i < file.size(); ++i) {
    auto bad = file;
    bad[i] ^= 0x20;
    cache::PacketCache back(cache::CacheSettings{});
    auto r = cache::decode_cache(back, bad, kWall, {});
    INFO("byte " << i);
    CHECK_FALSE(r.ok);
    CHECK(back.stats().entries == 0);
    if (i >= cache::kPersistHeaderSize) CHECK_THAT(r.error, Catch::Contains("CRC"));
  }
}

TEST_CASE("foreign and oversized files are rejected", "[cache][persist]") {
  Filled f;
  const auto file = encode(f.cache);
  cache::PacketCache back(cache::CacheSettings{});
  auto bad = file;
  bad[0] = 'X';
  CHECK_THAT(cache::decode_cache(back, bad, kWall, {}).error, Catch::Contains("magic"));
  bad = file;
  dns::write_u32(bad.data() + 8, cache::kPersistVersion + 1);
  CHECK_THAT(cache::decode_cache(back, bad, kWall, {}).error, Catch::Contains("version"));
  cache::LoadOptions small;
  small.max_file_bytes = file.size() - 1;
  CHECK_THAT(cache::decode_cache(back, file, kWall, small).error, Catch::Contains("larger"));
  bad = file;
  for (int i = 16; i < 24; ++i)
    bad[i] = 0xff;  // a body length beyond any file
  CHECK_FALSE(cache::decode_cache(back, bad, kWall, {}).ok);
  bad = file;
  dns::write_u32(bad.data() + 12, 0xffffffff);  // more entries than the body can hold
  CHECK_THAT(cache::decode_cache(back, bad, kWall, {}).error, Catch::Contains("count"));
  CHECK(back.stats().entries == 0);
}

TEST_CASE("length fields past the body are rejected even with a good CRC", "[cache][persist]") {
  Filled f;
  const auto file = encode(f.cache);
  cache::PacketCache back(cache::CacheSettings{});
  // The first record's key length, then its answer length, set to 65535.
  const std::size_t key_len_at = cache::kPersistHeaderSize;
  const std::size_t key_len = dns::read_u16(file.data() + key_len_at);
  for (std::size_t at : {key_len_at, key_len_at + 2 + key_len}) {
    auto bad = file;
    dns::write_u16(bad.data() + at, 0xffff);
    reseal(bad);
    auto r = cache::decode_cache(back, bad, kWall, {});
    INFO("field at " << at);
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, Catch::Contains("overruns"));
  }
  CHECK(back.stats().entries == 0);
}

TEST_CASE("an entry whose answer does not parse, or whose key is not its question, is skipped",
          "[cache][persist]") {
  Filled f;
  const auto file = encode(f.cache);
  const std::size_t key_len = dns::read_u16(file.data() + cache::kPersistHeaderSize);
  const std::size_t answer_at = cache::kPersistHeaderSize + 2 + key_len + 2;
  SECTION("answer bytes that are not a DNS response") {
    auto bad = file;
    bad[answer_at + 4] = 0x7f;  // QDCOUNT 0x7f..: the question section overruns
    reseal(bad);
    cache::PacketCache back(cache::CacheSettings{});
    auto r = cache::decode_cache(back, bad, kWall, {});
    REQUIRE(r.ok);
    CHECK(r.loaded == 2);
    CHECK(r.skipped == 1);
  }
  SECTION("a key of another name") {
    auto bad = file;
    bad[cache::kPersistHeaderSize + 3] ^= 0x01;  // a letter of the key's first label
    reseal(bad);
    cache::PacketCache back(cache::CacheSettings{});
    auto r = cache::decode_cache(back, bad, kWall, {});
    REQUIRE(r.ok);
    CHECK(r.loaded == 2);
    CHECK(r.skipped == 1);
  }
}

TEST_CASE("restoring respects the cache's budget and keeps the most recently used",
          "[cache][persist]") {
  util::ManualClock clock(util::TimePoint(1000s));
  cache::PacketCache c(cache::CacheSettings{.shards = 1}, now_of(clock));
  for (int i = 0; i < 50; ++i) {
    std::string name = "n" + std::to_string(i) + ".example";
    insert(c, name, answer(name, 300), 300);
  }
  auto file = encode(c);
  cache::PacketCache small(cache::CacheSettings{.max_entries = 10, .shards = 1}, now_of(clock));
  auto r = cache::decode_cache(small, file, kWall, {});
  REQUIRE(r.ok);
  CHECK(small.stats().entries == 10);
  for (int i = 40; i < 50; ++i)
    CHECK(hit(small, "n" + std::to_string(i) + ".example"));
  CHECK_FALSE(hit(small, "n39.example"));
  // An entry already in the cache is newer than the file's: it stays.
  cache::PacketCache busy(cache::CacheSettings{}, now_of(clock));
  insert(busy, "n49.example", answer("n49.example", 30), 30);
  cache::decode_cache(busy, file, kWall, {});
  CHECK(test::decode(*hit(busy, "n49.example")).answer_ttls.at(0) == 30);
}

TEST_CASE("the file is written whole by rename and read back", "[cache][persist]") {
  auto dir =
      std::filesystem::temp_directory_path() / ("localdns-persist-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "cache.bin").string();
  Filled f;
  cache::PacketCache back(cache::CacheSettings{});
  auto missing = cache::load_cache(back, path, kWall, {});
  CHECK(missing.missing);
  CHECK_FALSE(missing.ok);

  auto saved = cache::save_cache(f.cache, path, kWall);
  INFO(saved.error);
  REQUIRE(saved.ok);
  CHECK(saved.entries == 3);
  CHECK(std::filesystem::file_size(path) == saved.bytes);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir))
    ++files;
  CHECK(files == 1);  // no temporary file left behind
  auto loaded = cache::load_cache(back, path, kWall, {});
  CHECK(loaded.ok);
  CHECK(loaded.loaded == 3);

  auto to_dir = cache::save_cache(f.cache, dir.string(), kWall);  // a directory: rename fails
  CHECK_FALSE(to_dir.ok);
  CHECK_FALSE(cache::load_cache(back, dir.string(), kWall, {}).ok);
  std::filesystem::remove_all(dir);
}
