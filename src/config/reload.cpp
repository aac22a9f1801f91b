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
  next.listen = running.listen;
  next.node.local_addresses = running.node.local_addresses;
  next.node.fallback_auto = running.node.fallback_auto;
  next.node.fallback = running.node.fallback;
  next.node.fallback_for = running.node.fallback_for;
  next.node.service_cidr = running.node.service_cidr;
  next.clients = running.clients;
  next.forward = running.forward;
  next.search_path = running.search_path;
  next.resolv_conf_search = running.resolv_conf_search;
  return next;
}

}  // namespace

Errors reload_rejections(const Config& running, const Config& next) {
  Errors out;
  auto key = [&](bool changed, const std::string& name) {
    if (changed) out.push_back(restart(name));
  };
  key(running.threads != next.threads, "threads");
  key(running.log_format != next.log_format, "log_format");
  key(running.top_sample != next.top_sample, "top_sample");
  key(running.tcp_clients != next.tcp_clients, "tcp_clients");
  key(running.cache.enabled != next.cache.enabled, "cache.enabled");
  key(running.cache.prefetch_hits != next.cache.prefetch_hits, "cache.prefetch_hits");
  key(running.cache.prefetch_percent != next.cache.prefetch_percent, "cache.prefetch_percent");
  key(running.cache.persist_file != next.cache.persist_file, "cache.persist_file");
  key(running.cache.persist_interval != next.cache.persist_interval, "cache.persist_interval");
  key(running.metrics != next.metrics, "metrics");
  key(running.health != next.health, "health");
  key(running.control_socket != next.control_socket, "control_socket");
  const auto& rn = running.node;
  const auto& nn = next.node;
  // Node setup exists only when it was on at start: adding or removing
  // addresses is a reload, turning it on or off is not.
  key(rn.enabled() != nn.enabled(), "node.local_addresses (node setup on or off)");
  auto options = [](const node::NodeOptions& o) {
    auto copy = o;
    copy.local_addresses.clear();
    return copy;
  };
  key(options(rn) != options(nn),
      "node (but local_addresses and the rules' fallback: its interface, rules backend, port, "
      "health_port, sync_interval, skip_teardown)");
  // Endpoints without an address of their own listen on the first local
  // address: that one moves only with a restart.
  key(running.metrics.enabled && resolve(running.metrics, running, kDefaultMetricsPort) !=
                                     resolve(next.metrics, next, kDefaultMetricsPort),
      "node.local_addresses (the first one, where the metrics endpoint listens)");
  key(running.health.enabled && resolve(running.health, running, kDefaultHealthPort) !=
                                    resolve(next.health, next, kDefaultHealthPort),
      "node.local_addresses (the first one, where the health endpoint listens)");
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
  for (const auto& ep : next.listen) {
    bool had = std::find(running.listen.begin(), running.listen.end(), ep) != running.listen.end();
    (had ? p.listen_kept : p.listen_added).push_back(ep);
  }
  for (const auto& ep : running.listen) {
    if (std::find(next.listen.begin(), next.listen.end(), ep) == next.listen.end())
      p.listen_removed.push_back(ep);
  }
  p.node_changed = node_settings(running) != node_settings(next);
  return p;
}

}  // namespace localdns::config
