// node-local-dns's leftovers for the takeover tests: node-cache's exact rule
// set and interface, and localdns's node-local-dns layout for a namespace.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/ip/udp.hpp>
#include <catch2/catch.hpp>

#include <localdns/config/loader.hpp>

#include "netns.hpp"

namespace localdns::test {

inline const std::string kLinkLocal = "169.254.20.10";
inline const std::string kClusterIp = "10.96.0.10";
inline const std::string kCoreDns = "10.244.2.53";
inline const std::string kSkip = "NodeLocal DNS Cache: skip conntrack";
inline const std::string kAllow = "NodeLocal DNS Cache: allow DNS traffic";

// node-cache's rules for one -localip, in the order it ensures them
// (cmd/node-cache/app/cache_app.go, initIptables), each prepended with -I.
inline std::vector<std::string> node_cache_rules(const std::string& ip) {
  const std::string skip = " -m comment --comment \"" + kSkip + "\"";
  const std::string allow = " -m comment --comment \"" + kAllow + "\"";
  return {
      "-t raw -I PREROUTING -p tcp -d " + ip + " --dport 53 -j NOTRACK" + skip,
      "-t raw -I PREROUTING -p udp -d " + ip + " --dport 53 -j NOTRACK" + skip,
      "-t filter -I INPUT -p tcp -d " + ip + " --dport 53 -j ACCEPT" + allow,
      "-t filter -I INPUT -p udp -d " + ip + " --dport 53 -j ACCEPT" + allow,
      "-t raw -I OUTPUT -p tcp -s " + ip + " --sport 53 -j NOTRACK" + skip,
      "-t raw -I OUTPUT -p udp -s " + ip + " --sport 53 -j NOTRACK" + skip,
      "-t filter -I OUTPUT -p tcp -s " + ip + " --sport 53 -j ACCEPT" + allow,
      "-t filter -I OUTPUT -p udp -s " + ip + " --sport 53 -j ACCEPT" + allow,
      "-t raw -I OUTPUT -p tcp -d " + ip + " --dport 53 -j NOTRACK" + skip,
      "-t raw -I OUTPUT -p udp -d " + ip + " --dport 53 -j NOTRACK" + skip,
      "-t raw -I OUTPUT -p tcp -d " + ip + " --dport 8080 -j NOTRACK" + skip,
      "-t raw -I OUTPUT -p tcp -s " + ip + " --sport 8080 -j NOTRACK" + skip,
  };
}

// node-local-dns with `-localip IPS` (comma order) and `program` as its iptables.
inline void install_node_local_dns_rules(const std::string& program,
                                         const std::vector<std::string>& ips) {
  for (const auto& ip : ips)
    for (const auto& rule : node_cache_rules(ip))
      test::sh(program + " -w 5 " + rule);
}

// node-local-dns's interface as it leaves it: never set up, no alias, host
// routes (IPv6 ones tentative: added without NODAD).
inline void install_node_local_dns_interface(const std::vector<std::string>& ips) {
  test::sh("ip link add nodelocaldns type bridge");
  for (const auto& ip : ips)
    test::sh("ip addr add " + ip + (ip.find(':') == std::string::npos ? "/32" : "/128") +
             " dev nodelocaldns");
}

// Binds a UDP socket to [ip]:5353 in this namespace.
inline bool can_bind(const std::string& ip) {
  auto a = boost::asio::ip::make_address(ip);
  boost::asio::io_context io;
  boost::asio::ip::udp::socket s(io);
  boost::system::error_code ec;
  s.open(a.is_v4() ? boost::asio::ip::udp::v4() : boost::asio::ip::udp::v6(), ec);
  if (!ec) s.bind({a, 5353}, ec);
  return !ec;
}

inline std::string saves() {
  return test::sh(
      "iptables-legacy-save 2>/dev/null; iptables-nft-save 2>/dev/null; "
      "ip6tables-legacy-save 2>/dev/null; ip6tables-nft-save 2>/dev/null; true");
}

inline int node_local_dns_rule_count() {
  return test::count_lines_with(saves(), "NodeLocal DNS Cache:");
}

inline std::vector<std::string> chain_lines(const std::string& save_cmd, const std::string& chain) {
  std::vector<std::string> out;
  std::istringstream in(test::sh(save_cmd));
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("-A " + chain + " ")) out.push_back(line);
  return out;
}

// The node-local-dns layout (config/kubernetes.yaml) for a namespace: bridge
// links, CoreDNS at kCoreDns, a 1 s sync.
inline std::string layout_yaml(const std::string& backend, const std::vector<std::string>& ips) {
  std::string locals;
  for (const auto& ip : ips)
    locals += (locals.empty() ? "\"" : ", \"") + ip + "\"";
  const std::string first =
      ips.front().find(':') == std::string::npos ? ips.front() : "[" + ips.front() + "]";
  return "node:\n  local_addresses: [" + locals +
         "]\n"
         "  port: 53\n"
         "  interface: {setup: true, name: nodelocaldns, kind: bridge}\n"
         "  rules: {setup: true, backend: " +
         backend +
         ", fallback: off}\n"
         "  service_cidr: [10.96.0.0/12]\n"
         "  health_port: 8080\n"
         "  sync_interval: 1s\n"
         "metrics: \"" +
         first + ":9253\"\n" + "health: \"" + first +
         ":8080\"\n"
         "listen: []\n"
         "control_socket: off\n"
         "forward:\n"
         "  - zones: [cluster.local, in-addr.arpa, ip6.arpa]\n"
         "    servers: [\"" +
         kCoreDns +
         ":53\"]\n"
         "    transport: tcp\n"
         "  - zones: [\".\"]\n"
         "    servers: [\"" +
         kCoreDns + ":53\"]\n";
}

inline config::Config layout_config(const std::string& backend,
                                    const std::vector<std::string>& ips) {
  auto c = config::load_config_text(layout_yaml(backend, ips), "layout.yaml");
  if (!c) {
    for (const auto& e : c.error())
      UNSCOPED_INFO(e);
  }
  REQUIRE(c.has_value());
  return *c;
}

}  // namespace localdns::test
