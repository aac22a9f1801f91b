#include <algorithm>
#include <array>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include <localdns/config/duration.hpp>
#include <localdns/config/loader.hpp>
#include <localdns/dns/name.hpp>

#include "loader_internal.hpp"

namespace localdns::config {
namespace {

void read_endpoint(Reader& r, const YAML::Node& n, const std::string& path, std::uint16_t port,
                   std::vector<Endpoint>& out) {
  auto s = r.scalar(n, path);
  if (!s) return;
  if (auto ep = parse_endpoint(*s, port)) {
    out.push_back(*ep);
  } else {
    r.error(n, path, "expected ADDRESS, ADDRESS:PORT or [IPV6]:PORT, got '" + *s + "'");
  }
}

void read_tcp_pool(Reader& r, const YAML::Node& n, const std::string& path, TcpPoolConfig& t) {
  if (!r.expect_map(n, path, {"connections", "max_age", "max_queries", "idle_timeout"})) return;
  using std::chrono::hours;
  if (n["connections"]) r.integer(n["connections"], path + ".connections", t.connections, 1u, 64u);
  if (n["max_age"]) r.duration(n["max_age"], path + ".max_age", t.max_age, Duration(0), hours(24));
  if (n["max_queries"]) {
    r.integer(n["max_queries"], path + ".max_queries", t.max_queries, 0u, 1'000'000'000u);
  }
  if (n["idle_timeout"]) {
    r.duration(n["idle_timeout"], path + ".idle_timeout", t.idle_timeout, Duration(0), hours(24));
  }
}

void read_group_cache(Reader& r, const YAML::Node& n, const std::string& path,
                      GroupCacheConfig& c) {
  if (!r.expect_map(n, path, {"max_ttl", "denial_max_ttl", "serve_stale"})) return;
  if (n["serve_stale"]) {
    r.duration(n["serve_stale"], path + ".serve_stale", c.serve_stale, Duration(0),
               std::chrono::hours(24 * 7));
  }
  using std::chrono::hours;
  Duration d{};
  if (n["max_ttl"]) {
    d = Duration(-1);
    r.duration(n["max_ttl"], path + ".max_ttl", d, Duration(0), hours(24 * 7));
    if (d.count() >= 0) c.max_ttl = d;
  }
  if (n["denial_max_ttl"]) {
    d = Duration(-1);
    r.duration(n["denial_max_ttl"], path + ".denial_max_ttl", d, Duration(0), hours(24 * 7));
    if (d.count() >= 0) c.denial_max_ttl = d;
  }
}

void read_cache(Reader& r, const YAML::Node& n, CacheConfig& c) {
  if (!r.expect_map(n, "cache",
                    {"enabled", "max_entries", "max_bytes", "min_ttl", "max_ttl", "denial_max_ttl",
                     "prefetch_hits", "prefetch_percent", "persist_file", "persist_interval"})) {
    return;
  }
  using std::chrono::hours;
  if (n["enabled"]) r.boolean(n["enabled"], "cache.enabled", c.enabled);
  if (n["max_entries"]) {
    r.integer(n["max_entries"], "cache.max_entries", c.max_entries, std::size_t{1},
              std::size_t{100'000'000});
  }
  if (n["max_bytes"]) {
    r.integer(n["max_bytes"], "cache.max_bytes", c.max_bytes, std::size_t{4096},
              std::size_t{1} << 40);
  }
  if (n["min_ttl"]) r.duration(n["min_ttl"], "cache.min_ttl", c.min_ttl, Duration(0), hours(24));
  if (n["prefetch_hits"]) {
    r.integer(n["prefetch_hits"], "cache.prefetch_hits", c.prefetch_hits, 0u, 1'000'000u);
  }
  if (n["prefetch_percent"]) {
    r.integer(n["prefetch_percent"], "cache.prefetch_percent", c.prefetch_percent, 1u, 99u);
  }
  if (n["max_ttl"]) {
    r.duration(n["max_ttl"], "cache.max_ttl", c.max_ttl, Duration(0), hours(24 * 7));
  }
  if (n["denial_max_ttl"]) {
    r.duration(n["denial_max_ttl"], "cache.denial_max_ttl", c.denial_max_ttl, Duration(0),
               hours(24 * 7));
  }
  if (n["persist_file"]) {
    if (auto s = r.scalar(n["persist_file"], "cache.persist_file")) {
      if (s->empty() || *s == "off") {
        c.persist_file.clear();
      } else if (s->front() != '/' || s->back() == '/' || s->size() > 4000 ||
                 s->find('\0') != std::string::npos) {
        r.error(n["persist_file"], "cache.persist_file",
                "expected an absolute file path (or off), got '" + *s + "'");
      } else {
        c.persist_file = *s;
      }
    }
  }
  if (n["persist_interval"]) {
    Duration d = c.persist_interval;
    r.duration(n["persist_interval"], "cache.persist_interval", d, Duration(0), hours(24));
    if (d > Duration(0) && d < std::chrono::seconds(1)) {
      r.error(n["persist_interval"], "cache.persist_interval",
              "must be 0 (save only at shutdown) or at least 1s");
    } else {
      c.persist_interval = d;
    }
  }
}

void read_group(Reader& r, const YAML::Node& n, const std::string& path, UpstreamGroup& g) {
  if (!r.expect_map(n, path,
                    {"zones", "servers", "transport", "policy", "timeout", "attempts",
                     "max_in_flight", "fail_threshold", "probe_interval", "tcp", "cache"})) {
    return;
  }
  using namespace std::chrono_literals;
  if (!n["zones"]) {
    r.error(n, path + ".zones", "required (use \".\" for every name)");
  } else {
    auto items = r.list(n["zones"], path + ".zones");
    for (std::size_t i = 0; i < items.size(); ++i) {
      auto zpath = Reader::index(path + ".zones", i);
      auto s = r.scalar(items[i], zpath);
      if (!s) continue;
      auto wire = dns::name_from_text(*s);
      if (!wire) {
        r.error(items[i], zpath, "not a valid domain name: '" + *s + "'");
        continue;
      }
      g.zones.push_back(dns::name_to_text(*wire));
    }
  }
  if (!n["servers"]) {
    r.error(n, path + ".servers", "required (a list of ADDRESS:PORT, or \"resolv.conf\")");
  } else if (n["servers"].IsScalar() && n["servers"].Scalar() == "resolv.conf") {
    g.servers_from_resolv_conf = true;
  } else {
    auto items = r.list(n["servers"], path + ".servers");
    if (items.empty()) r.error(n["servers"], path + ".servers", "must not be empty");
    for (std::size_t i = 0; i < items.size(); ++i) {
      read_endpoint(r, items[i], Reader::index(path + ".servers", i), 53, g.servers);
    }
    if (items.size() > kMaxServersPerGroup) {
      r.error(n["servers"], path + ".servers", too_many_servers(items.size()));
    }
  }
  static constexpr std::pair<std::string_view, Transport> kTransports[] = {
      {"tcp", Transport::Tcp}, {"udp", Transport::Udp}, {"prefer_udp", Transport::PreferUdp}};
  static constexpr std::pair<std::string_view, Policy> kPolicies[] = {
      {"sequential", Policy::Sequential},
      {"random", Policy::Random},
      {"round_robin", Policy::RoundRobin}};
  if (n["transport"]) r.choice(n["transport"], path + ".transport", g.transport, kTransports);
  if (n["policy"]) r.choice(n["policy"], path + ".policy", g.policy, kPolicies);
  if (n["timeout"]) r.duration(n["timeout"], path + ".timeout", g.timeout, 10ms, 60s);
  if (n["attempts"]) r.integer(n["attempts"], path + ".attempts", g.attempts, 1u, 10u);
  if (n["max_in_flight"]) {
    r.integer(n["max_in_flight"], path + ".max_in_flight", g.max_in_flight, 1u, 1'000'000u);
  }
  if (n["fail_threshold"]) {
    r.integer(n["fail_threshold"], path + ".fail_threshold", g.fail_threshold, 1u, 1000u);
  }
  if (n["probe_interval"]) {
    r.duration(n["probe_interval"], path + ".probe_interval", g.probe_interval, 100ms, 1h);
  }
  if (n["tcp"]) read_tcp_pool(r, n["tcp"], path + ".tcp", g.tcp);
  if (n["cache"]) read_group_cache(r, n["cache"], path + ".cache", g.cache);
}

void read_addresses(Reader& r, const YAML::Node& n, const std::string& key,
                    std::vector<boost::asio::ip::address>& out) {
  out.clear();
  auto items = r.list(n, key);
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto path = Reader::index(key, i);
    auto s = r.scalar(items[i], path);
    if (!s) continue;
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address(*s, ec);
    if (ec) {
      r.error(items[i], path, "expected an IPv4 or IPv6 address, got '" + *s + "'");
    } else {
      out.push_back(a);
    }
  }
}

void read_node(Reader& r, const YAML::Node& n, NodeConfig& c) {
  if (!r.expect_map(n, "node",
                    {"local_addresses", "port", "interface", "rules", "health_port",
                     "sync_interval", "skip_teardown", "service_cidr"})) {
    return;
  }
  using namespace std::chrono_literals;
  if (n["local_addresses"]) {
    read_addresses(r, n["local_addresses"], "node.local_addresses", c.local_addresses);
  }
  if (n["service_cidr"]) {
    c.service_cidr.clear();
    auto items = r.list(n["service_cidr"], "node.service_cidr");
    for (std::size_t i = 0; i < items.size(); ++i) {
      auto path = Reader::index("node.service_cidr", i);
      auto s = r.scalar(items[i], path);
      if (!s) continue;
      if (auto cidr = parse_cidr(*s)) {
        c.service_cidr.push_back(*cidr);
      } else {
        r.error(
            items[i], path,
            "expected an address range like 10.96.0.0/12 or fd00:10:96::/112, got '" + *s + "'");
      }
    }
  }
  if (n["port"]) r.integer(n["port"], "node.port", c.port, std::uint16_t{1}, std::uint16_t{65535});
  if (n["health_port"]) {
    r.integer(n["health_port"], "node.health_port", c.health_port, std::uint16_t{0},
              std::uint16_t{65535});
  }
  if (n["sync_interval"]) {
    r.duration(n["sync_interval"], "node.sync_interval", c.sync_interval, 1s, 1h);
  }
  if (n["skip_teardown"]) r.boolean(n["skip_teardown"], "node.skip_teardown", c.skip_teardown);
  if (auto i = n["interface"]) {
    if (r.expect_map(i, "node.interface", {"setup", "name", "kind"})) {
      if (i["setup"]) r.boolean(i["setup"], "node.interface.setup", c.setup_interface);
      if (i["name"]) {
        if (auto s = r.scalar(i["name"], "node.interface.name")) c.interface_name = *s;
      }
      if (i["kind"]) {
        if (auto s = r.scalar(i["kind"], "node.interface.kind")) c.interface_kind = *s;
      }
    }
  }
  if (auto rules = n["rules"]) {
    if (r.expect_map(rules, "node.rules", {"setup", "backend", "fallback", "fallback_for"})) {
      if (rules["setup"]) r.boolean(rules["setup"], "node.rules.setup", c.setup_rules);
      if (rules["backend"]) {
        static constexpr std::pair<std::string_view, RulesBackend> kBackends[] = {
            {"auto", RulesBackend::Auto},
            {"iptables-legacy", RulesBackend::IptablesLegacy},
            {"iptables-nft", RulesBackend::IptablesNft},
            {"nftables", RulesBackend::Nftables}};
        r.choice(rules["backend"], "node.rules.backend", c.rules_backend, kBackends);
      }
      if (auto f = rules["fallback"]) {
        c.fallback.clear();
        if (f.IsScalar() && (f.Scalar() == "auto" || f.Scalar() == "off")) {
          c.fallback_auto = f.Scalar() == "auto";
        } else {
          c.fallback_auto = false;
          auto items = r.list(f, "node.rules.fallback");
          for (std::size_t i = 0; i < items.size(); ++i) {
            read_endpoint(r, items[i], Reader::index("node.rules.fallback", i), 53, c.fallback);
          }
        }
      }
      if (auto f = rules["fallback_for"]) {
        c.fallback_for.emplace();
        if (!(f.IsSequence() && f.size() == 0)) {
          read_addresses(r, f, "node.rules.fallback_for", *c.fallback_for);
        }
      }
    }
  }
}

void read_root(Reader& r, const YAML::Node& root, Config& c) {
  if (root.IsNull()) return;  // an empty file keeps the defaults
  if (!r.expect_map(root, "",
                    {"listen", "threads", "log_level", "tcp_clients", "cache", "forward",
                     "shutdown_grace", "resolv_conf", "node", "metrics", "health", "control_socket",
                     "log_format", "query_log_sample", "top_sample", "clients", "search_path"})) {
    return;
  }
  using namespace std::chrono_literals;
  if (root["listen"]) {
    c.listen.clear();
    auto items = r.list(root["listen"], "listen");
    for (std::size_t i = 0; i < items.size(); ++i) {
      read_endpoint(r, items[i], Reader::index("listen", i), kDefaultListenPort, c.listen);
    }
  }
  if (root["threads"]) r.integer(root["threads"], "threads", c.threads, 0u, 256u);
  if (root["log_level"]) {
    if (auto s = r.scalar(root["log_level"], "log_level")) {
      if (!is_log_level(*s)) {
        r.error(root["log_level"], "log_level",
                "expected trace, debug, info, warn, error, critical or off, got '" + *s + "'");
      } else {
        c.log_level = *s;
      }
    }
  }
  if (root["shutdown_grace"]) {
    r.duration(root["shutdown_grace"], "shutdown_grace", c.shutdown_grace, 0ms, 60s);
  }
  if (root["resolv_conf"]) {
    if (auto s = r.scalar(root["resolv_conf"], "resolv_conf")) c.resolv_conf = *s;
  }
  if (auto t = root["tcp_clients"]) {
    if (r.expect_map(
            t, "tcp_clients",
            {"idle_timeout", "max_connections", "max_connections_per_source", "max_pipelined",
             "max_queued_bytes", "max_queued_bytes_total", "write_timeout"})) {
      auto& tc = c.tcp_clients;
      if (t["idle_timeout"]) {
        r.duration(t["idle_timeout"], "tcp_clients.idle_timeout", tc.idle_timeout, 100ms, 1h);
      }
      if (t["max_connections"]) {
        r.integer(t["max_connections"], "tcp_clients.max_connections", tc.max_connections, 1u,
                  1'000'000u);
      }
      if (t["max_connections_per_source"]) {
        r.integer(t["max_connections_per_source"], "tcp_clients.max_connections_per_source",
                  tc.max_connections_per_source, 1u, 1'000'000u);
      }
      if (t["max_pipelined"]) {
        r.integer(t["max_pipelined"], "tcp_clients.max_pipelined", tc.max_pipelined, 1u, 65535u);
      }
      if (t["max_queued_bytes"]) {
        r.integer(t["max_queued_bytes"], "tcp_clients.max_queued_bytes", tc.max_queued_bytes,
                  std::size_t{1024}, std::size_t{64} << 20);
      }
      if (t["max_queued_bytes_total"]) {
        r.integer(t["max_queued_bytes_total"], "tcp_clients.max_queued_bytes_total",
                  tc.max_queued_bytes_total, std::size_t{64} << 10, std::size_t{16} << 30);
      }
      if (t["write_timeout"]) {
        r.duration(t["write_timeout"], "tcp_clients.write_timeout", tc.write_timeout, 100ms, 1h);
      }
    }
  }
  if (root["cache"]) read_cache(r, root["cache"], c.cache);
  if (root["node"]) read_node(r, root["node"], c.node);
  if (root["clients"]) read_clients(r, root["clients"], c.clients);
  if (root["search_path"]) read_search_path(r, root["search_path"], c.search_path);
  for (auto [key, endpoint] : {std::pair{"metrics", &c.metrics}, {"health", &c.health}}) {
    if (!root[key]) continue;
    auto s = r.scalar(root[key], key);
    if (!s) continue;
    if (*s == "off") {
      endpoint->enabled = false;
    } else if (auto ep = parse_endpoint(*s, 0); ep && ep->port != 0) {
      endpoint->enabled = true;
      endpoint->listen = *ep;
    } else {
      r.error(root[key], key, "expected ADDRESS:PORT or off, got '" + *s + "'");
    }
  }
  if (root["control_socket"]) {
    if (auto s = r.scalar(root["control_socket"], "control_socket")) {
      c.control_socket = *s == "off" ? "" : *s;
    }
  }
  if (root["log_format"]) {
    static constexpr std::pair<std::string_view, std::string_view> kFormats[] = {{"text", "text"},
                                                                                 {"json", "json"}};
    std::string_view f = c.log_format;
    r.choice(root["log_format"], "log_format", f, kFormats);
    c.log_format = std::string(f);
  }
  if (root["top_sample"]) r.integer(root["top_sample"], "top_sample", c.top_sample, 0u, 1'000'000u);
  if (root["query_log_sample"]) {
    r.integer(root["query_log_sample"], "query_log_sample", c.query_log_sample, 0u, 1'000'000u);
  }
  if (auto f = root["forward"]) {
    c.forward.clear();
    if (!f.IsSequence() || f.size() == 0) {
      r.error(f, "forward", "expected a non-empty list of upstream groups");
    } else {
      for (std::size_t i = 0; i < f.size(); ++i) {
        UpstreamGroup g;
        read_group(r, f[i], Reader::index("forward", i), g);
        c.forward.push_back(std::move(g));
      }
    }
  }
}

}  // namespace

std::expected<Config, Errors> load_config_text(std::string_view yaml, std::string_view source) {
  Errors errors;
  Config c = default_config();
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    Reader r(source, errors);
    read_root(r, root, c);
    add_local_addresses_to_listen(c);
  } catch (const YAML::Exception& e) {
    errors.push_back(std::string(source) + ":" + std::to_string(e.mark.line + 1) +
                     ": invalid YAML: " + e.msg);
  }
  if (errors.empty()) errors = validate(c);
  if (!errors.empty()) return std::unexpected(std::move(errors));
  return c;
}

std::expected<Config, Errors> load_config_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::unexpected(Errors{path + ": cannot open the config file"});
  std::stringstream buf;
  buf << f.rdbuf();
  return load_config_text(buf.str(), path);
}

}  // namespace localdns::config
