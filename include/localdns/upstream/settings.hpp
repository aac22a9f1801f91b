// What the upstream module needs to know about one group of servers: the
// servers to use (already resolved: a group configured as "resolv.conf" gets
// the nameservers read from that file) and how to talk to them. config/
// builds these from the file format; app/ hands them to GroupState.
//
// Plain values, no behaviour. Immutable once a GroupState holds them, and
// then read by every worker thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include <localdns/util/endpoint.hpp>

namespace localdns::upstream {

enum class Transport : std::uint8_t { Tcp, Udp, PreferUdp };
enum class Policy : std::uint8_t { Sequential, Random, RoundRobin };

std::string_view to_string(Transport t);  // "tcp", "udp", "prefer_udp"
std::string_view to_string(Policy p);     // "sequential", "random", "round_robin"

// Servers one group may have: selection keeps the servers tried for a query
// in a 64-bit mask.
inline constexpr std::size_t kMaxServersPerGroup = 64;

// Long-lived pipelined connections to each server of a group, per worker thread.
struct TcpPoolSettings {
  unsigned connections = 2;  // per server and worker thread
  // Retiring connections lets new CoreDNS replicas behind a ClusterIP get
  // their share of the load; 0 disables the limit.
  util::Duration max_age{std::chrono::seconds(60)};
  std::uint32_t max_queries = 10000;
  util::Duration idle_timeout{std::chrono::seconds(30)};

  friend bool operator==(const TcpPoolSettings&, const TcpPoolSettings&) = default;
};

struct GroupSettings {
  std::vector<util::Endpoint> servers;  // at most kMaxServersPerGroup
  Transport transport = Transport::PreferUdp;
  Policy policy = Policy::Sequential;
  // Per attempt. Defaults give SERVFAIL after at most 3 s, well before
  // glibc's 5 s resolver timeout.
  util::Duration timeout{1500};
  unsigned attempts = 2;
  unsigned max_in_flight = 4096;  // per group across all threads; past it, REFUSED
  unsigned fail_threshold = 3;    // consecutive failures before a server is marked down
  util::Duration probe_interval{std::chrono::seconds(1)};
  TcpPoolSettings tcp;

  friend bool operator==(const GroupSettings&, const GroupSettings&) = default;
};

}  // namespace localdns::upstream
