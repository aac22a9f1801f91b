// The `clients` section: its keys, its errors (key and line), print-config's
// round trip, the server settings built from it, and that a reload applies it.
#include <catch2/catch.hpp>

#include <localdns/config/emit.hpp>
#include <localdns/config/loader.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/config/reload.hpp>

using namespace localdns::config;
using localdns::server::RateAction;

namespace {
std::string all(const Errors& e) {
  std::string s;
  for (const auto& x : e)
    s += x + "\n";
  return s;
}
}  // namespace

TEST_CASE("the clients section loads", "[config][client-limits]") {
  auto c = load_config_text(R"(
node: {local_addresses: [169.254.20.10]}
clients:
  allow: [10.0.0.0/8, "fd00::/8", 192.0.2.7, 172.16.5.9/12]
  rate_limit:
    qps: 50
    burst: 200
    action: drop
    exempt_cache_hits: false
    exempt_node_addresses: false
    table_size: 100
    ipv6_prefix: 56
)",
                            "t.yaml");
  INFO((c ? std::string() : all(c.error())));
  REQUIRE(c);
  const auto& k = c->clients;
  REQUIRE(k.allow.size() == 4);
  CHECK(k.allow[0].to_string() == "10.0.0.0/8");
  CHECK(k.allow[1].to_string() == "fd00::/8");
  CHECK(k.allow[2].to_string() == "192.0.2.7/32");
  CHECK(k.allow[3].to_string() == "172.16.0.0/12");  // host bits cleared
  CHECK(k.rate_limit.qps == 50);
  CHECK(k.rate_limit.burst == 200);
  CHECK(k.rate_limit.bucket() == 200);
  CHECK(k.rate_limit.action == RateAction::Drop);
  CHECK_FALSE(k.rate_limit.exempt_cache_hits);
  CHECK_FALSE(k.rate_limit.exempt_node_addresses);
  CHECK(k.rate_limit.table_size == 100);
  CHECK(k.rate_limit.ipv6_prefix == 56);

  // print-config writes it back as it was read.
  auto again = load_config_text(emit_yaml(*c), "emitted.yaml");
  INFO(emit_yaml(*c));
  REQUIRE(again);
  CHECK(again->clients == c->clients);

  // The server's settings: the allow-list, the rate and the node's addresses.
  auto s = server_settings(*c);
  REQUIRE(s.clients.allow.size() == 4);
  CHECK(s.clients.allow[3].prefix == 12);
  CHECK(s.clients.rate_limit == k.rate_limit);
  REQUIRE(s.clients.node_addresses.size() == 1);
  CHECK(s.clients.node_addresses[0].to_string() == "169.254.20.10");
  CHECK(s.clients.any());
}

TEST_CASE("the clients defaults: everyone, no rate limit", "[config][client-limits]") {
  auto c = load_config_text("clients: {allow: [], rate_limit: {qps: 10}}\n", "t.yaml");
  REQUIRE(c);
  CHECK(c->clients.allow.empty());
  const auto& r = c->clients.rate_limit;
  CHECK(r.bucket() == 20);  // burst 0: twice qps
  CHECK(r.action == RateAction::Refuse);
  CHECK(r.exempt_cache_hits);
  CHECK(r.exempt_node_addresses);
  CHECK(r.table_size == 4096);
  CHECK(r.ipv6_prefix == 64);
  auto d = load_config_text("", "t.yaml");
  REQUIRE(d);
  CHECK_FALSE(server_settings(*d).clients.any());
}

TEST_CASE("clients errors name the key and the line", "[config][client-limits]") {
  auto c = load_config_text(R"(clients:
  allow: [10.0.0.0/8, 10.0.0.0/33, "bogus"]
  rate_limit:
    qps: -3
    burst: many
    action: maybe
    exempt_cache_hits: yes
    table_size: 0
    ipv6_prefix: 129
    colour: red
)",
                            "c.yaml");
  REQUIRE_FALSE(c);
  auto text = all(c.error());
  INFO(text);
  CHECK(c.error().size() == 9);
  CHECK(text.find("c.yaml:2: clients.allow[1]: expected an address or a network like 10.0.0.0/8 "
                  "or fd00::/8, got '10.0.0.0/33'") != std::string::npos);
  CHECK(text.find("c.yaml:2: clients.allow[2]:") != std::string::npos);
  CHECK(text.find("c.yaml:4: clients.rate_limit.qps: must be between 0 and 1000000, got -3") !=
        std::string::npos);
  CHECK(text.find("c.yaml:5: clients.rate_limit.burst: expected an integer, got 'many'") !=
        std::string::npos);
  CHECK(text.find("c.yaml:6: clients.rate_limit.action: expected one of refuse, drop, got "
                  "'maybe'") != std::string::npos);
  CHECK(text.find("c.yaml:7: clients.rate_limit.exempt_cache_hits: expected true or false") !=
        std::string::npos);
  CHECK(text.find("c.yaml:8: clients.rate_limit.table_size: must be between 1 and 1048576") !=
        std::string::npos);
  CHECK(text.find("c.yaml:9: clients.rate_limit.ipv6_prefix: must be between 8 and 128") !=
        std::string::npos);
  CHECK(text.find("c.yaml:10: clients.rate_limit.colour: unknown key") != std::string::npos);

  auto bad = load_config_text("clients: {allowed: []}\nclients2: 1\n", "d.yaml");
  REQUIRE_FALSE(bad);
  CHECK(all(bad.error())
            .find("d.yaml:1: clients.allowed: unknown key (expected one of: allow, "
                  "rate_limit)") != std::string::npos);
  auto scalar = load_config_text("clients: {rate_limit: 5}\n", "e.yaml");
  REQUIRE_FALSE(scalar);
  CHECK(all(scalar.error()).find("e.yaml:1: clients.rate_limit: expected a mapping") !=
        std::string::npos);
}

TEST_CASE("a reload may change every clients key", "[config][client-limits][reload]") {
  auto running = load_config_text("clients: {rate_limit: {qps: 10}}\n", "a.yaml");
  auto next = load_config_text(R"(clients:
  allow: [10.0.0.0/8]
  rate_limit: {qps: 5, burst: 1, action: drop, exempt_cache_hits: false,
               exempt_node_addresses: false, table_size: 10, ipv6_prefix: 48}
)",
                               "b.yaml");
  REQUIRE(running);
  REQUIRE(next);
  CHECK(reload_rejections(*running, *next).empty());
  // Nothing else changed: every group is kept.
  auto plan = plan_reload(*running, *next);
  REQUIRE(plan.kept_from.size() == running->forward.size());
  for (std::size_t i = 0; i < plan.kept_from.size(); ++i)
    CHECK(plan.kept_from[i] == static_cast<int>(i));
}
