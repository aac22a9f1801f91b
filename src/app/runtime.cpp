#include <chrono>
#include <condition_variable>
#include <mutex>

#include <spdlog/spdlog.h>

#include <localdns/app/runtime.hpp>
#include <localdns/config/module_settings.hpp>

namespace localdns::app {

namespace {

using Clock = std::chrono::steady_clock;

// After the grace: how long failing what is left upstream and writing the
// resulting SERVFAILs may take before the threads are stopped regardless.
constexpr std::chrono::milliseconds kFlushBound{1000};

// Counts workers that reported a shutdown step done. Shared with the posted
// handlers, which may run after a wait gave up.
class Countdown {
 public:
  explicit Countdown(std::size_t n) : left_(n) {}
  void count_down() {
    std::lock_guard lock(mu_);
    if (left_ > 0 && --left_ == 0) cv_.notify_all();
  }
  // True when every worker reported before `deadline`.
  bool wait_until(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, deadline, [this] { return left_ == 0; });
  }
  std::size_t left() {
    std::lock_guard lock(mu_);
    return left_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::size_t left_;
};

}  // namespace

Runtime::Runtime(config::Config cfg) {
  // spdlog creates its registry and default logger on first use. Create them
  // here, before any worker thread exists, so that workers only ever find
  // them made (the construction is otherwise ordered only by a guard inside
  // libspdlog, which ThreadSanitizer cannot see).
  spdlog::default_logger_raw();
  unsigned n = cfg.threads != 0 ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  shared_.config = std::make_shared<const config::Config>(std::move(cfg));
  shared_.server = config::server_settings(*shared_.config);
  shared_.router = std::make_shared<const server::ZoneRouter>(shared_.server.routing);
  for (const auto& g : shared_.config->forward) {
    shared_.groups.push_back(
        std::make_shared<upstream::GroupState>(config::upstream_settings(*shared_.config, g)));
  }
  const auto& cc = shared_.config->cache;
  if (cc.enabled) {
    shared_.cache = std::make_unique<cache::PacketCache>(cache::CacheSettings{
        cc.max_entries, cc.max_bytes, 32, cc.prefetch_hits, cc.prefetch_percent});
    shared_.cache_wiring.cache = shared_.cache.get();
    shared_.coalescer = std::make_unique<server::QueryCoalescer>();
    shared_.cache_wiring.coalescer = shared_.coalescer.get();
  }
  auto secs = [](config::Duration d) {
    return static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
  };
  for (const auto& g : shared_.config->forward) {
    cache::TtlPolicy p;
    p.min_ttl = secs(cc.min_ttl);
    p.max_ttl = secs(g.cache.max_ttl.value_or(cc.max_ttl));
    p.denial_max_ttl = secs(g.cache.denial_max_ttl.value_or(cc.denial_max_ttl));
    p.stale_window = secs(g.cache.serve_stale);
    shared_.cache_wiring.policies.push_back(p);
  }
  if (shared_.cache && !cc.persist_file.empty()) {
    CachePersister::Options po{cc.persist_file, cc.persist_interval, 0,
                               2 * cc.max_bytes + (1u << 20)};
    for (const auto& p : shared_.cache_wiring.policies)
      po.max_stale_window = std::max(po.max_stale_window, p.stale_window);
    persister_ = std::make_unique<CachePersister>(*shared_.cache, std::move(po));
  }
  for (unsigned i = 0; i < n; ++i)
    workers_.push_back(std::make_unique<Worker>(i, shared_));
}

Runtime::~Runtime() {
  stop();
}

void Runtime::start() {
  if (persister_) persister_->load();
  for (auto& w : workers_)
    threads_.emplace_back([w = w.get()] { w->run(); });
  running_.store(true, std::memory_order_relaxed);
  if (persister_) persister_->start();
}

std::vector<metrics::TopTracker*> Runtime::top_trackers() const {
  std::vector<metrics::TopTracker*> out;
  for (const auto& w : workers_)
    if (auto* t = w->top()) out.push_back(t);
  return out;
}

std::vector<const metrics::QueryMetrics*> Runtime::query_metrics() const {
  std::vector<const metrics::QueryMetrics*> out;
  for (const auto& w : workers_)
    if (const auto* m = w->metrics()) out.push_back(m);
  return out;
}

// Shutdown, with every query in flight answered:
//  1. stop reading UDP and accepting TCP (open connections may still ask);
//  2. grace: wait until nothing is in flight upstream, at most shutdown_grace;
//  3. every worker fails what is still in flight upstream, which sends the
//     SERVFAILs (UDP at once; TCP queued, or posted to the client's worker
//     for a coalesced query); all of them report before step 4, so that no
//     reply is still on its way to a worker that is draining;
//  4. every worker closes its client connections once their replies are
//     written;
//  5. the threads stop. Steps 3 and 4 together take at most kFlushBound: a
//     client that does not read, or a stuck worker, cannot hold the exit.
void Runtime::stop() {
  if (stopped_) return;
  stopped_ = true;
  running_.store(false, std::memory_order_relaxed);
  if (!threads_.empty()) {
    for (auto& w : workers_)
      w->stop_listening();
    auto in_flight = [this] {
      unsigned total = 0;
      for (const auto& g : shared_.groups)
        total += g->in_flight.load(std::memory_order_relaxed);
      return total;
    };
    // Woken by the last ticket of a group to go; in_flight() decides.
    for (const auto& g : shared_.groups)
      g->on_idle.store(&upstreams_idle_, std::memory_order_release);
    upstreams_idle_.wait_until(Clock::now() + shared_.config->shutdown_grace,
                               [&] { return in_flight() == 0; });
    if (unsigned left = in_flight(); left > 0) {
      spdlog::warn("shutdown: {} upstream queries still in flight after {} ms; answering SERVFAIL",
                   left, shared_.config->shutdown_grace.count());
    }
    auto bound = Clock::now() + kFlushBound;
    auto failed = std::make_shared<Countdown>(workers_.size());
    for (auto& w : workers_)
      w->fail_upstreams([failed] { failed->count_down(); });
    bool in_time = failed->wait_until(bound);
    auto drained = std::make_shared<Countdown>(workers_.size());
    if (in_time) {
      for (auto& w : workers_)
        w->drain_clients([drained] { drained->count_down(); });
      in_time = drained->wait_until(bound);
    }
    if (!in_time) {
      spdlog::warn(
          "shutdown: {} of {} workers had not written every reply after {} ms more; stopping",
          failed->left() > 0 ? failed->left() : drained->left(), workers_.size(),
          kFlushBound.count());
    }
  }
  for (auto& w : workers_)
    w->stop();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
  if (persister_) persister_->stop_and_save();
}

Stats Runtime::stats() const {
  Stats s;
  for (const auto& w : workers_) {
    const auto& h = w->stats();
    s.queries += h.queries.get();
    s.dropped += h.dropped.get();
    s.formerr += h.formerr.get();
    s.notimp += h.notimp.get();
    s.refused += h.refused.get();
    s.servfail += h.servfail.get();
    s.forwarded += h.forwarded.get();
    s.truncated += h.truncated.get();
    s.cache_hits += h.cache_hits.get();
    s.coalesced += h.coalesced.get();
    s.prefetches += h.prefetches.get();
    s.stale += h.stale.get();
  }
  return s;
}

cache::CacheStats Runtime::cache_stats() const {
  return shared_.cache ? shared_.cache->stats() : cache::CacheStats{};
}

}  // namespace localdns::app
