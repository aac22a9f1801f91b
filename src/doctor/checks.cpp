// Status, the verdict (check 7) and the exit code: what the checks of
// checks_*.cpp add up to.
#include <algorithm>
#include <charconv>
#include <cstdio>

#include <boost/asio/ip/address.hpp>

#include <localdns/doctor/checks.hpp>

#include "checks_common.hpp"

namespace localdns::doctor {

using namespace detail;

std::string_view to_string(Status s) {
  switch (s) {
    case Status::ok:
      return "ok";
    case Status::warn:
      return "warn";
    case Status::fail:
      return "fail";
  }
  return "fail";
}

Status worst(Status a, Status b) {
  return static_cast<int>(a) >= static_cast<int>(b) ? a : b;
}

// --- 7 -----------------------------------------------------------------------------

Check verdict(const std::vector<Check>& checks) {
  Check c = make_check(7, "verdict", "Verdict");
  for (const auto& x : checks)
    c.raise(x.status);
  const bool deployed = fact_int(checks, "localdns", "deployed") != 0;
  const Check* local = find(checks, "localdns");
  const bool rising = fact_int(checks, "conntrack_race", "race_rising") != 0;
  const bool since_boot = fact_int(checks, "conntrack_race", "race_since_boot") != 0;
  const bool dropping = fact_int(checks, "conntrack_race", "insert_failed_delta") > 0 ||
                        fact_int(checks, "conntrack_race", "drop_delta") > 0;
  const bool table_full = fact_int(checks, "kernel_log", "table_full_lines") > 0;
  const bool uncaptured = fact_int(checks, "resolver", "uncaptured_cluster_ip") != 0;
  const bool ndots = fact_int(checks, "resolver", "ndots_high") != 0;
  const bool cluster_entries = fact_int(checks, "conntrack_dns_entries", "to_cluster_ip") > 0;
  std::string what, fix;
  if (table_full) {
    what = "the conntrack table is full and the kernel drops packets";
    fix = "raise nf_conntrack_max (buckets = max/4): a separate problem from the race";
  } else if (deployed && local && local->status == Status::fail) {
    what = "localdns is deployed but not working as it should (check 5)";
    fix = local->remedies.empty() ? "fix what check 5 names" : local->remedies.front();
  } else if (since_boot && !rising && deployed && local && local->status == Status::ok &&
             !uncaptured) {
    what =
        "race counters are non-zero since boot, but localdns and its rules are in place and "
        "the pods checked use it";
    fix = "`localdns doctor --watch 30` while DNS is slow: only climbing counters matter";
  } else if (rising || since_boot) {
    what = dropping ? "insert_failed is climbing: the conntrack DNS race is dropping queries"
                    : "the conntrack A/AAAA race happens on this node (clash counters)";
    if (!deployed) {
      fix = "`single-request-reopen` now; plan the node-local cache (localdns) on every node";
    } else if (uncaptured) {
      fix = "point pods at the node-local address: they still query an uncaptured ClusterIP";
    } else {
      fix = "`single-request-reopen` for the pods whose DNS still goes through conntrack";
    }
  } else if (uncaptured) {
    what = "pods query the kube-dns ClusterIP through kube-proxy's DNAT and conntrack";
    fix = "point pods at the node-local address, or let localdns capture the ClusterIP";
  } else if (cluster_entries && !deployed) {
    what = "DNS from pods is tracked by conntrack (the race window) and no node-local cache runs";
    fix = "a node-local cache (localdns) on every node";
  } else if (ndots) {
    what = "no sign of the conntrack race; ndots:5 multiplies external lookups";
    fix = "lower ndots (e.g. 2) or use trailing-dot FQDNs; with localdns, its search-path features";
  } else {
    what = "no sign of the conntrack DNS race";
  }
  c.evidence.push_back(what);
  if (!fix.empty()) c.remedies.push_back(fix);
  c.facts["summary"] = what;
  c.facts["fix"] = fix;
  return c;
}

int exit_code(const std::vector<Check>& checks) {
  Status s = Status::ok;
  for (const auto& c : checks)
    s = worst(s, c.status);
  return s == Status::ok ? 0 : s == Status::warn ? 1 : 2;
}

}  // namespace localdns::doctor
