// `localdns doctor`: runs the checks of checks.hpp on this node and prints
// the report. app/doctor_main.cpp parses the flags and the config and fills
// Inputs; probe.cpp gathers the rest (procfs, the rules, DNS and TCP probes);
// checks*.cpp judge them; report.cpp renders them. One thread, the caller's.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <localdns/doctor/checks.hpp>
#include <localdns/node/link.hpp>
#include <localdns/node/rules.hpp>
#include <localdns/util/endpoint.hpp>

namespace localdns::doctor {

struct ReportMeta {
  bool root = false;
  std::string resolver = "glibc";
  unsigned watch_seconds = 0;
  std::vector<std::string> notes;  // e.g. which checks need root
};

std::string render_text(const std::vector<Check>& checks, const ReportMeta& meta, bool colour);
std::string render_json(const std::vector<Check>& checks, const ReportMeta& meta);

// Which program lists the rules localdns installed (the backend, resolved).
enum class RulesTool { nftables, iptables_legacy, iptables_nft };

// What the command was asked, and what localdns should look like on this
// node, in plain values: app/ builds them from the flags and the config.
struct Inputs {
  // The doctor's own flags.
  unsigned watch_seconds = 0;            // --watch; 0: one sample
  std::vector<std::string> resolv_conf;  // --resolv-conf FILE
  std::vector<int> pods;                 // --pod PID
  bool all_pods = false;                 // --all-pods
  bool musl = false;                     // --resolver musl
  bool json = false;                     // --json
  std::vector<std::string> cluster_dns;  // --cluster-dns
  // localdns's interface: its name, and what netlink saw (nullopt: not read,
  // interface_error says why).
  std::string interface_name;
  std::optional<node::LinkState> link;
  std::optional<std::string> interface_error;
  // What localdns should look like came from flags or --config (not guessed
  // from the interface).
  bool from_config = false;
  node::RuleTargets targets;                // the rules localdns installs here
  std::vector<std::string> want_addresses;  // node.local_addresses
  RulesTool rules_tool = RulesTool::iptables_nft;
  std::string backend;                    // its name, for the report
  std::string probe_zone = ".";           // the zone the DNS probes ask for (SOA; "." NS)
  std::vector<util::Endpoint> upstreams;  // every group's servers, in order
  std::optional<util::Endpoint> metrics;  // localdns's /metrics; nullopt: disabled
};

// The whole command after its flags; returns its exit code (0, 1, 2).
int run_doctor(const Inputs& in);

}  // namespace localdns::doctor
