// The validated configuration: plain values, no behaviour. Built by the YAML
// loader and the command-line flags, read by app/ to wire up the workers.
// Immutable once built; share it as std::shared_ptr<const Config>.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include <localdns/node/settings.hpp>
#include <localdns/server/settings.hpp>
#include <localdns/upstream/settings.hpp>
#include <localdns/util/endpoint.hpp>

namespace localdns::config {

using util::Duration;
using util::Endpoint;

using upstream::Policy;
using upstream::to_string;
using upstream::Transport;

// Long-lived pipelined connections to each server of a group, per worker thread.
using TcpPoolConfig = upstream::TcpPoolSettings;

// Per-group cache limits; unset fields take the global `cache` values.
struct GroupCacheConfig {
  std::optional<Duration> max_ttl;
  std::optional<Duration> denial_max_ttl;
  // RFC 8767: how long past expiry an answer may still be served when every
  // upstream fails; zero (the default) turns serve-stale off.
  Duration serve_stale{0};

  friend bool operator==(const GroupCacheConfig&, const GroupCacheConfig&) = default;
};

// Servers one group may list; the forwarder's failover order is built on
// the stack with this bound, so more is a configuration error.
using upstream::kMaxServersPerGroup;

// One `forward` entry: the upstream module's settings plus what only the
// file format has. `servers` is what the user wrote: empty when the group
// takes its servers from resolv.conf.
struct UpstreamGroup : upstream::GroupSettings {
  std::vector<std::string> zones;  // presentation form, lower case, trailing dot; "." for root
  bool servers_from_resolv_conf = false;
  GroupCacheConfig cache;

  friend bool operator==(const UpstreamGroup&, const UpstreamGroup&) = default;
};

struct CacheConfig {
  bool enabled = true;
  std::size_t max_entries = 100'000;
  std::size_t max_bytes = 64u << 20;
  Duration min_ttl{0};  // never raise a short TTL unless asked
  Duration max_ttl{std::chrono::hours(1)};
  // RFC 2308 5 suggests 1-3 hours; names in a cluster come and go faster.
  Duration denial_max_ttl{std::chrono::minutes(30)};
  unsigned prefetch_hits = 2;      // refresh entries asked this often...
  unsigned prefetch_percent = 10;  // ...once in this last part of their lifetime; 0 hits: off
  // Warm restarts: the cache is written to this file every persist_interval
  // (0: only at shutdown) and at shutdown, and read back at start. Empty: off.
  std::string persist_file;
  Duration persist_interval{std::chrono::seconds(60)};

  friend bool operator==(const CacheConfig&, const CacheConfig&) = default;
};

// Limits for clients that use TCP (RFC 7766): the server module's own type.
using TcpClientConfig = server::TcpClientLimits;

// The node module's own type; to_string() is node::to_string().
using RulesBackend = node::RulesBackendKind;
using node::to_string;

// An address range, "10.96.0.0/12" or "fd00:10:96::/112".
struct Cidr {
  boost::asio::ip::address base;  // host bits cleared
  unsigned prefix = 0;

  bool contains(const boost::asio::ip::address& a) const;
  std::string to_string() const;
  friend bool operator==(const Cidr&, const Cidr&) = default;
};
// Accepts "ADDR/LEN" (host bits may be set: they are cleared) or a bare address.
std::optional<Cidr> parse_cidr(std::string_view text);

// Which clients may ask, and how fast (`clients`). An empty allow-list lets
// every client ask; the rate limit is the server module's own type.
using RateLimitConfig = server::RateLimit;
struct ClientsConfig {
  std::vector<Cidr> allow;
  RateLimitConfig rate_limit;

  friend bool operator==(const ClientsConfig&, const ClientsConfig&) = default;
};

// Node setup: the local addresses on an interface of their own, and the
// NOTRACK rules that keep their DNS traffic out of conntrack. Nothing happens
// unless local_addresses is set.
// Each local address is added to `listen` on `port` unless listen already
// has it. The fallback inputs below exist only here: config/ resolves them
// into node::NodeSettings::targets.
struct NodeConfig : node::NodeOptions {
  // While no localdns socket exists, send traffic for the addresses in
  // fallback_for to these servers (a DNAT); empty with fallback_auto: the
  // servers of the group that routes ".". A target that cannot work (a local
  // address, loopback, inside service_cidr) is never used.
  bool fallback_auto = true;
  std::vector<Endpoint> fallback;
  // The local addresses that get the fallback DNAT. Unset: the link-local
  // ones (169.254.0.0/16, fe80::/10); a captured Service IP needs none, since
  // kube-proxy serves it while localdns is down.
  std::optional<std::vector<boost::asio::ip::address>> fallback_for;
  // The cluster's Service ranges: kube-proxy cannot translate a packet that
  // was already DNATed, so no fallback target may lie inside them.
  std::vector<Cidr> service_cidr;

  friend bool operator==(const NodeConfig&, const NodeConfig&) = default;
};

// An HTTP endpoint that is on by default. Unset `listen`: the first node
// local address (or 127.0.0.1) on `default_port`, never all interfaces.
struct HttpEndpoint {
  bool enabled = true;
  std::optional<Endpoint> listen;
  bool explicit_listen() const { return listen.has_value(); }

  friend bool operator==(const HttpEndpoint&, const HttpEndpoint&) = default;
};

// Search-path prefetch (`search_path`): the server module's settings, with
// host_search as written. Unless host_search is written, the node's search
// domains come from the search line of resolv_conf, read by finish_config()
// into Config::resolv_conf_search.
struct SearchPathConfig : server::SearchPathSettings {
  bool host_search_from_resolv_conf = true;

  friend bool operator==(const SearchPathConfig&, const SearchPathConfig&) = default;
};
inline constexpr std::size_t kMaxHostSearch = 32;  // kubelet's own limit on a pod's list

struct Config {
  std::vector<Endpoint> listen;
  unsigned threads = 0;  // 0: one per core
  std::string log_level = "info";
  TcpClientConfig tcp_clients;
  ClientsConfig clients;
  CacheConfig cache;
  std::vector<UpstreamGroup> forward;
  Duration shutdown_grace{std::chrono::seconds(2)};
  std::string resolv_conf = "/etc/resolv.conf";
  // Resolved, not written: the nameservers finish_config() read from
  // resolv_conf, for the groups with servers_from_resolv_conf. Empty until then.
  std::vector<Endpoint> resolv_conf_servers;
  // Resolved, not written: the search domains of resolv_conf, when
  // search_path is on and takes them from there (those under the cluster
  // domain left out). Empty until finish_config().
  std::vector<std::string> resolv_conf_search;
  SearchPathConfig search_path;
  NodeConfig node;
  HttpEndpoint metrics;  // Prometheus, default port 9253
  HttpEndpoint health;   // /health and /ready, default port 8080
  // `localdns ctl` talks to this Unix socket (mode 0600); empty: off.
  std::string control_socket = "/run/localdns.sock";
  std::string log_format = "text";  // or "json" (one object per line)
  unsigned query_log_sample = 0;    // log 1 in N answered queries; 0: off
  unsigned top_sample = 128;        // `ctl top` sketches see 1 in N queries; 0: off

  friend bool operator==(const Config&, const Config&) = default;
};

inline constexpr std::uint16_t kDefaultMetricsPort = 9253;
inline constexpr std::uint16_t kDefaultHealthPort = 8080;
// Where an endpoint listens: its own address, else the first node local
// address, else loopback.
Endpoint resolve(const HttpEndpoint& e, const Config& c, std::uint16_t default_port);

// The servers group `g` of `c` uses: those written, or for a group with
// servers_from_resolv_conf the nameservers read from resolv.conf.
const std::vector<Endpoint>& servers_of(const Config& c, const UpstreamGroup& g);
// The upstream module's settings for group `g` of `c`, its servers resolved.
upstream::GroupSettings upstream_settings(const Config& c, const UpstreamGroup& g);

// The built-in standalone default: 127.0.0.1:5353, "." forwarded to the
// nameservers of /etc/resolv.conf.
Config default_config();

// Port used when --listen or a listen entry gives none.
inline constexpr std::uint16_t kDefaultListenPort = 5353;

}  // namespace localdns::config
