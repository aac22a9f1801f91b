#include <localdns/dns/name.hpp>
#include <localdns/server/zone_router.hpp>

namespace localdns::server {

ZoneRouter::ZoneRouter(const std::vector<config::UpstreamGroup>& groups) {
  for (std::size_t i = 0; i < groups.size(); ++i) {
    for (const auto& z : groups[i].zones) {
      if (auto wire = dns::name_from_text(z)) zones_.emplace(*wire, static_cast<int>(i));
    }
  }
}

int ZoneRouter::route(dns::Bytes qname) const {
  if (qname.empty() || qname.size() > dns::kMaxNameSize) return -1;
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
  return -1;
}

}  // namespace localdns::server
