// The `clients` section: the allow-list of client networks and the
// per-client rate limit.
#include "loader_internal.hpp"

namespace localdns::config {

namespace {

void read_rate_limit(Reader& r, const YAML::Node& n, RateLimitConfig& c) {
  const std::string path = "clients.rate_limit";
  if (!r.expect_map(n, path,
                    {"qps", "burst", "action", "exempt_cache_hits", "exempt_node_addresses",
                     "table_size", "ipv6_prefix"})) {
    return;
  }
  if (n["qps"]) r.integer(n["qps"], path + ".qps", c.qps, 0u, 1'000'000u);
  if (n["burst"]) r.integer(n["burst"], path + ".burst", c.burst, 0u, 10'000'000u);
  if (n["action"]) {
    static constexpr std::pair<std::string_view, server::RateAction> kActions[] = {
        {"refuse", server::RateAction::Refuse}, {"drop", server::RateAction::Drop}};
    r.choice(n["action"], path + ".action", c.action, kActions);
  }
  if (n["exempt_cache_hits"]) {
    r.boolean(n["exempt_cache_hits"], path + ".exempt_cache_hits", c.exempt_cache_hits);
  }
  if (n["exempt_node_addresses"]) {
    r.boolean(n["exempt_node_addresses"], path + ".exempt_node_addresses", c.exempt_node_addresses);
  }
  if (n["table_size"]) {
    r.integer(n["table_size"], path + ".table_size", c.table_size, std::size_t{1},
              std::size_t{1} << 20);
  }
  if (n["ipv6_prefix"]) r.integer(n["ipv6_prefix"], path + ".ipv6_prefix", c.ipv6_prefix, 8u, 128u);
}

}  // namespace

void read_clients(Reader& r, const YAML::Node& n, ClientsConfig& c) {
  if (!r.expect_map(n, "clients", {"allow", "rate_limit"})) return;
  if (auto a = n["allow"]) {
    c.allow.clear();
    if (!(a.IsSequence() && a.size() == 0)) {
      auto items = r.list(a, "clients.allow");
      for (std::size_t i = 0; i < items.size(); ++i) {
        auto path = Reader::index("clients.allow", i);
        auto s = r.scalar(items[i], path);
        if (!s) continue;
        if (auto cidr = parse_cidr(*s)) {
          c.allow.push_back(*cidr);
        } else {
          r.error(items[i], path,
                  "expected an address or a network like 10.0.0.0/8 or fd00::/8, got '" + *s + "'");
        }
      }
    }
  }
  if (n["rate_limit"]) read_rate_limit(r, n["rate_limit"], c.rate_limit);
}

}  // namespace localdns::config
