#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include <spdlog/spdlog.h>

#include <localdns/app/runtime.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/dns/name.hpp>

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

// How long each group's answers may stay cached (index = group).
std::vector<cache::TtlPolicy> ttl_policies(const config::Config& c) {
  auto secs = [](config::Duration d) {
    return static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
  };
  std::vector<cache::TtlPolicy> out;
  for (const auto& g : c.forward) {
    cache::TtlPolicy p;
    p.min_ttl = secs(c.cache.min_ttl);
    p.max_ttl = secs(g.cache.max_ttl.value_or(c.cache.max_ttl));
    p.denial_max_ttl = secs(g.cache.denial_max_ttl.value_or(c.cache.denial_max_ttl));
    p.stale_window = secs(g.cache.serve_stale);
    out.push_back(p);
  }
  return out;
}

bool answered(const upstream::GroupState& g) {
  if (g.answered_before.load(std::memory_order_relaxed)) return true;
  for (const auto& h : g.health)
    if (h->counters().answered.load(std::memory_order_relaxed) != 0) return true;
  return false;
}

// How long a reload waits for every worker to swap in the new generation.
constexpr std::chrono::milliseconds kApplyBound{1000};

// How long a listener a reload removes keeps writing the answers in flight
// before it closes.
constexpr std::chrono::milliseconds kListenerDrain{1000};

// The longest an upstream query of `c` may take (each group's attempts
// times its timeout), and a second more: a UDP client's answer is owed no
// longer than that.
std::chrono::milliseconds answer_bound(const config::Config& c) {
  std::chrono::milliseconds most{0};
  for (const auto& g : c.forward) {
    auto s = config::upstream_settings(c, g);
    most = std::max(most, std::chrono::duration_cast<std::chrono::milliseconds>(
                              s.timeout * std::max(1u, s.attempts)));
  }
  return most + std::chrono::milliseconds(1000);
}

// Zone metric labels beyond those at start that reloads may add; later new
// zones share the label "other" (the query metrics are sized once).
constexpr std::size_t kReloadZoneLabels = 64;

// Next group `i` takes over the readiness of the running groups that
// answered for the same upstream or for its zones (so that /ready stays 200
// when a reload replaces or moves the "." group).
bool inherits_answered(const config::ReloadPlan& plan, std::size_t i,
                       const std::vector<std::string>& zones,
                       const std::vector<std::shared_ptr<upstream::GroupState>>& old,
                       const server::ZoneRouter& old_router) {
  for (std::size_t j = 0; j < old.size(); ++j) {
    if (plan.same_upstream(static_cast<int>(j), static_cast<int>(i)) && answered(*old[j])) {
      return true;
    }
  }
  for (const auto& z : zones) {
    auto wire = dns::name_from_text(z);
    if (!wire) continue;
    int j = old_router.route(
        dns::Bytes(reinterpret_cast<const std::uint8_t*>(wire->data()), wire->size()));
    if (j >= 0 && static_cast<std::size_t>(j) < old.size() &&
        answered(*old[static_cast<std::size_t>(j)])) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool keeps_cached_answer(const config::ReloadPlan& plan, const server::ZoneRouter& before,
                         const server::ZoneRouter& after, dns::Bytes qname) {
  int j = before.route(qname);
  int i = after.route(qname);
  return (j < 0 && i < 0) || plan.same_upstream(j, i);
}

Runtime::Runtime(config::Config cfg, FdPool* adopted) {
  // spdlog creates its registry and default logger on first use. Create them
  // here, before any worker thread exists, so that workers only ever find
  // them made (the construction is otherwise ordered only by a guard inside
  // libspdlog, which ThreadSanitizer cannot see).
  spdlog::default_logger_raw();
  unsigned n = cfg.threads != 0 ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  shared_.config = std::make_shared<const config::Config>(std::move(cfg));
  shared_.server = config::server_settings(*shared_.config);
  shared_.search_budget.set_rate(shared_.server.search_path.max_qps);
  shared_.router = std::make_shared<const server::ZoneRouter>(shared_.server.routing);
  shared_.zone_labels = shared_.router->zone_labels().size() + kReloadZoneLabels;
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
  shared_.cache_wiring.policies = ttl_policies(*shared_.config);
  current_ = shared_.config;
  if (shared_.cache && !cc.persist_file.empty()) {
    CachePersister::Options po{cc.persist_file, cc.persist_interval, 0,
                               2 * cc.max_bytes + (1u << 20)};
    for (const auto& p : shared_.cache_wiring.policies)
      po.max_stale_window = std::max(po.max_stale_window, p.stale_window);
    persister_ = std::make_unique<CachePersister>(*shared_.cache, std::move(po));
  }
  for (unsigned i = 0; i < n; ++i)
    workers_.push_back(std::make_unique<Worker>(i, shared_, adopted, n));
}

std::vector<PassedFd> Runtime::export_listeners() {
  struct Collected {
    std::mutex mu;
    std::vector<PassedFd> fds;
  };
  auto got = std::make_shared<Collected>();
  auto done = std::make_shared<Countdown>(workers_.size());
  for (auto& w : workers_) {
    w->export_listeners([got, done](std::vector<PassedFd> fds) {
      {
        std::lock_guard lock(got->mu);
        for (auto& f : fds)
          got->fds.push_back(std::move(f));
      }
      done->count_down();
    });
  }
  if (!done->wait_until(Clock::now() + kApplyBound)) {
    spdlog::warn("handover: {} of {} workers did not hand their sockets in time", done->left(),
                 workers_.size());
  }
  std::lock_guard lock(got->mu);
  return std::move(got->fds);
}

bool Runtime::hand_over(std::chrono::milliseconds bound, const std::atomic<bool>& cancel) {
  auto deadline = Clock::now() + bound;
  auto released = std::make_shared<Countdown>(workers_.size());
  for (auto& w : workers_)
    w->hand_over([released] { released->count_down(); });
  auto all = groups();
  {
    std::lock_guard lock(mu_);
    all.insert(all.end(), retired_groups_.begin(), retired_groups_.end());
  }
  auto idle = [&all] {
    for (const auto& g : all)
      if (g->in_flight.load(std::memory_order_relaxed) != 0) return false;
    return true;
  };
  // In slices, so that a SIGTERM meanwhile (cancel) is not held up.
  while (!cancel.load() && Clock::now() < deadline) {
    auto slice = std::min(deadline, Clock::now() + std::chrono::milliseconds(50));
    if (idle() && released->wait_until(slice)) return true;
    if (!idle()) std::this_thread::sleep_until(slice);
  }
  return idle() && released->left() == 0;
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
    auto all = groups();
    config::Duration grace{};
    {
      std::lock_guard lock(mu_);
      all.insert(all.end(), retired_groups_.begin(), retired_groups_.end());
      grace = current_->shutdown_grace;
    }
    auto in_flight = [&all] {
      unsigned total = 0;
      for (const auto& g : all)
        total += g->in_flight.load(std::memory_order_relaxed);
      return total;
    };
    // Woken by the last ticket of a group to go; in_flight() decides.
    for (const auto& g : all)
      g->on_idle.store(&upstreams_idle_, std::memory_order_release);
    upstreams_idle_.wait_until(Clock::now() + grace, [&] { return in_flight() == 0; });
    if (unsigned left = in_flight(); left > 0) {
      spdlog::warn("shutdown: {} upstream queries still in flight after {} ms; answering SERVFAIL",
                   left, grace.count());
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

std::uint64_t Runtime::reload(config::Config next, const config::ReloadPlan& plan,
                              std::vector<NewListeners> bound) {
  auto cfg = std::make_shared<const config::Config>(std::move(next));
  auto now = serving();
  const auto& old = now.groups;
  auto gen = std::make_shared<Generation>();
  gen->number = reloads_.generation.load(std::memory_order_relaxed) + 1;
  auto routing = config::server_settings(*cfg).routing;
  gen->router =
      std::make_shared<const server::ZoneRouter>(routing, *now.router, shared_.zone_labels);
  gen->policies = ttl_policies(*cfg);
  gen->query_log_sample = cfg->query_log_sample;
  gen->clients = config::server_settings(*cfg).clients;
  gen->search_path = config::server_settings(*cfg).search_path;
  shared_.search_budget.set_rate(gen->search_path.max_qps);
  // Groups kept whole by the plan (by content, wherever their index moved),
  // else new; the running groups not kept are retired.
  std::vector<bool> kept(old.size(), false);
  for (std::size_t i = 0; i < cfg->forward.size(); ++i) {
    int j = i < plan.kept_from.size() ? plan.kept_from[i] : -1;
    if (j >= 0 && static_cast<std::size_t>(j) < old.size() && !kept[static_cast<std::size_t>(j)]) {
      kept[static_cast<std::size_t>(j)] = true;
      gen->groups.push_back(old[static_cast<std::size_t>(j)]);
      continue;
    }
    auto g =
        std::make_shared<upstream::GroupState>(config::upstream_settings(*cfg, cfg->forward[i]));
    g->answered_before.store(inherits_answered(plan, i, cfg->forward[i].zones, old, *now.router),
                             std::memory_order_relaxed);
    gen->groups.push_back(std::move(g));
  }
  std::vector<std::shared_ptr<upstream::GroupState>> replaced;
  for (std::size_t j = 0; j < old.size(); ++j)
    if (!kept[j]) replaced.push_back(old[j]);
  {
    std::lock_guard lock(mu_);
    // Groups replaced earlier that have nothing left in flight are done.
    std::erase_if(retired_groups_,
                  [](const auto& g) { return g->in_flight.load(std::memory_order_relaxed) == 0; });
    retired_groups_.insert(retired_groups_.end(), replaced.begin(), replaced.end());
    shared_.groups = gen->groups;
    shared_.router = gen->router;
    current_ = cfg;
  }
  auto applied = std::make_shared<Countdown>(workers_.size());
  for (auto& w : workers_)
    w->apply(gen, [applied] { applied->count_down(); });
  // Before start() the workers apply it first thing when they run.
  if (running() && !applied->wait_until(Clock::now() + kApplyBound)) {
    // They apply it when they get to it; the cache is cleaned below regardless.
    spdlog::warn("reload: {} of {} workers had not applied generation {} after {} ms",
                 applied->left(), workers_.size(), gen->number, kApplyBound.count());
  }
  change_listeners(std::move(bound), plan, *now.config, *cfg);
  if (shared_.cache) {
    // An answer stays when its name's upstream (servers and transport) is
    // the same under the new routing as under the old; else it came from
    // another upstream than the one that would answer now.
    bool may_drop =
        routing != config::server_settings(*now.config).routing || old.size() != gen->groups.size();
    for (std::size_t i = 0; !may_drop && i < old.size(); ++i)
      may_drop = !plan.same_upstream(static_cast<int>(i), static_cast<int>(i));
    std::size_t dropped = 0;
    if (may_drop) {
      const auto& before = *now.router;
      const auto& after = *gen->router;
      dropped = shared_.cache->erase_if(
          [&](dns::Bytes qname) { return !keeps_cached_answer(plan, before, after, qname); });
    }
    shared_.cache->set_limits(cfg->cache.max_entries, cfg->cache.max_bytes);
    if (dropped != 0) {
      spdlog::info("reload: dropped {} cached answers of zones whose upstream changed", dropped);
    }
  }
  reloads_.generation.store(gen->number, std::memory_order_relaxed);
  return gen->number;
}

std::vector<NewListeners> Runtime::bind_listeners(const std::vector<config::Endpoint>& endpoints) {
  std::vector<NewListeners> out;
  if (endpoints.empty()) return out;
  for (auto& w : workers_)
    out.push_back(w->bind(endpoints));  // on a throw, `out` closes what it holds
  return out;
}

void Runtime::change_listeners(std::vector<NewListeners> bound, const config::ReloadPlan& plan,
                               const config::Config& before, const config::Config& after) {
  if (bound.empty() && plan.listen_removed.empty()) return;
  auto hold = std::max(answer_bound(before), answer_bound(after));
  auto closed = std::make_shared<Countdown>(workers_.size());
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    workers_[i]->change_listeners(i < bound.size() ? std::move(bound[i]) : NewListeners{},
                                  plan.listen_removed, kListenerDrain, hold,
                                  [closed] { closed->count_down(); });
  }
  if (running() && !closed->wait_until(Clock::now() + kListenerDrain + kApplyBound)) {
    spdlog::warn("reload: {} of {} workers had not closed the removed listeners after {} ms",
                 closed->left(), workers_.size(), (kListenerDrain + kApplyBound).count());
  }
}

std::shared_ptr<const config::Config> Runtime::current_config() const {
  std::lock_guard lock(mu_);
  return current_;
}

std::vector<std::shared_ptr<upstream::GroupState>> Runtime::groups() const {
  std::lock_guard lock(mu_);
  return shared_.groups;
}

std::shared_ptr<const server::ZoneRouter> Runtime::router() const {
  std::lock_guard lock(mu_);
  return shared_.router;
}

Serving Runtime::serving() const {
  std::lock_guard lock(mu_);
  return {current_, shared_.groups, shared_.router};
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
    s.client_not_allowed += h.client_not_allowed.get();
    s.client_rate_limited += h.client_rate_limited.get();
    s.client_dropped += h.client_dropped.get();
    s.client_evictions += h.client_evictions.get();
    s.search_sets += h.search_sets.get();
    s.search_sent += h.search_sent.get();
    s.search_useful += h.search_useful.get();
    s.search_waste += h.search_waste.get();
    s.search_cname += h.search_cname.get();
    s.search_deadline += h.search_deadline.get();
    s.search_skipped_rate += h.search_skipped_rate.get();
    s.search_skipped_client += h.search_skipped_client.get();
    s.search_skipped_busy += h.search_skipped_busy.get();
    s.search_skipped_in_flight += h.search_skipped_in_flight.get();
  }
  return s;
}

cache::CacheStats Runtime::cache_stats() const {
  return shared_.cache ? shared_.cache->stats() : cache::CacheStats{};
}

}  // namespace localdns::app
