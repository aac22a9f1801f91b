// Taking over from node-local-dns on a node that ran it. Its rules (12 per
// local address, each with a comment starting kNodeLocalDnsCommentPrefix, and
// no socket match: a leftover set keeps the kube-dns ClusterIP's traffic out
// of conntrack, away from kube-proxy, even when nothing listens) are found in
// iptables-legacy and iptables-nft, both families. Its interface is adopted by
// Netlink::ensure(). NodeSetup decides the order (see node_setup.hpp).
#pragma once

#include <chrono>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace localdns::node {

struct NodeLocalDnsRules {
  struct Place {
    std::string program;  // "ip6tables-nft"
    unsigned count = 0;
    std::string restore;  // the iptables-restore input that deletes them
  };
  unsigned count = 0;
  std::vector<boost::asio::ip::address> addresses;  // the local addresses they name
  std::vector<Place> where;                         // per program holding some
};

// The addresses a rule line names after -d or -s ("169.254.20.10/32"), once each.
std::vector<boost::asio::ip::address> rule_addresses(std::string_view line);

// node-local-dns's rules in iptables-<variant> ("legacy" or "nft"), IPv4 and
// IPv6. A missing program or a family the kernel lacks holds none; an error
// only when they cannot be read (permission).
std::expected<NodeLocalDnsRules, std::string> find_node_local_dns_rules(std::string_view variant);
// Deletes what find_node_local_dns_rules() found: one `iptables-restore
// --noflush` run per family, each table's deletions in one COMMIT. Fails
// (deleting nothing in that family) if one of them is gone meanwhile.
std::expected<void, std::string> remove_node_local_dns_rules(const NodeLocalDnsRules& found);

// What one apply() or sync() took over.
struct Takeover {
  bool interface = false;  // node-local-dns's unmarked interface, adopted and marked
  unsigned rules = 0;      // its rules, removed
  // How long both rule sets may have been installed at once: from the start
  // of the run that installed ours to the end of the one that removed theirs
  // (an upper bound). When theirs were deleted in the same iptables-restore
  // run as ours were inserted, no table ever held both, and this is that
  // run's duration (its tables are committed one after another).
  std::chrono::microseconds overlap{0};
  std::vector<std::string> details;  // one per backend, and the interface

  bool any() const { return interface || rules > 0; }
  // "took over node-local-dns's interface nodelocaldns and 24 rules (...)"
  std::string summary(const std::string& interface_name) const;
};

}  // namespace localdns::node
