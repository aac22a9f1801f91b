#include <algorithm>
#include <charconv>
#include <tuple>

#include <localdns/config/cli.hpp>
#include <localdns/config/duration.hpp>
#include <localdns/config/resolv_conf.hpp>
#include <localdns/dns/name.hpp>

namespace localdns::config {

std::string usage() {
  return R"(Usage: localdns [OPTIONS]
       localdns --check-config FILE
       localdns --print-config [--config FILE | node-local-dns flags] [FLAGS]
       localdns migrate --corefile FILE [--kube-dns-dir DIR] [node-local-dns args]
       localdns cleanup [--config FILE] [--interface-name NAME]
       localdns ctl [--socket PATH | --config FILE] [--json] COMMAND
       localdns doctor [--watch SECONDS] [--json] [--all-pods] [FLAGS]

A node-local caching DNS forwarder.

Options:
  --config FILE            YAML configuration (see config/ for examples)
  --check-config FILE      validate FILE, print every error, exit 0 if valid
  --print-config           print the effective configuration (config file or
                           Corefile, then flags) as YAML, exit 0
  --listen ADDR[:PORT]     listen on UDP and TCP (repeatable; replaces `listen`);
                           [V6ADDR]:PORT for IPv6; default port 5353
  --forward ZONE=PROTO://ADDR[:PORT][,ADDR[:PORT]...]
                           forward ZONE (longest suffix wins, "." for all) to the
                           servers over PROTO: tcp, udp or prefer_udp (repeatable)
  --threads N              worker threads (default: one per core)
  --log-level LEVEL        trace, debug, info, warn, error, critical, off

Node setup (needs CAP_NET_ADMIN; see README "Node setup"):
  --local-ip ADDR          serve ADDR on port 53 from an interface of our own, with
                           NOTRACK rules (repeatable; e.g. 169.254.20.10, 10.96.0.10)
  --setup-interface, --no-setup-interface
                           create the interface and its addresses (default: on)
  --interface-name NAME    default nodelocaldns
  --interface-kind KIND    link kind, default dummy (bridge where dummy is missing)
  --setup-rules, --no-setup-rules
                           install the NOTRACK rules (default: on)
  --rules-backend B        auto, iptables-legacy, iptables-nft or nftables
  --sync-interval DURATION check and repair interface and rules (default 60s)
  --service-cidr CIDR      the cluster's Service range (repeatable): never a
                           fallback DNAT target (node.service_cidr)
  --skip-teardown          leave interface and rules in place on exit (upgrades)

Observability:
  --metrics ADDR:PORT|off  Prometheus metrics (default: first local address or
                           127.0.0.1, port 9253)
  --health ADDR:PORT|off   /health and /ready (default port 8080, same address)
  --control-socket PATH|off
                           Unix socket for `localdns ctl` (default /run/localdns.sock;
                           --control is the same)
  --log-format text|json   json: one object per line
  --query-log N            log 1 in N answered queries (0: off)
  --autopath[=warm|cname|off]
                           search-path prefetch (search_path.mode); bare: warm
  --no-watch               reload on SIGHUP and `localdns ctl reload` only, not
                           when an input file changes
  --no-handover            never take over the listening sockets of a localdns
                           answering on the control socket (upgrades)

Commands:
  cleanup                  remove every interface address and rule localdns may
                           have left (all rule backends), then exit
  ctl [--socket PATH | --config FILE] [--json] stats | top [--names|--nxdomain|
      --clients] [-n N] | flush [NAME] | dump
                           talk to a running localdns over its control socket
                           (default: /run/localdns.sock, else
                           /run/localdns/localdns.sock; --config: its control_socket)
  doctor [--watch S] [--resolv-conf FILE] [--pod PID] [--all-pods]
         [--resolver glibc|musl] [--cluster-dns IP] [--json] [localdns flags]
                           diagnose DNS timeouts on this node: the conntrack
                           race, its causes, and localdns itself (doctor --help)

  migrate --corefile FILE [--kube-dns-dir DIR] [node-local-dns args]
                           print node-local-dns's Corefile (template) and args as
                           localdns YAML; a warning line per directive not carried over
  --version                print the version and exit
  --help                   print this help and exit

)" + go_flags_usage() +
         R"(
Precedence: the YAML file (--config) or node-local-dns's Corefile first, then
the flags on top; --config with -basecorefile or -conf is an error.

Without --config and flags, localdns listens on 127.0.0.1:5353 and forwards
to the nameservers in /etc/resolv.conf.
Example:
  localdns --listen 127.0.0.1:5353 --forward cluster.local=tcp://10.96.0.10:53 \
           --forward .=udp://192.0.2.1:53
)";
}

std::expected<CliOptions, std::string> parse_cli(std::span<const std::string_view> args) {
  CliOptions o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::string_view value;
    bool has_inline = false;
    if (arg.starts_with("--") && arg.find('=') != std::string_view::npos) {
      value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      has_inline = true;
    }
    auto take = [&]() -> std::expected<std::string, std::string> {
      if (has_inline) return std::string(value);
      if (i + 1 >= args.size()) return std::unexpected(std::string(arg) + ": needs a value");
      return std::string(args[++i]);
    };
    auto flag_without_value = [&]() -> std::expected<void, std::string> {
      if (has_inline) return std::unexpected(std::string(arg) + ": takes no value");
      return {};
    };
    std::expected<void, std::string> ok;
    auto take_into = [&](auto& out) -> std::expected<void, std::string> {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      if constexpr (requires { out.push_back(*v); }) {
        out.push_back(*v);
      } else {
        out = *v;
      }
      return {};
    };
    if (args[i] == "--") {  // as Go: the end of the flags; localdns takes no arguments
      if (i + 1 < args.size()) {
        return std::unexpected("unexpected argument '" + std::string(args[i + 1]) +
                               "' after -- (see --help)");
      }
      break;
    }
    if (o.command == Command::Migrate &&
        (args[i].starts_with("--corefile") || args[i].starts_with("-corefile") ||
         args[i].starts_with("--kube-dns-dir"))) {
      // `migrate --corefile FILE`: the Corefile to read, in either dash form.
      std::string_view a = args[i];
      auto eq = a.find('=');
      std::string_view name = a.substr(0, eq);
      if (name == "--corefile" || name == "-corefile" || name == "--kube-dns-dir") {
        std::string v;
        if (eq != std::string_view::npos) {
          v = std::string(a.substr(eq + 1));
        } else if (i + 1 < args.size()) {
          v = std::string(args[++i]);
        } else {
          return std::unexpected(std::string(name) + ": needs a value");
        }
        (name == "--kube-dns-dir" ? o.migrate_kube_dns_dir : o.migrate_corefile) = v;
        continue;
      }
    }
    if (auto go = parse_go_flag(args, i, o)) {
      if (!*go) return std::unexpected(go->error());
      continue;
    }
    if (i == 0 && arg == "migrate") {
      o.command = Command::Migrate;
    } else if (arg == "--print-config") {
      ok = flag_without_value();
      o.command = Command::PrintConfig;
    } else if (i == 0 && arg == "cleanup") {
      o.command = Command::Cleanup;
    } else if (i == 0 && arg == "doctor") {
      o.command = Command::Doctor;
      for (std::size_t j = 1; j < args.size(); ++j)
        o.doctor_args.emplace_back(args[j]);
      return o;
    } else if (i == 0 && arg == "ctl") {
      o.command = Command::Ctl;
      for (std::size_t j = 1; j < args.size(); ++j)
        o.ctl_args.emplace_back(args[j]);
      return o;
    } else if (arg == "--metrics") {
      ok = take_into(o.metrics);
    } else if (arg == "--health") {
      ok = take_into(o.health);
    } else if (arg == "--control-socket" || arg == "--control") {  // --control: older name
      ok = take_into(o.control_socket);
    } else if (arg == "--log-format") {
      ok = take_into(o.log_format);
    } else if (arg == "--query-log") {
      ok = take_into(o.query_log);
    } else if (arg == "--autopath") {  // the value only after '=': a bare flag means warm
      o.autopath = has_inline ? std::string(value) : std::string("warm");
    } else if (arg == "--no-watch") {
      ok = flag_without_value();
      o.watch_inputs = false;
    } else if (arg == "--no-handover") {
      ok = flag_without_value();
      o.handover = false;
    } else if (arg == "--local-ip") {
      ok = take_into(o.local_ips);
    } else if (arg == "--setup-interface" || arg == "--no-setup-interface") {
      ok = flag_without_value();
      o.setup_interface = arg == "--setup-interface";
    } else if (arg == "--setup-rules" || arg == "--no-setup-rules") {
      ok = flag_without_value();
      o.setup_rules = arg == "--setup-rules";
    } else if (arg == "--interface-name") {
      ok = take_into(o.interface_name);
    } else if (arg == "--interface-kind") {
      ok = take_into(o.interface_kind);
    } else if (arg == "--rules-backend") {
      ok = take_into(o.rules_backend);
    } else if (arg == "--sync-interval") {
      ok = take_into(o.sync_interval);
    } else if (arg == "--service-cidr") {
      ok = take_into(o.service_cidrs);
    } else if (arg == "--skip-teardown") {
      ok = flag_without_value();
      o.skip_teardown = true;
    } else if (arg == "--help" || arg == "-h") {
      ok = flag_without_value();
      o.command = Command::Help;
    } else if (arg == "--config" || arg == "-c" || arg == "--check-config") {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      o.config_path = *v;
      if (arg == "--check-config") o.command = Command::CheckConfig;
    } else if (arg == "--listen") {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      o.listen.push_back(*v);
    } else if (arg == "--forward") {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      o.forward.push_back(*v);
    } else if (arg == "--threads") {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      o.threads = *v;
    } else if (arg == "--log-level") {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      o.log_level = *v;
    } else {
      if (!args[i].starts_with("-")) {
        return std::unexpected("unexpected argument '" + std::string(args[i]) +
                               "': localdns takes flags only (a boolean node-cache flag takes "
                               "its value as -flag=false; see --help)");
      }
      return std::unexpected("unknown option '" + std::string(args[i]) + "' (see --help)");
    }
    if (!ok) return std::unexpected(ok.error());
  }
  return o;
}

std::string doctor_usage() {
  return R"(Usage: localdns doctor [OPTIONS] [LOCALDNS FLAGS]

Diagnoses DNS timeouts on this node: conntrack race counters, table pressure,
the kernel log, resolv.conf files and their query amplification, localdns
itself (interface, rules, answers, upstreams), conntrack entries for DNS, and
a verdict with the one fix to try first.

Options:
  --watch SECONDS          sample the conntrack counters twice, SECONDS apart (1-3600)
  --resolv-conf FILE       check FILE instead of /etc/resolv.conf (repeatable)
  --pod PID                check what process PID sees (/proc/PID/root/etc/resolv.conf)
  --all-pods               every process's resolv.conf, grouped by content (root; from a
                           pod: hostPID and CAP_SYS_PTRACE)
  --resolver glibc|musl    whose search arithmetic to use (default glibc)
  --cluster-dns IP         the kube-dns ClusterIP (repeatable; default 10.96.0.10)
  --json                   one JSON document (schema in README "Diagnosing DNS timeouts")
  --help                   this help

LOCALDNS FLAGS (--config FILE, --local-ip, --interface-name, --rules-backend,
--forward, --health, ...) say what localdns should look like; without them it
is found on the node (its interface and rules).

Exit status: 0 all ok, 1 warnings, 2 failures, 64 usage error.
)";
}

std::expected<DoctorOptions, std::string> parse_doctor_cli(std::span<const std::string_view> args) {
  DoctorOptions d;
  std::vector<std::string_view> rest;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::string_view inline_value;
    bool has_inline = false;
    if (arg.starts_with("--") && arg.find('=') != std::string_view::npos) {
      inline_value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      has_inline = true;
    }
    auto take = [&]() -> std::expected<std::string, std::string> {
      if (has_inline) return std::string(inline_value);
      if (i + 1 >= args.size()) return std::unexpected(std::string(arg) + ": needs a value");
      return std::string(args[++i]);
    };
    auto number = [](const std::string& t, unsigned lo, unsigned hi) -> std::optional<unsigned> {
      unsigned n = 0;
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
      if (ec != std::errc{} || p != t.data() + t.size() || n < lo || n > hi) return std::nullopt;
      return n;
    };
    if (arg == "--watch" || arg == "--pod" || arg == "--resolv-conf" || arg == "--resolver" ||
        arg == "--cluster-dns") {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      if (arg == "--watch") {
        d.watch_seconds = number(*v, 1, 3600);
        if (!d.watch_seconds)
          return std::unexpected("--watch " + *v + ": expected 1 to 3600 seconds");
      } else if (arg == "--pod") {
        auto pid = number(*v, 1, 0x3fffffff);
        if (!pid) return std::unexpected("--pod " + *v + ": expected a process id");
        d.pods.push_back(static_cast<int>(*pid));
      } else if (arg == "--resolv-conf") {
        d.resolv_conf.push_back(*v);
      } else if (arg == "--resolver") {
        if (*v != "glibc" && *v != "musl")
          return std::unexpected("--resolver " + *v + ": expected glibc or musl");
        d.musl = *v == "musl";
      } else {
        boost::system::error_code ec;
        boost::asio::ip::make_address(*v, ec);
        if (ec) return std::unexpected("--cluster-dns " + *v + ": expected an IP address");
        d.cluster_dns.push_back(*v);
      }
    } else if (arg == "--all-pods" || arg == "--json") {
      if (has_inline) return std::unexpected(std::string(arg) + ": takes no value");
      (arg == "--json" ? d.json : d.all_pods) = true;
    } else if (arg == "--help" || arg == "-h") {
      d.node.command = Command::Help;
      return d;
    } else {
      rest.push_back(args[i]);
    }
  }
  if (!rest.empty() && !rest.front().starts_with("-"))
    return std::unexpected("doctor: unexpected argument '" + std::string(rest.front()) + "'");
  auto node = parse_cli(rest);
  if (!node) return std::unexpected(node.error());
  if (node->command != Command::Run) return std::unexpected("doctor: unexpected command flag");
  d.node = std::move(*node);
  d.has_node_flags = d.node.config_path || !d.node.local_ips.empty();
  if (d.cluster_dns.empty()) d.cluster_dns.push_back("10.96.0.10");
  return d;
}

namespace {

std::expected<UpstreamGroup, std::string> parse_forward(std::string_view spec) {
  auto eq = spec.find('=');
  auto scheme = spec.find("://");
  if (eq == std::string_view::npos || scheme == std::string_view::npos || scheme < eq) {
    return std::unexpected("--forward " + std::string(spec) +
                           ": expected ZONE=PROTO://ADDR[:PORT][,ADDR[:PORT]...]");
  }
  UpstreamGroup g;
  auto zone = dns::name_from_text(spec.substr(0, eq));
  if (!zone || eq == 0) {
    return std::unexpected("--forward " + std::string(spec) + ": bad zone name '" +
                           std::string(spec.substr(0, eq)) + "'");
  }
  g.zones.push_back(dns::name_to_text(*zone));
  std::string_view proto = spec.substr(eq + 1, scheme - eq - 1);
  if (proto == "tcp") {
    g.transport = Transport::Tcp;
  } else if (proto == "udp") {
    g.transport = Transport::Udp;
  } else if (proto == "prefer_udp") {
    g.transport = Transport::PreferUdp;
  } else {
    return std::unexpected("--forward " + std::string(spec) + ": protocol '" + std::string(proto) +
                           "' is not tcp, udp or prefer_udp");
  }
  std::string_view list = spec.substr(scheme + 3);
  while (true) {
    auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    auto ep = parse_endpoint(item, 53);
    if (!ep) {
      return std::unexpected("--forward " + std::string(spec) + ": bad server address '" +
                             std::string(item) + "'");
    }
    g.servers.push_back(*ep);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  if (g.servers.size() > kMaxServersPerGroup) {
    return std::unexpected("--forward " + std::string(spec) + ": " +
                           std::to_string(g.servers.size()) + " servers; a group takes at most " +
                           std::to_string(kMaxServersPerGroup));
  }
  return g;
}

void apply_node_flags(const CliOptions& o, NodeConfig& n, Errors& errors) {
  if (!o.local_ips.empty()) n.local_addresses.clear();
  for (const auto& ip : o.local_ips) {
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address(ip, ec);
    if (ec) {
      errors.push_back("--local-ip " + ip + ": expected an IPv4 or IPv6 address");
    } else {
      n.local_addresses.push_back(a);
    }
  }
  if (o.setup_interface) n.setup_interface = *o.setup_interface;
  if (o.setup_rules) n.setup_rules = *o.setup_rules;
  if (o.interface_name) n.interface_name = *o.interface_name;
  if (o.interface_kind) n.interface_kind = *o.interface_kind;
  if (o.rules_backend) {
    const auto& b = *o.rules_backend;
    if (b == "auto") {
      n.rules_backend = RulesBackend::Auto;
    } else if (b == "iptables-legacy") {
      n.rules_backend = RulesBackend::IptablesLegacy;
    } else if (b == "iptables-nft") {
      n.rules_backend = RulesBackend::IptablesNft;
    } else if (b == "nftables") {
      n.rules_backend = RulesBackend::Nftables;
    } else {
      errors.push_back("--rules-backend " + b +
                       ": expected auto, iptables-legacy, iptables-nft or nftables");
    }
  }
  if (o.sync_interval) {
    auto d = parse_duration(*o.sync_interval);
    if (!d || *d < std::chrono::seconds(1) || *d > std::chrono::hours(1)) {
      errors.push_back("--sync-interval " + *o.sync_interval +
                       ": expected a duration from 1s to 1h, like 30s or 5m");
    } else {
      n.sync_interval = *d;
    }
  }
  if (!o.service_cidrs.empty()) n.service_cidr.clear();
  for (const auto& text : o.service_cidrs) {
    if (auto cidr = parse_cidr(text)) {
      n.service_cidr.push_back(*cidr);
    } else {
      errors.push_back("--service-cidr " + text +
                       ": expected an address range like 10.96.0.0/12 or fd00:10:96::/112");
    }
  }
  if (o.skip_teardown) n.skip_teardown = *o.skip_teardown;
}

}  // namespace

Errors apply_cli(const CliOptions& o, Config& c) {
  Errors errors;
  if (!o.listen.empty()) {
    c.listen.clear();
    for (const auto& l : o.listen) {
      if (auto ep = parse_endpoint(l, kDefaultListenPort)) {
        c.listen.push_back(*ep);
      } else {
        errors.push_back("--listen " + l + ": expected ADDR[:PORT] or [V6ADDR]:PORT");
      }
    }
  }
  for (const auto& f : o.forward) {
    auto g = parse_forward(f);
    if (!g) {
      errors.push_back(g.error());
      continue;
    }
    const std::string& zone = g->zones.front();
    for (auto& existing : c.forward)
      std::erase(existing.zones, zone);
    std::erase_if(c.forward, [](const UpstreamGroup& x) { return x.zones.empty(); });
    c.forward.push_back(std::move(*g));
  }
  if (o.threads) {
    unsigned n = 0;
    const auto& t = *o.threads;
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
    if (ec != std::errc{} || ptr != t.data() + t.size() || n > 256) {
      errors.push_back("--threads " + t + ": expected a number from 0 (one per core) to 256");
    } else {
      c.threads = n;
    }
  }
  if (o.log_level) {
    if (!is_log_level(*o.log_level)) {
      errors.push_back("--log-level " + *o.log_level +
                       ": expected trace, debug, info, warn, error, critical or off");
    } else {
      c.log_level = *o.log_level;
    }
  }
  apply_node_flags(o, c.node, errors);
  if (o.node_cache.health_port) {
    c.node.health_port = *o.node_cache.health_port;
  } else if (o.node_cache.used && c.node.health_port == 0) {
    c.node.health_port = kNodeCacheHealthPort;  // node-cache's default -health-port
  }
  if (o.node_cache.dns_port) c.node.port = *o.node_cache.dns_port;
  for (auto [flag, value, endpoint] :
       {std::tuple{"--metrics", &o.metrics, &c.metrics}, {"--health", &o.health, &c.health}}) {
    if (!*value) continue;
    if (**value == "off") {
      endpoint->enabled = false;
    } else if (auto ep = parse_endpoint(**value, 0); ep && ep->port != 0) {
      endpoint->enabled = true;
      endpoint->listen = *ep;
    } else {
      errors.push_back(std::string(flag) + " " + **value + ": expected ADDRESS:PORT or off");
    }
  }
  if (o.control_socket) {
    c.control_socket = *o.control_socket == "off" ? "" : *o.control_socket;
  }
  if (o.log_format) {
    if (*o.log_format != "text" && *o.log_format != "json") {
      errors.push_back("--log-format " + *o.log_format + ": expected text or json");
    } else {
      c.log_format = *o.log_format;
    }
  }
  if (o.autopath) {
    static constexpr std::pair<std::string_view, server::SearchPathMode> kModes[] = {
        {"warm", server::SearchPathMode::Warm},
        {"cname", server::SearchPathMode::Cname},
        {"off", server::SearchPathMode::Off}};
    auto* m = std::find_if(std::begin(kModes), std::end(kModes),
                           [&](const auto& p) { return p.first == *o.autopath; });
    if (m == std::end(kModes)) {
      errors.push_back("--autopath=" + *o.autopath + ": expected warm, cname or off");
    } else {
      c.search_path.mode = m->second;
    }
  }
  if (o.query_log) {
    unsigned n = 0;
    const auto& t = *o.query_log;
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
    if (ec != std::errc{} || ptr != t.data() + t.size() || n > 1'000'000) {
      errors.push_back("--query-log " + t + ": expected N (log 1 in N queries; 0 = off)");
    } else {
      c.query_log_sample = n;
    }
  }
  add_local_addresses_to_listen(c);
  return errors;
}

Errors fill_resolv_conf_servers(Config& c) {
  Errors errors;
  c.resolv_conf_servers.clear();
  for (std::size_t i = 0; i < c.forward.size(); ++i) {
    if (!c.forward[i].servers_from_resolv_conf) continue;
    auto servers = read_resolv_conf(c.resolv_conf);
    if (!servers) {
      errors.push_back("forward[" + std::to_string(i) + "].servers: " + servers.error());
      continue;
    }
    c.resolv_conf_servers = std::move(*servers);
  }
  return errors;
}

}  // namespace localdns::config
