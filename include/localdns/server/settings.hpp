// What the server module is told: where to listen, what one TCP client may
// cost, which clients may ask and how fast, and which upstream group answers
// which zones. Plain values, built by
// config/ (config/module_settings.hpp) and handed out by app/; immutable once
// built, read by any worker thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

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

// A client network of the allow-list: `base` with its host bits cleared.
struct ClientNetwork {
  boost::asio::ip::address base;
  unsigned prefix = 0;

  friend bool operator==(const ClientNetwork&, const ClientNetwork&) = default;
};

enum class RateAction : std::uint8_t { Refuse, Drop };

// Per-client query rate limit (a token bucket per client address, kept per
// worker). qps 0: off.
struct RateLimit {
  unsigned qps = 0;
  unsigned burst = 0;  // bucket size; 0: 2 x qps
  RateAction action = RateAction::Refuse;
  bool exempt_cache_hits = true;      // only queries that would go upstream count
  bool exempt_node_addresses = true;  // the node's own addresses, loopback included
  std::size_t table_size = 4096;      // clients tracked per worker (LRU past it)
  unsigned ipv6_prefix = 64;          // IPv6 clients share a bucket per prefix

  unsigned bucket() const { return burst != 0 ? burst : 2 * qps; }
  friend bool operator==(const RateLimit&, const RateLimit&) = default;
};

// Which clients may ask (empty allow: every client) and how fast.
struct ClientLimits {
  std::vector<ClientNetwork> allow;
  RateLimit rate_limit;
  // Resolved, not written: node.local_addresses, exempt from the rate limit
  // with exempt_node_addresses (besides the interface addresses found at start).
  std::vector<boost::asio::ip::address> node_addresses;

  bool any() const { return !allow.empty() || rate_limit.qps != 0; }
  friend bool operator==(const ClientLimits&, const ClientLimits&) = default;
};

// Search-path prefetch (README.md, "Search path"): a query shaped like the
// first search expansion of a pod's resolver, N.<ns>.svc.<cluster_domain>,
// tells the rest of that pod's walk.
enum class SearchPathMode : std::uint8_t {
  Off,
  Warm,   // resolve the following expansions ahead of the pod; answers unchanged
  Cname,  // answer the first expansion with a CNAME to the name that exists
};

struct SearchPathSettings {
  SearchPathMode mode = SearchPathMode::Off;
  std::string cluster_domain = "cluster.local.";  // presentation form, lower case, trailing dot
  unsigned ndots = 5;                             // the pods' resolv.conf option
  // The node's search domains that kubelet appends to the pods' lists, in
  // order (presentation form, trailing dot). Resolved: search_path.host_search,
  // else the search line of resolv_conf.
  std::vector<std::string> host_search;
  unsigned max_qps = 1000;           // speculative queries per second, all workers together
  unsigned max_qps_per_client = 50;  // the same per client address, on each worker
  // cname: the longest F's round is held for the walk, from F's miss; past
  // it F is answered as it is (when F's own answer is in, at once).
  util::Duration max_hold{std::chrono::seconds(1)};

  bool on() const { return mode != SearchPathMode::Off; }
  friend bool operator==(const SearchPathSettings&, const SearchPathSettings&) = default;
};

// The routing input: entry i lists the zones upstream group i answers, in
// presentation form ("cluster.local.", "." for the root).
using GroupZones = std::vector<std::vector<std::string>>;

struct ServerSettings {
  std::vector<util::Endpoint> listen;  // UDP and TCP on each
  TcpClientLimits tcp_clients;
  ClientLimits clients;
  GroupZones routing;
  SearchPathSettings search_path;

  friend bool operator==(const ServerSettings&, const ServerSettings&) = default;
};

}  // namespace localdns::server
