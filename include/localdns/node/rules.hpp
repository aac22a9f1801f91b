// The rules that take the local addresses' DNS traffic out of conntrack, in
// three backends: iptables-legacy, iptables-nft, and a native nftables table.
//
// Crash safety: the NOTRACK for traffic arriving at a local address applies
// only while a localdns socket is bound to it (the iptables `socket` match,
// the nft `socket` expression). Without localdns, packets to the kube-dns
// ClusterIP are tracked again and take kube-proxy's DNAT to CoreDNS, and
// packets to other local addresses meet the fallback DNAT, if one is set.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include <localdns/node/settings.hpp>
#include <localdns/util/clock.hpp>

namespace localdns::node {

// Every rule comment starts with this; `localdns cleanup` removes what has it.
inline constexpr std::string_view kCommentPrefix = "localdns:";

// node-local-dns's rules carry one of two comments, "NodeLocal DNS Cache: skip
// conntrack" (NOTRACK) and "NodeLocal DNS Cache: allow DNS traffic" (ACCEPT);
// both start with this. localdns replaces them with its own (see takeover.hpp).
inline constexpr std::string_view kNodeLocalDnsCommentPrefix = "NodeLocal DNS Cache:";

// One rule line of iptables-save output.
struct SavedRule {
  std::string chain;
  std::string line;     // "-A CHAIN ..."
  std::string comment;  // empty when it has none
};
// table -> its rules, in order
using SavedTables = std::map<std::string, std::vector<SavedRule>>;

// The comment of one rule line, unescaped: iptables-save's `--comment "..."`
// (or `--comment word`), else nft's `comment "..."`; empty when it has none.
std::string rule_comment(std::string_view line);
// Every table iptables-save lists (empty ones too) with its rules in order.
SavedTables parse_iptables_save(std::string_view text);

struct IptablesRule {
  std::string table;  // raw, filter, nat
  std::string chain;
  std::string spec;     // match and target, as iptables-restore takes them
  std::string comment;  // unique per rule; identifies it
};

// The rules for one family, in the order they take in their chains: one block
// per chain, installed at the top.
std::vector<IptablesRule> iptables_rules(const RuleTargets& t, bool v6);

// The whole `inet localdns` table, as `nft -f` takes it.
std::string nftables_ruleset(const RuleTargets& t);
inline constexpr std::string_view kNftTable = "localdns";

struct RulesRepair {
  // Rules added, duplicates or strays removed, or a split or reordered block
  // put back together at the top of its chain.
  unsigned repaired = 0;
  std::vector<std::string> notes;  // one line per chain that needed work
  // Not repairs: rules of other agents found ahead of our block (ours are in
  // place wherever the block starts), one line per chain, said once per change.
  std::vector<std::string> warnings;
  // node-local-dns's rules deleted in the same transactions (also in `repaired`).
  unsigned taken_over = 0;
  // When the first run that changed something started and the last one ended
  // (unset when nothing changed): ours went in between the two.
  std::optional<util::TimePoint> changed_at;
  std::optional<util::TimePoint> changed_until;
};

class RulesBackend {
 public:
  virtual ~RulesBackend() = default;
  virtual std::string name() const = 0;
  // Reads the current rules once and makes exactly the missing changes, in one
  // transaction per table. Never adds a rule that is already there. iptables:
  // a chain's rules are in place when each is there once, all together, in
  // order, wherever the block starts (other agents' rules may precede it);
  // otherwise the block is put back at the top.
  virtual std::expected<RulesRepair, std::string> sync(const RuleTargets& t) = 0;
  // Counts what sync() would repair, changing nothing.
  virtual std::expected<unsigned, std::string> check(const RuleTargets& t) = 0;
  // Removes every rule of ours; returns how many there were.
  virtual std::expected<unsigned, std::string> remove() = 0;
};

// iptables-legacy / iptables-nft (both families), or nftables. `clock`
// stamps RulesRepair::changed_at / changed_until; it must outlive the backend.
std::unique_ptr<RulesBackend> make_rules_backend(RulesBackendKind kind,
                                                 const util::Clock& clock = util::Clock::real());

// What the backend choice depends on, as observed on the node.
struct BackendFacts {
  bool hint_nft = false;        // KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY in iptables-nft mangle
  bool hint_legacy = false;     // the same in iptables-legacy
  bool kube_proxy_nft = false;  // kube-proxy's nftables table (ip or ip6 kube-proxy)
  unsigned legacy_rules = 0;    // rules in iptables-legacy, both families
  unsigned nft_rules = 0;       // rules in iptables-nft, both families
  bool have_iptables_nft = true;
  bool have_nft = true;
};

// The backend the node already uses, as Kubernetes' iptables wrapper decides:
// the variant holding kubelet's KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY chains
// (nft first), else nftables if kube-proxy's nftables table is there, else the
// iptables variant with more rules (iptables-nft on a tie; nftables when only
// nft is installed).
RulesBackendKind choose_rules_backend(const BackendFacts& f);
// Reads the facts in the calling thread's network namespace.
BackendFacts observe_backend_facts();
// choose_rules_backend(observe_backend_facts()).
RulesBackendKind detect_rules_backend();

}  // namespace localdns::node
