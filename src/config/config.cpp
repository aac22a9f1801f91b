#include <localdns/config/config.hpp>

namespace localdns::config {

Endpoint resolve(const HttpEndpoint& e, const Config& c, std::uint16_t default_port) {
  if (e.listen) return *e.listen;
  if (!c.node.local_addresses.empty()) return {c.node.local_addresses.front(), default_port};
  return {boost::asio::ip::make_address("127.0.0.1"), default_port};
}

const std::vector<Endpoint>& servers_of(const Config& c, const UpstreamGroup& g) {
  return g.servers_from_resolv_conf ? c.resolv_conf_servers : g.servers;
}

upstream::GroupSettings upstream_settings(const Config& c, const UpstreamGroup& g) {
  upstream::GroupSettings s = g;
  s.servers = servers_of(c, g);
  return s;
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
