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

std::unique_ptr<RulesBackend> pick_backend(const NodeSettings& s, const util::Clock& clock) {
  if (!s.setup_rules) return nullptr;
  auto kind = s.rules_backend;
  if (kind == RulesBackendKind::Auto) {
    kind = detect_rules_backend();
    spdlog::info("node setup: rules backend {} (detected)", to_string(kind));
  }
  return make_rules_backend(kind, clock);
}

// `next` with what `current` has beyond it: the addresses and rule targets
// of both (next's fallback where both have an address and port).
NodeSettings merged(const NodeSettings& current, const NodeSettings& next) {
  NodeSettings m = next;
  for (const auto& a : current.local_addresses) {
    if (std::find(m.local_addresses.begin(), m.local_addresses.end(), a) ==
        m.local_addresses.end()) {
      m.local_addresses.push_back(a);
    }
  }
  for (const auto& l : current.targets.locals) {
    bool there = std::any_of(m.targets.locals.begin(), m.targets.locals.end(), [&](const auto& x) {
      return x.address == l.address && x.port == l.port;
    });
    if (!there) m.targets.locals.push_back(l);
  }
  return m;
}

std::vector<boost::asio::ip::address> minus(const std::vector<boost::asio::ip::address>& a,
                                            const std::vector<boost::asio::ip::address>& b) {
  std::vector<boost::asio::ip::address> out;
  for (const auto& x : a)
    if (std::find(b.begin(), b.end(), x) == b.end()) out.push_back(x);
  return out;
}

std::string joined(const std::vector<boost::asio::ip::address>& a) {
  std::string out;
  for (const auto& x : a)
    out += (out.empty() ? "" : ", ") + x.to_string();
  return out;
}

}  // namespace

NodeSetup::NodeSetup(const NodeSettings& s, const util::Clock& clock)
    : NodeSetup(s, nullptr, clock) {
  // Detected after the delegated constructor has said the fallback notes.
  auto rules = pick_backend(s, clock_);
  if (rules) backend_name_ = rules->name();
  pass_.lock()->rules = std::move(rules);
}

NodeSetup::NodeSetup(const NodeSettings& s, std::unique_ptr<RulesBackend> rules,
                     const util::Clock& clock)
    : sync_interval_(s.sync_interval),
      clock_(clock),
      backend_name_(rules ? rules->name() : "none") {
  if (s.setup_rules) {
    for (const auto& note : s.target_notes)
      spdlog::warn("node setup: {}", note);
  }
  auto p = pass_.lock();
  p->rules = std::move(rules);
  p->settings = s;
}

NodeSetup::~NodeSetup() {
  stop_sync();
}

std::expected<unsigned, std::string> NodeSetup::ensure_interface(PassState& p) {
  if (!p.settings.setup_interface) return 0u;
  auto nl = Netlink::open();
  if (!nl) return std::unexpected(nl.error());
  auto r = nl->ensure(
      {p.settings.interface_name, p.settings.interface_kind, p.settings.local_addresses});
  if (!r) return std::unexpected(r.error());
  auto level =
      in_place_.load(std::memory_order_relaxed) ? spdlog::level::warn : spdlog::level::info;
  if (r->created) {
    spdlog::log(level, "node setup: created interface {} ({})", p.settings.interface_name,
                p.settings.interface_kind);
  }
  if (r->adopted) {
    // Logged with the rules, in one line, by log_takeover().
    p.takeover.interface = true;
    std::string added, untentative;
    for (const auto& a : r->added) {
      bool re = std::find(r->untentative.begin(), r->untentative.end(), a) != r->untentative.end();
      (re ? untentative : added) +=
          ((re ? untentative : added).empty() ? "" : ", ") + a.to_string();
    }
    p.takeover.details.push_back(
        "interface " + p.settings.interface_kind + ", marked as localdns's, its addresses kept" +
        (added.empty() ? "" : ", added " + added) +
        (untentative.empty() ? "" : ", tentative " + untentative + " replaced without DAD"));
  }
  if (r->brought_up)
    spdlog::log(level, "node setup: set interface {} up", p.settings.interface_name);
  if (!r->adopted) {
    for (const auto& a : r->added)
      spdlog::log(level, "node setup: added {} to {}", a.to_string(), p.settings.interface_name);
  }
  return r->count();
}

std::expected<unsigned, std::string> NodeSetup::ensure_rules(PassState& p) {
  if (!p.rules) return 0u;
  // node-local-dns's rules where our backend does not manage them: read
  // first, deleted right after ours are in place.
  auto foreign = find_foreign_rules(p);
  auto r = p.rules->sync(p.settings.targets);
  if (!r) return std::unexpected(r.error());
  // At start-up this is installation (or adoption); later it is repair.
  auto level =
      in_place_.load(std::memory_order_relaxed) ? spdlog::level::warn : spdlog::level::info;
  for (const auto& note : r->notes)
    spdlog::log(level, "node setup: {}", note);
  for (const auto& w : r->warnings)
    spdlog::warn("node setup: {}", w);
  if (r->taken_over > 0) {
    p.takeover.rules += r->taken_over;
    std::string took;
    if (r->changed_at && r->changed_until) {
      auto run =
          std::chrono::duration_cast<std::chrono::microseconds>(*r->changed_until - *r->changed_at);
      p.takeover.overlap = std::max(p.takeover.overlap, run);
      took = ", " + milliseconds(run);
    }
    p.takeover.details.push_back(p.rules->name() + ": " + std::to_string(r->taken_over) +
                                 " replaced in the iptables-restore run that installed ours, one "
                                 "COMMIT per table" +
                                 took);
  }
  return r->repaired + remove_foreign_rules(p, *r, foreign);
}

std::vector<std::pair<std::string, NodeLocalDnsRules>> NodeSetup::find_foreign_rules(PassState& p) {
  std::vector<std::pair<std::string, NodeLocalDnsRules>> found;
  for (const char* variant : {"legacy", "nft"}) {
    if (p.rules->name() == std::string("iptables-") + variant) continue;  // in its transactions
    auto f = find_node_local_dns_rules(variant);
    if (!f) {
      // Not a variant localdns uses (iptables-legacy without NET_RAW, say):
      // said once, not counted as a failure of localdns's own setup.
      if (!p.foreign_unreadable) {
        spdlog::warn(
            "node setup: cannot look for node-local-dns's rules in iptables-{}: {}; any left "
            "there stay in place",
            variant, f.error());
      }
      p.foreign_unreadable = true;
    } else if (f->count > 0) {
      found.emplace_back(variant, std::move(*f));
    }
  }
  return found;
}

unsigned NodeSetup::remove_foreign_rules(
    PassState& p, const RulesRepair& ours,
    const std::vector<std::pair<std::string, NodeLocalDnsRules>>& found) {
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
    auto done = clock_.now();
    if (!removed) {
      counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::error("node setup: node-local-dns's rules are still in place: {}", removed.error());
      continue;
    }
    if (current.count == 0) continue;
    p.takeover.rules += current.count;
    total += current.count;
    std::string where;
    for (const auto& w : current.where)
      where += (where.empty() ? "" : ", ") + w.program + ": " + std::to_string(w.count);
    if (ours.changed_at) {
      auto overlap = std::chrono::duration_cast<std::chrono::microseconds>(done - *ours.changed_at);
      p.takeover.overlap = std::max(p.takeover.overlap, overlap);
      p.takeover.details.push_back(where + ", removed after ours were installed in " +
                                   p.rules->name() + ", both sets for at most " +
                                   milliseconds(overlap));
    } else {
      // Ours were in place already: someone added theirs meanwhile.
      p.takeover.details.push_back(where +
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

void NodeSetup::log_takeover(const PassState& p, bool at_start) {
  if (!p.takeover.any()) return;
  spdlog::log(at_start ? spdlog::level::info : spdlog::level::warn, "node setup: {}",
              p.takeover.summary(p.settings.interface_name));
}

Takeover NodeSetup::last_takeover() {
  return pass_.lock()->takeover;
}

std::expected<void, std::string> NodeSetup::apply() {
  auto locked = pass_.lock();
  PassState& p = *locked;
  p.takeover = {};
  auto link = ensure_interface(p);
  if (!link) {
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    return std::unexpected(link.error());
  }
  auto rules = ensure_rules(p);
  if (!rules) {
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    return std::unexpected(rules.error());
  }
  log_takeover(p, true);
  if (!p.rules) warn_foreign_rules();
  in_place_.store(true, std::memory_order_relaxed);
  return {};
}

void NodeSetup::flush_conntrack() {
  auto r = delete_conntrack_entries(targets());
  if (!r) {
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("node setup: {}", r.error());
  } else if (r->matched > 0) {
    spdlog::info("node setup: deleted {} conntrack entries for the local addresses", r->deleted);
  }
}

unsigned NodeSetup::sync() {
  if (handed_over_.load()) return 0;
  auto locked = pass_.lock();
  PassState& p = *locked;
  counters_.syncs.fetch_add(1, std::memory_order_relaxed);
  p.takeover = {};
  unsigned repaired = 0;
  bool ok = true;
  if (auto link = ensure_interface(p)) {
    repaired += *link;
  } else {
    ok = false;
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("node setup: {}", link.error());
  }
  unsigned rule_repairs = 0;
  if (auto rules = ensure_rules(p)) {
    rule_repairs = *rules;
  } else {
    ok = false;
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("node setup: {}", rules.error());
  }
  repaired += rule_repairs;
  log_takeover(p, false);
  counters_.repairs.fetch_add(repaired, std::memory_order_relaxed);
  in_place_.store(ok, std::memory_order_relaxed);
  if (repaired > 0) spdlog::warn("node setup: repaired {} items", repaired);
  if (rule_repairs > 0) {
    // Flows that passed while rules were missing were tracked.
    auto r = delete_conntrack_entries(p.settings.targets);
    if (r && r->deleted > 0) spdlog::info("node setup: deleted {} conntrack entries", r->deleted);
  }
  return repaired;
}

std::string NodeSetup::verify() {
  auto locked = pass_.lock();
  PassState& p = *locked;
  auto now = clock_.now();
  if (const auto* recent = p.verified.fresh(now)) return *recent;
  std::string problem;
  if (p.settings.setup_interface) {
    auto nl = Netlink::open();
    auto state = nl ? nl->inspect(p.settings.interface_name)
                    : std::expected<LinkState, std::string>(std::unexpected(nl.error()));
    if (!state) {
      problem = state.error();
    } else if (!state->exists || !state->up) {
      problem = "interface " + p.settings.interface_name + " is missing or down";
    } else {
      for (const auto& a : p.settings.local_addresses) {
        if (std::find(state->addresses.begin(), state->addresses.end(), a) ==
            state->addresses.end()) {
          problem = "address " + a.to_string() + " is missing from " + p.settings.interface_name;
          break;
        }
      }
    }
  }
  if (problem.empty() && p.rules) {
    auto r = p.rules->check(p.settings.targets);
    if (!r) {
      problem = r.error();
    } else if (*r > 0) {
      problem = std::to_string(*r) + " " + p.rules->name() + " rules missing or out of place";
    }
  }
  p.verified.store(now, problem);
  return problem;
}

RuleTargets NodeSetup::targets() {
  return pass_.lock()->settings.targets;
}

void NodeSetup::undo_extend(PassState& p) {
  if (!p.before_extend) return;
  if (p.rules) {
    if (auto r = p.rules->sync(p.before_extend->targets); !r)
      spdlog::error("node setup: putting the rules back: {}", r.error());
  }
  if (p.settings.setup_interface && !p.extend_added.empty()) {
    auto nl = Netlink::open();
    auto r = nl ? nl->remove_addresses(p.settings.interface_name, p.extend_added)
                : std::expected<std::vector<boost::asio::ip::address>, std::string>(
                      std::unexpected(nl.error()));
    if (!r) {
      spdlog::error("node setup: removing {} again: {}", joined(p.extend_added), r.error());
    } else if (!r->empty()) {
      spdlog::info("node setup: removed {} from {} again", joined(*r), p.settings.interface_name);
    }
  }
  p.settings = std::move(*p.before_extend);
  p.before_extend.reset();
  p.extend_added.clear();
  p.verified = {};
}

std::expected<void, std::string> NodeSetup::extend(const NodeSettings& next) {
  auto locked = pass_.lock();
  PassState& p = *locked;
  undo_extend(p);  // an extend() that neither update() nor revert() followed
  p.before_extend = p.settings;
  p.settings = merged(p.settings, next);
  p.verified = {};
  const auto& name = p.settings.interface_name;
  auto fail = [&](const std::string& why) -> std::expected<void, std::string> {
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    undo_extend(p);
    return std::unexpected(why);
  };
  if (p.settings.setup_interface) {
    auto nl = Netlink::open();
    if (!nl) return fail(nl.error());
    auto state = nl->inspect(name);
    if (!state) return fail(state.error());
    // The new addresses not on the interface yet: what undo_extend() removes
    // (counted before ensure(), which may fail halfway).
    for (const auto& a : minus(p.settings.local_addresses, p.before_extend->local_addresses)) {
      if (std::find(state->addresses.begin(), state->addresses.end(), a) == state->addresses.end())
        p.extend_added.push_back(a);
    }
    auto r = nl->ensure({name, p.settings.interface_kind, p.settings.local_addresses});
    if (!r) return fail(r.error());
    for (const auto& a : r->added)
      spdlog::info("node setup: added {} to {} (reload)", a.to_string(), name);
  }
  if (p.rules) {
    auto r = p.rules->sync(p.settings.targets);
    if (!r) return fail(r.error());
    for (const auto& note : r->notes)
      spdlog::info("node setup: {} (reload)", note);
  }
  return {};
}

void NodeSetup::revert() {
  auto locked = pass_.lock();
  undo_extend(*locked);
}

std::expected<void, std::string> NodeSetup::update(const NodeSettings& next) {
  auto locked = pass_.lock();
  PassState& p = *locked;
  auto gone = minus(p.settings.local_addresses, next.local_addresses);
  p.before_extend.reset();
  p.extend_added.clear();
  p.settings = next;
  p.verified = {};
  std::string error;
  if (p.rules) {
    if (auto r = p.rules->sync(p.settings.targets); !r) {
      error = r.error();
    } else {
      for (const auto& note : r->notes)
        spdlog::info("node setup: {} (reload)", note);
    }
  }
  if (p.settings.setup_interface && !gone.empty()) {
    auto nl = Netlink::open();
    auto r = nl ? nl->remove_addresses(p.settings.interface_name, gone)
                : std::expected<std::vector<boost::asio::ip::address>, std::string>(
                      std::unexpected(nl.error()));
    if (!r) {
      error += (error.empty() ? "" : "; ") + r.error();
    } else if (!r->empty()) {
      spdlog::info("node setup: removed {} from {} (reload)", joined(*r),
                   p.settings.interface_name);
    }
  }
  if (!error.empty()) {
    counters_.setup_errors.fetch_add(1, std::memory_order_relaxed);
    return std::unexpected(error);
  }
  return {};
}

void NodeSetup::start_sync() {
  if (sync_thread_.joinable()) return;
  stop_sync_ = {};
  sync_thread_ = std::thread([this, stop = stop_sync_.get_future()] {
    while (stop.wait_for(sync_interval_) == std::future_status::timeout)
      sync();
  });
}

void NodeSetup::stop_sync() {
  if (!sync_thread_.joinable()) return;
  stop_sync_.set_value();
  sync_thread_.join();
}

void NodeSetup::teardown() {
  stop_sync();
  auto locked = pass_.lock();
  PassState& p = *locked;
  in_place_.store(false, std::memory_order_relaxed);
  if (p.rules) {
    if (auto r = p.rules->remove()) {
      spdlog::info("node setup: removed {} {} rules", *r, p.rules->name());
    } else {
      spdlog::error("node setup: removing rules: {}", r.error());
    }
  }
  if (p.settings.setup_interface) {
    auto nl = Netlink::open();
    auto r = nl ? nl->remove(p.settings.interface_name)
                : std::expected<LinkRemoval, std::string>(std::unexpected(nl.error()));
    if (!r) {
      spdlog::error("node setup: {}", r.error());
    } else if (*r == LinkRemoval::removed) {
      spdlog::info("node setup: removed interface {}", p.settings.interface_name);
    } else if (*r == LinkRemoval::not_ours) {
      spdlog::warn("node setup: interface {} is not marked as localdns's: left in place",
                   p.settings.interface_name);
    }
  }
}

CleanupReport cleanup_node(const NodeSettings& n) {
  CleanupReport report;
  for (auto kind : {RulesBackendKind::IptablesLegacy, RulesBackendKind::IptablesNft,
                    RulesBackendKind::Nftables}) {
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
