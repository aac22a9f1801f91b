#include <localdns/config/config.hpp>

namespace localdns::config {

std::string_view to_string(Transport t) {
  switch (t) {
    case Transport::Tcp:
      return "tcp";
    case Transport::Udp:
      return "udp";
    case Transport::PreferUdp:
      return "prefer_udp";
  }
  return "?";
}

std::string_view to_string(Policy p) {
  switch (p) {
    case Policy::Sequential:
      return "sequential";
    case Policy::Random:
      return "random";
    case Policy::RoundRobin:
      return "round_robin";
  }
  return "?";
}

Endpoint resolve(const HttpEndpoint& e, const Config& c, std::uint16_t default_port) {
  if (e.listen) return *e.listen;
  if (!c.node.local_addresses.empty()) return {c.node.local_addresses.front(), default_port};
  return {boost::asio::ip::make_address("127.0.0.1"), default_port};
}

Config default_config() {
  Config c;
  c.listen.push_back({boost::asio::ip::make_address("127.0.0.1"), kDefaultListenPort});
  UpstreamGroup root;
  root.zones = {"."};
  root.servers_from_resolv_conf = true;
  root.transport = Transport::PreferUdp;
  c.forward.push_back(std::move(root));
  return c;
}

}  // namespace localdns::config
