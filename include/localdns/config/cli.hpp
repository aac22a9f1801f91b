// Command-line flags. Flags override the config file; with neither, the
// built-in standalone default runs.
#pragma once

#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <localdns/config/loader.hpp>

namespace localdns::config {

enum class Command { Run, CheckConfig, Version, Help, Cleanup, Ctl, Doctor };

struct CliOptions {
  Command command = Command::Run;
  std::optional<std::string> config_path;
  std::vector<std::string> listen;
  std::vector<std::string> forward;
  std::optional<std::string> threads;
  std::optional<std::string> log_level;
  // Node setup.
  std::vector<std::string> local_ips;
  std::optional<bool> setup_interface;
  std::optional<std::string> interface_name;
  std::optional<std::string> interface_kind;
  std::optional<bool> setup_rules;
  std::optional<std::string> rules_backend;
  std::optional<std::string> sync_interval;
  std::vector<std::string> service_cidrs;
  bool skip_teardown = false;
  // Observability.
  std::optional<std::string> metrics;
  std::optional<std::string> health;
  std::optional<std::string> control_socket;  // --control-socket (or --control)
  std::optional<std::string> log_format;
  std::optional<std::string> query_log;
  // `localdns ctl ...`: everything after "ctl".
  std::vector<std::string> ctl_args;
  // `localdns doctor ...`: everything after "doctor" (parse_doctor_cli).
  std::vector<std::string> doctor_args;
};

// `localdns doctor` flags; the rest (--config, --local-ip, --forward, ...)
// say what localdns should look like on this node, as for a run.
struct DoctorOptions {
  std::optional<unsigned> watch_seconds;  // --watch SECONDS: sample counters twice
  std::vector<std::string> resolv_conf;   // --resolv-conf FILE (repeatable)
  std::vector<int> pods;                  // --pod PID (repeatable)
  bool all_pods = false;                  // --all-pods
  bool musl = false;                      // --resolver musl
  bool json = false;                      // --json
  std::vector<std::string> cluster_dns;   // --cluster-dns IP (default 10.96.0.10)
  bool has_node_flags = false;            // any of the localdns flags below was given
  CliOptions node;
};
std::expected<DoctorOptions, std::string> parse_doctor_cli(std::span<const std::string_view> args);
std::string doctor_usage();

std::expected<CliOptions, std::string> parse_cli(std::span<const std::string_view> args);

// Applies flags on top of `c`. `--listen` replaces the listen list; each
// `--forward ZONE=...` takes ZONE away from the group that had it and adds a group.
Errors apply_cli(const CliOptions& o, Config& c);

// The whole start-up path: file (or default), flags, resolv.conf, validation.
std::expected<Config, Errors> build_config(const CliOptions& o);

// Fills groups marked servers_from_resolv_conf from c.resolv_conf.
Errors fill_resolv_conf_servers(Config& c);

std::string usage();

}  // namespace localdns::config
