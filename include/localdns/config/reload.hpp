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
// listens there by default), forward (groups added, removed, reordered; each
// group's zones, servers, transport, policy, timeout, attempts,
// max_in_flight, fail_threshold, probe_interval, tcp, cache), resolv_conf,
// log_level, cache.{max_entries, max_bytes, min_ttl, max_ttl,
// denial_max_ttl}, clients (every key), query_log_sample, shutdown_grace.
Errors reload_rejections(const Config& running, const Config& next);

// How the groups of `next` follow those of `running`. Groups are matched by
// what they forward to, not by their index or their zones:
//  - a next group whose upstream settings (config::upstream_settings: the
//    effective servers, transport, policy, timeouts, attempts, budgets,
//    probes, TCP pool) all equal a running group's keeps that group whole:
//    its GroupState (server health, counters) and every worker's forwarder
//    and TCP pools, wherever its index moved. The running group at the same
//    index is taken first, then the first unclaimed equal one; a running
//    group is kept by at most one next group.
//  - an answer cached from running group j stays cached for a name that
//    next routes to group i exactly when i and j forward to the same
//    upstream (same effective servers, in order, and transport): it came
//    from that upstream either way. Every other cached answer goes.
struct ReloadPlan {
  // Per next group: the running group it keeps whole, or -1 (a new one).
  std::vector<int> kept_from;
  // The upstream (servers and transport) each group forwards to, as a small
  // number: equal numbers, same upstream; indexed by group.
  std::vector<int> running_upstream;
  std::vector<int> next_upstream;

  // Answers cached from running group `j` stay valid for next group `i`.
  // False when either is -1 (no group).
  bool same_upstream(int j, int i) const {
    return j >= 0 && i >= 0 && static_cast<std::size_t>(j) < running_upstream.size() &&
           static_cast<std::size_t>(i) < next_upstream.size() &&
           running_upstream[static_cast<std::size_t>(j)] ==
               next_upstream[static_cast<std::size_t>(i)];
  }
  // Some running group's answers may go (one lost its upstream).
  bool drops_any() const;
  std::size_t kept() const;
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
