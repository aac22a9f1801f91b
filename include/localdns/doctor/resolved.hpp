// `localdns doctor` on a host with systemd-resolved: whether its stub
// listener (127.0.0.53:53) answers the host's lookups instead of localdns,
// whether resolved forwards to localdns, and a loop between the two. Added to
// check 4 (resolver configuration). Pure functions over captured text, and
// the one function that reads them from this host.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <localdns/doctor/checks.hpp>

namespace localdns::doctor {

inline constexpr const char* kResolvedStub = "127.0.0.53";
inline constexpr const char* kResolvedUpstreamFile = "/run/systemd/resolve/resolv.conf";

// True when /proc/net/udp text (the kernel's hexadecimal table) shows a
// socket bound to the IPv4 address `ipv4` and `port`.
bool udp_bound(std::string_view proc_net_udp, const std::string& ipv4, std::uint16_t port);

struct ResolvedView {
  bool stub_listening = false;                  // 127.0.0.53:53 in /proc/net/udp
  std::optional<std::string> resolv_conf;       // /etc/resolv.conf
  std::string resolv_conf_link;                 // its symlink target; empty for a file
  std::optional<std::string> resolved_servers;  // /run/systemd/resolve/resolv.conf
};

// Reads the above from this host (nothing when a file is missing).
ResolvedView probe_resolved();

// Adds evidence, remedies and facts (`resolved_stub`, `resolved_stub_used`,
// `resolved_to_localdns`) to check 4. `local_addresses`: what localdns serves
// on this host (empty when it is not deployed); `upstreams`: its servers.
void add_resolved(Check& resolver, const ResolvedView& v,
                  const std::vector<std::string>& local_addresses,
                  const std::vector<std::string>& upstreams);

}  // namespace localdns::doctor
