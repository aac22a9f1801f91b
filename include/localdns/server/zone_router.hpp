// Maps a query name to the upstream group of its longest matching zone suffix.
// Immutable after construction; thread-safe for concurrent route() calls.
// A reload builds a new one from the previous one's labels, so that a zone
// keeps its metrics label index for the whole run.
#pragma once

#include <bitset>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <localdns/dns/wire.hpp>
#include <localdns/server/settings.hpp>

namespace localdns::server {

class ZoneRouter {
 public:
  // `groups[i]`: the zones of upstream group i (ServerSettings::routing).
  explicit ZoneRouter(const GroupZones& groups);
  // For a reload: the zones of `groups`, labelled as in `previous` (which
  // keeps every label it had, zones since removed included) and new zones
  // appended, up to `max_labels` labels in all; past that, new zones share
  // the label kOtherZones. Every zone index is below `max_labels` (>= 1).
  ZoneRouter(const GroupZones& groups, const ZoneRouter& previous, std::size_t max_labels);

  static constexpr std::string_view kOtherZones = "other";

  // Group index for `qname` (wire form, any letter case), or -1 when no zone
  // (not even ".") covers it. Does not allocate.
  int route(dns::Bytes qname) const { return route_zone(qname).group; }

  struct Route {
    int group = -1;
    int zone = -1;  // index into zone_labels(); -1 with group -1
  };
  Route route_zone(dns::Bytes qname) const;

  // Every configured zone, "cluster.local." style, in index order (metric labels).
  const std::vector<std::string>& zone_labels() const { return labels_; }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Route, Hash, std::equal_to<>> zones_;  // lowercased wire names
  // The wire lengths of the zones: a suffix of another length is not looked up.
  std::bitset<dns::kMaxNameSize + 1> lengths_;
  std::vector<std::string> labels_;
  void add(const GroupZones& groups, std::size_t max_labels);
};

}  // namespace localdns::server
