#include <algorithm>
#include <limits>

#include <localdns/dns/name.hpp>
#include <localdns/server/zone_router.hpp>

namespace localdns::server {

ZoneRouter::ZoneRouter(const GroupZones& groups) {
  add(groups, std::numeric_limits<std::size_t>::max());
}

ZoneRouter::ZoneRouter(const GroupZones& groups, const ZoneRouter& previous, std::size_t max_labels)
    : labels_(previous.labels_) {
  add(groups, std::max<std::size_t>(max_labels, 1));
}

void ZoneRouter::add(const GroupZones& groups, std::size_t max_labels) {
  auto label_of = [&](std::string text) {
    auto at = std::find(labels_.begin(), labels_.end(), text);
    if (at != labels_.end()) return static_cast<int>(at - labels_.begin());
    // Full but for one: the rest share kOtherZones, in the last place.
    if (labels_.size() + 1 >= max_labels) text = std::string(kOtherZones);
    at = std::find(labels_.begin(), labels_.end(), text);
    if (at != labels_.end()) return static_cast<int>(at - labels_.begin());
    if (labels_.size() >= max_labels) return static_cast<int>(max_labels - 1);
    labels_.push_back(std::move(text));
    return static_cast<int>(labels_.size() - 1);
  };
  for (std::size_t i = 0; i < groups.size(); ++i) {
    for (const auto& z : groups[i]) {
      auto wire = dns::name_from_text(z);
      if (!wire || zones_.contains(*wire)) continue;
      // The label is the zone's canonical text ("cluster.local.", "."),
      // however the configuration spelled it.
      zones_.emplace(*wire, Route{static_cast<int>(i), label_of(dns::name_to_text(*wire))});
      if (wire->size() < lengths_.size()) lengths_.set(wire->size());
    }
  }
}

ZoneRouter::Route ZoneRouter::route_zone(dns::Bytes qname) const {
  if (qname.empty() || qname.size() > dns::kMaxNameSize) return {};
  char lower[dns::kMaxNameSize];
  dns::lowercase_name(qname, reinterpret_cast<std::uint8_t*>(lower));
  // Label boundaries from the left: the first match is the longest suffix.
  // Only suffixes as long as some zone are hashed and looked up.
  std::size_t pos = 0;
  while (pos < qname.size()) {
    if (lengths_.test(qname.size() - pos)) {
      auto it = zones_.find(std::string_view(lower + pos, qname.size() - pos));
      if (it != zones_.end()) return it->second;
    }
    if (qname[pos] == 0) break;
    pos += 1 + std::size_t{qname[pos]};
  }
  return {};
}

}  // namespace localdns::server
