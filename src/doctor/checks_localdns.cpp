// Check 5: localdns itself: its rules against what the rules code builds, its
// interface, its answers, its upstreams and its own counters.
#include <algorithm>
#include <charconv>
#include <cstdio>

#include <boost/asio/ip/address.hpp>

#include <localdns/doctor/checks.hpp>

#include "checks_common.hpp"

namespace localdns::doctor {

using namespace detail;

// --- 5 -----------------------------------------------------------------------------

std::vector<ExpectedRule> expected_rules(const node::RuleTargets& t, bool v6) {
  std::vector<ExpectedRule> out;
  for (auto& r : node::iptables_rules(t, v6))
    out.push_back({r.table, r.chain, r.comment});
  return out;
}

std::vector<std::string> verify_iptables_save(const std::vector<ExpectedRule>& want,
                                              std::string_view save, std::string_view family) {
  // table -> chain -> comments in order ("" for a rule without one)
  std::map<std::string, std::map<std::string, std::vector<std::string>>> rules;
  for (const auto& [table, saved] : node::parse_iptables_save(save))
    for (const auto& r : saved)
      rules[table][r.chain].push_back(r.comment);
  std::vector<std::string> problems;
  for (const auto& w : want) {
    const auto& chain = rules[w.table][w.chain];
    auto n = std::count(chain.begin(), chain.end(), w.comment);
    std::string where = std::string(family) + " " + w.table + " " + w.chain;
    if (n == 0) {
      problems.push_back("missing in " + where + ": \"" + w.comment + "\"");
      continue;
    }
    if (n > 1)
      problems.push_back("duplicated (" + std::to_string(n) + "x) in " + where + ": \"" +
                         w.comment + "\"");
    // Ours stay together, as localdns keeps them: other agents' rules may
    // precede the block (Calico, Cilium insert theirs at the top), but none
    // may sit between two of ours.
    auto pos = std::find(chain.begin(), chain.end(), w.comment) - chain.begin();
    auto first =
        std::find_if(chain.begin(), chain.end(),
                     [](const std::string& c) { return c.starts_with(node::kCommentPrefix); }) -
        chain.begin();
    for (std::ptrdiff_t i = first; i < pos; ++i) {
      if (!chain[i].starts_with(node::kCommentPrefix)) {
        problems.push_back("split in " + where + " (position " + std::to_string(pos + 1) +
                           ", after a rule that is not localdns's between ours): \"" + w.comment +
                           "\"");
        break;
      }
    }
  }
  return problems;
}

std::vector<std::string> verify_nft_listing(const std::string& want_ruleset,
                                            std::string_view listing) {
  std::vector<std::string> have;
  for (auto line : split_lines(listing)) {
    auto c = node::rule_comment(line);
    if (!c.empty()) have.push_back(c);
  }
  std::vector<std::string> problems;
  for (auto line : split_lines(want_ruleset)) {
    auto c = node::rule_comment(line);
    if (c.empty()) continue;
    auto n = std::count(have.begin(), have.end(), c);
    if (n == 0) problems.push_back("missing in nft table inet localdns: \"" + c + "\"");
    if (n > 1)
      problems.push_back("duplicated (" + std::to_string(n) + "x) in nft table inet localdns: \"" +
                         c + "\"");
  }
  return problems;
}

MetricsSummary parse_metrics(std::string_view text) {
  MetricsSummary m;
  for (auto line : split_lines(text)) {
    if (line.empty() || line.front() == '#') continue;
    auto sp = line.rfind(' ');
    if (sp == std::string_view::npos) continue;
    std::string_view series = line.substr(0, sp);
    double v = 0;
    auto num = line.substr(sp + 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    if (ec != std::errc{}) continue;
    auto family = series.substr(0, series.find('{'));
    if (family == "coredns_dns_responses_total") {
      m.responses += v;
      if (series.find("rcode=\"SERVFAIL\"") != std::string_view::npos) m.servfail += v;
    } else if (family == "localdns_upstream_failures_total") {
      m.upstream_failures += v;
    } else if (family == "coredns_nodecache_setup_errors_total") {
      m.setup_errors += v;
    } else if (family == "localdns_node_repairs_total") {
      m.repairs += v;
    } else {
      continue;
    }
    m.any = true;
  }
  return m;
}

Check check_localdns(const LocaldnsObservation& o) {
  Check c = make_check(5, "localdns", "localdns on this node");
  c.facts["deployed"] = o.expected;
  c.facts["running"] = !o.pids.empty();
  if (!o.expected) {
    c.raise(Status::warn);
    c.evidence.push_back("no localdns configuration given and no interface " + o.interface_name +
                         " or localdns rules found: no node-local cache on this node");
    c.remedies.push_back(
        "deploy a node-local cache (localdns) on every node; pass its --config or "
        "--local-ip flags to check it");
    return c;
  }
  if (o.pids.empty()) {
    c.raise(Status::fail);
    c.evidence.push_back("localdns is not running");
    c.remedies.push_back("start localdns (its DaemonSet pod); checks 1-4 and 6 still apply");
  } else {
    std::string pids;
    for (int p : o.pids)
      pids += (pids.empty() ? "" : ",") + std::to_string(p);
    c.evidence.push_back("localdns running (pid " + pids + ")");
  }
  if (o.interface_error) {
    c.raise(Status::warn);
    c.evidence.push_back("interface " + o.interface_name + ": " + *o.interface_error);
  } else if (!o.interface_exists) {
    c.raise(Status::fail);
    c.evidence.push_back("interface " + o.interface_name + " does not exist");
    c.remedies.push_back("restart localdns with node setup on (it creates " + o.interface_name +
                         ")");
  } else {
    c.evidence.push_back(
        "interface " + o.interface_name + " " + (o.interface_up ? "up" : "DOWN") +
        (o.interface_ours ? ", marked as localdns's" : "") + ", addresses " +
        (o.interface_addresses.empty() ? "(none)" : join(o.interface_addresses, " ")));
    if (!o.interface_up) c.raise(Status::fail);
    for (const auto& a : o.want_addresses) {
      if (!contains(o.interface_addresses, a)) {
        c.raise(Status::fail);
        c.evidence.push_back("address " + a + " missing from " + o.interface_name);
      }
    }
  }
  c.facts["interface_up"] = o.interface_exists && o.interface_up;
  if (o.rules_error) {
    c.raise(Status::warn);
    c.evidence.push_back("rules not checked: " + *o.rules_error);
  } else {
    c.facts["rules_backend"] = o.backend;
    c.facts["rules_checked"] = std::int64_t(o.rules_checked);
    c.facts["rule_problems"] = o.rule_problems;
    if (o.rule_problems.empty()) {
      c.evidence.push_back(std::to_string(o.rules_checked) + " NOTRACK/ACCEPT rules in " +
                           o.backend + ": each present once, together in its chain");
    } else {
      c.raise(Status::fail);
      for (const auto& p : o.rule_problems)
        c.evidence.push_back("rule " + p);
      c.remedies.push_back(
          "restart localdns or wait for its periodic check (node.sync_interval) to restore the "
          "rules; `localdns cleanup` then a restart if they stay wrong");
    }
  }
  bool unanswered = false;
  for (const auto& q : o.queries) {
    c.evidence.push_back(
        "query " + q.target + ": " +
        (q.answered ? q.detail + " in " + fmt_rate(q.ms) + " ms" : "no answer (" + q.detail + ")"));
    if (!q.answered) unanswered = true;
  }
  if (unanswered) {
    c.raise(Status::fail);
    c.remedies.push_back("localdns does not answer on every local address: check its log");
  }
  if (o.metrics) {
    const auto& m = *o.metrics;
    double share = m.responses > 0 ? m.servfail / m.responses : 0;
    c.facts["servfail_share"] = share;
    c.facts["upstream_failures"] = std::int64_t(m.upstream_failures);
    c.facts["setup_errors"] = std::int64_t(m.setup_errors);
    c.facts["repairs"] = std::int64_t(m.repairs);
    c.evidence.push_back("metrics " + o.metrics_url + ": " +
                         std::to_string(std::int64_t(m.responses)) + " responses, " +
                         fmt_rate(share * 100) + " % SERVFAIL, " +
                         std::to_string(std::int64_t(m.upstream_failures)) +
                         " upstream failures, " + std::to_string(std::int64_t(m.setup_errors)) +
                         " setup errors, " + std::to_string(std::int64_t(m.repairs)) + " repairs");
    if (m.responses >= 100 && share > 0.05) {
      c.raise(Status::warn);
      c.remedies.push_back("more than 5 % SERVFAIL: the upstreams (CoreDNS) fail or time out");
    }
    if (m.setup_errors > 0) {
      c.raise(Status::warn);
      c.remedies.push_back("node setup errors: see localdns's log (CAP_NET_ADMIN, rules backend)");
    }
  } else if (!o.metrics_url.empty()) {
    c.evidence.push_back("metrics " + o.metrics_url + " not reachable" +
                         (o.metrics_error.empty() ? "" : ": " + o.metrics_error) +
                         " (its counters are not checked)");
  }
  bool upstream_down = false;
  for (const auto& u : o.upstreams) {
    c.evidence.push_back("upstream " + u.target + ": " +
                         (u.answered ? "reachable in " + fmt_rate(u.ms) + " ms" : u.detail));
    if (!u.answered) upstream_down = true;
  }
  if (upstream_down) {
    c.raise(Status::warn);
    c.remedies.push_back("an upstream is unreachable over TCP: check CoreDNS and the route to it");
  }
  return c;
}

}  // namespace localdns::doctor
