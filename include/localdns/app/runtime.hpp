// A running localdns: the workers, their threads, and a shutdown bounded in
// time. Construct (binds every socket or throws), start(), stop().
// start() and stop() are called from one controlling thread; stats() from any.
#pragma once

#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <localdns/app/cache_persister.hpp>
#include <localdns/app/worker.hpp>
#include <localdns/config/config.hpp>
#include <localdns/config/reload.hpp>
#include <localdns/util/notifier.hpp>

namespace localdns::app {

struct Stats {
  std::uint64_t queries = 0;
  std::uint64_t dropped = 0;
  std::uint64_t formerr = 0;
  std::uint64_t notimp = 0;
  std::uint64_t refused = 0;
  std::uint64_t servfail = 0;
  std::uint64_t forwarded = 0;
  std::uint64_t truncated = 0;
  std::uint64_t cache_hits = 0;
  std::uint64_t coalesced = 0;
  std::uint64_t prefetches = 0;
  std::uint64_t stale = 0;
  std::uint64_t client_not_allowed = 0;   // REFUSED: outside clients.allow
  std::uint64_t client_rate_limited = 0;  // REFUSED: over clients.rate_limit
  std::uint64_t client_dropped = 0;       // not answered: over clients.rate_limit
  std::uint64_t client_evictions = 0;     // rate-limit table entries evicted (LRU)
  // The search-path prefetch (server::HandlerStats::search_*).
  std::uint64_t search_sets = 0;
  std::uint64_t search_sent = 0;
  std::uint64_t search_useful = 0;
  std::uint64_t search_waste = 0;
  std::uint64_t search_cname = 0;
  std::uint64_t search_deadline = 0;
  std::uint64_t search_skipped_rate = 0;
  std::uint64_t search_skipped_client = 0;
  std::uint64_t search_skipped_busy = 0;
  std::uint64_t search_skipped_in_flight = 0;
};

// Reloads so far (the localdns_config_reloads_total family) and the
// generation serving (0: the configuration read at start).
struct ReloadCounters {
  std::atomic<std::uint64_t> success{0};
  std::atomic<std::uint64_t> failure{0};
  std::atomic<std::uint64_t> generation{0};
  std::atomic<std::uint64_t> hash{0};  // of the serving configuration's YAML
};

// What serves now, taken together under one lock: groups[i] serves the
// zones of config->forward[i]; router routes names to those indexes.
struct Serving {
  std::shared_ptr<const config::Config> config;
  std::vector<std::shared_ptr<upstream::GroupState>> groups;
  std::shared_ptr<const server::ZoneRouter> router;
};

// On reload: whether an answer cached for `qname` (wire form) stays, given
// the routers before and after and the plan: when its name's group before
// and after forward to the same upstream (config::ReloadPlan). Names that
// route nowhere either way have nothing cached.
bool keeps_cached_answer(const config::ReloadPlan& plan, const server::ZoneRouter& before,
                         const server::ZoneRouter& after, dns::Bytes qname);

class Runtime {
 public:
  // Throws std::system_error when a listener cannot be bound. With `adopted`,
  // the workers take over the listening sockets a handover passed (Worker).
  explicit Runtime(config::Config cfg, FdPool* adopted = nullptr);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Loads the persisted cache (cache.persist_file), if any, then starts the
  // workers and the periodic cache saver.
  void start();
  // Stops reading queries, lets answers in flight finish for at most
  // shutdown_grace, answers SERVFAIL to every query still in flight, writes
  // those replies (at most one more second), joins the threads, then saves
  // the cache to cache.persist_file, if set.
  void stop();

  // Applies `next`, a validated configuration that config::reload_rejections
  // accepts, following `plan` (config::plan_reload against current_config()):
  // the workers swap in the new generation (router, groups, TTL policies)
  // between two events (this waits for them, at most one second), then every
  // cached answer whose name routed to another upstream before than it does
  // now is dropped and the cache's budgets applied. Not
  // concurrently with itself or stop(); from the controlling thread or one
  // that stop() waits for. Returns the new generation's number.
  std::uint64_t reload(config::Config next, const config::ReloadPlan& plan,
                       std::vector<NewListeners> bound = {});

  // For a reload that adds listen endpoints, before reload(): binds UDP and
  // TCP on each of `endpoints` for every worker, on the calling thread, so
  // that a failure (the address in use, or not on this host) fails the
  // reload before anything changed. Throws std::system_error naming the
  // address; what was bound is closed again. Hand the result to reload()
  // (index = worker): the workers start them there, and stop and close the
  // plan's removed endpoints once their answers are written (reload() waits
  // for that, about a second).
  std::vector<NewListeners> bind_listeners(const std::vector<config::Endpoint>& endpoints);

  // Upgrade handover (handover.hpp), from the donor's handover thread while
  // running: a dup() of every worker's listening sockets (waits at most 1 s
  // for the workers).
  std::vector<PassedFd> export_listeners();
  // The successor serves on those sockets: every worker stops reading UDP
  // and accepting TCP; then waits, at most `bound` or until `cancel`, until
  // nothing is in flight upstream and every client connection closed once
  // idle. True when it all finished. stop() still follows, at SIGTERM.
  bool hand_over(std::chrono::milliseconds bound, const std::atomic<bool>& cancel);

  Stats stats() const;
  cache::CacheStats cache_stats() const;
  // As read at start. The keys a reload cannot change are the same in both
  // (not `listen` nor `node`: read those from current_config()).
  const config::Config& config() const { return *shared_.config; }
  // As last reloaded; any thread.
  std::shared_ptr<const config::Config> current_config() const;
  ReloadCounters& reloads() { return reloads_; }
  const ReloadCounters& reloads() const { return reloads_; }
  unsigned threads() const { return static_cast<unsigned>(workers_.size()); }

  // For metrics, health and control; safe from any thread while running.
  bool running() const { return running_.load(std::memory_order_relaxed); }
  // The router serving now (a reload may replace it); any thread.
  std::shared_ptr<const server::ZoneRouter> router() const;
  // The groups serving now (a reload may add, remove, replace or move
  // them); a copy, any thread. With their zones: serving().
  std::vector<std::shared_ptr<upstream::GroupState>> groups() const;
  Serving serving() const;
  // The zone label slot of queries that were dropped, and the number of
  // zone label slots: every router's labels are below it.
  std::size_t zone_labels() const { return shared_.zone_labels; }
  std::vector<const metrics::QueryMetrics*> query_metrics() const;
  std::vector<metrics::TopTracker*> top_trackers() const;
  cache::PacketCache* cache() const { return shared_.cache.get(); }
  // Null unless cache.persist_file is set (and the cache enabled).
  const CachePersister* persister() const { return persister_.get(); }

 private:
  // reload()'s listener step: hands each worker its new sockets and the
  // endpoints to close, and waits (bounded) until those are closed.
  void change_listeners(std::vector<NewListeners> bound, const config::ReloadPlan& plan,
                        const config::Config& before, const config::Config& after);

  // Every group's on_idle from stop() on; declared first so that it outlives
  // the workers and every in-flight ticket they hold.
  util::Notifier upstreams_idle_;
  Shared shared_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::unique_ptr<CachePersister> persister_;
  bool stopped_ = false;
  std::atomic<bool> running_{false};
  ReloadCounters reloads_;
  mutable std::mutex mu_;  // current_, shared_.groups, shared_.router, retired_groups_
  std::shared_ptr<const config::Config> current_;
  // Replaced by reloads and perhaps still in flight: shutdown waits for them too.
  std::vector<std::shared_ptr<upstream::GroupState>> retired_groups_;
};

}  // namespace localdns::app
