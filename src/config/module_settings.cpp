#include <algorithm>

#include <localdns/config/module_settings.hpp>

namespace localdns::config {

server::ServerSettings server_settings(const Config& c) {
  server::ServerSettings s;
  s.listen = c.listen;
  s.tcp_clients = c.tcp_clients;
  for (const auto& n : c.clients.allow)
    s.clients.allow.push_back({n.base, n.prefix});
  s.clients.rate_limit = c.clients.rate_limit;
  s.clients.node_addresses = c.node.local_addresses;
  for (const auto& g : c.forward)
    s.routing.push_back(g.zones);
  s.search_path = c.search_path;
  if (c.search_path.host_search_from_resolv_conf) s.search_path.host_search = c.resolv_conf_search;
  return s;
}

node::NodeSettings node_settings(const Config& c) {
  const auto& n = c.node;
  node::NodeSettings s;
  static_cast<node::NodeOptions&>(s) = n;
  s.targets = rule_targets(c, &s.target_notes);
  return s;
}

std::vector<std::string> assign_fallbacks(const Config& c, node::RuleTargets& t) {
  const auto& n = c.node;
  std::vector<std::string> notes;
  auto is_local = [&](const boost::asio::ip::address& a) {
    return std::find(n.local_addresses.begin(), n.local_addresses.end(), a) !=
           n.local_addresses.end();
  };
  auto wants = [&](const boost::asio::ip::address& a) {
    if (n.fallback_for) {
      return std::find(n.fallback_for->begin(), n.fallback_for->end(), a) != n.fallback_for->end();
    }
    return node::is_link_local(a);
  };
  // Why a candidate cannot be a DNAT target; empty when it can.
  auto unusable = [&](const Endpoint& f) -> std::string {
    if (is_local(f.address)) return "a local address";
    if (f.address.is_loopback() || f.address.is_unspecified()) return "loopback";
    for (const auto& cidr : n.service_cidr) {
      if (cidr.contains(f.address)) return "inside node.service_cidr " + cidr.to_string();
    }
    return {};
  };
  std::vector<Endpoint> candidates = n.fallback;
  std::string source = "node.rules.fallback";
  if (n.fallback_auto) {
    source = "the \".\" servers";
    for (const auto& g : c.forward) {
      if (std::find(g.zones.begin(), g.zones.end(), ".") != g.zones.end())
        candidates = servers_of(c, g);
    }
  }
  for (auto& l : t.locals) {
    l.fallback.reset();
    if (!n.fallback_auto && n.fallback.empty()) continue;  // off
    if (!wants(l.address)) continue;
    std::string why;
    for (const auto& f : candidates) {
      if (f.address.is_v6() != l.address.is_v6()) continue;
      if (auto reason = unusable(f); !reason.empty()) {
        why += (why.empty() ? "" : ", ") + f.to_string() + " is " + reason;
        continue;
      }
      l.fallback = f;
      break;
    }
    if (l.fallback) continue;
    if (why.empty()) {
      why = "no " + std::string(l.address.is_v6() ? "IPv6" : "IPv4") + " server among " + source;
    }
    notes.push_back("no fallback DNAT for " + l.address.to_string() + " (" + why +
                    "): while localdns is down nothing answers queries to it; list a reachable "
                    "server (CoreDNS endpoints) in node.rules.fallback");
  }
  return notes;
}

node::RuleTargets rule_targets(const Config& c, std::vector<std::string>* notes) {
  node::RuleTargets t;
  std::vector<std::string> ignored;
  auto& fallback_notes = notes ? *notes : ignored;
  const auto& n = c.node;
  for (const auto& l : c.listen) {
    if (std::find(n.local_addresses.begin(), n.local_addresses.end(), l.address) !=
        n.local_addresses.end()) {
      t.locals.push_back({l.address, l.port, std::nullopt});
    }
  }
  t.health_port = n.health_port;
  if (t.health_port == 0 && c.health.enabled) {
    // The health endpoint on a local address is kept out of conntrack too.
    auto ep = resolve(c.health, c, kDefaultHealthPort);
    if (std::find(n.local_addresses.begin(), n.local_addresses.end(), ep.address) !=
        n.local_addresses.end()) {
      t.health_port = ep.port;
    }
  }
  fallback_notes = assign_fallbacks(c, t);
  return t;
}

}  // namespace localdns::config
