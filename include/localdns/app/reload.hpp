// Reloading a running localdns: reads every input again as at start (the
// YAML file, or node-local-dns's Corefile template and the kube-dns
// ConfigMap, then the flags and resolv.conf), checks the result as
// --check-config does, refuses keys a reload cannot change
// (config::reload_rejections), and hands the rest to Runtime::reload. New
// local addresses go on the node (NodeSetup::extend) and new listen
// endpoints are bound (Runtime::bind_listeners) before anything serves them;
// removed addresses leave the node (NodeSetup::update) once their listeners
// are closed. An invalid configuration, or an address that cannot be added
// or bound, changes nothing: the running one keeps serving.
// Every attempt is logged and counted (Runtime::reloads()).
//
// Threads: reload() may be called from any thread (SIGHUP on the main
// thread, `ctl reload` on the control socket's, the watcher's); calls run one
// at a time. Whoever calls it must be stopped before Runtime::stop().
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <localdns/app/config_watch.hpp>
#include <localdns/app/runtime.hpp>
#include <localdns/config/cli.hpp>
#include <localdns/node/node_setup.hpp>

namespace localdns::app {

struct ReloadOutcome {
  bool ok = false;
  std::uint64_t generation = 0;
  std::vector<std::string> errors;  // as --check-config prints them, one per line
  std::string text() const;         // the `ctl reload` answer
};

class Reloader {
 public:
  // `startup` is what the run started from (it tells which inputs to watch).
  // `node`: node setup, when it is on (it must outlive this object).
  Reloader(config::CliOptions opts, const config::Startup& startup, Runtime& server,
           node::NodeSetup* node = nullptr);

  ReloadOutcome reload(std::string_view trigger);
  // Until refuse(""), every reload fails (counted) with `why`: this instance
  // handed its sockets over (a reload would bind listeners beside the
  // successor's). Waits for a reload in progress.
  void refuse(std::string why);

  // The directories whose changes reload (for ConfigWatcher); empty when the
  // configuration comes from flags alone.
  const std::vector<WatchedDir>& inputs() const { return inputs_; }

 private:
  config::CliOptions opts_;
  Runtime& server_;
  node::NodeSetup* node_;
  std::vector<WatchedDir> inputs_;
  std::mutex mu_;
  std::string refusal_;  // under mu_
};

// A hash of the configuration as YAML (the generation's identity in logs
// and the localdns_config_info metric).
std::uint64_t config_hash(const config::Config& c);

}  // namespace localdns::app
