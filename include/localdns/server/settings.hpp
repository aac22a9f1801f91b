// What the server module is told: where to listen, what one TCP client may
// cost, and which upstream group answers which zones. Plain values, built by
// config/ (config/module_settings.hpp) and handed out by app/; immutable once
// built, read by any worker thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include <localdns/util/endpoint.hpp>

namespace localdns::server {

// Limits for clients that use TCP (RFC 7766).
struct TcpClientLimits {
  // RFC 7766 6.2.3; measured from the last complete query or delivered answer.
  util::Duration idle_timeout{std::chrono::seconds(10)};
  unsigned max_connections = 1024;               // per process; past it, the idlest is closed
  unsigned max_connections_per_source = 64;      // per client address; past it, refused
  unsigned max_pipelined = 128;                  // unanswered queries per connection
  std::size_t max_queued_bytes = 64 * 1024;      // answers not yet written, per connection
  std::size_t max_queued_bytes_total = 4 << 20;  // the same, all connections of the process
  util::Duration write_timeout{std::chrono::seconds(5)};  // close when writes make no progress

  friend bool operator==(const TcpClientLimits&, const TcpClientLimits&) = default;
};

// The routing input: entry i lists the zones upstream group i answers, in
// presentation form ("cluster.local.", "." for the root).
using GroupZones = std::vector<std::vector<std::string>>;

struct ServerSettings {
  std::vector<util::Endpoint> listen;  // UDP and TCP on each
  TcpClientLimits tcp_clients;
  GroupZones routing;

  friend bool operator==(const ServerSettings&, const ServerSettings&) = default;
};

}  // namespace localdns::server
