#include <algorithm>
#include <charconv>
#include <cstdio>

#include <boost/asio/ip/address.hpp>

#include <localdns/doctor/checks.hpp>

namespace localdns::doctor {

namespace {

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    auto nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

std::vector<std::string_view> split_ws(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
      ++i;
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
      ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::string fmt_rate(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v >= 10 || v == 0 ? "%.0f" : "%.2f", v);
  return buf;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v)
    out += (out.empty() ? "" : std::string(sep)) + s;
  return out;
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

bool link_local_text(const std::string& a) {
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(a, ec);
  return !ec && node::is_link_local(addr);
}

const Fact* fact(const Check& c, const std::string& key) {
  auto it = c.facts.find(key);
  return it == c.facts.end() ? nullptr : &it->second;
}
std::int64_t fact_int(const std::vector<Check>& checks, const std::string& check,
                      const std::string& key) {
  for (const auto& c : checks) {
    if (c.key != check) continue;
    if (const auto* f = fact(c, key)) {
      if (const auto* i = std::get_if<std::int64_t>(f)) return *i;
      if (const auto* b = std::get_if<bool>(f)) return *b ? 1 : 0;
    }
  }
  return 0;
}
const Check* find(const std::vector<Check>& checks, const std::string& key) {
  for (const auto& c : checks)
    if (c.key == key) return &c;
  return nullptr;
}

Check make_check(int id, std::string key, std::string name) {
  Check c;
  c.id = id;
  c.key = std::move(key);
  c.name = std::move(name);
  return c;
}

}  // namespace

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

// --- 1 -----------------------------------------------------------------------------

std::uint64_t ConntrackStat::get(const std::string& column) const {
  auto it = totals.find(column);
  return it == totals.end() ? 0 : it->second;
}

std::expected<ConntrackStat, std::string> parse_conntrack_stat(std::string_view text) {
  auto lines = split_lines(text);
  if (lines.empty()) return std::unexpected("empty nf_conntrack statistics");
  ConntrackStat s;
  for (auto c : split_ws(lines[0]))
    s.columns.emplace_back(c);
  if (s.columns.empty()) return std::unexpected("no header line in nf_conntrack statistics");
  for (const auto& c : s.columns)
    s.totals[c] = 0;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    auto fields = split_ws(lines[i]);
    if (fields.empty()) continue;
    if (fields.size() != s.columns.size()) {
      return std::unexpected("row " + std::to_string(i) + " has " + std::to_string(fields.size()) +
                             " fields, header has " + std::to_string(s.columns.size()));
    }
    for (std::size_t k = 0; k < fields.size(); ++k) {
      std::uint64_t v = 0;
      auto [p, ec] = std::from_chars(fields[k].data(), fields[k].data() + fields[k].size(), v, 16);
      if (ec != std::errc{} || p != fields[k].data() + fields[k].size()) {
        return std::unexpected("row " + std::to_string(i) + ": '" + std::string(fields[k]) +
                               "' is not hexadecimal");
      }
      // `entries` is the table's size, the same in every row.
      if (s.columns[k] == "entries") {
        if (s.cpus == 0) s.totals["entries"] = v;
      } else {
        s.totals[s.columns[k]] += v;
      }
    }
    ++s.cpus;
  }
  if (s.cpus == 0) return std::unexpected("no per-CPU rows in nf_conntrack statistics");
  return s;
}

Check check_conntrack_race(const std::optional<ConntrackStat>& now,
                           const std::optional<ConntrackStat>& before, double seconds,
                           const std::string& unavailable_reason) {
  Check c = make_check(1, "conntrack_race", "Conntrack race evidence");
  if (!now) {
    c.evidence.push_back(unavailable_reason.empty()
                             ? "no /proc/net/stat/nf_conntrack: conntrack is not loaded, so "
                               "there is no conntrack race on this node"
                             : unavailable_reason);
    c.facts["conntrack_loaded"] = false;
    return c;
  }
  c.facts["conntrack_loaded"] = true;
  c.facts["cpus"] = std::int64_t(now->cpus);
  std::vector<std::string> missing;
  std::string totals;
  for (const char* name : kRaceCounters) {
    if (!now->has(name)) {
      missing.push_back(name);
      continue;
    }
    c.facts[name] = std::int64_t(now->get(name));
    totals +=
        (totals.empty() ? "" : ", ") + std::string(name) + " " + std::to_string(now->get(name));
  }
  c.evidence.push_back("since boot, summed over " + std::to_string(now->cpus) + " CPUs: " + totals);
  if (!missing.empty()) {
    c.evidence.push_back("this kernel has no " + join(missing, ", ") + " column" +
                         (missing.size() > 1 ? "s" : "") +
                         (contains(missing, "clashres") ? " (older kernels drop clashing packets "
                                                          "instead of resolving them)"
                                                        : ""));
  }
  if (before && seconds > 0) {
    c.facts["watch_seconds"] = seconds;
    std::string rates;
    bool dropped = false, clashed = false, early = false;
    for (const char* name : kRaceCounters) {
      if (!now->has(name) || !before->has(name)) continue;
      std::uint64_t a = before->get(name), b = now->get(name);
      std::int64_t delta = b >= a ? std::int64_t(b - a) : 0;
      c.facts[std::string(name) + "_delta"] = delta;
      c.facts[std::string(name) + "_per_s"] = double(delta) / seconds;
      rates += (rates.empty() ? "" : ", ") + std::string(name) + " +" + std::to_string(delta) +
               " (" + fmt_rate(double(delta) / seconds) + "/s)";
      if (delta > 0 &&
          (std::string_view(name) == "insert_failed" || std::string_view(name) == "drop"))
        dropped = true;
      if (delta > 0 && std::string_view(name) == "clashres") clashed = true;
      if (delta > 0 && std::string_view(name) == "early_drop") early = true;
    }
    c.evidence.push_back("over " + fmt_rate(seconds) + " s: " + rates);
    c.facts["race_rising"] = dropped || clashed;
    if (dropped) {
      c.raise(Status::fail);
      c.evidence.push_back(
          "insert_failed/drop climbing: packets are being dropped by the conntrack race (each "
          "drop is a 5 s resolver timeout)");
      c.remedies.push_back(
          "add `single-request-reopen` to the affected pods' dnsConfig.options now; plan a "
          "node-local cache (localdns) so DNS from pods bypasses conntrack");
    }
    if (clashed) {
      c.raise(Status::warn);
      c.evidence.push_back(
          "clashres climbing: A/AAAA queries from one socket are racing in conntrack; this kernel "
          "resolves the clash, older kernels drop the packet (a 5 s timeout)");
      if (!dropped)
        c.remedies.push_back(
            "`single-request-reopen` in the pods' dnsConfig.options, or a node-local cache "
            "(localdns) with NOTRACK rules");
    }
    if (early) {
      c.raise(Status::warn);
      c.evidence.push_back("early_drop climbing: the conntrack table is full and evicting entries");
      c.remedies.push_back("raise net.netfilter.nf_conntrack_max (see check 2)");
    }
  } else {
    bool any = now->get("insert_failed") > 0 || now->get("drop") > 0 || now->get("clashres") > 0;
    c.facts["race_since_boot"] = any;
    if (any) {
      c.raise(Status::warn);
      c.evidence.push_back(
          "non-zero race counters since boot; what matters is whether they climb while DNS is "
          "slow");
      c.remedies.push_back("rerun with `--watch 30` while the timeouts happen to see the rates");
    }
  }
  return c;
}

// --- 2 -----------------------------------------------------------------------------

Check check_table_pressure(const ConntrackSysctls& s) {
  Check c = make_check(2, "conntrack_table", "Conntrack table pressure");
  if (!s.count || !s.max) {
    c.evidence.push_back("net.netfilter.nf_conntrack_count/max not found: conntrack is not loaded");
    return c;
  }
  c.facts["count"] = std::int64_t(*s.count);
  c.facts["max"] = std::int64_t(*s.max);
  double usage = *s.max ? double(*s.count) / double(*s.max) : 0;
  c.facts["usage"] = usage;
  c.evidence.push_back("nf_conntrack_count " + std::to_string(*s.count) + " of nf_conntrack_max " +
                       std::to_string(*s.max) + " (" + fmt_rate(usage * 100) + " %)");
  if (usage > 0.75) {
    c.raise(Status::warn);
    c.remedies.push_back("raise net.netfilter.nf_conntrack_max (table above 75 %)");
  }
  if (s.buckets) {
    c.facts["buckets"] = std::int64_t(*s.buckets);
    c.evidence.push_back("nf_conntrack_buckets " + std::to_string(*s.buckets) +
                         " (max/4 = " + std::to_string(*s.max / 4) + ")");
    if (*s.buckets < *s.max / 8) {
      c.raise(Status::warn);
      c.remedies.push_back("raise nf_conntrack_buckets to nf_conntrack_max/4 (long hash chains)");
    }
  }
  if (s.udp_timeout || s.udp_timeout_stream) {
    std::string t;
    if (s.udp_timeout) {
      c.facts["udp_timeout"] = std::int64_t(*s.udp_timeout);
      t += "nf_conntrack_udp_timeout " + std::to_string(*s.udp_timeout) + " s";
    }
    if (s.udp_timeout_stream) {
      c.facts["udp_timeout_stream"] = std::int64_t(*s.udp_timeout_stream);
      t += (t.empty() ? "" : ", ") + std::string("nf_conntrack_udp_timeout_stream ") +
           std::to_string(*s.udp_timeout_stream) + " s";
    }
    c.evidence.push_back(t + ": how long each DNS flow keeps its entry");
  }
  return c;
}

// --- 3 -----------------------------------------------------------------------------

unsigned count_table_full(std::string_view log) {
  unsigned n = 0;
  for (auto line : split_lines(log))
    if (line.find("nf_conntrack: table full, dropping packet") != std::string_view::npos) ++n;
  return n;
}

Check check_kernel_log(const std::optional<std::string>& log, const std::string& why) {
  Check c = make_check(3, "kernel_log", "Kernel log");
  if (!log) {
    c.raise(Status::warn);
    c.facts["readable"] = false;
    c.evidence.push_back("the kernel log is not readable" + (why.empty() ? "" : ": " + why));
    c.remedies.push_back(
        "run as root (or with kernel.dmesg_restrict=0) to check for "
        "\"nf_conntrack: table full, dropping packet\"");
    return c;
  }
  c.facts["readable"] = true;
  unsigned n = count_table_full(*log);
  c.facts["table_full_lines"] = std::int64_t(n);
  if (n == 0) {
    c.evidence.push_back("no \"nf_conntrack: table full, dropping packet\" lines");
  } else {
    c.raise(Status::fail);
    c.evidence.push_back(std::to_string(n) +
                         " \"nf_conntrack: table full, dropping packet\" lines");
    c.remedies.push_back(
        "raise net.netfilter.nf_conntrack_max (and nf_conntrack_buckets to max/4): a separate "
        "problem from the race");
  }
  return c;
}

// --- 4 -----------------------------------------------------------------------------

ResolvConf parse_resolv_conf(std::string_view text) {
  ResolvConf rc;
  for (auto line : split_lines(text)) {
    auto hash = line.find_first_of("#;");
    if (hash != std::string_view::npos) line = line.substr(0, hash);
    auto f = split_ws(line);
    if (f.empty()) continue;
    if (f[0] == "nameserver" && f.size() >= 2) {
      rc.nameservers.emplace_back(f[1]);
    } else if ((f[0] == "search" || f[0] == "domain") && f.size() >= 2) {
      rc.search.clear();
      for (std::size_t i = 1; i < f.size(); ++i) {
        std::string d(f[i]);
        while (d.size() > 1 && d.back() == '.')
          d.pop_back();
        rc.search.push_back(std::move(d));
      }
    } else if (f[0] == "options") {
      for (std::size_t i = 1; i < f.size(); ++i) {
        std::string_view o = f[i];
        auto num = [&](std::string_view prefix, unsigned& out, unsigned cap) {
          if (!o.starts_with(prefix)) return false;
          unsigned v = 0;
          auto s = o.substr(prefix.size());
          auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
          if (ec == std::errc{}) out = std::min(v, cap);
          return true;
        };
        if (num("ndots:", rc.ndots, 15) || num("timeout:", rc.timeout, 30) ||
            num("attempts:", rc.attempts, 5)) {
          continue;
        } else if (o == "single-request") {
          rc.single_request = true;
        } else if (o == "single-request-reopen") {
          rc.single_request_reopen = true;
        } else if (o == "use-vc") {
          rc.use_vc = true;
        } else if (o == "edns0") {
          rc.edns0 = true;
        } else {
          rc.other_options.emplace_back(o);
        }
      }
    }
  }
  return rc;
}

std::vector<std::string> candidate_names(const ResolvConf& rc, Resolver r, std::string_view name) {
  std::vector<std::string> out;
  if (name.empty()) return out;
  if (name.back() == '.') {
    out.emplace_back(name.substr(0, name.size() - 1));
    return out;
  }
  auto dots = static_cast<unsigned>(std::count(name.begin(), name.end(), '.'));
  std::vector<std::string> expanded;
  for (const auto& s : rc.search) {
    if (s == ".") continue;
    expanded.push_back(std::string(name) + "." + s);
  }
  if (dots >= rc.ndots) {
    // glibc: the name as given first, then the search list; musl: no search.
    out.emplace_back(name);
    if (r == Resolver::glibc) out.insert(out.end(), expanded.begin(), expanded.end());
  } else {
    out = expanded;
    out.emplace_back(name);  // both try the name as given last
  }
  return out;
}

Amplification amplification(const ResolvConf& rc, Resolver r, std::string_view name,
                            const std::optional<std::string>& exists_as) {
  Amplification a;
  for (const auto& candidate : candidate_names(rc, r, name)) {
    ++a.names;
    if (exists_as && candidate == *exists_as) {
      a.answered = true;
      break;
    }
  }
  a.queries = a.names * 2;  // A and AAAA, in parallel, for every name
  return a;
}

namespace {

struct Example {
  std::string label;
  std::string name;
  std::optional<std::string> exists_as;
};

std::vector<Example> examples(const ResolvConf& rc) {
  std::vector<Example> out;
  std::string own = rc.search.empty() ? "my-service" : "my-service." + rc.search[0];
  out.push_back({"my-service", "my-service", own});
  std::optional<std::string> svc;
  for (const auto& s : rc.search)
    if (s.starts_with("svc.")) {
      svc = "my-service.other-ns." + s;
      break;
    }
  out.push_back({"my-service.other-ns", "my-service.other-ns", svc ? svc : "my-service.other-ns"});
  out.push_back({"api.example.com", "api.example.com", std::string("api.example.com")});
  out.push_back({"api.example.com (NXDOMAIN)", "api.example.com", std::nullopt});
  return out;
}

}  // namespace

Check check_resolver(const std::vector<ResolvSource>& sources, const LocalView& v, Resolver r,
                     const std::vector<std::string>& unreadable) {
  Check c = make_check(4, "resolver", "Resolver configuration");
  c.facts["resolver"] = std::string(r == Resolver::glibc ? "glibc" : "musl");
  bool uncaptured = false, ndots_high = false, exposed_without_reopen = false;
  std::vector<std::string> files;
  for (const auto& src : sources) {
    ResolvConf rc = parse_resolv_conf(src.text);
    std::string head = src.label;
    if (!src.pids.empty()) {
      std::string pids;
      for (std::size_t i = 0; i < src.pids.size() && i < 5; ++i)
        pids += (i ? "," : "") + std::to_string(src.pids[i]);
      head += " (" + std::to_string(src.pids.size()) + " process" +
              (src.pids.size() == 1 ? "" : "es") + ": " + pids +
              (src.pids.size() > 5 ? ",..." : "") + ")";
    }
    files.push_back(head);
    c.evidence.push_back(
        head + ": nameserver " +
        (rc.nameservers.empty() ? "(none: 127.0.0.1)" : join(rc.nameservers, " ")) + ", search " +
        (rc.search.empty() ? "(none)" : join(rc.search, " ")) +
        ", ndots:" + std::to_string(rc.ndots) + ", timeout:" + std::to_string(rc.timeout) +
        ", attempts:" + std::to_string(rc.attempts) +
        (rc.single_request ? ", single-request" : "") +
        (rc.single_request_reopen ? ", single-request-reopen" : "") +
        (rc.use_vc ? ", use-vc" : ""));
    bool through_conntrack = false;
    for (const auto& ns : rc.nameservers) {
      if (contains(v.captured, ns)) {
        c.evidence.push_back(
            "  nameserver " + ns + ": served by localdns on this node" +
            (link_local_text(ns) ? " (the link-local cache)" : " (kube-dns ClusterIP, captured)"));
      } else if (contains(v.cluster_dns, ns)) {
        uncaptured = true;
        through_conntrack = true;
        c.raise(Status::warn);
        c.evidence.push_back("  nameserver " + ns +
                             ": the kube-dns ClusterIP, which localdns does not capture on this "
                             "node: every lookup takes kube-proxy's DNAT through conntrack");
      } else if (link_local_text(ns)) {
        c.raise(Status::warn);
        c.evidence.push_back("  nameserver " + ns +
                             ": a link-local address that no localdns serves on this node");
      } else {
        through_conntrack = !rc.use_vc;
        c.evidence.push_back("  nameserver " + ns + ": not a node-local cache");
      }
    }
    if (through_conntrack && !rc.single_request_reopen && !rc.use_vc) exposed_without_reopen = true;
    for (const auto& ex : examples(rc)) {
      auto a = amplification(rc, r, ex.name, ex.exists_as);
      auto names = candidate_names(rc, r, ex.name);
      c.evidence.push_back(
          "  getaddrinfo(\"" + ex.label + "\"): " + std::to_string(a.queries) + " queries (" +
          std::to_string(a.names) + " name" + (a.names == 1 ? "" : "s") + " x A+AAAA" +
          (a.answered ? ", " + names[a.names - 1] + " answers" : ", none answers") + ")");
      if (src.label == sources.front().label) {
        std::string key =
            ex.label == "api.example.com (NXDOMAIN)" ? "api.example.com_nxdomain" : ex.label;
        c.facts["queries." + key] = std::int64_t(a.queries);
      }
      if (ex.label == "api.example.com" && rc.ndots >= 3 && a.queries > 2) ndots_high = true;
    }
  }
  for (const auto& u : unreadable)
    c.evidence.push_back(u);
  c.facts["sources"] = files;
  c.facts["uncaptured_cluster_ip"] = uncaptured;
  c.facts["ndots_high"] = ndots_high;
  if (uncaptured) {
    c.remedies.push_back(
        "point the pods at the node-local address " + v.link_local + " (kubelet --cluster-dns " +
        v.link_local + ", or dnsConfig), or let localdns capture the ClusterIP (--local-ip " +
        (v.cluster_dns.empty() ? std::string("CLUSTER_IP") : v.cluster_dns[0]) + ")");
  }
  if (exposed_without_reopen && r == Resolver::glibc) {
    c.remedies.push_back(
        "where pods query through conntrack: `single-request-reopen` in dnsConfig.options (glibc "
        "only: A and AAAA from different sockets, so different source ports)");
  }
  if (r == Resolver::musl) {
    c.evidence.push_back(
        "musl (and Go's resolver) ignore single-request and single-request-reopen: for them only "
        "a node-local cache removes the race");
  }
  if (ndots_high) {
    c.remedies.push_back(
        "many external lookups with ndots:5 multiply queries: lower ndots (e.g. 2) in "
        "dnsConfig.options, or use trailing-dot FQDNs in code");
  }
  return c;
}

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

// --- 6 -----------------------------------------------------------------------------

DnsEntries count_dns_entries(std::string_view text, const std::vector<std::string>& locals,
                             const std::vector<std::string>& cluster_dns) {
  DnsEntries e;
  for (auto line : split_lines(text)) {
    auto f = split_ws(line);
    if (f.size() < 4 || (f[2] != "udp" && f[2] != "tcp")) continue;
    std::string_view dst, dport;
    for (auto t : f) {
      if (dst.empty() && t.starts_with("dst=")) dst = t.substr(4);
      if (dport.empty() && t.starts_with("dport=")) dport = t.substr(6);
    }
    if (dport != "53") continue;
    ++e.total_dns;
    if (contains(locals, dst)) {
      ++e.to_local;
    } else if (contains(cluster_dns, dst)) {
      ++e.to_cluster;
    }
  }
  return e;
}

Check check_dns_entries(const std::optional<DnsEntries>& e, const LocalView& v,
                        const std::string& unavailable_reason) {
  Check c = make_check(6, "conntrack_dns_entries", "Conntrack entries for DNS");
  if (!e) {
    if (!unavailable_reason.empty()) c.raise(Status::warn);
    c.evidence.push_back(unavailable_reason.empty() ? "no conntrack table: conntrack is not loaded"
                                                    : unavailable_reason);
    return c;
  }
  c.facts["to_local"] = std::int64_t(e->to_local);
  c.facts["to_cluster_ip"] = std::int64_t(e->to_cluster);
  c.facts["dns_total"] = std::int64_t(e->total_dns);
  c.evidence.push_back(std::to_string(e->to_local) + " entries towards the local addresses (" +
                       (v.captured.empty() ? std::string("none") : join(v.captured, " ")) +
                       ") port 53");
  c.evidence.push_back(std::to_string(e->to_cluster) +
                       " entries towards an uncaptured kube-dns ClusterIP (" +
                       (v.cluster_dns.empty() ? std::string("none: localdns captures it")
                                              : join(v.cluster_dns, " ")) +
                       ") port 53: the race window");
  c.evidence.push_back(std::to_string(e->total_dns) + " DNS entries in all");
  if (e->to_local > 0) {
    c.raise(Status::warn);
    c.remedies.push_back(
        "DNS to the local addresses is tracked: NOTRACK rules missing or added after these "
        "entries (they time out in 30-120 s); see check 5");
  }
  if (e->to_cluster > 0) {
    c.raise(Status::warn);
    c.remedies.push_back(
        "pods query the kube-dns ClusterIP through conntrack: use the node-local "
        "address " +
        v.link_local + " or let localdns capture the ClusterIP");
  }
  return c;
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
