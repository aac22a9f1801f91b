// Checks 1, 2, 3 and 6: conntrack race counters, table pressure, the kernel
// log and conntrack entries for DNS.
#include <algorithm>
#include <charconv>
#include <cstdio>

#include <boost/asio/ip/address.hpp>

#include <localdns/doctor/checks.hpp>

#include "checks_common.hpp"

namespace localdns::doctor {

using namespace detail;

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

}  // namespace localdns::doctor
