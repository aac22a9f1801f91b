#include <algorithm>
#include <fstream>
#include <sstream>

#include <localdns/config/duration.hpp>
#include <localdns/config/resolv_conf.hpp>
#include <localdns/dns/name.hpp>

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

std::vector<std::string> parse_resolv_conf_search(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key;
    if (!(words >> key) || (key != "search" && key != "domain")) continue;
    out.clear();  // the last search or domain line wins
    for (std::string w; words >> w;) {
      if (w.starts_with('#') || w.starts_with(';')) break;
      auto wire = dns::name_from_text(w);
      if (!wire || wire->size() <= 1) continue;
      auto name = dns::name_to_text(*wire);
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(std::move(name));
    }
  }
  return out;
}

Errors fill_resolv_conf_search(Config& c) {
  c.resolv_conf_search.clear();
  if (!c.search_path.on() || !c.search_path.host_search_from_resolv_conf) return {};
  std::ifstream f(c.resolv_conf);
  if (!f) {
    return {"search_path.host_search: cannot read " + c.resolv_conf +
            " for the node's search domains; list them (or [] for none) in "
            "search_path.host_search"};
  }
  std::stringstream buf;
  buf << f.rdbuf();
  const std::string& cd = c.search_path.cluster_domain;
  for (auto& d : parse_resolv_conf_search(buf.str())) {
    const bool under = d == cd || (d.size() > cd.size() && d.ends_with("." + cd));
    if (!under) c.resolv_conf_search.push_back(std::move(d));
  }
  if (c.resolv_conf_search.size() > kMaxHostSearch) c.resolv_conf_search.resize(kMaxHostSearch);
  return {};
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
