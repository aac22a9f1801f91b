#include <yaml-cpp/yaml.h>

#include <localdns/config/duration.hpp>
#include <localdns/config/emit.hpp>

namespace localdns::config {
namespace {

// Plain strings only where YAML reads them back as the same string: the loader
// takes scalars as text, so quoting never changes a value.
YAML::Emitter& str(YAML::Emitter& out, const std::string& s) {
  return out << YAML::DoubleQuoted << s;
}

void endpoints(YAML::Emitter& out, const std::vector<Endpoint>& eps) {
  out << YAML::Flow << YAML::BeginSeq;
  for (const auto& e : eps)
    str(out, e.to_string());
  out << YAML::EndSeq;
}

// Left out when on without an address of its own: resolve() then picks the
// first node local address, else 127.0.0.1, on the endpoint's default port.
void http_endpoint(YAML::Emitter& out, const char* key, const HttpEndpoint& e) {
  if (!e.enabled) {
    out << YAML::Key << key << YAML::Value;
    str(out, "off");
  } else if (e.listen) {
    out << YAML::Key << key << YAML::Value;
    str(out, e.listen->to_string());
  }
}

void group(YAML::Emitter& out, const UpstreamGroup& g) {
  out << YAML::BeginMap;
  out << YAML::Key << "zones" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& z : g.zones)
    str(out, z);
  out << YAML::EndSeq;
  out << YAML::Key << "servers" << YAML::Value;
  if (g.servers_from_resolv_conf) {
    str(out, "resolv.conf");
  } else {
    endpoints(out, g.servers);
  }
  out << YAML::Key << "transport" << YAML::Value << std::string(to_string(g.transport));
  out << YAML::Key << "policy" << YAML::Value << std::string(to_string(g.policy));
  out << YAML::Key << "timeout" << YAML::Value << format_duration(g.timeout);
  out << YAML::Key << "attempts" << YAML::Value << g.attempts;
  out << YAML::Key << "max_in_flight" << YAML::Value << g.max_in_flight;
  out << YAML::Key << "fail_threshold" << YAML::Value << g.fail_threshold;
  out << YAML::Key << "probe_interval" << YAML::Value << format_duration(g.probe_interval);
  out << YAML::Key << "tcp" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "connections" << YAML::Value << g.tcp.connections;
  out << YAML::Key << "max_age" << YAML::Value << format_duration(g.tcp.max_age);
  out << YAML::Key << "max_queries" << YAML::Value << g.tcp.max_queries;
  out << YAML::Key << "idle_timeout" << YAML::Value << format_duration(g.tcp.idle_timeout);
  out << YAML::EndMap;
  out << YAML::Key << "cache" << YAML::Value << YAML::BeginMap;
  if (g.cache.max_ttl) {
    out << YAML::Key << "max_ttl" << YAML::Value << format_duration(*g.cache.max_ttl);
  }  // else left out: cache.max_ttl
  if (g.cache.denial_max_ttl) {
    out << YAML::Key << "denial_max_ttl" << YAML::Value << format_duration(*g.cache.denial_max_ttl);
  }  // else left out: cache.denial_max_ttl
  out << YAML::Key << "serve_stale" << YAML::Value << format_duration(g.cache.serve_stale);
  out << YAML::EndMap;
  out << YAML::EndMap;
}

void addresses(YAML::Emitter& out, const std::vector<boost::asio::ip::address>& list) {
  out << YAML::Flow << YAML::BeginSeq;
  for (const auto& a : list)
    str(out, a.to_string());
  out << YAML::EndSeq;
}

void node(YAML::Emitter& out, const NodeConfig& n) {
  out << YAML::Key << "node" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "local_addresses" << YAML::Value;
  addresses(out, n.local_addresses);
  out << YAML::Key << "port" << YAML::Value << n.port;
  out << YAML::Key << "interface" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "setup" << YAML::Value << YAML::TrueFalseBool << n.setup_interface;
  out << YAML::Key << "name" << YAML::Value;
  str(out, n.interface_name);
  out << YAML::Key << "kind" << YAML::Value;
  str(out, n.interface_kind);
  out << YAML::EndMap;
  out << YAML::Key << "rules" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "setup" << YAML::Value << YAML::TrueFalseBool << n.setup_rules;
  out << YAML::Key << "backend" << YAML::Value << std::string(to_string(n.rules_backend));
  out << YAML::Key << "fallback" << YAML::Value;
  if (!n.fallback.empty()) {
    endpoints(out, n.fallback);
  } else {
    str(out, n.fallback_auto ? "auto" : "off");
  }
  if (n.fallback_for) {
    out << YAML::Key << "fallback_for" << YAML::Value;
    addresses(out, *n.fallback_for);
  }  // else left out: the link-local local addresses
  out << YAML::EndMap;
  out << YAML::Key << "service_cidr" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& c : n.service_cidr)
    str(out, c.to_string());
  out << YAML::EndSeq;
  out << YAML::Key << "health_port" << YAML::Value << n.health_port;
  out << YAML::Key << "sync_interval" << YAML::Value << format_duration(n.sync_interval);
  out << YAML::Key << "skip_teardown" << YAML::Value << YAML::TrueFalseBool << n.skip_teardown;
  out << YAML::EndMap;
}

void clients(YAML::Emitter& out, const ClientsConfig& c) {
  out << YAML::Key << "clients" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "allow" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& n : c.allow)
    str(out, n.to_string());
  out << YAML::EndSeq;
  const auto& r = c.rate_limit;
  out << YAML::Key << "rate_limit" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "qps" << YAML::Value << r.qps;
  out << YAML::Key << "burst" << YAML::Value << r.burst;
  out << YAML::Key << "action" << YAML::Value
      << (r.action == server::RateAction::Drop ? "drop" : "refuse");
  out << YAML::Key << "exempt_cache_hits" << YAML::Value << YAML::TrueFalseBool
      << r.exempt_cache_hits;
  out << YAML::Key << "exempt_node_addresses" << YAML::Value << YAML::TrueFalseBool
      << r.exempt_node_addresses;
  out << YAML::Key << "table_size" << YAML::Value << r.table_size;
  out << YAML::Key << "ipv6_prefix" << YAML::Value << r.ipv6_prefix;
  out << YAML::EndMap;
  out << YAML::EndMap;
}

void search_path(YAML::Emitter& out, const SearchPathConfig& s) {
  static constexpr const char* kModes[] = {"off", "warm", "cname"};
  out << YAML::Key << "search_path" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "mode" << YAML::Value << kModes[static_cast<int>(s.mode)];
  out << YAML::Key << "cluster_domain" << YAML::Value;
  str(out, s.cluster_domain);
  out << YAML::Key << "ndots" << YAML::Value << s.ndots;
  if (!s.host_search_from_resolv_conf) {
    out << YAML::Key << "host_search" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& d : s.host_search)
      str(out, d);
    out << YAML::EndSeq;
  }  // else left out: the search line of resolv_conf
  out << YAML::Key << "max_qps" << YAML::Value << s.max_qps;
  out << YAML::Key << "max_qps_per_client" << YAML::Value << s.max_qps_per_client;
  out << YAML::Key << "max_hold" << YAML::Value << format_duration(s.max_hold);
  out << YAML::EndMap;
}

}  // namespace

std::string emit_yaml(const Config& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "listen" << YAML::Value;
  endpoints(out, c.listen);
  out << YAML::Key << "threads" << YAML::Value << c.threads;
  out << YAML::Key << "log_level" << YAML::Value << c.log_level;
  out << YAML::Key << "log_format" << YAML::Value << c.log_format;
  out << YAML::Key << "query_log_sample" << YAML::Value << c.query_log_sample;
  out << YAML::Key << "top_sample" << YAML::Value << c.top_sample;
  out << YAML::Key << "shutdown_grace" << YAML::Value << format_duration(c.shutdown_grace);
  out << YAML::Key << "resolv_conf" << YAML::Value;
  str(out, c.resolv_conf);
  out << YAML::Key << "control_socket" << YAML::Value;
  str(out, c.control_socket.empty() ? std::string("off") : c.control_socket);
  http_endpoint(out, "metrics", c.metrics);
  http_endpoint(out, "health", c.health);

  const auto& t = c.tcp_clients;
  out << YAML::Key << "tcp_clients" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "idle_timeout" << YAML::Value << format_duration(t.idle_timeout);
  out << YAML::Key << "max_connections" << YAML::Value << t.max_connections;
  out << YAML::Key << "max_connections_per_source" << YAML::Value << t.max_connections_per_source;
  out << YAML::Key << "max_pipelined" << YAML::Value << t.max_pipelined;
  out << YAML::Key << "max_queued_bytes" << YAML::Value << t.max_queued_bytes;
  out << YAML::Key << "max_queued_bytes_total" << YAML::Value << t.max_queued_bytes_total;
  out << YAML::Key << "write_timeout" << YAML::Value << format_duration(t.write_timeout);
  out << YAML::EndMap;
  clients(out, c.clients);
  search_path(out, c.search_path);

  const auto& k = c.cache;
  out << YAML::Key << "cache" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << YAML::TrueFalseBool << k.enabled;
  out << YAML::Key << "max_entries" << YAML::Value << k.max_entries;
  out << YAML::Key << "max_bytes" << YAML::Value << k.max_bytes;
  out << YAML::Key << "min_ttl" << YAML::Value << format_duration(k.min_ttl);
  out << YAML::Key << "max_ttl" << YAML::Value << format_duration(k.max_ttl);
  out << YAML::Key << "denial_max_ttl" << YAML::Value << format_duration(k.denial_max_ttl);
  out << YAML::Key << "prefetch_hits" << YAML::Value << k.prefetch_hits;
  out << YAML::Key << "prefetch_percent" << YAML::Value << k.prefetch_percent;
  out << YAML::Key << "persist_file" << YAML::Value
      << (k.persist_file.empty() ? "off" : k.persist_file);
  out << YAML::Key << "persist_interval" << YAML::Value << format_duration(k.persist_interval);
  out << YAML::EndMap;

  out << YAML::Key << "forward" << YAML::Value << YAML::BeginSeq;
  for (const auto& g : c.forward)
    group(out, g);
  out << YAML::EndSeq;
  node(out, c.node);
  out << YAML::EndMap;
  std::string text = out.c_str();
  text += "\n";
  return text;
}

}  // namespace localdns::config
