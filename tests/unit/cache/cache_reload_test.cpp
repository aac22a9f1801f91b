// What a reload does to the cache: erase_if drops the entries of the zones it
// names and keeps the rest; set_limits shrinks (evicting) and grows budgets;
// app::keeps_cached_answer picks the answers whose upstream a reload changed.
#include <array>

#include <catch2/catch.hpp>

#include <localdns/app/runtime.hpp>
#include <localdns/cache/packet_cache.hpp>
#include <localdns/config/loader.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/config/reload.hpp>
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

namespace {

config::Config load(const std::string& yaml) {
  auto c = config::load_config_text(yaml, "t.yaml");
  REQUIRE(c);
  return *c;
}

server::ZoneRouter router_of(const config::Config& c) {
  return server::ZoneRouter(config::server_settings(c).routing);
}

}  // namespace

TEST_CASE("a reload drops the answers of names whose upstream changed, wherever they moved",
          "[cache][reload]") {
  auto before = load(R"(
forward:
  - zones: [moved.test, kept.test]
    servers: ["10.0.0.2:53"]
  - zones: [gone.test]
    servers: ["10.0.0.3:53"]
  - zones: .
    servers: ["10.0.0.1:53"]
)");
  // moved.test goes to a new upstream, gone.test's group is removed (its
  // names fall to "."), new.test is carved out of "." onto 10.0.0.2, and the
  // groups change places.
  auto after = load(R"(
forward:
  - zones: .
    servers: ["10.0.0.1:53"]
  - zones: [kept.test, new.test]
    servers: ["10.0.0.2:53"]
  - zones: [moved.test]
    servers: ["10.0.0.4:53"]
)");
  REQUIRE(config::reload_rejections(before, after).empty());
  auto plan = config::plan_reload(before, after);
  CHECK(plan.kept_from == std::vector<int>{2, 0, -1});
  auto r1 = router_of(before);
  auto r2 = server::ZoneRouter(config::server_settings(after).routing, r1, 16);

  cache::PacketCache c(cache::CacheSettings{1000, 1 << 20, 4});
  for (const char* n : {"a.moved.test", "a.kept.test", "a.gone.test", "a.new.test", "example.org"})
    put(c, n);
  auto erased =
      c.erase_if([&](dns::Bytes q) { return !app::keeps_cached_answer(plan, r1, r2, q); });
  CHECK(erased == 3);
  CHECK_FALSE(cached(c, "a.moved.test"));  // 10.0.0.2 -> 10.0.0.4
  CHECK(cached(c, "a.kept.test"));         // 10.0.0.2, at another index
  CHECK_FALSE(cached(c, "a.gone.test"));   // 10.0.0.3 -> "." (10.0.0.1)
  CHECK_FALSE(cached(c, "a.new.test"));    // "." (10.0.0.1) -> 10.0.0.2
  CHECK(cached(c, "example.org"));         // ".", at another index

  // The same reload backwards restores nothing but drops the same names.
  auto back = config::plan_reload(after, before);
  auto r3 = server::ZoneRouter(config::server_settings(before).routing, r2, 16);
  for (const char* n : {"a.moved.test", "a.gone.test", "a.new.test"})
    put(c, n);
  erased = c.erase_if([&](dns::Bytes q) { return !app::keeps_cached_answer(back, r2, r3, q); });
  CHECK(erased == 3);
  CHECK(c.stats().entries == 2);
}
