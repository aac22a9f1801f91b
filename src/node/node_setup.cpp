#include <cstdio>

#include <spdlog/spdlog.h>

#include <localdns/node/conntrack.hpp>
#include <localdns/node/link.hpp>
#include <localdns/node/node_setup.hpp>

namespace localdns::node {

namespace {

std::string milliseconds(std::chrono::microseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

}  // namespace

bool is_link_local(const boost::asio::ip::address& a) {
  if (a.is_v4()) return (a.to_v4().to_uint() & 0xffff0000u) == 0xa9fe0000u;  // 169.254.0.0/16
  return a.to_v6().is_link_local();                                          // fe80::/10
}

std::vector<std::string> assign_fallbacks(const config::Config& c, RuleTargets& t) {
  const auto& n = c.node;
  std::vector<std::string> notes;
  auto is_local = [&](const boost::asio::ip::address& a) {
    return std::find(n.local_addresses.begin(), n.local_addresses.end(), a) !=
           n.local_addresses.end();
  };
  auto wants = [&](const boost::asio::ip::address& a) {
    if (n.fallback_for) {
      return std::find(n.fallback_for->begin(), n.fallback_for->end(), a) != n.fallback_for->end();
    }
    return is_link_local(a);
  };
  // Why a candidate cannot be a DNAT target; empty when it can.
  auto unusable = [&](const config::Endpoint& f) -> std::string {
    if (is_local(f.address)) return "a local address";
    if (f.address.is_loopback() || f.address.is_unspecified()) return "loopback";
    for (const auto& cidr : n.service_cidr) {
      if (cidr.contains(f.address)) return "inside node.service_cidr " + cidr.to_string();
    }
    return {};
  };
  std::vector<config::Endpoint> candidates = n.fallback;
  std::string source = "node.rules.fallback";
  if (n.fallback_auto) {
    source = "the \".\" servers";
    for (const auto& g : c.forward) {
      if (std::find(g.zones.begin(), g.zones.end(), ".") != g.zones.end())
        candidates = config::servers_of(c, g);
    }
  }
  for (auto& l : t.locals) {
    l.fallback.reset();
    if (!n.fallback_auto && n.fallback.empty()) continue;  // off
    if (!wants(l.address)) continue;
    std::string why;
    for (const auto& f : candidates) {
      if (f.address.is_v6() != l.address.is_v6()) continue;
      if (auto reason = unusable(f); !reason.empty()) {
        why += (why.empty() ? "" : ", ") + f.to_string() + " is " + reason;
        continue;
      }
      l.fallback = f;
      break;
    }
    if (l.fallback) continue;
    if (why.empty()) {
      why = "no " + std::string(l.address.is_v6() ? "IPv6" : "IPv4") + " server among " + source;
    }
    notes.push_back("no fallback DNAT for " + l.address.to_string() + " (" + why +
                    "): while localdns is down nothing answers queries to it; list a reachable "
                    "server (CoreDNS endpoints) in node.rules.fallback");
  }
  return notes;
}

RuleTargets rule_targets(const config::Config& c, std::vector<std::string>* notes) {
  RuleTargets t;
  std::vector<std::string> ignored;
  auto& fallback_notes = notes ? *notes : ignored;
  const auto& n = c.node;
  for (const auto& l : c.listen) {
    if (std::find(n.local_addresses.begin(), n.local_addresses.end(), l.address) !=
        n.local_addresses.end()) {
      t.locals.push_back({l.address, l.port, std::nullopt});
    }
  }
  t.health_port = n.health_port;
  if (t.health_port == 0 && c.health.enabled) {
    // The health endpoint on a local address is kept out of conntrack too.
    auto ep = config::resolve(c.health, c, config::kDefaultHealthPort);
    if (std::find(n.local_addresses.begin(), n.local_addresses.end(), ep.address) !=
        n.local_addresses.end()) {
      t.health_port = ep.port;
    }
  }
  fallback_notes = assign_fallbacks(c, t);
  return t;
}

NodeSetup::NodeSetup(const config::Config& c) : cfg_(c.node) {
  std::vector<std::string> notes;
  targets_ = rule_targets(c, &notes);
  if (cfg_.setup_rules) {
    for (const auto& note : notes)
      spdlog::warn("node setup: {}", note);
    auto kind = cfg_.rules_backend;
    if (kind == config::RulesBackend::Auto) {
      kind = detect_rules_backend();
      spdlog::info("node setup: rules backend {} (detected)", config::to_string(kind));
    }
    rules_ = make_rules_backend(kind);
  }
}

NodeSetup::~NodeSetup() {
  stop_sync();
}

std::string NodeSetup::backend_name() const {
  return rules_ ? rules_->name() : "none";
}

std::expected<unsigned, std::string> NodeSetup::ensure_interface() {
  if (!cfg_.setup_interface) return 0u;
  auto nl = Netlink::open();
  if (!nl) return std::unexpected(nl.error());
  auto r = nl->ensure({cfg_.interface_name, cfg_.interface_kind, cfg_.local_addresses});
  if (!r) return std::unexpected(r.error());
  auto level =
      in_place_.load(std::memory_order_relaxed) ? spdlog::level::warn : spdlog::level::info;
  if (r->created) {
    spdlog::log(level, "node setup: created interface {} ({})", cfg_.interface_name,
                cfg_.interface_kind);
  }
  if (r->adopted) {
    // Logged with the rules, in one line, by log_takeover().
    takeover_.interface = true;
    std::string added, untentative;
    for (const auto& a : r->added) {
      bool re = std::find(r->untentative.begin(), r->untentative.end(), a) != r->untentative.end();
      (re ? untentative : added) +=
          ((re ? untentative : added).empty() ? "" : ", ") + a.to_string();
    }
    takeover_.details.push_back(
        "interface " + cfg_.interface_kind + ", marked as localdns's, its addresses kept" +
        (added.empty() ? "" : ", added " + added) +
        (untentative.empty() ? "" : ", tentative " + untentative + " replaced without DAD"));
  }
  if (r->brought_up) spdlog::log(level, "node setup: set interface {} up", cfg_.interface_name);
  if (!r->adopted) {
    for (const auto& a : r->added)
      spdlog::log(level, "node setup: added {} to {}", a.to_string(), cfg_.interface_name);
  }
  return r->count();
}

std::expected<unsigned, std::string> NodeSetup::ensure_rules() {
  if (!rules_) return 0u;
  // node-local-dns's rules where our backend does not manage them: read
  // first, deleted right after ours are in place.
  auto foreign = find_foreign_rules();
  auto r = rules_->sync(targets_);
  if (!r) return std::unexpected(r.error());
  // At start-up this is installation (or adoption); later it is repair.
  auto level =
      in_place_.load(std::memory_order_relaxed) ? spdlog::level::warn : spdlog::level::info;
  for (const auto& note : r->notes)
    spdlog::log(level, "node setup: {}", note);
  for (const auto& w : r->warnings)
    spdlog::warn("node setup: {}", w);
  if (r->taken_over > 0) {
    takeover_.rules += r->taken_over;
    std::string took;
    if (r->changed_at && r->changed_until) {
      auto run =
          std::chrono::duration_cast<std::chrono::microseconds>(*r->changed_until - *r->changed_at);
      takeover_.overlap = std::max(takeover_.overlap, run);
      took = ", " + milliseconds(run);
    }
    takeover_.details.push_back(rules_->name() + ": " + std::to_string(r->taken_over) +
                                " replaced in the iptables-restore run that installed ours, one "
                                "COMMIT per table" +
                                took);
  }
  return r->repaired + remove_foreign_rules(*r, foreign);
}

std::vector<std::pair<std::string, NodeLocalDnsRules>> NodeSetup::find_foreign_rules() {
  std::vector<std::pair<std::string, NodeLocalDnsRules>> found;
  for (const char* variant : {"legacy", "nft"}) {
    if (rules_->name() == std::string("iptables-") + variant) continue;  // in its transactions
    auto f = find_node_local_dns_rules(variant);
    if (!f) {
      // Not a variant localdns uses (iptables-legacy without NET_RAW, say):
      // said once, not counted as a failure of localdns's own setup.
      if (!foreign_unreadable_) {
        spdlog::warn(
            "node setup: cannot look for node-local-dns's rules in iptables-{}: {}; any left "
            "there stay in place",
            variant, f.error());
      }
      foreign_unreadable_ = true;
    } else if (f->count > 0) {
      found.emplace_back(variant, std::move(*f));
    }
  }
  return found;
}

unsigned NodeSetup::remove_foreign_rules(
    const RulesRepair& ours, const std::vector<std::pair<std::string, NodeLocalDnsRules>>& found) {
  unsigned total = 0;
  for (const auto& [variant, rules] : found) {
    auto removed = remove_node_local_dns_rules(rules);
    NodeLocalDnsRules current = rules;
    if (!removed) {
      // Changed since they were read (node-local-dns still at work?): read again, once.
      auto again = find_node_local_dns_rules(variant);
      if (again) {
        current = std::move(*again);
        removed = remove_node_local_dns_rules(current);
      } else {
        removed = std::unexpected(again.error());
      }
    }
    auto done = std::chrono::steady_clock::now();
    if (!removed) {
      counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::error("node setup: node-local-dns's rules are still in place: {}", removed.error());
      continue;
    }
    if (current.count == 0) continue;
    takeover_.rules += current.count;
    total += current.count;
    std::string where;
    for (const auto& w : current.where)
      where += (where.empty() ? "" : ", ") + w.program + ": " + std::to_string(w.count);
    if (ours.changed_at) {
      auto overlap = std::chrono::duration_cast<std::chrono::microseconds>(done - *ours.changed_at);
      takeover_.overlap = std::max(takeover_.overlap, overlap);
      takeover_.details.push_back(where + ", removed after ours were installed in " +
                                  rules_->name() + ", both sets for at most " +
                                  milliseconds(overlap));
    } else {
      // Ours were in place already: someone added theirs meanwhile.
      takeover_.details.push_back(where +
                                  ", added again while ours were in place (is node-local-dns "
                                  "still running on this node?), removed");
    }
  }
  return total;
}

void NodeSetup::warn_foreign_rules() {
  for (const char* variant : {"legacy", "nft"}) {
    auto found = find_node_local_dns_rules(variant);
    if (!found || found->count == 0) continue;
    std::string addresses;
    for (const auto& a : found->addresses)
      addresses += (addresses.empty() ? "" : ", ") + a.to_string();
    spdlog::warn(
        "node setup: {} node-local-dns rules are in iptables-{} and rule setup is off: they keep "
        "DNS to {} out of conntrack (away from kube-proxy) even while nothing listens; remove "
        "them (localdns cleanup) or turn rule setup on",
        found->count, variant, addresses);
  }
}

void NodeSetup::log_takeover(bool at_start) {
  if (!takeover_.any()) return;
  spdlog::log(at_start ? spdlog::level::info : spdlog::level::warn, "node setup: {}",
              takeover_.summary(cfg_.interface_name));
}

Takeover NodeSetup::last_takeover() {
  std::lock_guard lock(mu_);
  return takeover_;
}

std::expected<void, std::string> NodeSetup::apply() {
  std::lock_guard lock(mu_);
  takeover_ = {};
  auto link = ensure_interface();
  if (!link) {
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    return std::unexpected(link.error());
  }
  auto rules = ensure_rules();
  if (!rules) {
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    return std::unexpected(rules.error());
  }
  log_takeover(true);
  if (!rules_) warn_foreign_rules();
  in_place_.store(true, std::memory_order_relaxed);
  return {};
}

void NodeSetup::flush_conntrack() {
  auto r = delete_conntrack_entries(targets_);
  if (!r) {
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("node setup: {}", r.error());
  } else if (r->matched > 0) {
    spdlog::info("node setup: deleted {} conntrack entries for the local addresses", r->deleted);
  }
}

unsigned NodeSetup::sync() {
  std::lock_guard lock(mu_);
  counters_.syncs.fetch_add(1, std::memory_order_relaxed);
  takeover_ = {};
  unsigned repaired = 0;
  bool ok = true;
  if (auto link = ensure_interface()) {
    repaired += *link;
  } else {
    ok = false;
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("node setup: {}", link.error());
  }
  unsigned rule_repairs = 0;
  if (auto rules = ensure_rules()) {
    rule_repairs = *rules;
  } else {
    ok = false;
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("node setup: {}", rules.error());
  }
  repaired += rule_repairs;
  log_takeover(false);
  counters_.repairs.fetch_add(repaired, std::memory_order_relaxed);
  in_place_.store(ok, std::memory_order_relaxed);
  if (repaired > 0) spdlog::warn("node setup: repaired {} items", repaired);
  if (rule_repairs > 0) {
    // Flows that passed while rules were missing were tracked.
    auto r = delete_conntrack_entries(targets_);
    if (r && r->deleted > 0) spdlog::info("node setup: deleted {} conntrack entries", r->deleted);
  }
  return repaired;
}

std::string NodeSetup::verify() {
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (verified_at_ != std::chrono::steady_clock::time_point{} &&
      now - verified_at_ < std::chrono::seconds(1)) {
    return verified_;
  }
  std::string problem;
  if (cfg_.setup_interface) {
    auto nl = Netlink::open();
    auto state = nl ? nl->inspect(cfg_.interface_name)
                    : std::expected<LinkState, std::string>(std::unexpected(nl.error()));
    if (!state) {
      problem = state.error();
    } else if (!state->exists || !state->up) {
      problem = "interface " + cfg_.interface_name + " is missing or down";
    } else {
      for (const auto& a : cfg_.local_addresses) {
        if (std::find(state->addresses.begin(), state->addresses.end(), a) ==
            state->addresses.end()) {
          problem = "address " + a.to_string() + " is missing from " + cfg_.interface_name;
          break;
        }
      }
    }
  }
  if (problem.empty() && rules_) {
    auto r = rules_->check(targets_);
    if (!r) {
      problem = r.error();
    } else if (*r > 0) {
      problem = std::to_string(*r) + " " + rules_->name() + " rules missing or out of place";
    }
  }
  verified_at_ = now;
  verified_ = problem;
  return problem;
}

void NodeSetup::start_sync() {
  std::lock_guard lock(sync_mu_);
  if (sync_thread_.joinable()) return;
  stopping_ = false;
  sync_thread_ = std::thread([this] {
    std::unique_lock l(sync_mu_);
    while (!sync_cv_.wait_for(l, cfg_.sync_interval, [this] { return stopping_; })) {
      l.unlock();
      sync();
      l.lock();
    }
  });
}

void NodeSetup::stop_sync() {
  {
    std::lock_guard lock(sync_mu_);
    stopping_ = true;
  }
  sync_cv_.notify_all();
  if (sync_thread_.joinable()) sync_thread_.join();
}

void NodeSetup::teardown() {
  stop_sync();
  std::lock_guard lock(mu_);
  in_place_.store(false, std::memory_order_relaxed);
  if (rules_) {
    if (auto r = rules_->remove()) {
      spdlog::info("node setup: removed {} {} rules", *r, rules_->name());
    } else {
      spdlog::error("node setup: removing rules: {}", r.error());
    }
  }
  if (cfg_.setup_interface) {
    auto nl = Netlink::open();
    auto r = nl ? nl->remove(cfg_.interface_name)
                : std::expected<LinkRemoval, std::string>(std::unexpected(nl.error()));
    if (!r) {
      spdlog::error("node setup: {}", r.error());
    } else if (*r == LinkRemoval::removed) {
      spdlog::info("node setup: removed interface {}", cfg_.interface_name);
    } else if (*r == LinkRemoval::not_ours) {
      spdlog::warn("node setup: interface {} is not marked as localdns's: left in place",
                   cfg_.interface_name);
    }
  }
}

CleanupReport cleanup_node(const config::NodeConfig& n) {
  CleanupReport report;
  for (auto kind : {config::RulesBackend::IptablesLegacy, config::RulesBackend::IptablesNft,
                    config::RulesBackend::Nftables}) {
    auto backend = make_rules_backend(kind);
    auto r = backend->remove();
    if (!r) {
      report.ok = false;
      report.lines.push_back(backend->name() + ": " + r.error());
    } else if (*r > 0) {
      report.lines.push_back(backend->name() + ": removed " + std::to_string(*r) + " rules");
    }
  }
  // node-local-dns's: their addresses also say which interface was its.
  std::vector<boost::asio::ip::address> theirs;
  for (const char* variant : {"legacy", "nft"}) {
    auto r = find_node_local_dns_rules(variant);
    if (r) {
      if (auto removed = remove_node_local_dns_rules(*r); !removed)
        r = std::unexpected(removed.error());
    }
    if (!r) {
      report.ok = false;
      report.lines.push_back(r.error());
      continue;
    }
    for (const auto& w : r->where)
      report.lines.push_back(w.program + ": removed " + std::to_string(w.count) +
                             " node-local-dns rules");
    theirs.insert(theirs.end(), r->addresses.begin(), r->addresses.end());
  }
  auto nl = Netlink::open();
  if (!nl) {
    report.ok = false;
    report.lines.push_back(nl.error());
    return report;
  }
  auto state = nl->inspect(n.interface_name);
  LinkSpec leftover{n.interface_name, n.interface_kind, n.local_addresses};
  leftover.addresses.insert(leftover.addresses.end(), theirs.begin(), theirs.end());
  if (!state) {
    report.ok = false;
    report.lines.push_back(state.error());
    return report;
  }
  if (!state->exists) return report;
  if (state->kind != n.interface_kind) {
    report.lines.push_back("interface " + n.interface_name + " has kind '" + state->kind +
                           "', not '" + n.interface_kind + "': left alone");
    return report;
  }
  auto foreign = foreign_addresses(*state, leftover.addresses);
  if (!state->ours() && !foreign.empty()) {
    std::string list;
    for (const auto& a : foreign)
      list += (list.empty() ? "" : ", ") + a.to_string();
    report.lines.push_back("interface " + n.interface_name +
                           " is not marked as localdns's (alias '" + state->alias +
                           "'): left alone");
    report.lines.push_back("  it holds " + list +
                           ", neither a local address nor one of node-local-dns's rules");
    return report;
  }
  auto r = nl->remove(n.interface_name, &leftover);
  if (!r) {
    report.ok = false;
    report.lines.push_back(r.error());
  } else if (*r == LinkRemoval::removed) {
    report.lines.push_back(
        std::string(state->ours() ? "removed interface " : "removed node-local-dns's interface ") +
        n.interface_name);
  }
  return report;
}

}  // namespace localdns::node
