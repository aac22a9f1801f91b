// The YAML emitter: what it writes loads back to the same Config, and it
// writes every key the loader takes.
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <catch2/catch.hpp>
#include <yaml-cpp/yaml.h>

#include <localdns/config/corefile.hpp>
#include <localdns/config/emit.hpp>
#include <localdns/config/loader.hpp>

using namespace localdns::config;

namespace {

std::string all(const Errors& e) {
  std::string s;
  for (const auto& x : e)
    s += x + "\n";
  return s;
}

void round_trips(const Config& c, const std::string& what) {
  auto text = emit_yaml(c);
  INFO(what << ":\n" << text);
  auto back = load_config_text(text, "emitted.yaml");
  INFO((back ? std::string() : all(back.error())));
  REQUIRE(back.has_value());
  CHECK(*back == c);
  CHECK(emit_yaml(*back) == text);  // and emitting is stable
}

// Every value differs from its default, and every optional is set.
constexpr const char* kEverything = R"(
listen: ["127.0.0.2:5300", "[::1]:5301"]
threads: 3
log_level: debug
log_format: json
query_log_sample: 7
top_sample: 9
shutdown_grace: 1500ms
resolv_conf: /tmp/resolv.test
control_socket: "off"
metrics: 127.0.0.3:9999
health: "off"
tcp_clients:
  idle_timeout: 11s
  max_connections: 99
  max_connections_per_source: 9
  max_pipelined: 17
  max_queued_bytes: 4096
  max_queued_bytes_total: 131072
  write_timeout: 7s
cache:
  enabled: false
  max_entries: 12
  max_bytes: 8192
  min_ttl: 5s
  max_ttl: 2h
  denial_max_ttl: 31m
  prefetch_hits: 0
  prefetch_percent: 42
  persist_file: /var/lib/localdns/cache.bin
  persist_interval: 30s
forward:
  - zones: [cluster.local, in-addr.arpa, ip6.arpa]
    servers: ["10.96.0.10", "[fd00::10]:5353"]
    transport: tcp
    policy: round_robin
    timeout: 2s
    attempts: 3
    max_in_flight: 100
    fail_threshold: 5
    probe_interval: 250ms
    tcp: {connections: 4, max_age: 0s, max_queries: 0, idle_timeout: 1m}
    cache: {max_ttl: 30s, denial_max_ttl: 5s, serve_stale: 1h}
  - zones: ["."]
    servers: resolv.conf
    transport: udp
    policy: random
node:
  local_addresses: [169.254.20.10, 10.96.0.10, "fd00::53"]
  port: 1053
  interface: {setup: false, name: ldns0, kind: bridge}
  rules:
    setup: false
    backend: nftables
    fallback: ["10.0.0.53", "10.0.0.54:5353"]
    fallback_for: [169.254.20.10]
  service_cidr: [10.96.0.0/12, "fd00:10:96::/112"]
  health_port: 8080
  sync_interval: 5m
  skip_teardown: true
search_path:
  mode: warm
  cluster_domain: k8s.internal
  ndots: 4
  host_search: [corp.example, example.net]
  max_qps: 300
  max_qps_per_client: 9
  max_hold: 750ms
)";

// Leaf key paths of a YAML tree: "forward[].tcp.max_age".
void leaves(const YAML::Node& n, const std::string& path, std::set<std::string>& out) {
  if (n.IsMap()) {
    for (const auto& kv : n) {
      auto k = kv.first.as<std::string>();
      leaves(kv.second, path.empty() ? k : path + "." + k, out);
    }
  } else if (n.IsSequence() && n.size() > 0 && n[0].IsMap()) {
    for (const auto& item : n)
      leaves(item, path + "[]", out);
  } else {
    out.insert(path);
  }
}

// The keys the loader takes, from its own answer to an unknown key.
std::set<std::string> loader_leaves() {
  std::set<std::string> out;
  std::vector<std::string> todo{""};
  while (!todo.empty()) {
    auto path = todo.back();
    todo.pop_back();
    auto probe = [](const std::string& at) -> std::optional<std::string> {
      // Build the document for "a.b[].c.zz": nested maps, a list for "[]".
      std::string doc, indent;
      std::string rest = at.empty() ? "zz_probe" : at + ".zz_probe";
      while (true) {
        auto dot = rest.find('.');
        std::string key = rest.substr(0, dot);
        bool list = key.ends_with("[]");
        if (list) key.resize(key.size() - 2);
        if (dot == std::string::npos) {
          doc += indent + key + ": 1\n";
          break;
        }
        doc += indent + key + ":\n";
        indent += "  ";
        if (list) {
          doc += indent + "- zones: [x]\n" + indent + "  servers: [192.0.2.1]\n";
          indent += "  ";
        }
        rest = rest.substr(dot + 1);
      }
      auto c = load_config_text(doc, "probe.yaml");
      if (c) return std::nullopt;
      for (const auto& e : c.error()) {
        auto m = e.find("zz_probe: unknown key (expected one of: ");
        if (m != std::string::npos) {
          auto b = e.find("one of: ", m) + 8;
          return e.substr(b, e.find(')', b) - b);
        }
      }
      return std::nullopt;
    };
    auto keys = probe(path);
    std::string at = path;
    if (!keys && !path.empty()) {
      at = path + "[]";
      keys = probe(at);
    }
    if (!keys) {
      out.insert(path);
      continue;
    }
    std::size_t b = 0;
    while (b < keys->size()) {
      auto e = keys->find(", ", b);
      auto k = keys->substr(b, e == std::string::npos ? std::string::npos : e - b);
      todo.push_back(at.empty() ? k : at + "." + k);
      if (e == std::string::npos) break;
      b = e + 2;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("emitted YAML loads back to the same configuration", "[config][emit]") {
  round_trips(default_config(), "the default");
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(LOCALDNS_SOURCE_DIR) + "/config")) {
    if (entry.path().extension() != ".yaml") continue;
    auto c = load_config_file(entry.path().string());
    INFO(entry.path().string());
    REQUIRE(c.has_value());
    round_trips(*c, entry.path().string());
  }
  auto every = load_config_text(kEverything, "everything.yaml");
  INFO((every ? std::string() : all(every.error())));
  REQUIRE(every.has_value());
  round_trips(*every, "every key set");
  // The few states the loader reaches only through defaults or flags.
  Config c = default_config();
  c.node.fallback_auto = false;   // fallback: off
  c.node.fallback_for.emplace();  // fallback_for: []
  c.metrics.enabled = false;
  c.health.listen = Endpoint{boost::asio::ip::make_address("::1"), 8081};
  round_trips(c, "fallback off, fallback_for [], IPv6 health");
}

TEST_CASE("a translated Corefile emits YAML that loads back to it", "[config][emit]") {
  std::ifstream f(std::string(LOCALDNS_SOURCE_DIR) +
                  "/tests/data/corefile/nodelocaldns.yaml.Corefile");
  std::stringstream buf;
  buf << f.rdbuf();
  std::string base = buf.str();
  REQUIRE_FALSE(base.empty());
  for (auto [from, to] : {std::pair{"__PILLAR__DNS__DOMAIN__", "cluster.local"},
                          {"__PILLAR__DNS__SERVER__", "10.96.0.10"}}) {
    for (auto p = base.find(from); p != std::string::npos; p = base.find(from))
      base.replace(p, std::string_view(from).size(), to);
  }
  corefile::Substitutions subs;
  subs.local_ips = {"169.254.20.10"};
  subs.cluster_dns = "10.96.0.11";
  corefile::KubeDns kube;
  kube.stub_domains = {{"acme.local", {"10.150.0.1", "10.150.0.2:5353"}}};
  kube.upstream_nameservers = {"192.0.2.53", "192.0.2.54"};
  auto tr = corefile::translate(corefile::render(base, subs, kube), {});
  INFO((tr ? std::string() : all(tr.error())));
  REQUIRE(tr.has_value());
  REQUIRE(validate(tr->config).empty());
  CHECK(tr->config.forward.size() == 5);  // four blocks and the stub domain
  round_trips(tr->config, "the official template, rendered and translated");
  // Without the ConfigMap: "." goes to resolv.conf, written as such.
  auto plain = corefile::translate(corefile::render(base, subs, {}), {});
  REQUIRE(plain.has_value());
  round_trips(plain->config, "the official template with resolv.conf upstreams");
}

TEST_CASE("the emitter writes every key the loader takes", "[config][emit]") {
  auto every = load_config_text(kEverything, "everything.yaml");
  REQUIRE(every.has_value());
  std::set<std::string> written;
  leaves(YAML::Load(emit_yaml(*every)), "", written);
  auto taken = loader_leaves();
  REQUIRE(taken.size() > 40);
  for (const auto& k : taken) {
    INFO("loader key " << k);
    CHECK(written.count(k) == 1);
  }
  for (const auto& k : written) {
    INFO("emitted key " << k);
    CHECK(taken.count(k) == 1);
  }
}
