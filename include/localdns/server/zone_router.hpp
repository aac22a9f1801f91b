// Maps a query name to the upstream group of its longest matching zone suffix.
// Immutable after construction; thread-safe for concurrent route() calls.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <localdns/config/config.hpp>
#include <localdns/dns/wire.hpp>

namespace localdns::server {

class ZoneRouter {
 public:
  explicit ZoneRouter(const std::vector<config::UpstreamGroup>& groups);

  // Group index for `qname` (wire form, any letter case), or -1 when no zone
  // (not even ".") covers it. Does not allocate.
  int route(dns::Bytes qname) const;

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int, Hash, std::equal_to<>> zones_;  // lowercased wire names
};

}  // namespace localdns::server
