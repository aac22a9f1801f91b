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
  CHECK(p.keep_group == std::vector<bool>{true, true, true});
  CHECK(p.drop_cached == std::vector<bool>{false, false, false});
}

TEST_CASE("reload plan: new servers replace the group and drop its zones' answers only",
          "[config][reload]") {
  auto a = load(kBase);
  auto b = load(with(kBase, "10.0.0.2:53", "10.0.0.3:53"));
  CHECK(reload_rejections(a, b).empty());
  auto p = plan_reload(a, b);
  CHECK(p.keep_group == std::vector<bool>{true, false, true});
  CHECK(p.drop_cached == std::vector<bool>{false, true, false});
}

TEST_CASE("reload plan: a new transport drops answers, a new timeout only replaces the pools",
          "[config][reload]") {
  auto a = load(kBase);
  auto transport = load(with(kBase, "transport: tcp", "transport: udp"));
  auto p = plan_reload(a, transport);
  CHECK(p.keep_group == std::vector<bool>{false, true, true});
  CHECK(p.drop_cached == std::vector<bool>{true, false, false});
  auto timeout = load(with(kBase, "timeout: 1s", "timeout: 2s"));
  CHECK(reload_rejections(a, timeout).empty());
  p = plan_reload(a, timeout);
  CHECK(p.keep_group == std::vector<bool>{false, true, true});
  CHECK(p.drop_cached == std::vector<bool>{false, false, false});
}

TEST_CASE("reload plan: cache, logging and TTL caps are reloadable", "[config][reload]") {
  auto a = load(kBase);
  auto b = load("log_level: debug\ncache: {max_entries: 10, max_ttl: 60s}\nquery_log_sample: 5\n" +
                with(kBase, "timeout: 1s", "timeout: 1s\n    cache: {max_ttl: 5s}"));
  CHECK(reload_rejections(a, b).empty());
  auto p = plan_reload(a, b);
  CHECK(p.keep_group == std::vector<bool>{true, true, true});
  CHECK(p.drop_cached == std::vector<bool>{false, false, false});
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
  auto zones = reload_rejections(a, load(with(kBase, "[example.org]", "[example.net]")));
  REQUIRE(zones.size() == 1);
  CHECK(zones[0] == "forward[1].zones cannot change on reload; restart localdns to apply it");
  auto groups = reload_rejections(
      a, load(kBase + "  - zones: [extra.test]\n    servers: [\"10.0.0.9:53\"]\n"));
  CHECK(has(groups, "forward (the number of groups) cannot change"));
  auto threads = reload_rejections(a, load("threads: 3\ncache: {enabled: false}\n" + kBase));
  CHECK(has(threads, "threads cannot change"));
  CHECK(has(threads, "cache.enabled cannot change"));
}
