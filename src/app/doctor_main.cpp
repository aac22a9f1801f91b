// The config side of `localdns doctor`: what localdns should look like on
// this node comes from --config and the node flags, else from the interface
// found there; doctor/ gets it as plain values (doctor::Inputs).
#include <iostream>

#include <localdns/app/doctor_main.hpp>
#include <localdns/config/cli.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/doctor/doctor.hpp>
#include <localdns/node/link.hpp>
#include <localdns/node/node_setup.hpp>
#include <localdns/node/rules.hpp>

namespace localdns::app {

namespace {

doctor::RulesTool rules_tool(config::RulesBackend kind) {
  switch (kind) {
    case config::RulesBackend::Nftables:
      return doctor::RulesTool::nftables;
    case config::RulesBackend::IptablesLegacy:
      return doctor::RulesTool::iptables_legacy;
    case config::RulesBackend::IptablesNft:
    case config::RulesBackend::Auto:
      break;
  }
  return doctor::RulesTool::iptables_nft;
}

}  // namespace

int doctor_main(const std::vector<std::string>& raw) {
  std::vector<std::string_view> args(raw.begin(), raw.end());
  auto opts = config::parse_doctor_cli(args);
  if (!opts) {
    std::cerr << "localdns doctor: " << opts.error()
              << (opts.error().find("see --help") == std::string::npos
                      ? " (see localdns doctor --help)"
                      : "")
              << "\n";
    return 64;
  }
  if (opts->node.command == config::Command::Help) {
    std::cout << config::doctor_usage();
    return 0;
  }
  doctor::Inputs in;
  in.watch_seconds = opts->watch_seconds.value_or(0);
  in.resolv_conf = opts->resolv_conf;
  in.pods = opts->pods;
  in.all_pods = opts->all_pods;
  in.musl = opts->musl;
  in.json = opts->json;
  in.cluster_dns = opts->cluster_dns;

  // What localdns should look like: flags/--config, else what the node has.
  config::Config cfg = config::default_config();
  if (opts->node.config_path) {
    auto loaded = config::load_config_file(*opts->node.config_path);
    if (!loaded) {
      for (const auto& e : loaded.error())
        std::cerr << "localdns doctor: " << e << "\n";
      return 64;
    }
    cfg = std::move(*loaded);
  }
  in.interface_name = opts->node.interface_name.value_or(cfg.node.interface_name);
  in.from_config = opts->has_node_flags || !cfg.node.local_addresses.empty();
  if (auto nl = node::Netlink::open(); nl) {
    if (auto st = nl->inspect(in.interface_name); st) {
      in.link = *st;
    } else {
      in.interface_error = st.error();
    }
  } else {
    in.interface_error = nl.error();
  }
  config::CliOptions node_flags = opts->node;
  if (!in.from_config && in.link && in.link->exists) {
    for (const auto& a : in.link->addresses)
      if (!(a.is_v6() && a.to_v6().is_link_local())) node_flags.local_ips.push_back(a.to_string());
  }
  if (auto errors = config::apply_cli(node_flags, cfg); !errors.empty()) {
    for (const auto& e : errors)
      std::cerr << "localdns doctor: " << e << "\n";
    return 64;
  }
  (void)config::fill_resolv_conf_servers(cfg);  // only for the fallback DNAT's target
  in.targets = config::rule_targets(cfg);
  if (!in.from_config) {
    for (auto& l : in.targets.locals)
      l.fallback.reset();  // unknown without its flags
  }
  for (const auto& a : cfg.node.local_addresses)
    in.want_addresses.push_back(a.to_string());

  auto kind = cfg.node.rules_backend;
  if (kind == config::RulesBackend::Auto) kind = node::detect_rules_backend();
  in.rules_tool = rules_tool(kind);
  in.backend = std::string(config::to_string(kind));
  // The first forwarded zone other than the root (cluster.local), else ".".
  for (const auto& g : cfg.forward)
    for (const auto& z : g.zones)
      if (in.probe_zone == "." && z != ".") in.probe_zone = z;
  for (const auto& g : cfg.forward) {
    const auto& servers = config::servers_of(cfg, g);
    in.upstreams.insert(in.upstreams.end(), servers.begin(), servers.end());
  }
  if (cfg.metrics.enabled)
    in.metrics = config::resolve(cfg.metrics, cfg, config::kDefaultMetricsPort);
  return doctor::run_doctor(in);
}

}  // namespace localdns::app
