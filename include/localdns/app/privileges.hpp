// Least privilege once localdns is set up: which Linux capabilities a run
// still needs after node setup and binding, and dropping every other one from
// the effective, permitted and bounding sets (libcap-ng), so that neither
// localdns nor a program it runs later (iptables-restore, nft) can use them.
//
// A program that uid 0 executes gets the bounding set as its permitted set:
// the kept capabilities reach the rules helpers, nothing else does. A non-root
// run (systemd's User= with AmbientCapabilities=) passes capabilities on only
// through the ambient set, so there the kept ones stay inheritable and ambient;
// for root both sets are cleared.
//
// Capabilities belong to a thread: drop_capabilities() must run while the
// process has one thread (it says so in the log otherwise). Main thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <localdns/config/config.hpp>

namespace localdns::node {
class NodeSetup;
}

namespace localdns::app {

// Capabilities as a bit mask, bit N for capability N (as in /proc/PID/status).
using CapMask = std::uint64_t;

// What a running localdns does after start that needs a capability.
struct PrivilegeNeeds {
  // The node sync loop repairs the interface and rules, teardown removes them,
  // and the node's listeners may need port 53 again: CAP_NET_ADMIN and
  // CAP_NET_BIND_SERVICE.
  bool node_setup = false;
  // iptables-legacy's raw socket (its rules, or node-local-dns's rules the
  // sync loop looks for there): CAP_NET_RAW.
  bool iptables_legacy = false;
  // A configured port below 1024 (DNS, metrics, health): CAP_NET_BIND_SERVICE.
  bool low_port = false;
};

// The capabilities `needs` call for; 0 for a standalone run on high ports.
CapMask needed_capabilities(const PrivilegeNeeds& needs);

// True when `c` names a port below 1024: a listen address, the node local
// addresses' port (with node setup), the metrics or the health endpoint.
bool has_low_port(const config::Config& c);

// The needs of a run of `c` with node setup `node` (nullptr when off).
PrivilegeNeeds privilege_needs(const config::Config& c, const node::NodeSetup* node);

// The five capability sets of a thread or process.
struct CapabilitySets {
  CapMask inheritable = 0;
  CapMask permitted = 0;
  CapMask effective = 0;
  CapMask bounding = 0;
  CapMask ambient = 0;

  friend bool operator==(const CapabilitySets&, const CapabilitySets&) = default;
};

// The Cap* lines of a /proc/PID/status text; nullopt when one is missing or
// not hexadecimal.
std::optional<CapabilitySets> parse_capability_sets(std::string_view status);

// "net_admin, net_bind_service", or "none".
std::string capability_names(CapMask caps);

// Keeps only privilege_needs(c, node) of what the process holds and logs one
// line with what remains (and why more remains, e.g. no CAP_SETPCAP to shrink
// the bounding set). Never fails the start: what cannot be dropped stays.
void drop_capabilities(const config::Config& c, const node::NodeSetup* node);

}  // namespace localdns::app
