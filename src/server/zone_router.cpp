#include <localdns/dns/name.hpp>
#include <localdns/server/zone_router.hpp>

namespace localdns::server {

ZoneRouter::ZoneRouter(const GroupZones& groups) {
  for (std::size_t i = 0; i < groups.size(); ++i) {
    for (const auto& z : groups[i]) {
      auto wire = dns::name_from_text(z);
      if (!wire) continue;
      Route r{static_cast<int>(i), static_cast<int>(labels_.size())};
      // The label is the zone's canonical text ("cluster.local.", "."),
      // however the configuration spelled it.
      if (zones_.emplace(*wire, r).second) labels_.push_back(dns::name_to_text(*wire));
    }
  }
}

ZoneRouter::Route ZoneRouter::route_zone(dns::Bytes qname) const {
  if (qname.empty() || qname.size() > dns::kMaxNameSize) return {};
  char lower[dns::kMaxNameSize];
  for (std::size_t i = 0; i < qname.size(); ++i)
    lower[i] = static_cast<char>(dns::lower(qname[i]));
  // Label boundaries from the left: the first match is the longest suffix.
  std::size_t pos = 0;
  while (pos < qname.size()) {
    auto it = zones_.find(std::string_view(lower + pos, qname.size() - pos));
    if (it != zones_.end()) return it->second;
    if (qname[pos] == 0) break;
    pos += 1 + std::size_t{qname[pos]};
  }
  return {};
}

}  // namespace localdns::server
