#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <signal.h>
#include <sys/resource.h>
#include <system_error>
#include <type_traits>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/system/system_error.hpp>
#include <spdlog/spdlog.h>

#include <localdns/app/control.hpp>
#include <localdns/app/doctor_main.hpp>
#include <localdns/app/handover.hpp>
#include <localdns/app/health.hpp>
#include <localdns/app/logging.hpp>
#include <localdns/app/metrics.hpp>
#include <localdns/app/notify.hpp>
#include <localdns/app/privileges.hpp>
#include <localdns/app/reload.hpp>
#include <localdns/app/run.hpp>
#include <localdns/app/runtime.hpp>
#include <localdns/config/cli.hpp>
#include <localdns/config/duration.hpp>
#include <localdns/config/emit.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/node/node_setup.hpp>

namespace localdns::app {

namespace {

// Every upstream UDP query holds a socket until answered: raise the soft limit
// on descriptors to the hard limit, as unbound and dnsdist do.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  rlim_t before = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &rl) == 0) {
    spdlog::debug("raised the open-files limit from {} to {}", before, rl.rlim_cur);
  }
}

void log_summary(const config::Config& c, unsigned threads) {
  std::string listen;
  for (const auto& l : c.listen)
    listen += (listen.empty() ? "" : ", ") + l.to_string();
  spdlog::info("localdns {} listening on {} (udp+tcp), {} worker threads", LOCALDNS_VERSION, listen,
               threads);
  for (const auto& g : c.forward) {
    std::string zones, servers;
    for (const auto& z : g.zones)
      zones += (zones.empty() ? "" : " ") + z;
    for (const auto& s : config::servers_of(c, g))
      servers += (servers.empty() ? "" : ", ") + s.to_string();
    spdlog::info("  {} -> {} over {} ({}, timeout {}, {} attempts)", zones, servers,
                 config::to_string(g.transport), config::to_string(g.policy),
                 config::format_duration(g.timeout), g.attempts);
  }
}

// An exception as one line: Boost's system errors carry a source location.
std::string reason(const std::exception& e) {
  if (const auto* b = dynamic_cast<const boost::system::system_error*>(&e)) {
    return b->code().message();
  }
  if (const auto* s = dynamic_cast<const std::system_error*>(&e)) return s->code().message();
  return e.what();
}

int run_cleanup(const config::CliOptions& opts) {
  config::Config c = config::default_config();
  if (opts.config_path) {
    auto loaded = config::load_config_file(*opts.config_path);
    if (!loaded) {
      for (const auto& e : loaded.error())
        std::cerr << "localdns: " << e << "\n";
      return 2;
    }
    c = std::move(*loaded);
  }
  if (auto errors = config::apply_cli(opts, c); !errors.empty()) {
    for (const auto& e : errors)
      std::cerr << "localdns: " << e << "\n";
    return 2;
  }
  auto report = node::cleanup_node(config::node_settings(c));
  for (const auto& line : report.lines)
    std::cout << line << "\n";
  if (report.lines.empty()) std::cout << "nothing to clean up\n";
  return report.ok ? 0 : 1;
}

void print_warnings(const config::Errors& warnings) {
  for (const auto& w : warnings)
    std::cerr << "localdns: warning: " << w << "\n";
}

int config_errors(const config::Errors& errors) {
  for (const auto& e : errors)
    std::cerr << "localdns: " << e << "\n";
  std::cerr << "localdns: " << errors.size() << " configuration error"
            << (errors.size() == 1 ? "" : "s") << "\n";
  return 2;
}

int run_migrate(const config::CliOptions& opts) {
  auto m = config::migrate(opts);
  if (!m) {
    for (const auto& e : m.error())
      std::cerr << "localdns: " << e << "\n";
    return 2;
  }
  print_warnings(m->warnings);
  std::cout << m->yaml;
  return 0;
}

// node-cache writes the rendered Corefile where CoreDNS reads it (-conf);
// operators look there, so localdns writes it too when it can.
void write_rendered(const config::Startup& s) {
  if (s.rendered.empty() || s.rendered_path.empty()) return;
  std::ofstream f(s.rendered_path, std::ios::trunc);
  if (f) f << s.rendered;
  if (!f || !f.flush()) {
    spdlog::warn(
        "cannot write the rendered Corefile to {} ({}); localdns runs from its "
        "translation all the same",
        s.rendered_path, std::strerror(errno));
  }
}

// CoreDNS's -pidfile: "PID\n", once every listener is bound.
class PidFile {
 public:
  explicit PidFile(std::string path) : path_(std::move(path)) {
    if (path_.empty()) return;
    std::ofstream f(path_, std::ios::trunc);
    if (f) f << ::getpid() << "\n";
    if (!f || !f.flush()) {
      spdlog::error("cannot write the pid file {}: {}", path_, std::strerror(errno));
      path_.clear();
    }
  }
  ~PidFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  std::string path_;
};

// Node setup for the length of a run. Interface and rules come first (so
// the listeners can bind the local addresses); on every way out the
// periodic check stops and, unless skip_teardown, everything is removed.
// The last instance out tears down: one that was asked for a handover
// leaves node setup to its successor (set_handed_over, from the handover's
// thread, before the destructor runs on the main thread).
class NodeLifetime {
 public:
  // Nothing to do when node setup is off; false when it failed (logged).
  bool start(const config::Config& c) {
    const auto& n = c.node;
    if (!n.enabled() || (!n.setup_interface && !n.setup_rules)) return true;
    teardown_ = !n.skip_teardown;
    auto node = std::make_unique<node::NodeSetup>(config::node_settings(c));
    if (auto r = node->apply(); !r) {
      spdlog::critical("node setup failed: {}", r.error());
      if (teardown_) node->teardown();
      return false;
    }
    std::string addresses;
    for (const auto& a : n.local_addresses)
      addresses += (addresses.empty() ? "" : ", ") + a.to_string();
    spdlog::info("node setup: {} on {} with {} rules, checked every {}", addresses,
                 n.setup_interface ? n.interface_name : std::string("existing interfaces"),
                 node->backend_name(), config::format_duration(n.sync_interval));
    node_ = std::move(node);
    return true;
  }
  ~NodeLifetime() {
    if (!node_) return;
    node_->stop_sync();
    if (handed_over_.load()) {
      spdlog::info("node setup: left in place for the instance that took over");
    } else if (teardown_) {
      node_->teardown();
    } else if (ended_) {
      spdlog::info("node setup: left in place (--skip-teardown)");
    }
  }
  void set_handed_over(bool on) { handed_over_.store(on); }
  // The run ends normally (not at start): say so if setup stays in place.
  void stop_sync() {
    ended_ = true;
    if (node_) node_->stop_sync();
  }
  node::NodeSetup* get() const { return node_.get(); }
  std::string backend_name() const { return node_ ? node_->backend_name() : std::string(); }

 private:
  std::unique_ptr<node::NodeSetup> node_;
  bool teardown_ = true;
  bool ended_ = false;
  std::atomic<bool> handed_over_{false};
};

// What a run holds, released in reverse order on every way out: the
// control socket, the HTTP endpoints, the server (stopped: every query in
// flight answered), then node setup.
struct Running {
  NodeLifetime node;
  std::unique_ptr<Runtime> server;
  std::unique_ptr<MetricsEndpoint> metrics;
  std::unique_ptr<HealthEndpoint> health;
  // Before the control socket and the watcher, which call it, and after the
  // server: both stop (waiting for a reload in progress) before it does.
  std::unique_ptr<Reloader> reloader;
  // Where the HTTP endpoints listen, for a handover's descriptions.
  std::string metrics_where, health_where;
  // After the control socket, which starts handovers (its thread is joined
  // first), before the endpoints and the server, which a handover in
  // progress uses (it is cancelled and joined here).
  std::unique_ptr<HandoverDonor> donor;
  std::unique_ptr<ControlServer> control;
  std::unique_ptr<ConfigWatcher> watcher;
};

// Binds every listener; false (logged) when one cannot be bound.
bool start_server(Running& run, config::Config cfg, FdPool* adopted) {
  try {
    run.server = std::make_unique<Runtime>(std::move(cfg), adopted);
    return true;
  } catch (const std::system_error& e) {
    spdlog::critical("{}", e.what());
    if (e.code().value() == EACCES) {
      spdlog::critical("ports below 1024 need root or CAP_NET_BIND_SERVICE");
    } else if (e.code().value() == EADDRNOTAVAIL) {
      spdlog::critical(
          "the address is not on this host: add it, or list it in --local-ip / "
          "node.local_addresses so that localdns adds it");
    }
    return false;
  }
}

// Starts one HTTP endpoint. Endpoints the operator asked for must come up;
// defaulted ones may be taken (another process on 8080): then a warning,
// not a failure. False when an explicitly configured one cannot bind.
// With `adopted`, takes over the socket a handover passed for it, if any.
template <class Endpoint>
bool start_http(Running& run, std::unique_ptr<Endpoint>& out, const char* what, const char* flag,
                const config::HttpEndpoint& endpoint, std::uint16_t default_port, const char* paths,
                FdPool* adopted, FdKind kind, std::string& where) {
  if (!endpoint.enabled) return true;
  auto ep = config::resolve(endpoint, run.server->config(), default_port);
  where = ep.to_string();
  try {
    UniqueFd fd;
    if (adopted != nullptr) fd = adopted->take_one(kind, where);
    if constexpr (std::is_same_v<Endpoint, HealthEndpoint>) {
      out = std::make_unique<Endpoint>(*run.server, run.node.get(), ep, HealthEndpoint::NodeCheck{},
                                       fd.release());
    } else {
      out = std::make_unique<Endpoint>(*run.server, run.node.get(), ep, fd.release());
    }
    spdlog::info("{} on http://{}{}", what, ep.to_string(), paths);
    return true;
  } catch (const std::exception& e) {
    std::string msg = std::string(what) + ": cannot listen on " + ep.to_string() + ": " + reason(e);
    if (endpoint.explicit_listen()) {
      spdlog::critical("{}", msg);
      return false;
    }
    spdlog::warn("{} (use {} ADDR:PORT or off)", msg, flag);
    return true;
  }
}

bool start_endpoints(Running& run, FdPool* adopted) {
  const auto& c = run.server->config();
  return start_http(run, run.metrics, "metrics", "--metrics", c.metrics,
                    config::kDefaultMetricsPort, "/metrics", adopted, FdKind::http,
                    run.metrics_where) &&
         start_http(run, run.health, "health", "--health", c.health, config::kDefaultHealthPort,
                    "/health and /ready", adopted, FdKind::health, run.health_where);
}

// What a handover to a successor does with this run (handover.hpp).
std::unique_ptr<HandoverDonor> make_donor(Running& run) {
  HandoverDonor::Hooks hooks;
  hooks.export_fds = [&run] {
    auto fds = run.server->export_listeners();
    auto add = [&fds](FdKind kind, int fd, const std::string& where) {
      int copy = fd >= 0 ? ::fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
      if (copy >= 0) fds.push_back({kind, 0, where, UniqueFd(copy)});
    };
    if (run.metrics) add(FdKind::http, run.metrics->http().listen_fd(), run.metrics_where);
    if (run.health) add(FdKind::health, run.health->http().listen_fd(), run.health_where);
    return fds;
  };
  // From "handover 1" on, a reload (both pods watch one ConfigMap) would
  // start listeners unpaused beside the successor's: refused.
  hooks.on_request = [&run](pid_t successor) {
    run.node.set_handed_over(true);
    run.reloader->refuse("this instance handed its sockets over to pid " +
                         std::to_string(successor) + " and exits at SIGTERM; reload the new one");
  };
  hooks.on_abort = [&run] {
    run.node.set_handed_over(false);
    run.reloader->refuse("");
  };
  hooks.hand_over = [&run](const std::atomic<bool>& cancel) {
    // The successor serves, and keeps the node in order from now on.
    if (auto* node = run.node.get()) {
      node->set_handed_over(true);
      spdlog::info("node setup: no more sync passes; the instance that took over keeps it");
    }
    if (run.metrics) run.metrics->http().stop_accepting();
    if (run.health) run.health->http().stop_accepting();
    // The grace for upstream answers, one second more for the clients' last replies.
    auto grace = std::chrono::duration_cast<std::chrono::milliseconds>(
        run.server->current_config()->shutdown_grace);
    return run.server->hand_over(grace + std::chrono::seconds(1), cancel);
  };
  // As SIGTERM: ShutdownSignals ends the run (node setup stays: it was handed over).
  hooks.on_successor_exit = [] { ::kill(::getpid(), SIGTERM); };
  return std::make_unique<HandoverDonor>(std::move(hooks));
}

// The control socket is never required: without it, a warning. `replace`:
// this instance took over from the one answering there (ControlServer).
void start_control(Running& run, bool replace) {
  const auto& path = run.server->config().control_socket;
  if (path.empty()) return;
  try {
    run.donor = make_donor(run);
    run.control = std::make_unique<ControlServer>(
        *run.server, run.node.get(), path,
        [reloader = run.reloader.get()] { return reloader->reload("ctl reload").text(); },
        [donor = run.donor.get()](int fd) { return donor->start(UniqueFd(fd)); }, replace);
    spdlog::info("control socket {} (localdns ctl)", path);
  } catch (const std::exception& e) {
    spdlog::warn("control socket: {}; `localdns ctl` is unavailable (--control-socket PATH or off)",
                 e.what());
  }
}

// Reloads when an input file changes (README.md, "Reload"); without
// inotify, a warning: SIGHUP and `ctl reload` still work.
void start_watcher(Running& run, const config::CliOptions& opts) {
  if (!opts.watch_inputs || run.reloader->inputs().empty()) return;
  try {
    run.watcher = std::make_unique<ConfigWatcher>(
        run.reloader->inputs(),
        [reloader = run.reloader.get()] { reloader->reload("file change"); });
    std::string dirs;
    for (const auto& d : run.reloader->inputs())
      dirs += (dirs.empty() ? "" : ", ") + d.dir;
    spdlog::info("reload: watching {} (debounce {} ms)", dirs, ConfigWatcher::kDebounce.count());
  } catch (const std::exception& e) {
    spdlog::warn("reload: cannot watch the configuration ({}); reload with SIGHUP", e.what());
  }
}

// SIGINT and SIGTERM end the run; SIGHUP reloads (on this, the main,
// thread). The set handles them from construction to destruction, so a
// second signal during shutdown cannot kill localdns halfway through its
// teardown.
class ShutdownSignals {
 public:
  explicit ShutdownSignals(Reloader* reloader) : reloader_(reloader) { wait(); }
  // Blocks until SIGINT or SIGTERM.
  void run() { ctx_.run(); }

 private:
  void wait() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        if (reloader_ != nullptr) reloader_->reload("SIGHUP");
        wait();
        return;
      }
      spdlog::info("received signal {}, shutting down", sig);
    });
  }

  Reloader* reloader_;
  boost::asio::io_context ctx_;
  boost::asio::signal_set signals_{ctx_, SIGINT, SIGTERM, SIGHUP};
};

// The process-wide setup before anything binds.
void prepare_process(const config::Config& cfg, const config::Startup& startup) {
  setup_logging(cfg.log_level, cfg.log_format);
  write_rendered(startup);
  ::signal(SIGPIPE, SIG_IGN);
  // Until ShutdownSignals handles it: SIGHUP's default action would kill
  // localdns, and operators send it expecting a reload.
  ::signal(SIGHUP, SIG_IGN);
  raise_fd_limit();
}

// When a live localdns answers on the control socket (an upgrade: the new
// pod starts beside the old one), takes over its listening sockets, unless
// --no-handover. Nullopt: bind as usual (and the control socket will say it
// is taken).
std::optional<Takeover> take_over(const config::Config& cfg, const config::CliOptions& opts) {
  const auto& path = cfg.control_socket;
  if (path.empty() || !opts.handover || !control_socket_live(path)) return std::nullopt;
  auto t = request_handover(path);
  if (!t) {
    spdlog::warn("handover: {}; binding new sockets beside it (SO_REUSEPORT)", t.error());
    return std::nullopt;
  }
  spdlog::info("handover: received {} listening sockets from pid {}", t->pool.received(), t->donor);
  return std::move(*t);
}

void log_adopted(Takeover& t) {
  auto left = t.pool.left();
  std::string list;
  for (const auto& l : left)
    list += (list.empty() ? "" : ", ") + l;
  spdlog::info("handover: serving on {} of the {} sockets of pid {}{}{}", t.pool.taken(),
               t.pool.received(), t.donor, left.empty() ? "" : "; not listening any more on ",
               list);
  t.adopted = t.pool.taken();
  t.pool = FdPool({});  // closes those
}

// Sets up, serves until a shutdown signal, returns the exit status; what
// it set up is released when `run` goes, on every way out.
int serve_until_signal(Running& run, const config::CliOptions& opts, const config::Startup& startup,
                       config::Config cfg, std::optional<PidFile>& pidfile,
                       std::optional<ShutdownSignals>& signals) {
  if (!run.node.start(cfg)) return 1;
  // Held until the run ends: its open connection tells the donor that this
  // instance lives (the donor stops when it closes).
  auto takeover = take_over(cfg, opts);
  FdPool* adopted = takeover ? &takeover->pool : nullptr;
  if (!start_server(run, std::move(cfg), adopted)) return 1;
  auto* node = run.node.get();
  if (node) node->flush_conntrack();
  // Still one thread: the sync loop, endpoints and workers start below.
  drop_capabilities(run.server->config(), node);
  if (node) node->start_sync();
  if (!opts.node_cache.quiet) log_summary(run.server->config(), run.server->threads());
  // Taking over: serve DNS on the sockets first, so that the HTTP endpoints,
  // which accept as soon as they exist, answer /health from a running server.
  if (takeover) run.server->start();
  if (!start_endpoints(run, adopted)) return 1;
  if (takeover) log_adopted(*takeover);
  run.reloader = std::make_unique<Reloader>(opts, startup, *run.server, node);
  start_control(run, takeover.has_value());
  signals.emplace(run.reloader.get());
  if (!takeover) run.server->start();
  start_watcher(run, opts);
  if (takeover && takeover->adopted == 0) {
    // Nothing matched (another address): the donor must not stop serving.
    spdlog::warn("handover: none of the sockets of pid {} matches this configuration; it serves on",
                 takeover->donor);
    takeover.reset();  // closes the connection: the donor goes on
  } else if (takeover) {
    // Bounded: the donor's grace for what it has in flight, and a little more.
    auto grace =
        std::chrono::duration_cast<std::chrono::milliseconds>(run.server->config().shutdown_grace);
    if (auto done = finish_handover(*takeover, grace + std::chrono::seconds(3)); done) {
      spdlog::info("handover: pid {} finished what it had in flight", takeover->donor);
    } else {
      spdlog::warn("handover: pid {} did not confirm: {}", takeover->donor, done.error());
    }
  }
  pidfile.emplace(opts.node_cache.pidfile.value_or(""));  // every listener is bound by now
  const auto& c = run.server->config();
  notify_ready(c, run.node.backend_name());
  auto watchdog =
      start_watchdog([server = run.server.get()] { return server->current_config()->listen; });
  signals->run();
  notify_stopping();
  watchdog.reset();
  run.node.stop_sync();
  return 0;
}

int serve(const config::CliOptions& opts, const config::Startup& startup, config::Config cfg) {
  prepare_process(cfg, startup);
  // Both outlive the run: the pid file goes last, and signals stay handled
  // until the teardown is done.
  std::optional<PidFile> pidfile;
  std::optional<ShutdownSignals> signals;
  int status = 0;
  {
    Running run;
    status = serve_until_signal(run, opts, startup, std::move(cfg), pidfile, signals);
  }
  if (status == 0) spdlog::info("stopped");
  return status;
}

// Commands that print or check something and exit; nullopt for a run.
std::optional<int> run_command(const config::CliOptions& opts) {
  switch (opts.command) {
    case config::Command::Help:
      std::cout << config::usage();
      return 0;
    case config::Command::Version:
      std::cout << "localdns " << LOCALDNS_VERSION << "\n";
      return 0;
    case config::Command::Plugins:
      std::cout << config::plugins_text();
      return 0;
    case config::Command::Cleanup:
      return run_cleanup(opts);
    case config::Command::Ctl:
      return run_ctl(opts.ctl_args);
    case config::Command::Doctor:
      return doctor_main(opts.doctor_args);
    case config::Command::Migrate:
      return run_migrate(opts);
    default:
      return std::nullopt;
  }
}

}  // namespace

int run_main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto opts = config::parse_cli(args);
  if (!opts) {
    std::cerr << "localdns: " << opts.error() << "\n";
    return 2;
  }
  if (auto status = run_command(*opts)) return *status;
  auto startup = config::build_startup(*opts);
  if (!startup) return config_errors(startup.error());
  print_warnings(startup->warnings);
  if (opts->command == config::Command::PrintConfig) {
    // Before resolv.conf is read: `servers: resolv.conf` stays as it is.
    std::cout << config::emit_yaml(startup->config);
    return 0;
  }
  auto cfg = config::finish_config(startup->config);
  if (!cfg) return config_errors(cfg.error());
  if (opts->command == config::Command::CheckConfig) {
    std::cout << *opts->config_path << ": OK\n";
    return 0;
  }
  return serve(*opts, *startup, std::move(*cfg));
}

}  // namespace localdns::app
