// `localdns doctor`: the checks as pure functions over captured inputs (the
// text of /proc files, iptables-save output, resolv.conf files, probe
// results). Nothing here reads the system; probe.cpp does that.
#pragma once

#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <localdns/node/rules.hpp>

namespace localdns::doctor {

enum class Status { ok, warn, fail };
std::string_view to_string(Status s);
Status worst(Status a, Status b);

using Fact = std::variant<std::int64_t, double, bool, std::string, std::vector<std::string>>;

struct Check {
  int id = 0;
  std::string key;   // "conntrack_race", ...
  std::string name;  // "Conntrack race evidence"
  Status status = Status::ok;
  std::vector<std::string> evidence;
  std::vector<std::string> remedies;
  std::map<std::string, Fact> facts;  // machine-readable evidence for --json

  void raise(Status s) { status = worst(status, s); }
};

// --- 1: /proc/net/stat/nf_conntrack -------------------------------------------

struct ConntrackStat {
  std::vector<std::string> columns;             // from the header line, in order
  std::map<std::string, std::uint64_t> totals;  // summed over CPUs; `entries` from one row
  unsigned cpus = 0;
  bool has(const std::string& column) const { return totals.contains(column); }
  std::uint64_t get(const std::string& column) const;
};

// Parses the hexadecimal per-CPU table; names come from its header line.
std::expected<ConntrackStat, std::string> parse_conntrack_stat(std::string_view text);

// The race counters: insert_failed, drop, clashres, early_drop, invalid.
inline constexpr const char* kRaceCounters[] = {"insert_failed", "drop", "clashres", "early_drop",
                                                "invalid"};

// One sample (totals since boot), or two samples `seconds` apart (rates).
Check check_conntrack_race(const std::optional<ConntrackStat>& now,
                           const std::optional<ConntrackStat>& before, double seconds,
                           const std::string& unavailable_reason = {});

// --- 2: table pressure -----------------------------------------------------------

struct ConntrackSysctls {
  std::optional<std::uint64_t> count, max, buckets, udp_timeout, udp_timeout_stream;
};
Check check_table_pressure(const ConntrackSysctls& s);

// --- 3: kernel log ---------------------------------------------------------------

// `log` is nullopt when the kernel log could not be read; `why` says why.
Check check_kernel_log(const std::optional<std::string>& log, const std::string& why = {});
unsigned count_table_full(std::string_view log);

// --- 4: resolver configuration ---------------------------------------------------

struct ResolvConf {
  std::vector<std::string> nameservers;
  std::vector<std::string> search;  // glibc: the last search/domain line wins
  unsigned ndots = 1;
  unsigned timeout = 5;
  unsigned attempts = 2;
  bool single_request = false;
  bool single_request_reopen = false;
  bool use_vc = false;
  bool edns0 = false;
  std::vector<std::string> other_options;
};
ResolvConf parse_resolv_conf(std::string_view text);

enum class Resolver { glibc, musl };

// The names getaddrinfo(name) asks for, in order, with this resolv.conf.
std::vector<std::string> candidate_names(const ResolvConf& rc, Resolver r, std::string_view name);

struct Amplification {
  unsigned names = 0;    // names tried, including the one that answered
  unsigned queries = 0;  // A and AAAA for each
  bool answered = false;
};
// Queries one getaddrinfo(name, AF_UNSPEC) sends until the first answer,
// when `exists_as` (an absolute name, no trailing dot) is the one that
// exists; nullopt: the name exists nowhere.
Amplification amplification(const ResolvConf& rc, Resolver r, std::string_view name,
                            const std::optional<std::string>& exists_as);

// What localdns looks like on this node, as far as check 4 and 6 need it.
struct LocalView {
  std::vector<std::string> captured;         // addresses localdns serves here (interface + rules)
  std::vector<std::string> cluster_dns;      // kube-dns ClusterIPs (--cluster-dns)
  std::string link_local = "169.254.20.10";  // what to recommend
  bool localdns_deployed = false;
};

struct ResolvSource {
  std::string label;  // "/etc/resolv.conf", "pid 1234", ...
  std::string text;
  std::vector<int> pids;  // --all-pods: the processes using this content
};

Check check_resolver(const std::vector<ResolvSource>& sources, const LocalView& v, Resolver r,
                     const std::vector<std::string>& unreadable = {});

// --- 5: localdns itself ---------------------------------------------------------

// One rule localdns needs, as the rules code builds it.
struct ExpectedRule {
  std::string table, chain, comment;
};
std::vector<ExpectedRule> expected_rules(const node::RuleTargets& t, bool v6);

// Checks iptables-save text against the rules: each present exactly once, and
// localdns's rules leading their chain. One line per problem, naming the rule.
std::vector<std::string> verify_iptables_save(const std::vector<ExpectedRule>& want,
                                              std::string_view save, std::string_view family);
// The same for `nft list table inet localdns` output against nftables_ruleset().
std::vector<std::string> verify_nft_listing(const std::string& want_ruleset,
                                            std::string_view listing);

struct ProbeResult {
  std::string target;  // "169.254.20.10:53 udp"
  bool answered = false;
  double ms = 0;
  std::string detail;  // rcode or error
};

// localdns's own counters, from its /metrics text.
struct MetricsSummary {
  double responses = 0, servfail = 0;  // coredns_dns_responses_total, all and rcode SERVFAIL
  double upstream_failures = 0;        // localdns_upstream_failures_total
  double setup_errors = 0;             // coredns_nodecache_setup_errors_total
  double repairs = 0;                  // localdns_node_repairs_total
  bool any = false;                    // at least one of these families was present
};
MetricsSummary parse_metrics(std::string_view text);

struct LocaldnsObservation {
  bool expected = false;     // config given, or its interface / rules found
  bool from_config = false;  // what it should look like came from flags or --config
  std::vector<int> pids;     // localdns processes
  std::string interface_name;
  bool interface_exists = false, interface_up = false, interface_ours = false;
  std::vector<std::string> interface_addresses;
  std::vector<std::string> want_addresses;
  std::string backend;
  std::optional<std::string> rules_error;  // could not read the rules (e.g. not root)
  std::vector<std::string> rule_problems;
  unsigned rules_checked = 0;
  std::vector<ProbeResult> queries;    // UDP and TCP to each local address
  std::vector<ProbeResult> upstreams;  // TCP connect to each upstream
  std::optional<std::string> interface_error;
  std::string metrics_url;
  std::optional<MetricsSummary> metrics;  // nullopt: endpoint not reachable
  std::string metrics_error;
};
Check check_localdns(const LocaldnsObservation& o);

// --- 6: conntrack entries for DNS ---------------------------------------------

struct DnsEntries {
  unsigned to_local = 0;    // towards a local address, port 53
  unsigned to_cluster = 0;  // towards a kube-dns ClusterIP not captured
  unsigned total_dns = 0;   // any udp/tcp entry with port 53
};
// /proc/net/nf_conntrack text; an entry counts by its original direction.
DnsEntries count_dns_entries(std::string_view text, const std::vector<std::string>& locals,
                             const std::vector<std::string>& cluster_dns);
Check check_dns_entries(const std::optional<DnsEntries>& e, const LocalView& v,
                        const std::string& unavailable_reason = {});

// --- 7: verdict --------------------------------------------------------------------

Check verdict(const std::vector<Check>& checks);

// 0 all ok, 1 warnings, 2 failures.
int exit_code(const std::vector<Check>& checks);

}  // namespace localdns::doctor
