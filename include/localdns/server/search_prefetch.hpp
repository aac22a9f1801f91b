// Search-path prefetch on a worker (README.md, "Search path"): when a first
// search expansion F misses the cache, the rest of the pod's walk is asked
// ahead of the pod, through the handler's normal miss path (coalesced,
// cached, counted), in the release order of server/search_path.hpp.
//
// A CandidateSet is one walk in flight: one per (N, ns, qtype), on the
// worker that saw F miss, touched only on that worker's thread. It files
// itself in the coalescer as a waiter without a client on F and on every
// candidate question it asks, so it learns each outcome whoever leads the
// query, and reports each one (F's too) to its listener.
//
// SpeculationBudget is shared by every worker (atomics only); SearchPrefetch
// is the worker's own: the per-client buckets, the sets in flight, the
// settled sets waiting for their usefulness check. On its handler's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/server/client_limits.hpp>
#include <localdns/server/search_budget.hpp>
#include <localdns/server/search_path.hpp>
#include <localdns/upstream/exchange.hpp>
#include <localdns/upstream/forwarder.hpp>

namespace localdns::server {

class QueryHandler;
class Counter;

// What one question of the walk came back with.
struct ProbeResult {
  CandidateOutcome outcome = CandidateOutcome::Pending;
  // NXDOMAIN/NODATA: min(SOA TTL, SOA MINIMUM); UINT32_MAX without an SOA.
  std::uint32_t negative_ttl = UINT32_MAX;
  // The upstream's answer (or the cached one, rendered with ID 0), when there is one.
  std::shared_ptr<const std::vector<std::uint8_t>> answer;
  bool sent = false;   // this set led the upstream query (a speculative query)
  bool asked = false;  // a client query joined it while it was in flight
};

// The outcome of an upstream exchange, for the walk.
ProbeResult probe_result(const upstream::Result& r);

class CandidateSet {
 public:
  // A probe is a (candidate, type) pair: probe = candidate * types() + t,
  // type 0 being F's type. kF names F itself.
  static constexpr int kF = -1;
  using Listener = std::function<void(CandidateSet&, int probe)>;

  CandidateSet(std::string f_key, dns::Bytes f_name, std::uint16_t qtype, bool do_bit, bool cd,
               std::vector<SearchCandidate> candidates, bool both_types);

  const std::string& key() const { return key_; }        // F's coalescer key: the set's identity
  const std::string& f_name() const { return f_name_; }  // wire form, lower case
  std::uint16_t qtype() const { return qtype_; }
  bool do_bit() const { return do_bit_; }
  bool cd() const { return cd_; }
  const std::vector<SearchCandidate>& candidates() const { return candidates_; }
  std::size_t types() const { return both_types_ ? 2 : 1; }
  std::uint16_t type_of(std::size_t t) const;
  std::size_t probes() const { return candidates_.size() * types(); }
  const ProbeResult& f() const { return f_; }
  const ProbeResult& result(int probe) const;
  ProbeResult& result(int probe);
  // Candidates released so far (a prefix of candidates()).
  std::size_t released() const { return released_; }
  // How many may be released now (server::releasable over type 0's outcomes).
  std::size_t releasable_now() const;
  void mark_released(std::size_t n) { released_ = n; }
  // F and every released probe answered, and nothing more to release.
  bool settled() const;

  // Told of every outcome as it arrives (F's with kF), on the set's worker.
  void set_listener(Listener l) { listener_ = std::move(l); }
  void notify(int probe) {
    if (listener_) listener_(*this, probe);
  }
  ClientAddress client;  // whose F started the set: the per-client cap
  std::chrono::steady_clock::time_point settled_at{};
  bool finished = false;  // settled and accounted
  // search_path.mode cname: F's round in the coalescer waits for the choice
  // of a CNAME target; `finish_f` ends it (caches the answer and delivers it
  // to every waiter of F, on any worker), exactly once.
  bool holds_f = false;
  bool single_label = false;  // N is one label: only in-cluster targets
  bool f_answered = false;
  bool hold_over = false;  // past search_path.max_hold: F goes out as it comes
  std::function<void(const upstream::Result&)> finish_f;
  // Ends F's round with F's own answer, when it is held and not ended yet.
  void answer_f_as_is();
  // The hold's deadline passed: F is answered as it is, now if its answer
  // is in, else as soon as it comes; the walk goes on as in warm. False
  // when F's round was not held or had ended already.
  bool end_hold();

 private:
  std::string key_;
  std::string f_name_;
  std::uint16_t qtype_;
  bool do_bit_, cd_, both_types_;
  std::vector<SearchCandidate> candidates_;
  ProbeResult f_;
  std::vector<ProbeResult> results_;
  std::size_t released_ = 0;
  Listener listener_;
};

// The worker's search-path prefetch: its counters are the handler's stats.
class SearchPrefetch {
 public:
  // How long after a set settles a candidate it asked may still be asked
  // by the pod to count as useful (its cache entry's hit count is read then).
  static constexpr std::chrono::seconds kUsefulWindow{5};
  // Walks in flight on one worker; past it, F misses start none (counted as
  // in_flight).
  static constexpr std::size_t kMaxSetsPerWorker = 1024;

  SearchPrefetch(QueryHandler& handler, const SearchPathSettings& settings,
                 SpeculationBudget* budget, std::size_t max_sets = kMaxSetsPerWorker);
  ~SearchPrefetch();

  const SearchPath& path() const { return path_; }

  // F (`q`, routed to `group`) missed the cache and its round in the
  // coalescer is led by `client`'s query, not yet sent: files a set on F
  // when F has the shape and the caps allow; its candidates go out after
  // the current batch. Returns the set, or null.
  std::shared_ptr<CandidateSet> on_miss(const dns::Question& q, bool do_bit, bool cd, int group,
                                        std::string_view f_key, const ClientAddress& client);
  // A question of `set` came back (on this thread), `clients` being whether
  // some client query waited on it too.
  void report(const std::shared_ptr<CandidateSet>& set, int probe, const upstream::Result& r,
              bool clients);
  // search_path.mode cname: F's own upstream query came back (the set
  // holds F's round); answers F at once unless it is NXDOMAIN.
  void f_done(const std::shared_ptr<CandidateSet>& set, const upstream::Result& r);
  // The sets in flight on this worker.
  std::size_t in_flight() const { return sets_.size(); }

  // cname: a set holding F's round, and when its hold ends (max_hold after
  // F's miss). In deadline order.
  struct Held {
    std::chrono::steady_clock::time_point deadline;
    std::weak_ptr<CandidateSet> set;
  };
  using HeldSets = std::deque<Held>;
  // A reload: the new SearchPrefetch takes over the old one's deadlines.
  HeldSets take_held() { return std::exchange(held_, {}); }
  void adopt_held(HeldSets held);

 private:
  void release(const std::shared_ptr<CandidateSet>& set);
  // cname: chooses the target once the outcomes allow, and ends F's round
  // with the CNAME answer or F's own (search_cname.cpp).
  void decide(const std::shared_ptr<CandidateSet>& set);
  void ask(const std::shared_ptr<CandidateSet>& set, int probe);
  void settle(const std::shared_ptr<CandidateSet>& set);
  // The group is above half its max_in_flight: no speculative query.
  static bool busy(const upstream::Forwarder& fwd);
  void check_useful();
  void arm();
  // cname: files `set`'s deadline (hold), ends the holds past theirs
  // (end_holds) and waits for the next one (arm_holds).
  void hold(const std::shared_ptr<CandidateSet>& set);
  void end_holds();
  void arm_holds();
  // A probe the caps stopped: counted, and it reads as SERVFAIL for the walk.
  void capped(const std::shared_ptr<CandidateSet>& set, int probe, Counter& reason);

  QueryHandler& handler_;
  SearchPath path_;
  SpeculationBudget* budget_;
  std::size_t max_sets_;
  ClientLimiter clients_;
  std::unordered_map<std::string, std::weak_ptr<CandidateSet>> sets_;
  std::deque<std::shared_ptr<CandidateSet>> settled_;
  boost::asio::steady_timer timer_;
  bool armed_ = false;
  HeldSets held_;
  boost::asio::steady_timer hold_timer_;
  bool hold_armed_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace localdns::server
