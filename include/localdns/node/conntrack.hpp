// Deletes conntrack entries for DNS flows to the local addresses, over
// netfilter netlink (libnl-nf). Entries created before the NOTRACK rules
// existed (pods that asked the kube-dns ClusterIP before localdns started)
// would otherwise keep their old DNAT until they time out.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <vector>

#include <localdns/node/rules.hpp>

namespace localdns::node {

struct ConntrackFlush {
  unsigned matched = 0;
  unsigned deleted = 0;  // entries that timed out meanwhile are matched but not deleted
};

// Removes every UDP and TCP entry whose original destination (or source) is
// one of the local addresses and ports. Works in the calling thread's network
// namespace.
std::expected<ConntrackFlush, std::string> delete_conntrack_entries(const RuleTargets& t);

}  // namespace localdns::node
