#include <chrono>

#include <spdlog/spdlog.h>

#include <localdns/app/server.hpp>

namespace localdns::app {

Server::Server(config::Config cfg) {
  unsigned n = cfg.threads != 0 ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  shared_.config = std::make_shared<const config::Config>(std::move(cfg));
  shared_.router = std::make_shared<const server::ZoneRouter>(shared_.config->forward);
  for (const auto& g : shared_.config->forward) {
    shared_.groups.push_back(std::make_shared<upstream::GroupState>(g));
  }
  const auto& cc = shared_.config->cache;
  if (cc.enabled) {
    shared_.cache = std::make_unique<cache::PacketCache>(cache::CacheSettings{
        cc.max_entries, cc.max_bytes, 32, cc.prefetch_hits, cc.prefetch_percent});
    shared_.cache_wiring.cache = shared_.cache.get();
    shared_.coalescer = std::make_unique<upstream::Coalescer>();
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
  for (unsigned i = 0; i < n; ++i)
    workers_.push_back(std::make_unique<Worker>(i, shared_));
}

Server::~Server() {
  stop();
}

void Server::start() {
  for (auto& w : workers_)
    threads_.emplace_back([w = w.get()] { w->run(); });
  running_.store(true, std::memory_order_relaxed);
}

std::vector<metrics::TopTracker*> Server::top_trackers() const {
  std::vector<metrics::TopTracker*> out;
  for (const auto& w : workers_)
    if (auto* t = w->top()) out.push_back(t);
  return out;
}

std::vector<const metrics::QueryMetrics*> Server::query_metrics() const {
  std::vector<const metrics::QueryMetrics*> out;
  for (const auto& w : workers_)
    if (const auto* m = w->metrics()) out.push_back(m);
  return out;
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  running_.store(false, std::memory_order_relaxed);
  for (auto& w : workers_)
    w->stop_listening();
  auto in_flight = [this] {
    unsigned total = 0;
    for (const auto& g : shared_.groups)
      total += g->in_flight.load(std::memory_order_relaxed);
    return total;
  };
  auto deadline = std::chrono::steady_clock::now() + shared_.config->shutdown_grace;
  while (!threads_.empty() && in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (unsigned left = in_flight(); left > 0) {
    spdlog::warn("shutdown: {} upstream queries still in flight after {} ms; answering SERVFAIL",
                 left, shared_.config->shutdown_grace.count());
  }
  for (auto& w : workers_)
    w->shutdown_upstreams();
  // Let the posted shutdown run so clients in flight get their SERVFAIL.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (auto& w : workers_)
    w->stop();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
}

Stats Server::stats() const {
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

cache::CacheStats Server::cache_stats() const {
  return shared_.cache ? shared_.cache->stats() : cache::CacheStats{};
}

}  // namespace localdns::app
