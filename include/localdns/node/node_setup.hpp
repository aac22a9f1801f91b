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
//
// Threads and locking. apply(), flush_conntrack(), start_sync(), stop_sync()
// and teardown() are called by app/'s controlling thread; sync() also runs
// on the sync thread (start_sync()); verify() and last_takeover() on the
// health and control threads; extend() and update() on the thread that
// reloads; counters(), in_place(), targets() and backend_name() from any
// thread. Every pass (apply, sync, verify, teardown)
// holds the one lock of `pass_` from start to end, so passes never overlap;
// what they share (the rules backend, the takeover being recorded, the last
// verify result) is reachable only through that lock (util::LockGuarded).
// The settings are in `pass_` too: a reload changes the local addresses and
// the rule targets (extend(), update()), so sync() and verify() work to the
// settings of the pass that runs. The sync interval and the backend's name
// are immutable after construction; the counters and in_place() are atomics, written under the
// lock and read without it. The sync thread is stopped by a promise, not a
// flag under a lock.
#pragma once

#include <atomic>
#include <chrono>
#include <expected>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <localdns/node/rules.hpp>
#include <localdns/node/settings.hpp>
#include <localdns/node/takeover.hpp>
#include <localdns/util/clock.hpp>
#include <localdns/util/lock_guarded.hpp>

namespace localdns::node {

struct NodeCounters {
  std::atomic<std::uint64_t> syncs{0};
  std::atomic<std::uint64_t> repairs{0};       // interface, address or rule restored
  std::atomic<std::uint64_t> setup_errors{0};  // a step that failed
};

// A check's last result and when it was taken, reused while younger than
// kReuse. Not thread-safe: NodeSetup keeps it under its lock.
class RecentCheck {
 public:
  static constexpr std::chrono::seconds kReuse{1};
  // The stored result when it was taken less than kReuse before `now`.
  const std::string* fresh(util::TimePoint now) const {
    return at_ && now - *at_ < kReuse ? &result_ : nullptr;
  }
  void store(util::TimePoint now, std::string result) {
    at_ = now;
    result_ = std::move(result);
  }

 private:
  std::optional<util::TimePoint> at_;
  std::string result_;
};

class NodeSetup {
 public:
  // Picks the rules backend (detecting it with RulesBackendKind::Auto) when
  // rule setup is on. `clock` times the verify() reuse and the takeover's
  // overlap; it must outlive this object.
  explicit NodeSetup(const NodeSettings& s, const util::Clock& clock = util::Clock::real());
  // With the given rules backend (null: no rules), for tests.
  NodeSetup(const NodeSettings& s, std::unique_ptr<RulesBackend> rules, const util::Clock& clock);
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
  // From set_handed_over(true) on, sync() does nothing (and counts no pass):
  // the instance that took the sockets over keeps the node in order, and two
  // repairing it would flip-flop whatever their configurations disagree on.
  // Any thread (the handover's); sync() sees it at its next pass.
  void set_handed_over(bool on) { handed_over_.store(on); }
  // Runs sync() every sync_interval on a thread of its own until stop_sync().
  void start_sync();
  void stop_sync();
  // Removes the rules, then the interface. Logged; never throws.
  void teardown();

  // A reload that changes the local addresses or the rule targets, in two
  // steps around the listeners (README.md, "Reload"):
  //  1. extend(next): adds to the interface the addresses `next` has and the
  //     current settings lack, and installs the rules for the union of both
  //     sets of targets (the listeners on addresses `next` drops still serve
  //     until they close). Works to that union from then on. On failure it
  //     removes again the addresses it added, puts the current rules back
  //     and keeps the current settings: nothing changed. revert() does the
  //     same after a success (the reload failed later: a listener could not
  //     bind).
  //  2. update(next), once the listeners on removed addresses are closed:
  //     `next` becomes the settings; the addresses and rules it lacks are
  //     removed. An error is logged and counted; the next sync() repairs the
  //     rules to `next` (a leftover address stays until teardown).
  // Each runs under the pass lock, as one pass.
  std::expected<void, std::string> extend(const NodeSettings& next);
  std::expected<void, std::string> update(const NodeSettings& next);
  void revert();

  const NodeCounters& counters() const { return counters_; }
  // The rules' inputs now (update() changes them); a copy, under the pass lock.
  RuleTargets targets();
  const std::string& backend_name() const { return backend_name_; }
  // Checks the interface, addresses and rules now, repairing nothing; an empty
  // string when all is in place, else what is missing. Results are reused
  // for RecentCheck::kReuse (by `clock`), so a readiness probe stays cheap.
  std::string verify();
  // The last apply() or sync() left everything in place.
  bool in_place() const { return in_place_.load(std::memory_order_relaxed); }
  // What the last apply() or sync() took over from node-local-dns.
  Takeover last_takeover();

 private:
  // What a pass reads and writes; only under pass_'s lock.
  struct PassState {
    std::unique_ptr<RulesBackend> rules;  // null with rule setup off
    Takeover takeover;                    // of the current pass
    bool foreign_unreadable = false;      // a variant could not be read (said once)
    RecentCheck verified;                 // verify()'s last result
    // What the passes work to: as constructed, then as extend() and update()
    // set it. Only the local addresses and the rule targets ever change.
    NodeSettings settings;
    // Between extend() and update() or revert(): the settings before, and
    // the addresses extend() put on the interface.
    std::optional<NodeSettings> before_extend;
    std::vector<boost::asio::ip::address> extend_added;
  };
  void undo_extend(PassState& p);

  std::expected<unsigned, std::string> ensure_interface(PassState& p);
  std::expected<unsigned, std::string> ensure_rules(PassState& p);
  // node-local-dns's rules in the iptables variants our backend does not
  // manage: read before ours are installed, deleted right after; returns how
  // many. A variant that cannot be read is a warning, said once; a deletion
  // that fails is an error, counted, and the next sync() tries again.
  std::vector<std::pair<std::string, NodeLocalDnsRules>> find_foreign_rules(PassState& p);
  unsigned remove_foreign_rules(
      PassState& p, const RulesRepair& ours,
      const std::vector<std::pair<std::string, NodeLocalDnsRules>>& found);
  void log_takeover(const PassState& p, bool at_start);
  // With rule setup off: says so if node-local-dns's rules are there.
  void warn_foreign_rules();

  const util::Duration sync_interval_;
  const util::Clock& clock_;
  std::string backend_name_;  // "none" without rules
  NodeCounters counters_;
  std::atomic<bool> in_place_{false};
  std::atomic<bool> handed_over_{false};
  util::LockGuarded<PassState> pass_;  // one pass at a time
  // The sync thread and what stops it; only on the controlling thread.
  std::promise<void> stop_sync_;
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
CleanupReport cleanup_node(const NodeSettings& n);

}  // namespace localdns::node
