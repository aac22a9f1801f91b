// Check 4: resolv.conf as glibc and musl read it, the names and queries one
// lookup costs, and whether pods use the node-local address.
#include <algorithm>
#include <charconv>
#include <cstdio>

#include <boost/asio/ip/address.hpp>

#include <localdns/doctor/checks.hpp>

#include "checks_common.hpp"

namespace localdns::doctor {

using namespace detail;

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

}  // namespace localdns::doctor
