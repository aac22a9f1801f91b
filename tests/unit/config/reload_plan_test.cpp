// What a reload may change, and what it keeps: config::reload_rejections and
// config::plan_reload over configurations loaded from YAML.
#include <catch2/catch.hpp>

#include <localdns/config/loader.hpp>
#include <localdns/config/reload.hpp>

using namespace localdns::config;

namespace {

Config load(const std::string& yaml) {
  auto c = load_config_text(yaml, "t.yaml");
  REQUIRE(c);
  return *c;
}

const std::string kBase = R"(
listen: ["127.0.0.1:5300"]
forward:
  - zones: [cluster.local]
    servers: ["10.96.0.10:53"]
    transport: tcp
    timeout: 1s
  - zones: [example.org]
    servers: ["10.0.0.2:53"]
  - zones: .
    servers: ["10.0.0.1:53"]
)";

std::string with(std::string text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("reload plan: an unchanged configuration keeps every group and cached answer",
          "[config][reload]") {
  auto a = load(kBase);
  CHECK(reload_rejections(a, a).empty());
  auto p = plan_reload(a, a);
  CHECK(p.kept_from == std::vector<int>{0, 1, 2});
  CHECK_FALSE(p.drops_any());
  CHECK(p.kept() == 3);
}

TEST_CASE("reload plan: new servers replace the group and drop its zones' answers only",
          "[config][reload]") {
  auto a = load(kBase);
  auto b = load(with(kBase, "10.0.0.2:53", "10.0.0.3:53"));
  CHECK(reload_rejections(a, b).empty());
  auto p = plan_reload(a, b);
  CHECK(p.kept_from == std::vector<int>{0, -1, 2});
  CHECK(p.same_upstream(0, 0));
  CHECK_FALSE(p.same_upstream(1, 1));
  CHECK(p.same_upstream(2, 2));
  CHECK(p.drops_any());
}

TEST_CASE("reload plan: a new transport drops answers, a new timeout only replaces the pools",
          "[config][reload]") {
  auto a = load(kBase);
  auto transport = load(with(kBase, "transport: tcp", "transport: udp"));
  auto p = plan_reload(a, transport);
  CHECK(p.kept_from == std::vector<int>{-1, 1, 2});
  CHECK_FALSE(p.same_upstream(0, 0));
  CHECK(p.same_upstream(1, 1));
  auto timeout = load(with(kBase, "timeout: 1s", "timeout: 2s"));
  CHECK(reload_rejections(a, timeout).empty());
  p = plan_reload(a, timeout);
  CHECK(p.kept_from == std::vector<int>{-1, 1, 2});
  CHECK(p.same_upstream(0, 0));  // same servers and transport: answers stay
  CHECK_FALSE(p.drops_any());
}

TEST_CASE("reload plan: cache, logging and TTL caps are reloadable", "[config][reload]") {
  auto a = load(kBase);
  auto b = load("log_level: debug\ncache: {max_entries: 10, max_ttl: 60s}\nquery_log_sample: 5\n" +
                with(kBase, "timeout: 1s", "timeout: 1s\n    cache: {max_ttl: 5s}"));
  CHECK(reload_rejections(a, b).empty());
  auto p = plan_reload(a, b);
  CHECK(p.kept_from == std::vector<int>{0, 1, 2});
  CHECK_FALSE(p.drops_any());
}

TEST_CASE("reload plan: zones change and groups come, go and move without a restart",
          "[config][reload]") {
  auto a = load(kBase);
  // A zone added to a group, and a zone moved to another group.
  auto zones = load(with(with(kBase, "[example.org]", "[example.net]"), "[cluster.local]",
                         "[cluster.local, in-addr.arpa]"));
  CHECK(reload_rejections(a, zones).empty());
  auto p = plan_reload(a, zones);
  CHECK(p.kept_from == std::vector<int>{0, 1, 2});  // zones are not upstream settings

  // A group added at the end, one removed.
  auto added = load(kBase + "  - zones: [extra.test]\n    servers: [\"10.0.0.9:53\"]\n");
  CHECK(reload_rejections(a, added).empty());
  p = plan_reload(a, added);
  CHECK(p.kept_from == std::vector<int>{0, 1, 2, -1});
  CHECK_FALSE(p.same_upstream(2, 3));
  CHECK_FALSE(p.drops_any());  // every running upstream still serves
  p = plan_reload(added, a);
  CHECK(p.kept_from == std::vector<int>{0, 1, 2});
  CHECK(p.drops_any());  // 10.0.0.9 is gone
  CHECK_FALSE(p.same_upstream(3, 2));
}

TEST_CASE("reload plan: groups match by content, not by index", "[config][reload]") {
  auto a = load(kBase);
  // The first group removed: the others keep their pools at new indexes.
  auto shifted = load(R"(
listen: ["127.0.0.1:5300"]
forward:
  - zones: [example.org]
    servers: ["10.0.0.2:53"]
  - zones: .
    servers: ["10.0.0.1:53"]
)");
  CHECK(reload_rejections(a, shifted).empty());
  auto p = plan_reload(a, shifted);
  CHECK(p.kept_from == std::vector<int>{1, 2});
  CHECK(p.same_upstream(1, 0));
  CHECK(p.same_upstream(2, 1));
  CHECK_FALSE(p.same_upstream(0, 0));
  CHECK_FALSE(p.same_upstream(1, 1));
  CHECK(p.drops_any());

  // Reordered, one timeout changed: the changed group is new, but its
  // answers came from the same upstream and stay.
  auto reordered = load(R"(
listen: ["127.0.0.1:5300"]
forward:
  - zones: .
    servers: ["10.0.0.1:53"]
  - zones: [cluster.local]
    servers: ["10.96.0.10:53"]
    transport: tcp
    timeout: 3s
  - zones: [example.org]
    servers: ["10.0.0.2:53"]
)");
  p = plan_reload(a, reordered);
  CHECK(p.kept_from == std::vector<int>{2, -1, 1});
  CHECK(p.same_upstream(0, 1));
  CHECK(p.same_upstream(2, 0));
  CHECK_FALSE(p.drops_any());

  // Two equal groups: each running group is kept by one next group at most.
  auto twice = load(R"(
listen: ["127.0.0.1:5300"]
forward:
  - zones: [one.test]
    servers: ["10.0.0.2:53"]
  - zones: [two.test]
    servers: ["10.0.0.2:53"]
  - zones: .
    servers: ["10.0.0.1:53"]
)");
  p = plan_reload(a, twice);
  // The same index first: two.test keeps example.org's group, one.test gets
  // new pools for the same upstream.
  CHECK(p.kept_from == std::vector<int>{-1, 1, 2});
  CHECK(p.same_upstream(1, 0));
}

TEST_CASE("reload rejections name each key that needs a restart", "[config][reload]") {
  auto a = load(kBase);
  auto has = [](const Errors& e, const std::string& text) {
    for (const auto& x : e)
      if (x.find(text) != std::string::npos) return true;
    return false;
  };
  auto listen = reload_rejections(a, load(with(kBase, "127.0.0.1:5300", "127.0.0.1:5301")));
  REQUIRE(listen.size() == 1);
  CHECK(listen[0] == "listen cannot change on reload; restart localdns to apply it");
  auto node = reload_rejections(a, load("node: {local_addresses: [169.254.20.10]}\n" + kBase));
  CHECK(has(node, "node.local_addresses cannot change on reload"));
  auto threads = reload_rejections(a, load("threads: 3\ncache: {enabled: false}\n" + kBase));
  CHECK(has(threads, "threads cannot change"));
  CHECK(has(threads, "cache.enabled cannot change"));
}
