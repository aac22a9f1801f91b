// Cross-field checks of a Config, shared by the YAML loader and the flags,
// and the small rules both apply (log level names, local addresses in listen).
#include <algorithm>
#include <set>
#include <string>

#include <localdns/config/loader.hpp>

#include "loader_internal.hpp"

namespace localdns::config {

bool is_log_level(std::string_view name) {
  static constexpr std::string_view kLevels[] = {"trace", "debug",    "info", "warn",
                                                 "error", "critical", "off"};
  return std::find(std::begin(kLevels), std::end(kLevels), name) != std::end(kLevels);
}

void add_local_addresses_to_listen(Config& c) {
  for (const auto& a : c.node.local_addresses) {
    bool listed = std::any_of(c.listen.begin(), c.listen.end(),
                              [&](const Endpoint& e) { return e.address == a; });
    if (!listed) c.listen.push_back({a, c.node.port});
  }
}

namespace {

void validate_node(const NodeConfig& n, Errors& errors) {
  for (std::size_t i = 0; i < n.local_addresses.size(); ++i) {
    const auto& a = n.local_addresses[i];
    if (a.is_unspecified() || a.is_multicast() || a.is_loopback()) {
      errors.push_back("node.local_addresses[" + std::to_string(i) + "]: " + a.to_string() +
                       " cannot be put on an interface (wildcard, multicast or loopback)");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (n.local_addresses[j] == a) {
        errors.push_back("node.local_addresses[" + std::to_string(i) + "]: " + a.to_string() +
                         " is listed twice");
      }
    }
  }
  auto is_local = [&](const boost::asio::ip::address& a) {
    return std::find(n.local_addresses.begin(), n.local_addresses.end(), a) !=
           n.local_addresses.end();
  };
  if (n.fallback_for) {
    for (std::size_t i = 0; i < n.fallback_for->size(); ++i) {
      const auto& a = (*n.fallback_for)[i];
      if (!is_local(a)) {
        errors.push_back("node.rules.fallback_for[" + std::to_string(i) + "]: " + a.to_string() +
                         " is not one of node.local_addresses");
      }
    }
  }
  // A fallback target that cannot work would strand the traffic it catches.
  for (std::size_t i = 0; i < n.fallback.size(); ++i) {
    const auto& f = n.fallback[i];
    std::string key = "node.rules.fallback[" + std::to_string(i) + "]: " + f.to_string();
    if (is_local(f.address)) {
      errors.push_back(key + " is a local address: nothing listens there while localdns is down");
    } else if (f.address.is_loopback() || f.address.is_unspecified()) {
      errors.push_back(key + " is loopback or unspecified: a DNAT cannot reach it");
    }
    for (const auto& cidr : n.service_cidr) {
      if (cidr.contains(f.address)) {
        errors.push_back(key + " is inside node.service_cidr " + cidr.to_string() +
                         ": kube-proxy does not translate a packet that was already DNATed; "
                         "list CoreDNS endpoints instead");
      }
    }
  }
  const auto& name = n.interface_name;
  bool bad_name = name.empty() || name.size() > 15 || name == "." || name == ".." ||
                  name.find_first_of("/: \t\n") != std::string::npos;
  if (bad_name) {
    errors.push_back("node.interface.name: '" + name +
                     "' is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)");
  }
  if (n.interface_kind.empty() ||
      n.interface_kind.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") !=
          std::string::npos) {
    errors.push_back("node.interface.kind: '" + n.interface_kind +
                     "' is not a link kind (dummy, bridge, ...)");
  }
}

}  // namespace

Errors validate(const Config& c) {
  Errors errors;
  validate_node(c.node, errors);
  if (c.listen.empty()) errors.push_back("listen: at least one address is required");
  for (std::size_t i = 0; i < c.listen.size(); ++i) {
    if (c.listen[i].address.is_unspecified()) {
      // A wildcard socket would answer from whatever source address the kernel
      // picks, which clients that asked another local address drop.
      errors.push_back("listen[" + std::to_string(i) + "]: " + c.listen[i].to_string() +
                       " is a wildcard address; list each local address to serve on");
    }
  }
  for (std::size_t i = 0; i < c.listen.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (c.listen[i] == c.listen[j]) {
        errors.push_back("listen[" + std::to_string(i) + "]: " + c.listen[i].to_string() +
                         " is listed twice");
      }
    }
  }
  if (c.forward.empty()) errors.push_back("forward: at least one upstream group is required");
  std::set<std::string> seen;
  for (std::size_t i = 0; i < c.forward.size(); ++i) {
    const auto& g = c.forward[i];
    std::string path = "forward[" + std::to_string(i) + "]";
    for (const auto& z : g.zones) {
      if (!seen.insert(z).second) {
        errors.push_back(path + ".zones: zone '" + z + "' is routed by more than one group");
      }
    }
    if (g.servers.size() > kMaxServersPerGroup) {
      errors.push_back(path + ".servers: " + too_many_servers(g.servers.size()));
    }
    if (!g.servers_from_resolv_conf) {
      for (std::size_t s = 0; s < g.servers.size(); ++s) {
        for (const auto& l : c.listen) {
          if (g.servers[s] == l) {
            errors.push_back(path + ".servers[" + std::to_string(s) + "]: " + l.to_string() +
                             " is one of our own listen addresses (a loop)");
          }
        }
      }
    }
  }
  return errors;
}

}  // namespace localdns::config
