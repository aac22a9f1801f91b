#include <catch2/catch.hpp>

#include <localdns/config/duration.hpp>
#include <localdns/config/loader.hpp>
#include <localdns/config/resolv_conf.hpp>

using namespace localdns::config;
using namespace std::chrono_literals;

namespace {
std::string all(const Errors& e) {
  std::string s;
  for (const auto& x : e)
    s += x + "\n";
  return s;
}
}  // namespace

TEST_CASE("a full config loads into the struct", "[config]") {
  auto c = load_config_text(R"(
listen: ["127.0.0.1:53", "[::1]:5300", "10.0.0.1"]
threads: 3
log_level: debug
shutdown_grace: 500ms
tcp_clients: {idle_timeout: 5s, max_connections: 10, max_pipelined: 7,
              max_connections_per_source: 4, max_queued_bytes: 8192,
              max_queued_bytes_total: 1048576, write_timeout: 2s}
forward:
  - zones: [cluster.local, in-addr.arpa, ip6.arpa]
    servers: ["10.96.0.10:53", "[fd00::10]:5353"]
    transport: tcp
    policy: round_robin
    timeout: 1s
    attempts: 3
    max_in_flight: 100
    tcp: {connections: 4, max_age: 2m, max_queries: 50, idle_timeout: 0s}
  - zones: .
    servers: resolv.conf
)",
                            "t.yaml");
  REQUIRE(c.has_value());
  CHECK(c->listen.size() == 3);
  CHECK(c->listen[1].address.is_v6());
  CHECK(c->listen[1].port == 5300);
  CHECK(c->listen[2].port == kDefaultListenPort);
  CHECK(c->threads == 3);
  CHECK(c->log_level == "debug");
  CHECK(c->shutdown_grace == 500ms);
  CHECK(c->tcp_clients.max_pipelined == 7);
  CHECK(c->tcp_clients.max_connections_per_source == 4);
  CHECK(c->tcp_clients.max_queued_bytes == 8192);
  CHECK(c->tcp_clients.max_queued_bytes_total == 1048576);
  CHECK(c->tcp_clients.write_timeout == 2s);
  REQUIRE(c->forward.size() == 2);
  const auto& g = c->forward[0];
  CHECK(g.zones == std::vector<std::string>{"cluster.local.", "in-addr.arpa.", "ip6.arpa."});
  CHECK(g.servers[1].to_string() == "[fd00::10]:5353");
  CHECK(g.transport == Transport::Tcp);
  CHECK(g.policy == Policy::RoundRobin);
  CHECK(g.timeout == 1000ms);
  CHECK(g.attempts == 3);
  CHECK(g.tcp.connections == 4);
  CHECK(g.tcp.max_age == 120s);
  CHECK(g.tcp.max_queries == 50);
  CHECK(c->forward[1].servers_from_resolv_conf);
  CHECK(c->forward[1].zones == std::vector<std::string>{"."});
}

TEST_CASE("an empty file keeps the standalone default", "[config]") {
  auto c = load_config_text("", "empty.yaml");
  REQUIRE(c.has_value());
  CHECK(c->listen.front().to_string() == "127.0.0.1:5353");
  CHECK(c->forward.front().servers_from_resolv_conf);
  CHECK(c->forward.front().timeout * c->forward.front().attempts < 5s);  // before glibc gives up
}

TEST_CASE("config errors name the key and the line", "[config]") {
  struct Case {
    const char* yaml;
    const char* expect;  // substring of the error
  };
  const Case cases[] = {
      {"listen: [127.0.0.1:53]\nlisten_typo: 1\n", "t.yaml:2: listen_typo: unknown key"},
      {"threads: many\n", "t.yaml:1: threads: expected an integer, got 'many'"},
      {"threads: 1000\n", "t.yaml:1: threads: must be between 0 and 256"},
      {"listen: [\"300.1.1.1:53\"]\n", "t.yaml:1: listen[0]: expected ADDRESS"},
      {"listen: [\"127.0.0.1:0\"]\n", "listen[0]: expected ADDRESS"},
      {"log_level: loud\n", "t.yaml:1: log_level: expected trace"},
      {"listen: [\"0.0.0.0:53\"]\n", "listen[0]: 0.0.0.0:53 is a wildcard address"},
      {"listen: [\"[::]:53\"]\n", "listen[0]: [::]:53 is a wildcard address"},
      {"forward:\n  - zones: [a.]\n    servers: [1.1.1.1]\n    timeout: soon\n",
       "t.yaml:4: forward[0].timeout: expected a duration"},
      {"forward:\n  - zones: [a.]\n    servers: [1.1.1.1]\n    transport: quic\n",
       "t.yaml:4: forward[0].transport: expected one of tcp, udp, prefer_udp, got 'quic'"},
      {"forward:\n  - zones: [a.]\n    servers: [1.1.1.1]\n    attempts: 0\n",
       "t.yaml:4: forward[0].attempts: must be between 1 and 10"},
      {"forward:\n  - servers: [1.1.1.1]\n", "t.yaml:2: forward[0].zones: required"},
      {"forward:\n  - zones: [a.]\n", "forward[0].servers: required"},
      {"forward:\n  - zones: [\"a..b\"]\n    servers: [1.1.1.1]\n",
       "t.yaml:2: forward[0].zones[0]: not a valid domain name"},
      {"forward:\n  - zones: [a.]\n    servers: [1.1.1.1]\n    tcp: {conections: 2}\n",
       "t.yaml:4: forward[0].tcp.conections: unknown key"},
      {"forward: []\n", "forward: expected a non-empty list"},
      {"forward:\n  - zones: [a.]\n    servers: [1.1.1.1]\n  - zones: [A.]\n    servers: "
       "[2.2.2.2]\n",
       "forward[1].zones: zone 'a.' is routed by more than one group"},
      {"listen: [127.0.0.1:5353]\nforward:\n  - zones: [.]\n    servers: [127.0.0.1:5353]\n",
       "forward[0].servers[0]: 127.0.0.1:5353 is one of our own listen addresses"},
      {"listen: [\n", "t.yaml:2: invalid YAML"},
      {"tcp_clients:\n  max_pipelined: -1\n", "t.yaml:2: tcp_clients.max_pipelined: must be"},
      {"tcp_clients:\n  max_queued_bytes: 10\n",
       "t.yaml:2: tcp_clients.max_queued_bytes: must be between 1024"},
      {"tcp_clients:\n  max_connections_per_source: 0\n",
       "t.yaml:2: tcp_clients.max_connections_per_source: must be"},
      {"tcp_clients:\n  write_timeout: soon\n", "t.yaml:2: tcp_clients.write_timeout: expected"},
      {"node:\n  local_addresses: [169.254.20.300]\n",
       "t.yaml:2: node.local_addresses[0]: expected an IPv4 or IPv6 address"},
      {"node:\n  local_addresses: [0.0.0.0]\n", "node.local_addresses[0]: 0.0.0.0 cannot be"},
      {"node:\n  interface: {name: averyveryverylongname}\n",
       "node.interface.name: 'averyveryverylongname' is not a valid interface name"},
      {"node:\n  rules: {backend: ipchains}\n",
       "t.yaml:2: node.rules.backend: expected one of auto, iptables-legacy, iptables-nft, "
       "nftables, got 'ipchains'"},
      {"node:\n  sync_interval: 10ms\n", "t.yaml:2: node.sync_interval: must be between"},
      {"node:\n  skip_teardown: maybe\n", "t.yaml:2: node.skip_teardown: expected true or false"},
      {"node:\n  rules:\n    fallback: [nowhere]\n", "t.yaml:3: node.rules.fallback[0]: expected"},
      {"node:\n  service_cidr: [10.96.0.0/33]\n",
       "t.yaml:2: node.service_cidr[0]: expected an address range like 10.96.0.0/12"},
      {"node:\n  service_cidr: [10.96.0.0/x]\n", "t.yaml:2: node.service_cidr[0]: expected"},
      {"node:\n  rules:\n    fallback_for: [nowhere]\n",
       "t.yaml:3: node.rules.fallback_for[0]: expected an IPv4 or IPv6 address"},
      {"node:\n  local_addresses: [169.254.20.10]\n  rules:\n    fallback_for: [10.96.0.10]\n",
       "node.rules.fallback_for[0]: 10.96.0.10 is not one of node.local_addresses"},
      {"node:\n  local_addresses: [169.254.20.10]\n  service_cidr: [10.96.0.0/12]\n  rules:\n"
       "    fallback: [10.96.0.11]\n",
       "node.rules.fallback[0]: 10.96.0.11:53 is inside node.service_cidr 10.96.0.0/12"},
      {"node:\n  local_addresses: [169.254.20.10]\n  rules:\n    fallback: [169.254.20.10]\n",
       "node.rules.fallback[0]: 169.254.20.10:53 is a local address"},
      {"node:\n  rules:\n    fallback: [127.0.0.1]\n",
       "node.rules.fallback[0]: 127.0.0.1:53 is loopback"},
  };
  for (const auto& c : cases) {
    INFO(c.yaml);
    auto r = load_config_text(c.yaml, "t.yaml");
    REQUIRE_FALSE(r.has_value());
    CHECK_THAT(all(r.error()), Catch::Contains(c.expect));
  }
}

TEST_CASE("every config error is reported, not just the first", "[config]") {
  auto r = load_config_text("threads: x\nlog_level: y\nbogus: 1\n", "t.yaml");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().size() == 3);
}

TEST_CASE("durations and endpoints parse strictly", "[config]") {
  CHECK(parse_duration("1.5s") == 1500ms);
  CHECK(parse_duration("250ms") == 250ms);
  CHECK(parse_duration("2m") == 120s);
  CHECK(parse_duration("0") == 0ms);
  CHECK_FALSE(parse_duration("10"));
  CHECK_FALSE(parse_duration("s"));
  CHECK_FALSE(parse_duration("1.5sec"));
  CHECK_FALSE(parse_duration("-1s"));
  CHECK(parse_endpoint("::1", 53)->port == 53);
  CHECK(parse_endpoint("[::1]:54", 53)->port == 54);
  CHECK(parse_endpoint("10.0.0.1:5353", 53)->to_string() == "10.0.0.1:5353");
  CHECK_FALSE(parse_endpoint("10.0.0.1:", 53));
  CHECK_FALSE(parse_endpoint("10.0.0.1:70000", 53));
  CHECK_FALSE(parse_endpoint("[::1", 53));
  CHECK_FALSE(parse_endpoint("host.example:53", 53));
}

TEST_CASE("resolv.conf nameserver lines become upstreams", "[config]") {
  auto servers = parse_resolv_conf(
      "# comment\nsearch svc.cluster.local\nnameserver 10.0.0.2\nnameserver   fd00::53\n"
      "nameserver bogus\noptions ndots:5\n");
  REQUIRE(servers.size() == 2);
  CHECK(servers[0].to_string() == "10.0.0.2:53");
  CHECK(servers[1].to_string() == "[fd00::53]:53");
  auto missing = read_resolv_conf("/nonexistent/resolv.conf");
  REQUIRE_FALSE(missing.has_value());
  CHECK_THAT(missing.error(), Catch::Contains("cannot read"));
}

TEST_CASE("the example configs in config/ are valid", "[config]") {
  for (const char* name :
       {"standalone.yaml", "kubernetes.yaml", "standalone-node.yaml", "bare-metal.yaml"}) {
    INFO(name);
    auto c = load_config_file(std::string(LOCALDNS_SOURCE_DIR) + "/config/" + name);
    REQUIRE(c.has_value());
    // The node configs serve only their local addresses, on port 53.
    if (c->node.enabled()) {
      CHECK(c->listen.size() == c->node.local_addresses.size());
      for (const auto& l : c->listen)
        CHECK(l.port == 53);
    }
  }
  auto k8s = load_config_file(std::string(LOCALDNS_SOURCE_DIR) + "/config/kubernetes.yaml");
  REQUIRE(k8s.has_value());
  CHECK(k8s->node.local_addresses.size() == 2);
  CHECK_FALSE(k8s->node.fallback_auto);
  CHECK(k8s->node.health_port == 8080);
}

TEST_CASE("the node section loads, and local addresses join the listeners", "[config][node]") {
  auto c = load_config_text(R"(
listen: ["127.0.0.1:5353", "169.254.20.10:5300"]
node:
  local_addresses: [169.254.20.10, 10.96.0.10, "fd00::10"]
  port: 53
  interface: {setup: true, name: ldns0, kind: bridge}
  rules: {setup: false, backend: nftables, fallback: ["10.0.0.53", "10.0.0.54:5353"]}
  health_port: 8080
  sync_interval: 30s
  skip_teardown: true
)",
                            "t.yaml");
  REQUIRE(c.has_value());
  const auto& n = c->node;
  CHECK(n.enabled());
  CHECK(n.local_addresses.size() == 3);
  CHECK(n.interface_name == "ldns0");
  CHECK(n.interface_kind == "bridge");
  CHECK_FALSE(n.setup_rules);
  CHECK(n.rules_backend == RulesBackend::Nftables);
  CHECK_FALSE(n.fallback_auto);
  REQUIRE(n.fallback.size() == 2);
  CHECK(n.fallback[1].port == 5353);
  CHECK(n.health_port == 8080);
  CHECK(n.sync_interval == 30s);
  CHECK(n.skip_teardown);
  CHECK_FALSE(n.fallback_for);
  CHECK(n.service_cidr.empty());
  // An address already listed keeps its port; the others are added on node.port.
  std::vector<std::string> listen;
  for (const auto& l : c->listen)
    listen.push_back(l.to_string());
  CHECK(listen == std::vector<std::string>{"127.0.0.1:5353", "169.254.20.10:5300", "10.96.0.10:53",
                                           "[fd00::10]:53"});
}

TEST_CASE("node.service_cidr and node.rules.fallback_for", "[config][node]") {
  auto c = load_config_text(R"(
node:
  local_addresses: [169.254.20.10, 10.96.0.10]
  service_cidr: [10.96.0.0/12, "fd00:10:96::/112", 10.100.7.9/16]
  rules: {fallback_for: [10.96.0.10], fallback: ["10.244.0.53"]}
)",
                            "t.yaml");
  REQUIRE(c.has_value());
  const auto& n = c->node;
  REQUIRE(n.fallback_for);
  CHECK(*n.fallback_for == std::vector{boost::asio::ip::make_address("10.96.0.10")});
  REQUIRE(n.service_cidr.size() == 3);
  CHECK(n.service_cidr[0].to_string() == "10.96.0.0/12");
  CHECK(n.service_cidr[1].to_string() == "fd00:10:96::/112");
  CHECK(n.service_cidr[2].to_string() == "10.100.0.0/16");  // host bits cleared
  using boost::asio::ip::make_address;
  CHECK(n.service_cidr[0].contains(make_address("10.96.0.11")));
  CHECK(n.service_cidr[0].contains(make_address("10.111.255.255")));
  CHECK_FALSE(n.service_cidr[0].contains(make_address("10.112.0.0")));
  CHECK_FALSE(n.service_cidr[0].contains(make_address("10.95.255.255")));
  CHECK(n.service_cidr[1].contains(make_address("fd00:10:96::ffff")));
  CHECK_FALSE(n.service_cidr[1].contains(make_address("fd00:10:96::1:0")));
  CHECK_FALSE(n.service_cidr[1].contains(make_address("10.96.0.1")));
  CHECK(parse_cidr("10.96.0.10")->to_string() == "10.96.0.10/32");
  CHECK(parse_cidr("0.0.0.0/0")->contains(make_address("192.0.2.1")));
  CHECK_FALSE(parse_cidr("10.96.0.0/"));
  CHECK_FALSE(parse_cidr("::/129"));
}

TEST_CASE("without local addresses node setup stays off", "[config][node]") {
  auto c = load_config_text("listen: [127.0.0.1:5353]\n", "t.yaml");
  REQUIRE(c.has_value());
  CHECK_FALSE(c->node.enabled());
  CHECK(c->node.interface_kind == "dummy");
  CHECK(c->node.interface_name == "nodelocaldns");
  CHECK(c->node.rules_backend == RulesBackend::Auto);
  CHECK(c->node.sync_interval == 60s);
}

TEST_CASE("the cache prefetch keys load", "[config]") {
  auto c = load_config_text("cache:\n  prefetch_hits: 5\n  prefetch_percent: 20\n", "t.yaml");
  REQUIRE(c.has_value());
  CHECK(c->cache.prefetch_hits == 5);
  CHECK(c->cache.prefetch_percent == 20);
  auto off = load_config_text("cache: {prefetch_hits: 0}\n", "t.yaml");
  REQUIRE(off.has_value());
  CHECK(off->cache.prefetch_hits == 0);
  auto bad = load_config_text("cache:\n  prefetch_percent: 100\n", "t.yaml");
  REQUIRE_FALSE(bad.has_value());
  CHECK_THAT(all(bad.error()),
             Catch::Contains("t.yaml:2: cache.prefetch_percent: must be between"));
}

TEST_CASE("a group takes at most 64 servers, and more is an error", "[config]") {
  auto servers = [](int n) {
    std::string s;
    for (int i = 0; i < n; ++i)
      s += "      - \"192.0.2." + std::to_string(i + 1) + "\"\n";
    return s;
  };
  auto ok = load_config_text("forward:\n  - zones: [.]\n    servers:\n" + servers(64), "t.yaml");
  REQUIRE(ok.has_value());
  CHECK(ok->forward[0].servers.size() == 64);
  auto r = load_config_text("forward:\n  - zones: [.]\n    servers:\n" + servers(65), "t.yaml");
  REQUIRE_FALSE(r.has_value());
  CHECK_THAT(all(r.error()),
             Catch::Contains("t.yaml:4: forward[0].servers: 65 servers; a group takes at most 64"));
  // The same limit for groups made from flags or resolv.conf.
  Config c = default_config();
  c.forward.front().servers_from_resolv_conf = false;
  c.forward.front().servers = ok->forward[0].servers;
  CHECK(validate(c).empty());
  c.forward.front().servers.push_back(*parse_endpoint("192.0.2.200", 53));
  auto errors = validate(c);
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0],
             Catch::Contains("forward[0].servers: 65 servers; a group takes at most 64"));
}

TEST_CASE("zones are kept in one form: lower case, one trailing dot", "[config]") {
  auto c = load_config_text(
      "forward:\n  - zones: [Cluster.Local, cluster.local2., .]\n"
      "    servers: [\"192.0.2.1\"]\n",
      "t.yaml");
  REQUIRE(c.has_value());
  CHECK(c->forward[0].zones == std::vector<std::string>{"cluster.local.", "cluster.local2.", "."});
}

TEST_CASE("cache.persist_file and cache.persist_interval", "[config]") {
  auto c = load_config_text(
      "cache:\n  persist_file: /var/lib/localdns/cache.bin\n  persist_interval: 5m\n", "t.yaml");
  REQUIRE(c);
  CHECK(c->cache.persist_file == "/var/lib/localdns/cache.bin");
  CHECK(c->cache.persist_interval == std::chrono::minutes(5));
  auto off = load_config_text("cache:\n  persist_file: off\n  persist_interval: 0s\n", "t.yaml");
  REQUIRE(off);
  CHECK(off->cache.persist_file.empty());
  CHECK(off->cache.persist_interval == Duration(0));
  auto dflt = load_config_text("cache:\n  enabled: true\n", "t.yaml");
  REQUIRE(dflt);
  CHECK(dflt->cache.persist_file.empty());
  CHECK(dflt->cache.persist_interval == std::chrono::seconds(60));

  auto relative = load_config_text("cache:\n  persist_file: cache.bin\n", "t.yaml");
  REQUIRE_FALSE(relative);
  CHECK_THAT(relative.error().at(0),
             Catch::Contains("t.yaml:2: cache.persist_file: expected an absolute file path"));
  auto dir = load_config_text("cache:\n  persist_file: /var/lib/\n", "t.yaml");
  REQUIRE_FALSE(dir);
  CHECK_THAT(dir.error().at(0), Catch::Contains("t.yaml:2: cache.persist_file"));
  auto fast = load_config_text("cache:\n  enabled: true\n  persist_interval: 100ms\n", "t.yaml");
  REQUIRE_FALSE(fast);
  CHECK_THAT(fast.error().at(0), Catch::Contains("t.yaml:3: cache.persist_interval: must be 0"));
  auto bad = load_config_text("cache:\n  persist_interval: soon\n", "t.yaml");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().at(0), Catch::Contains("t.yaml:2: cache.persist_interval: expected a "));
}
