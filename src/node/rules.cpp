#include <algorithm>
#include <map>

#include <spdlog/spdlog.h>

#include <localdns/node/process.hpp>
#include <localdns/node/rules.hpp>

namespace localdns::node {

namespace {

std::string host(const boost::asio::ip::address& a) {
  return a.to_string() + (a.is_v4() ? "/32" : "/128");
}

std::string endpoint(const boost::asio::ip::address& a, std::uint16_t port) {
  return a.is_v6() ? "[" + a.to_string() + "]:" + std::to_string(port)
                   : a.to_string() + ":" + std::to_string(port);
}

}  // namespace

std::vector<IptablesRule> iptables_rules(const RuleTargets& t, bool v6) {
  std::vector<IptablesRule> rules;
  auto add = [&](std::string table, std::string chain, std::string spec, std::string what) {
    std::string comment = std::string(kCommentPrefix) + " " + what;
    spec += " -m comment --comment \"" + comment + "\"";
    rules.push_back({std::move(table), std::move(chain), std::move(spec), std::move(comment)});
  };
  // Ports per address, the DNS port(s) first, then health.
  struct Port {
    const char* proto;
    std::uint16_t port;
  };
  for (const auto& l : t.locals) {
    if (l.address.is_v6() != v6) continue;
    const std::string a = host(l.address);
    const std::string ep = endpoint(l.address, l.port);
    std::vector<Port> ports = {{"udp", l.port}, {"tcp", l.port}};
    if (t.health_port != 0) ports.push_back({"tcp", t.health_port});
    for (const auto& p : ports) {
      std::string port = std::to_string(p.port);
      std::string m = std::string(" -p ") + p.proto + " -m " + p.proto;
      std::string e = endpoint(l.address, p.port);
      // Conditional on our socket: without localdns the packet is tracked
      // again and kube-proxy (or the fallback) handles it.
      add("raw", "PREROUTING",
          "-d " + a + m + " --dport " + port + " -m socket --nowildcard -j NOTRACK",
          std::string("notrack ") + p.proto + " to " + e + " while localdns listens");
      add("raw", "OUTPUT", "-s " + a + m + " --sport " + port + " -j NOTRACK",
          std::string("notrack ") + p.proto + " from " + e);
      add("raw", "OUTPUT", "-d " + a + m + " --dport " + port + " -j NOTRACK",
          std::string("notrack ") + p.proto + " to " + e + " from this host");
      add("filter", "INPUT", "-d " + a + m + " --dport " + port + " -j ACCEPT",
          std::string("accept ") + p.proto + " to " + e);
      add("filter", "OUTPUT", "-s " + a + m + " --sport " + port + " -j ACCEPT",
          std::string("accept ") + p.proto + " from " + e);
    }
    if (const auto& fb = l.fallback; fb && fb->address.is_v6() == v6 && fb->address != l.address) {
      std::string to = fb->to_string();
      for (const char* proto : {"udp", "tcp"}) {
        add("nat", "PREROUTING",
            "-d " + a + " -p " + proto + " -m " + proto + " --dport " + std::to_string(l.port) +
                " -j DNAT --to-destination " + to,
            std::string("fallback ") + proto + " " + ep + " to " + to + " while localdns is down");
      }
    }
  }
  // Keep each chain's rules in the order added, grouped per chain.
  std::stable_sort(rules.begin(), rules.end(), [](const IptablesRule& x, const IptablesRule& y) {
    return std::tie(x.table, x.chain) < std::tie(y.table, y.chain);
  });
  return rules;
}

std::string nftables_ruleset(const RuleTargets& t) {
  std::string pre, out, nat;
  auto rule = [](std::string& chain, const std::string& text, const std::string& what) {
    chain += "\t\t" + text + " comment \"" + std::string(kCommentPrefix) + " " + what + "\"\n";
  };
  for (const auto& l : t.locals) {
    const bool v6 = l.address.is_v6();
    const std::string fam = v6 ? "ip6" : "ip";
    const std::string a = l.address.to_string();
    std::vector<std::pair<const char*, std::uint16_t>> ports = {{"udp", l.port}, {"tcp", l.port}};
    if (t.health_port != 0) ports.emplace_back("tcp", t.health_port);
    for (const auto& [proto, p] : ports) {
      std::string port = std::to_string(p);
      std::string e = endpoint(l.address, p);
      rule(pre, fam + " daddr " + a + " " + proto + " dport " + port + " socket wildcard 0 notrack",
           std::string("notrack ") + proto + " to " + e + " while localdns listens");
      rule(out, fam + " saddr " + a + " " + proto + " sport " + port + " notrack",
           std::string("notrack ") + proto + " from " + e);
      rule(out, fam + " daddr " + a + " " + proto + " dport " + port + " notrack",
           std::string("notrack ") + proto + " to " + e + " from this host");
    }
    if (const auto& fb = l.fallback; fb && fb->address.is_v6() == v6 && fb->address != l.address) {
      for (const char* proto : {"udp", "tcp"}) {
        rule(nat,
             fam + " daddr " + a + " " + proto + " dport " + std::to_string(l.port) + " dnat " +
                 fam + " to " + fb->to_string(),
             std::string("fallback ") + proto + " " + endpoint(l.address, l.port) + " to " +
                 fb->to_string() + " while localdns is down");
      }
    }
  }
  std::string s = "table inet " + std::string(kNftTable) + " {\n";
  s += "\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n" +
       pre + "\t}\n";
  s += "\tchain output {\n\t\ttype filter hook output priority raw; policy accept;\n" + out +
       "\t}\n";
  if (!nat.empty()) {
    s += "\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat - 10; policy "
         "accept;\n" +
         nat + "\t}\n";
  }
  s += "}\n";
  return s;
}

namespace {

bool ours(const std::string& comment) {
  return comment.starts_with(kCommentPrefix);
}

bool node_local_dns(const std::string& comment) {
  return comment.starts_with(kNodeLocalDnsCommentPrefix);
}

struct Chain {
  const char* table;
  const char* chain;
};
constexpr Chain kChains[] = {{"raw", "PREROUTING"},
                             {"raw", "OUTPUT"},
                             {"filter", "INPUT"},
                             {"filter", "OUTPUT"},
                             {"nat", "PREROUTING"}};

class IptablesBackend final : public RulesBackend {
 public:
  IptablesBackend(std::string variant, const util::Clock& clock)
      : variant_(std::move(variant)), clock_(clock) {}

  std::string name() const override { return "iptables-" + variant_; }

  std::expected<RulesRepair, std::string> sync(const RuleTargets& t) override {
    RulesRepair repair;
    for (bool v6 : {false, true}) {
      auto desired = iptables_rules(t, v6);
      auto r = sync_family(desired, v6, repair, Mode::apply, addresses(t, v6));
      if (!r) return std::unexpected(r.error());
    }
    return repair;
  }

  std::expected<unsigned, std::string> check(const RuleTargets& t) override {
    RulesRepair repair;
    for (bool v6 : {false, true}) {
      auto r = sync_family(iptables_rules(t, v6), v6, repair, Mode::check);
      if (!r) return std::unexpected(r.error());
    }
    return repair.repaired;
  }

  std::expected<unsigned, std::string> remove() override {
    RulesRepair ignored;
    unsigned removed = 0;
    for (bool v6 : {false, true}) {
      auto r = sync_family({}, v6, ignored, Mode::remove);
      if (!r) return std::unexpected(r.error());
      removed += *r;
    }
    return removed;
  }

 private:
  // check: count only; apply: install ours and replace node-local-dns's in the
  // same transactions; remove: delete ours, leave everything else.
  enum class Mode { check, apply, remove };
  // `-save`, or, when that cannot list the tables, one `-save -t TABLE` per
  // table of kChains: iptables-legacy-save lists the tables from
  // /proc/net/ip_tables_names, which is root's (0440), so a service running
  // as another user with CAP_NET_ADMIN could not read its own rules. Not -t
  // always: it would load and create legacy tables on a host that has none.
  static std::expected<ProcessResult, std::string> save_tables(const std::string& save) {
    auto plain = run_process({save});
    if (!plain || plain->ok() ||
        plain->err.find("_tables_names: Permission denied") == std::string::npos) {
      return plain;
    }
    ProcessResult all;
    all.exit_code = 0;
    for (const char* table : {"raw", "filter", "nat"}) {
      auto r = run_process({save, "-t", table});
      if (!r || !r->ok()) return r;
      all.out += r->out;
    }
    return all;
  }

  std::string program(bool v6, const char* suffix) const {
    return std::string(v6 ? "ip6tables-" : "iptables-") + variant_ + suffix;
  }

  // The local addresses of one family, for messages.
  static std::string addresses(const RuleTargets& t, bool v6) {
    std::vector<boost::asio::ip::address> seen;
    std::string s;
    for (const auto& l : t.locals) {
      if (l.address.is_v6() != v6 || std::find(seen.begin(), seen.end(), l.address) != seen.end()) {
        continue;
      }
      seen.push_back(l.address);
      s += (s.empty() ? "" : ", ") + l.address.to_string();
    }
    return s;
  }

  // Rules of other agents ahead of our block in one chain: said once per
  // change (a warning, not a repair: they stay where they are), forgotten
  // once none are.
  void note_rules_ahead(const std::string& where, const std::string& table,
                        const std::vector<const SavedRule*>& ahead, const std::string& addresses,
                        RulesRepair& repair) {
    if (ahead.empty()) {
      ahead_.erase(where);
      return;
    }
    std::string seen;
    for (const auto* r : ahead)
      seen += r->line + "\n";
    auto& last = ahead_[where];
    if (last == seen) return;
    last = std::move(seen);
    const bool one = ahead.size() == 1;
    std::string first = ahead.front()->line;
    if (auto sp = first.find(' ', 3); sp != std::string::npos) first = first.substr(sp + 1);
    const char* what = table == "raw"      ? "NOTRACK rules"
                       : table == "filter" ? "ACCEPT rules"
                                           : "fallback DNAT rules";
    const char* verbs = table == "raw"      ? "accept or drop"
                        : table == "filter" ? "drop or reject"
                                            : "accept or translate";
    repair.warnings.push_back(
        where + ": " + std::to_string(ahead.size()) +
        (one ? " rule of another agent precedes" : " rules of other agents precede") +
        " localdns's " + what + " (" + (one ? "" : "first: ") + first + "); localdns leaves " +
        (one ? "it" : "them") + " there: make sure " + (one ? "it does" : "they do") + " not " +
        verbs + " DNS traffic to " + addresses + " before ours");
  }

  // Returns how many of our rules it deleted.
  std::expected<unsigned, std::string> sync_family(const std::vector<IptablesRule>& desired,
                                                   bool v6, RulesRepair& repair, Mode mode,
                                                   const std::string& addresses = {}) {
    const std::string save = program(v6, "-save");
    const bool take_over = mode != Mode::remove;
    if (!have_program(save)) {
      if (desired.empty()) return 0u;  // nothing of ours can be there
      return std::unexpected(save +
                             " not found: install the iptables package, or pick "
                             "another --rules-backend");
    }
    auto saved = save_tables(save);
    if (!saved) return std::unexpected(saved.error());
    if (!saved->ok()) {
      bool denied = saved->err.find("ermission denied") != std::string::npos;
      // With nothing to install, a family this kernel lacks holds nothing of ours.
      if (desired.empty() && !denied) return 0u;
      return std::unexpected(save + ": " + saved->describe());
    }
    SavedTables current = parse_iptables_save(saved->out);
    std::map<std::string, std::string> scripts;  // table -> commands
    unsigned deleted = 0;
    for (const auto& [table, chain] : kChains) {
      std::vector<const IptablesRule*> want;
      for (const auto& r : desired)
        if (r.table == table && r.chain == chain) want.push_back(&r);
      std::vector<const SavedRule*> in_chain;
      for (const auto& r : current[table])
        if (r.chain == chain) in_chain.push_back(&r);
      // In place: each desired rule of ours exactly once, together in one
      // block in the desired order, wherever the block starts (other agents,
      // such as Calico's Felix or Cilium, insert their own rules at the top
      // and put them back there: moving ours above theirs on every pass would
      // fight them), no other rule of ours, and, when taking over, none of
      // node-local-dns's.
      std::vector<std::size_t> at;  // where ours are in the chain
      bool theirs_there = false;
      for (std::size_t i = 0; i < in_chain.size(); ++i) {
        if (ours(in_chain[i]->comment)) at.push_back(i);
        if (take_over && node_local_dns(in_chain[i]->comment)) theirs_there = true;
      }
      bool in_place = !theirs_there && at.size() == want.size();
      for (std::size_t k = 0; in_place && k < want.size(); ++k) {
        in_place =
            in_chain[at[k]]->comment == want[k]->comment && (k == 0 || at[k] == at[k - 1] + 1);
      }
      const std::string where = std::string(v6 ? "ip6tables " : "iptables ") + table + " " + chain;
      if (mode == Mode::apply) {
        // Repaired (below) means moved to the top: nothing precedes ours then.
        std::vector<const SavedRule*> ahead;
        if (in_place && !at.empty()) ahead.assign(in_chain.begin(), in_chain.begin() + at[0]);
        note_rules_ahead(where, table, ahead, addresses, repair);
      }
      if (in_place) continue;

      unsigned present = 0, extra = 0, theirs = 0;
      std::string& script = scripts[table];
      std::vector<std::string> seen;
      for (const auto* r : in_chain) {
        if (take_over && node_local_dns(r->comment)) {
          // Deleted in the transaction that inserts ours: never both at once.
          script += "-D" + r->line.substr(2) + "\n";
          ++theirs;
          continue;
        }
        if (!ours(r->comment)) continue;
        bool wanted = std::any_of(want.begin(), want.end(),
                                  [&](const IptablesRule* w) { return w->comment == r->comment; });
        bool dup = std::find(seen.begin(), seen.end(), r->comment) != seen.end();
        if (wanted && !dup) ++present;
        if (!wanted || dup) ++extra;
        seen.push_back(r->comment);
        script += "-D" + r->line.substr(2) + "\n";
        ++deleted;
      }
      for (std::size_t i = 0; i < want.size(); ++i) {
        script += "-I " + want[i]->chain + " " + std::to_string(i + 1) + " " + want[i]->spec + "\n";
      }
      if (script.empty()) scripts.erase(table);
      unsigned missing = static_cast<unsigned>(want.size()) - present;
      repair.taken_over += theirs;
      if (!want.empty() || theirs > 0) {
        unsigned fixed = missing + extra + theirs;
        if (fixed == 0) fixed = 1;  // only the order was wrong
        repair.repaired += fixed;
        std::string note = where + ": ";
        if (theirs) note += "replaced " + std::to_string(theirs) + " node-local-dns rules; ";
        if (missing) note += "added " + std::to_string(missing) + " missing rules; ";
        if (extra) note += "removed " + std::to_string(extra) + " stale or duplicate rules; ";
        if (!missing && !extra && !theirs)
          note += "put our rules back together, in order, at the top; ";
        note.resize(note.size() - 2);
        repair.notes.push_back(std::move(note));
      }
    }
    if (mode == Mode::check || scripts.empty()) return deleted;
    // Every table in one iptables-restore run: each COMMIT replaces one table
    // atomically, and the tables follow each other within the same process.
    std::string input, names;
    for (const auto& [table, script] : scripts) {
      input += "*" + table + "\n" + script + "COMMIT\n";
      names += (names.empty() ? "" : ", ") + table;
    }
    if (!repair.changed_at) repair.changed_at = clock_.now();
    auto r = run_process({program(v6, "-restore"), "-w", "5", "--noflush"}, input);
    repair.changed_until = clock_.now();
    if (!r) return std::unexpected(r.error());
    if (!r->ok()) {
      return std::unexpected(program(v6, "-restore") + " (tables " + names + "): " + r->describe());
    }
    return deleted;
  }

  std::string variant_;
  const util::Clock& clock_;
  // Per chain ("iptables raw PREROUTING"): the rules of other agents that
  // preceded ours when last said.
  std::map<std::string, std::string> ahead_;
};

class NftablesBackend final : public RulesBackend {
 public:
  explicit NftablesBackend(const util::Clock& clock) : clock_(clock) {}
  std::string name() const override { return "nftables"; }

  std::expected<RulesRepair, std::string> sync(const RuleTargets& t) override {
    RulesRepair repair;
    std::string want = nftables_ruleset(t);
    auto current = list();
    if (!current) return std::unexpected(current.error());
    if (!reference_.empty() && want == wanted_ && *current == reference_) return repair;
    // Replace the table in one transaction: no moment without rules.
    std::string table = "inet " + std::string(kNftTable);
    repair.changed_at = clock_.now();
    auto r = run_process({"nft", "-f", "/dev/stdin"},
                         "table " + table + "\ndelete table " + table + "\n" + want);
    repair.changed_until = clock_.now();
    if (!r) return std::unexpected(r.error());
    if (!r->ok()) return std::unexpected("nft: " + r->describe());
    auto after = list();
    if (!after) return std::unexpected(after.error());
    if (!reference_.empty() || !current->empty()) {
      unsigned changed = diff_rules(*current, *after);
      if (changed > 0) {
        repair.repaired = changed;
        repair.notes.push_back("nft table " + table + ": " + std::to_string(changed) +
                               " rules restored or replaced");
      }
    }
    reference_ = *after;
    wanted_ = want;
    return repair;
  }

  std::expected<unsigned, std::string> check(const RuleTargets& t) override {
    auto current = list();
    if (!current) return std::unexpected(current.error());
    if (reference_.empty() || nftables_ruleset(t) != wanted_) {
      return count_rules(*current) == 0 ? 1u : 0u;  // never installed by this process
    }
    return diff_rules(*current, reference_);
  }

  std::expected<unsigned, std::string> remove() override {
    if (!have_program("nft")) return 0u;
    auto current = list();
    if (!current) return std::unexpected(current.error());
    if (current->empty()) return 0u;
    unsigned n = count_rules(*current);
    auto r = run_process({"nft", "delete", "table", "inet", std::string(kNftTable)});
    if (!r) return std::unexpected(r.error());
    if (!r->ok()) return std::unexpected("nft delete table: " + r->describe());
    reference_.clear();
    return n;
  }

 private:
  // The table as nft lists it; empty when it does not exist.
  std::expected<std::string, std::string> list() {
    if (!have_program("nft")) {
      return std::unexpected(
          "nft not found: install the nftables package, or pick another "
          "--rules-backend");
    }
    auto r = run_process({"nft", "list", "table", "inet", std::string(kNftTable)});
    if (!r) return std::unexpected(r.error());
    if (!r->ok()) {
      if (r->err.find("No such file or directory") != std::string::npos) return std::string();
      return std::unexpected("nft list table: " + r->describe());
    }
    return r->out;
  }

  static std::vector<std::string> rule_lines(const std::string& listing) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start < listing.size()) {
      auto end = listing.find('\n', start);
      if (end == std::string::npos) end = listing.size();
      std::string line = listing.substr(start, end - start);
      if (line.find("comment \"" + std::string(kCommentPrefix)) != std::string::npos) {
        lines.push_back(line);
      }
      start = end + 1;
    }
    return lines;
  }
  static unsigned count_rules(const std::string& listing) {
    return static_cast<unsigned>(rule_lines(listing).size());
  }
  static unsigned diff_rules(const std::string& before, const std::string& after) {
    auto b = rule_lines(before), a = rule_lines(after);
    unsigned changed = 0;
    for (const auto& l : a)
      if (std::find(b.begin(), b.end(), l) == b.end()) ++changed;
    for (const auto& l : b)
      if (std::find(a.begin(), a.end(), l) == a.end()) ++changed;
    if (changed == 0 && a != b) changed = 1;  // same rules, different order
    return changed;
  }

  const util::Clock& clock_;
  std::string reference_;  // the listing right after our last install
  std::string wanted_;
};

unsigned count_rules_in(const std::string& save_output) {
  unsigned n = 0;
  std::size_t pos = 0;
  while ((pos = save_output.find("\n-A ", pos)) != std::string::npos) {
    ++n;
    ++pos;
  }
  return n;
}

bool has_kubelet_hint(const std::string& variant) {
  for (const char* family : {"iptables-", "ip6tables-"}) {
    std::string save = std::string(family) + variant + "-save";
    if (!have_program(save)) continue;
    auto r = run_process({save, "-t", "mangle"});
    if (r && r->ok() &&
        (r->out.find(":KUBE-IPTABLES-HINT ") != std::string::npos ||
         r->out.find(":KUBE-KUBELET-CANARY ") != std::string::npos)) {
      return true;
    }
  }
  return false;
}

unsigned rule_count(const std::string& variant) {
  unsigned n = 0;
  for (const char* family : {"iptables-", "ip6tables-"}) {
    std::string save = std::string(family) + variant + "-save";
    if (!have_program(save)) continue;
    auto r = run_process({save});
    if (r && r->ok()) n += count_rules_in(r->out);
  }
  return n;
}

}  // namespace

std::unique_ptr<RulesBackend> make_rules_backend(RulesBackendKind kind, const util::Clock& clock) {
  switch (kind) {
    case RulesBackendKind::IptablesLegacy:
      return std::make_unique<IptablesBackend>("legacy", clock);
    case RulesBackendKind::Nftables:
      return std::make_unique<NftablesBackend>(clock);
    case RulesBackendKind::IptablesNft:
    case RulesBackendKind::Auto:
      break;
  }
  return std::make_unique<IptablesBackend>("nft", clock);
}

RulesBackendKind choose_rules_backend(const BackendFacts& f) {
  if (f.hint_nft) return RulesBackendKind::IptablesNft;
  if (f.hint_legacy) return RulesBackendKind::IptablesLegacy;
  if (f.kube_proxy_nft) return RulesBackendKind::Nftables;
  if (f.legacy_rules > f.nft_rules) return RulesBackendKind::IptablesLegacy;
  if (!f.have_iptables_nft && f.have_nft) return RulesBackendKind::Nftables;
  return RulesBackendKind::IptablesNft;
}

BackendFacts observe_backend_facts() {
  BackendFacts f;
  f.hint_nft = has_kubelet_hint("nft");
  f.hint_legacy = has_kubelet_hint("legacy");
  f.have_nft = have_program("nft");
  f.have_iptables_nft = have_program("iptables-nft-save");
  if (f.have_nft) {
    auto r = run_process({"nft", "list", "tables"});
    if (r && r->ok()) {
      f.kube_proxy_nft = r->out.find("table ip kube-proxy\n") != std::string::npos ||
                         r->out.find("table ip6 kube-proxy\n") != std::string::npos;
    }
  }
  f.legacy_rules = rule_count("legacy");
  f.nft_rules = rule_count("nft");
  return f;
}

RulesBackendKind detect_rules_backend() {
  return choose_rules_backend(observe_backend_facts());
}

}  // namespace localdns::node
