// Node setup as a whole: the interface with the local addresses, the NOTRACK
// rules, the leftover conntrack entries, a periodic check that repairs what
// went missing, and teardown. Used by app/ around the server's lifetime:
//   apply() -> bind listeners -> flush_conntrack() -> start_sync() ... stop_sync() -> teardown()
//
// Taking over from node-local-dns (apply() and every sync()): its unmarked
// interface is adopted with its addresses in place; its rules are replaced by
// ours. In the iptables variant of our backend, they are deleted in the same
// `iptables-restore` run (one COMMIT per table) that inserts ours, so
// no table ever holds both. In any other variant (or with the nftables
// backend), ours are installed first and theirs deleted right after: while
// both exist, theirs keep the traffic untracked exactly as before, and the
// traffic is never without a NOTRACK rule.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <expected>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <localdns/config/config.hpp>
#include <localdns/node/rules.hpp>
#include <localdns/node/takeover.hpp>

namespace localdns::node {

struct NodeCounters {
  std::atomic<std::uint64_t> syncs{0};
  std::atomic<std::uint64_t> repairs{0};       // interface, address or rule restored
  std::atomic<std::uint64_t> setup_errors{0};  // a step that failed
};

// The rules' inputs from a config: listen entries on local addresses, the
// health port, and each address's fallback (assign_fallbacks()); `notes`
// receives the fallback policy's warnings.
RuleTargets rule_targets(const config::Config& c, std::vector<std::string>* notes = nullptr);

class NodeSetup {
 public:
  explicit NodeSetup(const config::Config& c);
  ~NodeSetup();
  NodeSetup(const NodeSetup&) = delete;
  NodeSetup& operator=(const NodeSetup&) = delete;

  // Creates or adopts the interface and its addresses, then the rules. Safe
  // to run over leftovers of an earlier run: nothing is added twice.
  std::expected<void, std::string> apply();
  // Deletes conntrack entries for the local addresses; run once the listeners
  // are bound (the rules apply only while a localdns socket exists).
  void flush_conntrack();
  // One check-and-repair pass; returns what it repaired. Errors are logged and counted.
  unsigned sync();
  void start_sync();
  void stop_sync();
  // Removes the rules, then the interface. Logged; never throws.
  void teardown();

  const NodeCounters& counters() const { return counters_; }
  const RuleTargets& targets() const { return targets_; }
  std::string backend_name() const;
  // Checks the interface, addresses and rules now, repairing nothing; an empty
  // string when all is in place, else what is missing. Results are reused
  // for a second, so a readiness probe stays cheap.
  std::string verify();
  // The last apply() or sync() left everything in place.
  bool in_place() const { return in_place_.load(std::memory_order_relaxed); }
  // What the last apply() or sync() took over from node-local-dns.
  Takeover last_takeover();

 private:
  std::expected<unsigned, std::string> ensure_interface();
  std::expected<unsigned, std::string> ensure_rules();
  // node-local-dns's rules in the iptables variants our backend does not
  // manage: read before ours are installed, deleted right after; returns how
  // many. A variant that cannot be read is a warning, said once; a deletion
  // that fails is an error, counted, and the next sync() tries again.
  std::vector<std::pair<std::string, NodeLocalDnsRules>> find_foreign_rules();
  unsigned remove_foreign_rules(
      const RulesRepair& ours, const std::vector<std::pair<std::string, NodeLocalDnsRules>>& found);
  void log_takeover(bool at_start);
  // With rule setup off: says so if node-local-dns's rules are there.
  void warn_foreign_rules();

  config::NodeConfig cfg_;
  RuleTargets targets_;
  std::unique_ptr<RulesBackend> rules_;
  NodeCounters counters_;
  std::atomic<bool> in_place_{false};
  std::mutex mu_;                    // one pass at a time
  Takeover takeover_;                // of the current pass, under mu_
  bool foreign_unreadable_ = false;  // a variant could not be read (said once)
  std::chrono::steady_clock::time_point verified_at_{};
  std::string verified_;
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  bool stopping_ = false;
  std::thread sync_thread_;
};

// `localdns cleanup`: removes every rule of ours from every backend (both
// iptables variants, both families, the nft table) and node-local-dns's
// rules from both iptables variants, then the interface: when it is marked
// as ours, or when it is unmarked but of n.interface_kind and holds no address
// but the local addresses and those node-local-dns's rules named.
// Returns one line per thing removed or failed; `ok` is false on any failure.
struct CleanupReport {
  std::vector<std::string> lines;
  bool ok = true;
};
CleanupReport cleanup_node(const config::NodeConfig& n);

}  // namespace localdns::node
