// The `search_path` section: the search-path prefetch's mode, the pods'
// cluster domain and ndots, the node's search domains, the caps and cname's
// longest hold.
#include <localdns/dns/name.hpp>

#include "loader_internal.hpp"

namespace localdns::config {

namespace {

// A domain name other than the root, in presentation form (lower case,
// trailing dot); nullopt after recording the error.
std::optional<std::string> domain(Reader& r, const YAML::Node& n, const std::string& path) {
  auto s = r.scalar(n, path);
  if (!s) return std::nullopt;
  auto wire = dns::name_from_text(*s);
  if (!wire || wire->size() <= 1) {
    r.error(n, path, "expected a domain name other than the root, got '" + *s + "'");
    return std::nullopt;
  }
  return dns::name_to_text(*wire);
}

}  // namespace

void read_search_path(Reader& r, const YAML::Node& n, SearchPathConfig& c) {
  const std::string path = "search_path";
  if (!r.expect_map(n, path,
                    {"mode", "cluster_domain", "ndots", "host_search", "max_qps",
                     "max_qps_per_client", "max_hold"})) {
    return;
  }
  if (n["mode"]) {
    static constexpr std::pair<std::string_view, server::SearchPathMode> kModes[] = {
        {"off", server::SearchPathMode::Off},
        {"warm", server::SearchPathMode::Warm},
        {"cname", server::SearchPathMode::Cname}};
    r.choice(n["mode"], path + ".mode", c.mode, kModes);
  }
  if (n["cluster_domain"]) {
    if (auto d = domain(r, n["cluster_domain"], path + ".cluster_domain")) c.cluster_domain = *d;
  }
  if (n["ndots"]) r.integer(n["ndots"], path + ".ndots", c.ndots, 1u, 15u);
  if (auto h = n["host_search"]) {
    c.host_search_from_resolv_conf = false;
    c.host_search.clear();
    if (!(h.IsSequence() && h.size() == 0)) {
      auto items = r.list(h, path + ".host_search");
      if (items.size() > kMaxHostSearch) {
        r.error(
            h, path + ".host_search",
            std::to_string(items.size()) + " domains; at most " + std::to_string(kMaxHostSearch));
      }
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (auto d = domain(r, items[i], Reader::index(path + ".host_search", i))) {
          c.host_search.push_back(*d);
        }
      }
    }
  }
  if (n["max_qps"]) r.integer(n["max_qps"], path + ".max_qps", c.max_qps, 1u, 1'000'000u);
  if (n["max_qps_per_client"]) {
    r.integer(n["max_qps_per_client"], path + ".max_qps_per_client", c.max_qps_per_client, 1u,
              1'000'000u);
  }
  if (n["max_hold"]) {
    using namespace std::chrono_literals;
    r.duration(n["max_hold"], path + ".max_hold", c.max_hold, 10ms, 10s);
  }
}

}  // namespace localdns::config
