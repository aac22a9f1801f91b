#include <fstream>
#include <sstream>

#include <localdns/config/duration.hpp>
#include <localdns/config/resolv_conf.hpp>

namespace localdns::config {

std::vector<Endpoint> parse_resolv_conf(std::string_view text) {
  std::vector<Endpoint> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key, value;
    if (!(words >> key >> value)) continue;
    if (key != "nameserver") continue;
    if (auto ep = parse_endpoint(value, 53)) out.push_back(*ep);
  }
  return out;
}

std::expected<std::vector<Endpoint>, std::string> read_resolv_conf(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::unexpected("cannot read " + path);
  std::stringstream buf;
  buf << f.rdbuf();
  auto servers = parse_resolv_conf(buf.str());
  if (servers.empty()) {
    return std::unexpected("no usable nameserver line in " + path +
                           "; list upstream servers explicitly (forward[].servers or --forward)");
  }
  return servers;
}

}  // namespace localdns::config
