#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <signal.h>
#include <sys/resource.h>
#include <system_error>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/system/system_error.hpp>
#include <spdlog/spdlog.h>

#include <localdns/app/control.hpp>
#include <localdns/app/logging.hpp>
#include <localdns/app/notify.hpp>
#include <localdns/app/observability.hpp>
#include <localdns/app/server.hpp>
#include <localdns/config/cli.hpp>
#include <localdns/config/duration.hpp>
#include <localdns/config/emit.hpp>
#include <localdns/doctor/doctor.hpp>
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
  auto report = node::cleanup_node(c.node);
  for (const auto& line : report.lines)
    std::cout << line << "\n";
  if (report.lines.empty()) std::cout << "nothing to clean up\n";
  return report.ok ? 0 : 1;
}

// Interface and rules first (so the listeners can bind the local addresses),
// or a clear reason why not.
std::unique_ptr<node::NodeSetup> setup_node(const config::Config& c) {
  if (!c.node.enabled() || (!c.node.setup_interface && !c.node.setup_rules)) return nullptr;
  auto node = std::make_unique<node::NodeSetup>(c);
  if (auto r = node->apply(); !r) {
    spdlog::critical("node setup failed: {}", r.error());
    if (!c.node.skip_teardown) node->teardown();
    return nullptr;
  }
  std::string addresses;
  for (const auto& a : c.node.local_addresses)
    addresses += (addresses.empty() ? "" : ", ") + a.to_string();
  spdlog::info("node setup: {} on {} with {} rules, checked every {}", addresses,
               c.node.setup_interface ? c.node.interface_name : std::string("existing interfaces"),
               node->backend_name(), config::format_duration(c.node.sync_interval));
  return node;
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

}  // namespace

int run_main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto opts = config::parse_cli(args);
  if (!opts) {
    std::cerr << "localdns: " << opts.error() << "\n";
    return 2;
  }
  if (opts->command == config::Command::Help) {
    std::cout << config::usage();
    return 0;
  }
  if (opts->command == config::Command::Version) {
    std::cout << "localdns " << LOCALDNS_VERSION << "\n";
    return 0;
  }
  if (opts->command == config::Command::Plugins) {
    std::cout << config::plugins_text();
    return 0;
  }
  if (opts->command == config::Command::Cleanup) return run_cleanup(*opts);
  if (opts->command == config::Command::Ctl) return run_ctl(opts->ctl_args);
  if (opts->command == config::Command::Doctor) return doctor::run_doctor(opts->doctor_args);
  if (opts->command == config::Command::Migrate) return run_migrate(*opts);
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
  setup_logging(cfg->log_level, cfg->log_format);
  write_rendered(*startup);
  ::signal(SIGPIPE, SIG_IGN);
  // Until the signal set below handles it: SIGHUP's default action would
  // kill localdns, and operators send it expecting a reload.
  ::signal(SIGHUP, SIG_IGN);
  raise_fd_limit();

  std::unique_ptr<node::NodeSetup> node;
  const bool wants_node =
      cfg->node.enabled() && (cfg->node.setup_interface || cfg->node.setup_rules);
  if (wants_node) {
    node = setup_node(*cfg);
    if (!node) return 1;
  }
  const bool teardown = !cfg->node.skip_teardown;
  std::unique_ptr<Server> server;
  try {
    server = std::make_unique<Server>(std::move(*cfg));
  } catch (const std::system_error& e) {
    spdlog::critical("{}", e.what());
    if (e.code().value() == EACCES) {
      spdlog::critical("ports below 1024 need root or CAP_NET_BIND_SERVICE");
    } else if (e.code().value() == EADDRNOTAVAIL) {
      spdlog::critical(
          "the address is not on this host: add it, or list it in --local-ip / "
          "node.local_addresses so that localdns adds it");
    }
    if (node && teardown) node->teardown();
    return 1;
  }
  if (node) {
    node->flush_conntrack();
    node->start_sync();
  }
  if (!opts->node_cache.quiet) log_summary(server->config(), server->threads());

  // Endpoints the operator asked for must come up; defaulted ones may be
  // taken (another process on 8080): then a warning, not a failure.
  const auto& c = server->config();
  // Starts one endpoint; false when an explicitly configured one cannot bind.
  auto start = [&](auto& out, const char* what, const char* flag,
                   const config::HttpEndpoint& endpoint, std::uint16_t default_port,
                   const char* paths) {
    if (!endpoint.enabled) return true;
    auto ep = config::resolve(endpoint, c, default_port);
    try {
      out = std::make_unique<typename std::remove_reference_t<decltype(out)>::element_type>(
          *server, node.get(), ep);
      spdlog::info("{} on http://{}{}", what, ep.to_string(), paths);
      return true;
    } catch (const std::exception& e) {
      std::string msg =
          std::string(what) + ": cannot listen on " + ep.to_string() + ": " + reason(e);
      if (endpoint.explicit_listen()) {
        spdlog::critical("{}", msg);
        return false;
      }
      spdlog::warn("{} (use {} ADDR:PORT or off)", msg, flag);
      return true;
    }
  };
  std::unique_ptr<MetricsEndpoint> metrics;
  std::unique_ptr<HealthEndpoint> health;
  if (!start(metrics, "metrics", "--metrics", c.metrics, config::kDefaultMetricsPort, "/metrics") ||
      !start(health, "health", "--health", c.health, config::kDefaultHealthPort,
             "/health and /ready")) {
    server->stop();
    if (node && teardown) node->teardown();
    return 1;
  }

  std::unique_ptr<ControlServer> control;
  if (!c.control_socket.empty()) {
    try {
      control = std::make_unique<ControlServer>(*server, node.get(), c.control_socket);
      spdlog::info("control socket {} (localdns ctl)", c.control_socket);
    } catch (const std::exception& e) {
      spdlog::warn(
          "control socket: {}; `localdns ctl` is unavailable (--control-socket PATH or off)",
          e.what());
    }
  }

  boost::asio::io_context signals_ctx;
  boost::asio::signal_set signals(signals_ctx, SIGINT, SIGTERM, SIGHUP);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        spdlog::warn(
            "received SIGHUP: reload is not supported yet; still serving with the configuration "
            "read at start");
        wait_signal();
        return;
      }
      spdlog::info("received signal {}, shutting down", sig);
    });
  };
  wait_signal();
  server->start();
  PidFile pidfile(opts->node_cache.pidfile.value_or(""));  // every listener is bound by now
  notify_ready(c, node ? node->backend_name() : std::string());
  auto watchdog = start_watchdog(c);
  signals_ctx.run();
  notify_stopping();
  watchdog.reset();
  if (node) node->stop_sync();
  control.reset();
  health.reset();
  metrics.reset();
  server->stop();
  if (node && teardown) {
    node->teardown();
  } else if (node) {
    spdlog::info("node setup: left in place (--skip-teardown)");
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace localdns::app
