// Command-line flags. Flags override the config file (or node-local-dns's
// Corefile); with neither, the built-in standalone default runs.
//
// Two syntaxes share one command line. The flags of node-cache (node-local-dns)
// and CoreDNS (-localip, -conf, -pidfile, ...; the names in gflags.cpp) follow
// Go's flag package: one dash or two, `-flag value` or `-flag=value`, booleans
// only as `-flag` or `-flag=BOOL`. Every other flag is localdns's own, GNU
// style (`--name value`, `--name=value`).
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <localdns/config/loader.hpp>

namespace localdns::config {

enum class Command {
  Run,
  CheckConfig,
  PrintConfig,
  Version,
  Help,
  Plugins,
  Cleanup,
  Ctl,
  Doctor,
  Migrate
};

// node-cache's and CoreDNS's own flags (Go syntax), where they do not map
// straight onto a localdns flag.
struct NodeCacheOptions {
  bool used = false;                         // any flag of node-cache's own was given
  std::optional<std::string> base_corefile;  // -basecorefile
  std::optional<std::string> corefile;       // -corefile
  std::optional<std::string> conf;           // -conf (CoreDNS; wins over -corefile)
  std::optional<std::string> kube_dns_dir;   // -kubednscm
  std::optional<std::string> upstream_svc;   // -upstreamsvc
  std::optional<std::string> prometheus;     // -prometheus-listen-address
  std::optional<std::uint16_t> dns_port;     // -dns.port, -p
  std::optional<std::uint16_t> health_port;  // -health-port
  std::optional<std::string> pidfile;        // -pidfile
  bool quiet = false;                        // -quiet
  std::vector<std::string> warnings;         // known flags localdns does not honour
  std::size_t localip_at = 0;                // -localip's entries in CliOptions::local_ips
  std::size_t localip_count = 0;
};

inline constexpr std::string_view kDefaultBaseCorefile = "/etc/coredns/Corefile.base";
inline constexpr std::string_view kDefaultCorefile = "/etc/Corefile";
inline constexpr std::string_view kDefaultKubeDnsDir = "/etc/kube-dns";
// node-cache keeps this port out of conntrack unless -health-port says another.
inline constexpr std::uint16_t kNodeCacheHealthPort = 8080;

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
  std::optional<bool> skip_teardown;
  // Observability.
  std::optional<std::string> metrics;
  std::optional<std::string> health;
  std::optional<std::string> control_socket;  // --control-socket (or --control)
  std::optional<std::string> log_format;
  std::optional<std::string> query_log;
  // --autopath[=warm|cname|off]: search_path.mode; bare, warm.
  std::optional<std::string> autopath;
  bool watch_inputs = true;  // --no-watch: no reload when an input file changes
  bool handover = true;      // --no-handover: never take over a running localdns's sockets
  NodeCacheOptions node_cache;
  // `localdns migrate`: --corefile FILE, --kube-dns-dir DIR.
  std::optional<std::string> migrate_corefile;
  std::optional<std::string> migrate_kube_dns_dir;
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

// One node-cache or CoreDNS flag at args[i] (Go syntax), stored into `o`;
// i is moved past a separate value. nullopt: args[i] is not one of them.
std::optional<std::expected<void, std::string>> parse_go_flag(
    std::span<const std::string_view> args, std::size_t& i, CliOptions& o);
// Help text for the node-cache and CoreDNS flags.
std::string go_flags_usage();
// `-plugins`: the Corefile directives localdns translates.
std::string plugins_text();

// The configuration before resolv.conf is read: the YAML file, or
// node-local-dns's Corefile (rendered and translated as node-cache does), or
// the default; then the flags.
struct Startup {
  Config config;
  Errors warnings;            // one line each, for stderr
  std::string corefile;       // the Corefile read (template or finished), empty when none
  std::string rendered;       // the Corefile after node-cache's substitutions, when a template
  std::string rendered_path;  // where node-cache writes it (-conf, else -corefile)
  // Errors in the kube-dns ConfigMap, which is then ignored (as node-cache
  // does: it counts them as setup errors of type `configmap`).
  std::size_t configmap_errors = 0;
};
std::expected<Startup, Errors> build_startup(const CliOptions& o);

// `localdns migrate`: the Corefile (template) as localdns YAML. Placeholders
// the installer fills (__PILLAR__DNS__DOMAIN__, __PILLAR__LOCAL__DNS__,
// __PILLAR__DNS__SERVER__) stay verbatim in the YAML, as does
// __PILLAR__CLUSTER__DNS__ unless -upstreamsvc's variable gives it; each kept
// one is named in a warning. __PILLAR__UPSTREAM__SERVERS__ is filled as
// node-cache does (the kube-dns ConfigMap, else resolv.conf). The flags given
// (the DaemonSet's args: -localip, -setupiptables, ...) then go on top, as for
// a run, so the YAML alone is what those args and that Corefile run.
struct Migration {
  std::string yaml;
  Errors warnings;
};
std::expected<Migration, Errors> migrate(const CliOptions& o);

// The ClusterIP of Service `name` from the environment Kubernetes gives every
// pod: NAME_SERVICE_HOST, upper case, dashes as underscores.
std::string service_host_variable(std::string_view name);

// Applies flags on top of `c`. `--listen` replaces the listen list; each
// `--forward ZONE=...` takes ZONE away from the group that had it and adds a group.
Errors apply_cli(const CliOptions& o, Config& c);

// The whole start-up path: build_startup(), then resolv.conf and validation.
std::expected<Config, Errors> build_config(const CliOptions& o);
// The same from a Startup already built.
std::expected<Config, Errors> finish_config(Config c);

// Reads c.resolv_conf into c.resolv_conf_servers when a group takes its
// servers from it (see servers_of()); the groups are left as written.
Errors fill_resolv_conf_servers(Config& c);

std::string usage();

}  // namespace localdns::config
