// What a reload may change, and what it keeps: config::reload_rejections and
// config::plan_reload over configurations loaded from YAML.
#include <catch2/catch.hpp>

#include <localdns/config/loader.hpp>
#include <localdns/config/reload.hpp>

using namespace localdns::config;

namespace {

Config load(const std::string& yaml) {
  auto c = load_config_text(yaml, "t.yaml");
  if (!c) {
    for (const auto& e : c.error())
      UNSCOPED_INFO(e);
  }
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
  auto node = reload_rejections(a, load("node: {local_addresses: [169.254.20.10]}\n" + kBase));
  CHECK(has(node, "node.local_addresses (node setup on or off) cannot change on reload"));
  auto threads = reload_rejections(a, load("threads: 3\ncache: {enabled: false}\n" + kBase));
  CHECK(has(threads, "threads cannot change"));
  CHECK(has(threads, "cache.enabled cannot change"));
  auto persist = reload_rejections(
      a, load("cache: {persist_file: /tmp/c.bin, persist_interval: 5m}\n" + kBase));
  CHECK(has(persist, "cache.persist_file cannot change"));
  CHECK(has(persist, "cache.persist_interval cannot change"));
}

namespace {

using Endpoints = std::vector<Endpoint>;

Endpoint ep(const std::string& address, std::uint16_t port) {
  return Endpoint{boost::asio::ip::make_address(address), port};
}

const std::string kNode = R"(
listen: ["169.254.20.10:53", "10.96.0.10:53"]
metrics: "127.0.0.1:9253"
health: "127.0.0.1:8080"
node:
  local_addresses: [169.254.20.10, 10.96.0.10]
  interface: {name: nodelocaldns, kind: bridge}
forward:
  - zones: .
    servers: ["10.0.0.1:53"]
)";

}  // namespace

TEST_CASE("reload plan: listen endpoints added, removed and kept", "[config][reload]") {
  auto a = load(kBase);
  auto same = plan_reload(a, a);
  CHECK(same.listen_added.empty());
  CHECK(same.listen_removed.empty());
  CHECK(same.listen_kept == Endpoints{ep("127.0.0.1", 5300)});
  CHECK_FALSE(same.node_changed);

  auto two = load(with(kBase, R"(["127.0.0.1:5300"])", R"(["127.0.0.1:5300", "127.0.0.2:5300"])"));
  CHECK(reload_rejections(a, two).empty());
  auto grow = plan_reload(a, two);
  CHECK(grow.listen_added == Endpoints{ep("127.0.0.2", 5300)});
  CHECK(grow.listen_removed.empty());
  CHECK(grow.listen_kept == Endpoints{ep("127.0.0.1", 5300)});

  auto shrink = plan_reload(two, a);
  CHECK(shrink.listen_added.empty());
  CHECK(shrink.listen_removed == Endpoints{ep("127.0.0.2", 5300)});
  CHECK(shrink.listen_kept == Endpoints{ep("127.0.0.1", 5300)});

  // A new port is a new endpoint: the old one goes.
  auto port = load(with(kBase, "127.0.0.1:5300", "127.0.0.1:5301"));
  CHECK(reload_rejections(a, port).empty());
  auto moved = plan_reload(a, port);
  CHECK(moved.listen_added == Endpoints{ep("127.0.0.1", 5301)});
  CHECK(moved.listen_removed == Endpoints{ep("127.0.0.1", 5300)});
  CHECK(moved.listen_kept.empty());
  // Listen changes alone touch no group.
  CHECK(moved.kept_from == std::vector<int>{0, 1, 2});
}

TEST_CASE("reload plan: local addresses and their rules change with node setup on",
          "[config][reload]") {
  auto a = load(kNode);
  auto b = load(with(with(kNode, R"("10.96.0.10:53"])", R"("10.96.0.10:53", "169.254.20.11:53"])"),
                     "[169.254.20.10, 10.96.0.10]", "[169.254.20.10, 10.96.0.10, 169.254.20.11]"));
  CHECK(reload_rejections(a, b).empty());
  auto p = plan_reload(a, b);
  CHECK(p.node_changed);
  CHECK(p.listen_added == Endpoints{ep("169.254.20.11", 53)});
  CHECK(p.listen_removed.empty());
  CHECK(p.listen_kept.size() == 2);
  auto back = plan_reload(b, a);
  CHECK(back.node_changed);
  CHECK(back.listen_removed == Endpoints{ep("169.254.20.11", 53)});

  // The "." servers are the link-local address's fallback: reloadable now.
  auto servers = load(with(kNode, "10.0.0.1:53", "10.0.0.2:53"));
  CHECK(reload_rejections(a, servers).empty());
  CHECK(plan_reload(a, servers).node_changed);
  auto fallback =
      load(with(kNode, "kind: bridge}", "kind: bridge}\n  rules: {fallback: [\"10.0.0.7:53\"]}"));
  CHECK(reload_rejections(a, fallback).empty());
  CHECK(plan_reload(a, fallback).node_changed);
}

TEST_CASE("reload rejections: what node setup still needs a restart for", "[config][reload]") {
  auto a = load(kNode);
  auto has = [](const Errors& e, const std::string& text) {
    for (const auto& x : e)
      if (x.find(text) != std::string::npos) return true;
    return false;
  };
  auto name = reload_rejections(a, load(with(kNode, "name: nodelocaldns", "name: other0")));
  CHECK(has(name, "node (but local_addresses"));
  auto backend = reload_rejections(
      a, load(with(kNode, "kind: bridge}", "kind: bridge}\n  rules: {backend: nftables}")));
  CHECK(has(backend, "node (but local_addresses"));
  auto off = reload_rejections(
      a, load(with(kNode, "  local_addresses: [169.254.20.10, 10.96.0.10]\n", "")));
  CHECK(has(off, "node.local_addresses (node setup on or off)"));
  // The health endpoint without an address of its own is on the first local address.
  auto defaulted = with(kNode, "health: \"127.0.0.1:8080\"\n", "");
  auto first = reload_rejections(
      load(defaulted), load(with(defaulted, "[169.254.20.10, 10.96.0.10]", "[10.96.0.10]")));
  CHECK(has(first, "the first one, where the health endpoint listens"));
  auto second = reload_rejections(
      load(defaulted), load(with(defaulted, "[169.254.20.10, 10.96.0.10]", "[169.254.20.10]")));
  CHECK(second.empty());
}
