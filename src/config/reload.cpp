#include <algorithm>

#include <localdns/config/module_settings.hpp>
#include <localdns/config/reload.hpp>

namespace localdns::config {

namespace {

std::string restart(const std::string& key) {
  return key + " cannot change on reload; restart localdns to apply it";
}

// `next` with every reloadable key taken from `running`: equal to `running`
// exactly when nothing but reloadable keys changed.
Config without_reloadable(const Config& running, Config next) {
  next.log_level = running.log_level;
  next.query_log_sample = running.query_log_sample;
  next.shutdown_grace = running.shutdown_grace;
  next.resolv_conf = running.resolv_conf;
  next.resolv_conf_servers = running.resolv_conf_servers;
  next.cache.max_entries = running.cache.max_entries;
  next.cache.max_bytes = running.cache.max_bytes;
  next.cache.min_ttl = running.cache.min_ttl;
  next.cache.max_ttl = running.cache.max_ttl;
  next.cache.denial_max_ttl = running.cache.denial_max_ttl;
  next.forward = running.forward;
  return next;
}

}  // namespace

Errors reload_rejections(const Config& running, const Config& next) {
  Errors out;
  auto key = [&](bool changed, const std::string& name) {
    if (changed) out.push_back(restart(name));
  };
  key(running.listen != next.listen, "listen");
  key(running.threads != next.threads, "threads");
  key(running.log_format != next.log_format, "log_format");
  key(running.top_sample != next.top_sample, "top_sample");
  key(running.tcp_clients != next.tcp_clients, "tcp_clients");
  key(running.cache.enabled != next.cache.enabled, "cache.enabled");
  key(running.cache.prefetch_hits != next.cache.prefetch_hits, "cache.prefetch_hits");
  key(running.cache.prefetch_percent != next.cache.prefetch_percent, "cache.prefetch_percent");
  key(running.metrics != next.metrics, "metrics");
  key(running.health != next.health, "health");
  key(running.control_socket != next.control_socket, "control_socket");
  const auto& rn = running.node;
  const auto& nn = next.node;
  key(rn.local_addresses != nn.local_addresses, "node.local_addresses");
  key(static_cast<const node::NodeOptions&>(rn) != static_cast<const node::NodeOptions&>(nn) &&
          rn.local_addresses == nn.local_addresses,
      "node");
  key(rn.fallback_auto != nn.fallback_auto || rn.fallback != nn.fallback ||
          rn.fallback_for != nn.fallback_for,
      "node.rules.fallback");
  key(rn.service_cidr != nn.service_cidr, "node.service_cidr");
  // The node rules' fallback targets come from the "." servers: node setup
  // is not redone on reload.
  if (out.empty() && rn.enabled() && node_settings(running) != node_settings(next)) {
    out.push_back(restart("node (the rules' fallback targets, from the \".\" servers)"));
  }
  // A key no check above names (one added later): still not applied.
  if (out.empty() && without_reloadable(running, next) != running) {
    out.push_back("a key that needs a restart changed; restart localdns to apply it");
  }
  return out;
}

bool ReloadPlan::drops_any() const {
  for (int u : running_upstream)
    if (std::find(next_upstream.begin(), next_upstream.end(), u) == next_upstream.end()) {
      return true;
    }
  return false;
}

std::size_t ReloadPlan::kept() const {
  return static_cast<std::size_t>(
      std::count_if(kept_from.begin(), kept_from.end(), [](int j) { return j >= 0; }));
}

ReloadPlan plan_reload(const Config& running, const Config& next) {
  ReloadPlan p;
  std::vector<upstream::GroupSettings> old, fresh;
  for (const auto& g : running.forward)
    old.push_back(upstream_settings(running, g));
  for (const auto& g : next.forward)
    fresh.push_back(upstream_settings(next, g));

  // Groups kept whole: the same index first, then the first equal one left.
  p.kept_from.assign(fresh.size(), -1);
  std::vector<bool> claimed(old.size(), false);
  for (std::size_t i = 0; i < fresh.size() && i < old.size(); ++i) {
    if (fresh[i] == old[i]) {
      p.kept_from[i] = static_cast<int>(i);
      claimed[i] = true;
    }
  }
  for (std::size_t i = 0; i < fresh.size(); ++i) {
    if (p.kept_from[i] >= 0) continue;
    for (std::size_t j = 0; j < old.size(); ++j) {
      if (!claimed[j] && fresh[i] == old[j]) {
        p.kept_from[i] = static_cast<int>(j);
        claimed[j] = true;
        break;
      }
    }
  }

  // One number per distinct upstream (servers and transport), over both.
  std::vector<std::pair<std::vector<util::Endpoint>, upstream::Transport>> seen;
  auto number = [&seen](const upstream::GroupSettings& s) {
    std::pair key{s.servers, s.transport};
    auto at = std::find(seen.begin(), seen.end(), key);
    if (at == seen.end()) at = seen.insert(seen.end(), std::move(key));
    return static_cast<int>(at - seen.begin());
  };
  for (const auto& s : old)
    p.running_upstream.push_back(number(s));
  for (const auto& s : fresh)
    p.next_upstream.push_back(number(s));
  return p;
}

}  // namespace localdns::config
