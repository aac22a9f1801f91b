// CachePersister: the periodic save runs on its own thread while the cache
// is in use, the shutdown save happens only for a run that loaded.
#include <filesystem>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/cache_persister.hpp>
#include <localdns/dns/message.hpp>

#include "dns_client.hpp"
#include "packets.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace std::chrono_literals;

namespace {

void fill(cache::PacketCache& c, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    std::string name = "p" + std::to_string(i) + ".example";
    auto b = test::ResponseBuilder::answering(test::make_query(name, "A", {.id = 0}));
    auto ans = b.answer(test::a_record(300, {10, 0, 0, 1})).build();
    auto rv = dns::parse_response(ans);
    REQUIRE(rv);
    auto q = test::make_query(name, "A");
    auto view = dns::parse_query(q);
    c.insert(cache::Key::make(view.question, false, false), ans, *rv, 300);
  }
}

}  // namespace

TEST_CASE("the cache saver writes periodically and at shutdown", "[persist][app]") {
  auto dir =
      std::filesystem::temp_directory_path() / ("localdns-persister-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "cache.bin").string();
  cache::PacketCache c(cache::CacheSettings{});
  {
    app::CachePersister p(c, {path, 1s, 0, 1u << 20});
    p.load();  // no file yet: nothing loaded, not a failure
    CHECK(p.counters().load_failures.load() == 0);
    p.start();
    fill(c, 40);
    // Saved by the periodic thread, while this thread may still insert.
    REQUIRE(test::wait_until(test::within(5s), [&] { return p.counters().saves.load() >= 1; }));
    p.stop_and_save();
    CHECK(p.counters().save_failures.load() == 0);
    CHECK(p.counters().entries_saved.load() == 40);
  }
  cache::PacketCache back(cache::CacheSettings{});
  {
    app::CachePersister p(back, {path, 0ms, 0, 1u << 20});
    p.load();
    CHECK(p.counters().entries_loaded.load() == 40);
    CHECK(back.stats().entries == 40);
  }
  // A run that never loaded (its start failed) leaves the file alone.
  cache::PacketCache empty(cache::CacheSettings{});
  {
    app::CachePersister p(empty, {path, 0ms, 0, 1u << 20});
    p.stop_and_save();
    CHECK(p.counters().saves.load() == 0);
  }
  cache::PacketCache again(cache::CacheSettings{});
  app::CachePersister p(again, {path, 0ms, 0, 1u << 20});
  p.load();
  CHECK(p.counters().entries_loaded.load() == 40);
  std::filesystem::remove_all(dir);
}
