#include <cerrno>
#include <filesystem>
#include <optional>
#include <system_error>

#include <spdlog/spdlog.h>

#include <localdns/app/reload.hpp>
#include <localdns/config/emit.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/config/reload.hpp>

namespace localdns::app {

namespace {

bool is_file(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// What build_startup() reads for `opts`, as directory watches.
std::vector<WatchedDir> inputs_of(const config::CliOptions& opts, const config::Startup& s) {
  std::vector<WatchedDir> out;
  if (opts.config_path) {
    out.push_back(watch_file(*opts.config_path));
    return out;
  }
  if (s.corefile.empty()) return out;  // flags (and defaults) only
  const auto& nc = opts.node_cache;
  std::string base = nc.base_corefile.value_or(std::string(config::kDefaultBaseCorefile));
  if (is_file(base)) {
    out.push_back(watch_file(base));
    std::string kube = nc.kube_dns_dir.value_or(std::string(config::kDefaultKubeDnsDir));
    std::error_code ec;
    if (std::filesystem::is_directory(kube, ec)) out.push_back({kube, {}});
  } else {
    // No template: the Corefile itself is the input (localdns writes no
    // rendered copy then).
    out.push_back(
        watch_file(nc.conf.value_or(nc.corefile.value_or(std::string(config::kDefaultCorefile)))));
  }
  return out;
}

}  // namespace

std::uint64_t config_hash(const config::Config& c) {
  // FNV-1a over the emitted YAML: stable across runs of one version.
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : config::emit_yaml(c)) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

std::string ReloadOutcome::text() const {
  if (ok) return "reloaded: generation " + std::to_string(generation) + "\n";
  std::string out = "error: reload failed; the running configuration is unchanged:\n";
  for (const auto& e : errors)
    out += "  " + e + "\n";
  return out;
}

Reloader::Reloader(config::CliOptions opts, const config::Startup& startup, Runtime& server,
                   node::NodeSetup* node)
    : opts_(std::move(opts)), server_(server), node_(node), inputs_(inputs_of(opts_, startup)) {
  server_.reloads().hash.store(config_hash(*server_.current_config()), std::memory_order_relaxed);
}

void Reloader::refuse(std::string why) {
  std::lock_guard lock(mu_);
  refusal_ = std::move(why);
}

ReloadOutcome Reloader::reload(std::string_view trigger) {
  std::lock_guard lock(mu_);
  ReloadOutcome out;
  auto fail = [&](config::Errors errors) {
    out.errors = std::move(errors);
    server_.reloads().failure.fetch_add(1, std::memory_order_relaxed);
    for (const auto& e : out.errors)
      spdlog::error("reload ({}): {}", trigger, e);
    spdlog::error("reload ({}) failed with {} error{}; still serving generation {}", trigger,
                  out.errors.size(), out.errors.size() == 1 ? "" : "s",
                  server_.reloads().generation.load(std::memory_order_relaxed));
    return out;
  };
  if (!refusal_.empty()) return fail({refusal_});
  auto startup = config::build_startup(opts_);
  if (!startup) return fail(std::move(startup.error()));
  for (const auto& w : startup->warnings)
    spdlog::warn("reload ({}): {}", trigger, w);
  auto next = config::finish_config(std::move(startup->config));
  if (!next) return fail(std::move(next.error()));
  auto running = server_.current_config();
  if (auto rejected = config::reload_rejections(*running, *next); !rejected.empty()) {
    return fail(std::move(rejected));
  }
  auto plan = config::plan_reload(*running, *next);
  const std::size_t groups = next->forward.size();
  const std::size_t before = running->forward.size();
  // Node first (a listener cannot bind an address the host does not have
  // yet), then the new listeners; either failing undoes the other.
  std::optional<node::NodeSettings> node_next;
  if (node_ != nullptr && plan.node_changed) {
    node_next = config::node_settings(*next);
    if (auto r = node_->extend(*node_next); !r) {
      return fail({"node setup: " + r.error() + " (the node is as before)"});
    }
  }
  std::vector<NewListeners> bound;
  try {
    bound = server_.bind_listeners(plan.listen_added);
  } catch (const std::system_error& e) {
    if (node_next) node_->revert();
    std::string hint;
    if (e.code().value() == EADDRNOTAVAIL) {
      hint = " (the address is not on this host: add it, or list it in node.local_addresses)";
    } else if (e.code().value() == EADDRINUSE) {
      hint = " (another socket holds it)";
    } else if (e.code().value() == EACCES) {
      hint = " (ports below 1024 need CAP_NET_BIND_SERVICE)";
    }
    return fail({std::string("listen: ") + e.what() + hint});
  }
  auto level = spdlog::level::from_str(next->log_level);
  auto hash = config_hash(*next);
  auto listen = plan.listen_added.size() + plan.listen_removed.size();
  out.generation = server_.reload(std::move(*next), plan, std::move(bound));
  if (node_next) {
    if (auto r = node_->update(*node_next); !r) {
      spdlog::error("reload ({}): node setup: {}; the next sync repairs the rules", trigger,
                    r.error());
    }
  }
  out.ok = true;
  spdlog::set_level(level);
  server_.reloads().hash.store(hash, std::memory_order_relaxed);
  server_.reloads().success.fetch_add(1, std::memory_order_relaxed);
  spdlog::info(
      "reload ({}): generation {} serving (config {:016x}); {} groups (were {}), {} kept "
      "their connections",
      trigger, out.generation, hash, groups, before, plan.kept());
  if (listen != 0) {
    auto list = [](const std::vector<config::Endpoint>& eps) {
      std::string text;
      for (const auto& ep : eps)
        text += (text.empty() ? "" : ", ") + ep.to_string();
      return text;
    };
    if (!plan.listen_added.empty())
      spdlog::info("reload ({}): now listening on {}", trigger, list(plan.listen_added));
    if (!plan.listen_removed.empty())
      spdlog::info("reload ({}): no longer listening on {}", trigger, list(plan.listen_removed));
  }
  return out;
}

}  // namespace localdns::app
