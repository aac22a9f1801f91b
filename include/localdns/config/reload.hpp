// What a reload may change: the keys a running localdns applies from a new
// configuration, and, per upstream group, whether its pools survive and
// whether its cached answers must go. Pure functions over two validated
// configurations (the running one and the new one).
#pragma once

#include <vector>

#include <localdns/config/config.hpp>
#include <localdns/config/loader.hpp>

namespace localdns::config {

// One error per key the new configuration changes that a reload cannot
// apply ("threads cannot change on reload; restart"). Empty: the reload may
// go ahead. Reloadable: listen, node.{local_addresses, rules.fallback,
// rules.fallback_for, service_cidr} (and with them the rules' targets and
// their fallbacks from the "." servers; but not turning node setup on or off,
// nor moving the first local address while the metrics or health endpoint
// listens there by default), forward[].{servers, transport, policy, timeout,
// attempts, max_in_flight, fail_threshold, probe_interval, tcp, cache} (not
// zones), resolv_conf, log_level, cache.{max_entries, max_bytes, min_ttl,
// max_ttl, denial_max_ttl}, clients (every key), query_log_sample,
// shutdown_grace.
Errors reload_rejections(const Config& running, const Config& next);

// Per group, by index (both configurations have the same groups once
// reload_rejections() is empty).
struct ReloadPlan {
  // The group's upstream settings are unchanged: its GroupState (server
  // health, counters) and every worker's forwarder and TCP pools are kept.
  // Any difference (a timeout too) replaces them.
  std::vector<bool> keep_group;
  // The group's servers or transport changed: its zones' cached answers came
  // from the old upstream and are dropped.
  std::vector<bool> drop_cached;
  // Listen endpoints (UDP and TCP each): new ones get sockets on every
  // worker, removed ones are closed once their answers are written, kept
  // ones keep their sockets untouched. In the order of the configurations.
  std::vector<Endpoint> listen_added;
  std::vector<Endpoint> listen_removed;
  std::vector<Endpoint> listen_kept;
  // config::node_settings differs: node setup is updated (local addresses,
  // rule targets, fallbacks).
  bool node_changed = false;
};
ReloadPlan plan_reload(const Config& running, const Config& next);

}  // namespace localdns::config
