#include <cstdio>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <localdns/app/metrics.hpp>

namespace localdns::app {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily family(std::string name, std::string help, MetricType type) {
  return MetricFamily{std::move(name), std::move(help), type, {}};
}

void add_value(MetricFamily& f, Labels labels, double v) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Gauge) {
    m.gauge.value = v;
  } else {
    m.counter.value = v;
  }
  f.metric.push_back(std::move(m));
}

// counts[i] per bucket (last: +Inf), bounds[i] the upper bounds.
void add_histogram(MetricFamily& f, Labels labels, const std::vector<std::uint64_t>& counts,
                   const std::vector<double>& bounds, double sum) {
  ClientMetric m;
  m.label = std::move(labels);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    double bound = i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back({cumulative, bound});
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = sum;
  f.metric.push_back(std::move(m));
}

std::vector<double> duration_bounds() {
  std::vector<double> b;
  for (std::size_t i = 0; i < metrics::kDurationBuckets; ++i)
    b.push_back(metrics::duration_bound_seconds(i));
  return b;
}

std::vector<double> size_bounds() {
  return {metrics::kSizeBounds.begin(), metrics::kSizeBounds.end()};
}

class Collector final : public prometheus::Collectable {
 public:
  Collector(const Runtime& server, const node::NodeSetup* node) : server_(server), node_(node) {
    const auto& c = server.config();
    server_label_ = "dns://:" + std::to_string(c.listen.empty() ? 53 : c.listen.front().port);
  }

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    collect_queries(out);
    collect_cache(out);
    collect_forward(out);
    collect_localdns(out);
    return out;
  }

 private:
  Labels base(const std::string& zone) const {
    return {{"server", server_label_}, {"zone", zone}, {"view", ""}};
  }

  void collect_queries(std::vector<MetricFamily>& out) const {
    using metrics::Family;
    using metrics::Proto;
    auto workers = server_.query_metrics();
    auto requests =
        family("coredns_dns_requests_total",
               "Counter of DNS requests made per zone, protocol and family.", MetricType::Counter);
    auto responses = family("coredns_dns_responses_total", "Counter of response status codes.",
                            MetricType::Counter);
    auto duration = family("coredns_dns_request_duration_seconds",
                           "Histogram of the time (in seconds) each request took per zone.",
                           MetricType::Histogram);
    auto req_size =
        family("coredns_dns_request_size_bytes",
               "Size of the request in bytes per zone and protocol.", MetricType::Histogram);
    auto resp_size = family("coredns_dns_response_size_bytes",
                            "Size of the returned response in bytes per zone and protocol.",
                            MetricType::Histogram);
    const char* protos[] = {"udp", "tcp"};
    // The zones of every generation so far (a reload keeps a zone's label
    // index), the slots no zone has taken yet, then the dropped queries.
    auto zones = server_.router()->zone_labels();
    zones.resize(server_.zone_labels());
    zones.push_back("dropped");
    for (std::size_t z = 0; z < zones.size(); ++z) {
      if (zones[z].empty()) continue;
      for (std::size_t p = 0; p < 2; ++p) {
        for (std::size_t f = 0; f < 2; ++f) {
          for (std::size_t t = 0; t < metrics::kTypeNames.size(); ++t) {
            std::uint64_t n = 0;
            for (const auto* w : workers)
              n += w->requests(z, static_cast<Proto>(p), static_cast<Family>(f), t);
            if (n == 0) continue;
            auto l = base(zones[z]);
            l.push_back({"proto", protos[p]});
            l.push_back({"family", f == 0 ? "1" : "2"});
            l.push_back({"type", std::string(metrics::kTypeNames[t])});
            add_value(requests, std::move(l), static_cast<double>(n));
          }
        }
      }
      for (std::size_t r = 0; r < metrics::kRcodeNames.size(); ++r) {
        std::uint64_t n = 0;
        for (const auto* w : workers)
          n += w->responses(z, r);
        if (n == 0) continue;
        auto l = base(zones[z]);
        l.push_back({"rcode", std::string(metrics::kRcodeNames[r])});
        l.push_back({"plugin", ""});
        add_value(responses, std::move(l), static_cast<double>(n));
      }
      sum_histogram(
          duration, base(zones[z]), workers, duration_bounds(),
          1e-6, [z](const metrics::QueryMetrics* w) -> const auto& { return w->duration(z); });
      for (std::size_t p = 0; p < 2; ++p) {
        auto l = base(zones[z]);
        l.push_back({"proto", protos[p]});
        sum_histogram(
            req_size, l, workers, size_bounds(), 1.0,
            [ z, p ](const metrics::QueryMetrics* w) -> const auto& {
              return w->request_size(z, static_cast<Proto>(p));
            });
        sum_histogram(
            resp_size, l, workers, size_bounds(), 1.0,
            [ z, p ](const metrics::QueryMetrics* w) -> const auto& {
              return w->response_size(z, static_cast<Proto>(p));
            });
      }
    }
    for (auto* f : {&requests, &responses, &duration, &req_size, &resp_size})
      out.push_back(std::move(*f));
  }

  template <class Get>
  static void sum_histogram(MetricFamily& f, Labels labels,
                            const std::vector<const metrics::QueryMetrics*>& workers,
                            const std::vector<double>& bounds, double scale, Get get) {
    std::vector<std::uint64_t> counts(bounds.size() + 1, 0);
    double sum = 0;
    std::uint64_t total = 0;
    for (const auto* w : workers) {
      const auto& h = get(w);
      for (std::size_t i = 0; i < counts.size(); ++i) {
        counts[i] += h.buckets[i].get();
        total += h.buckets[i].get();
      }
      sum += static_cast<double>(h.sum.get()) * scale;
    }
    if (total == 0) return;
    add_histogram(f, std::move(labels), counts, bounds, sum);
  }

  void collect_cache(std::vector<MetricFamily>& out) const {
    auto s = server_.cache_stats();
    auto st = server_.stats();
    Labels server{{"server", server_label_}};
    Labels all{{"server", server_label_}, {"type", "all"}};
    auto entries =
        family("coredns_cache_entries", "The number of elements in the cache.", MetricType::Gauge);
    add_value(entries, all, static_cast<double>(s.entries));
    auto hits = family("coredns_cache_hits_total", "The count of cache hits.", MetricType::Counter);
    add_value(hits, all, static_cast<double>(st.cache_hits));
    auto misses =
        family("coredns_cache_misses_total", "The count of cache misses.", MetricType::Counter);
    add_value(misses, server, static_cast<double>(s.misses));
    auto requests =
        family("coredns_cache_requests_total", "The count of cache requests.", MetricType::Counter);
    add_value(requests, server, static_cast<double>(s.hits + s.misses));
    auto prefetch =
        family("coredns_cache_prefetch_total",
               "The number of times the cache has prefetched a cached item.", MetricType::Counter);
    add_value(prefetch, server, static_cast<double>(st.prefetches));
    auto stale =
        family("coredns_cache_served_stale_total",
               "The number of requests served from stale cache entries.", MetricType::Counter);
    add_value(stale, server, static_cast<double>(st.stale));
    auto evictions = family("coredns_cache_evictions_total", "The count of cache evictions.",
                            MetricType::Counter);
    add_value(evictions, all, static_cast<double>(s.evictions));
    for (auto* f : {&entries, &hits, &misses, &requests, &prefetch, &stale, &evictions})
      out.push_back(std::move(*f));
  }

  void collect_forward(std::vector<MetricFamily>& out) const {
    auto requests = family("coredns_forward_requests_total",
                           "Counter of requests made per upstream.", MetricType::Counter);
    auto responses = family("coredns_forward_responses_total",
                            "Counter of responses received per upstream.", MetricType::Counter);
    auto duration = family("coredns_forward_request_duration_seconds",
                           "Histogram of the time each request took.", MetricType::Histogram);
    auto health = family("coredns_forward_healthcheck_failures_total",
                         "Counter of the number of failed healthchecks.", MetricType::Counter);
    auto rejects = family("coredns_forward_max_concurrent_rejects_total",
                          "Counter of the number of queries rejected because the concurrent "
                          "queries were at maximum.",
                          MetricType::Counter);
    auto failures =
        family("localdns_upstream_failures_total",
               "Timeouts, refused and broken connections per upstream.", MetricType::Counter);
    auto local_errors = family("localdns_upstream_local_errors_total",
                               "Errors of this host (out of descriptors or buffers, a local "
                               "firewall) on the way to each upstream; not counted as failures.",
                               MetricType::Counter);
    auto open = family("localdns_upstream_tcp_connections",
                       "Open TCP connections per upstream (all workers).", MetricType::Gauge);
    auto connects =
        family("localdns_upstream_tcp_connects_total",
               "TCP connections opened per upstream (reconnects included).", MetricType::Counter);
    auto in_flight = family("localdns_inflight_queries",
                            "Upstream queries in flight per forward group.", MetricType::Gauge);
    std::uint64_t rejected = 0;
    const auto serving = server_.serving();
    const auto& groups = serving.groups;
    for (std::size_t gi = 0; gi < groups.size(); ++gi) {
      const auto& g = groups[gi];
      rejected += g->rejects.load(std::memory_order_relaxed);
      std::string zones;
      for (const auto& z : serving.config->forward[gi].zones)
        zones += (zones.empty() ? "" : ",") + z;
      add_value(in_flight, {{"zones", zones}}, g->in_flight.load(std::memory_order_relaxed));
      for (const auto& h : g->health) {
        const auto& c = h->counters();
        Labels to{{"to", h->endpoint().to_string()}};
        add_value(requests, to, static_cast<double>(c.requests.load(std::memory_order_relaxed)));
        for (std::size_t r = 0; r < c.responses.size(); ++r) {
          auto n = c.responses[r].load(std::memory_order_relaxed);
          if (n == 0) continue;
          auto l = to;
          l.push_back({"rcode", std::string(metrics::kRcodeNames[r])});
          add_value(responses, std::move(l), static_cast<double>(n));
        }
        std::vector<std::uint64_t> counts;
        for (const auto& b : c.duration)
          counts.push_back(b.load(std::memory_order_relaxed));
        add_histogram(
            duration, to, counts, duration_bounds(),
            static_cast<double>(c.duration_sum_us.load(std::memory_order_relaxed)) * 1e-6);
        add_value(health, to,
                  static_cast<double>(c.healthcheck_failures.load(std::memory_order_relaxed)));
        add_value(failures, to, static_cast<double>(c.failures.load(std::memory_order_relaxed)));
        add_value(local_errors, to,
                  static_cast<double>(c.local_errors.load(std::memory_order_relaxed)));
        add_value(open, to, static_cast<double>(c.tcp_open.load(std::memory_order_relaxed)));
        add_value(connects, to,
                  static_cast<double>(c.tcp_connects.load(std::memory_order_relaxed)));
      }
    }
    add_value(rejects, {}, static_cast<double>(rejected));
    for (auto* f : {&requests, &responses, &duration, &health, &rejects, &failures, &local_errors,
                    &open, &connects, &in_flight})
      out.push_back(std::move(*f));
  }

  void collect_localdns(std::vector<MetricFamily>& out) const {
    auto st = server_.stats();
    auto build = family("localdns_build_info", "localdns version.", MetricType::Gauge);
    add_value(build, {{"version", LOCALDNS_VERSION}}, 1);
    auto coalesced = family("localdns_coalesced_total",
                            "Cache misses that joined an identical query already in flight.",
                            MetricType::Counter);
    add_value(coalesced, {}, static_cast<double>(st.coalesced));
    auto cache_bytes = family("localdns_cache_bytes", "Bytes held by the cache, overhead included.",
                              MetricType::Gauge);
    add_value(cache_bytes, {}, static_cast<double>(server_.cache_stats().bytes));
    out.push_back(std::move(build));
    out.push_back(std::move(coalesced));
    out.push_back(std::move(cache_bytes));
    collect_clients(out, st);
    collect_search_path(out, st);
    collect_reloads(out);
    if (node_) {
      const auto& c = node_->counters();
      // node-local-dns's name for the same thing.
      auto errors = family("coredns_nodecache_setup_errors_total",
                           "The number of errors during periodic network setup for node-cache.",
                           MetricType::Counter);
      add_value(errors, {{"errortype", "setup"}},
                static_cast<double>(c.setup_errors.load(std::memory_order_relaxed)));
      auto repairs =
          family("localdns_node_repairs_total",
                 "Interface, address or rule restored by the periodic check.", MetricType::Counter);
      add_value(repairs, {}, static_cast<double>(c.repairs.load(std::memory_order_relaxed)));
      out.push_back(std::move(errors));
      out.push_back(std::move(repairs));
    }
    if (const auto* p = server_.persister()) collect_persist(out, p->counters());
  }

  static void collect_persist(std::vector<MetricFamily>& out, const CachePersister::Counters& c) {
    auto get = [](const std::atomic<std::uint64_t>& v) {
      return static_cast<double>(v.load(std::memory_order_relaxed));
    };
    auto entries = family("localdns_cache_persist_entries",
                          "Cache entries loaded from cache.persist_file at start, and written by "
                          "the last save.",
                          MetricType::Gauge);
    add_value(entries, {{"op", "loaded"}}, get(c.entries_loaded));
    add_value(entries, {{"op", "saved"}}, get(c.entries_saved));
    auto saves = family("localdns_cache_persist_saves_total",
                        "Saves of the cache to cache.persist_file.", MetricType::Counter);
    add_value(saves, {{"result", "success"}}, get(c.saves));
    add_value(saves, {{"result", "failure"}}, get(c.save_failures));
    auto loads = family("localdns_cache_persist_load_failures_total",
                        "Persisted cache files ignored at start (corrupt, truncated, foreign).",
                        MetricType::Counter);
    add_value(loads, {}, get(c.load_failures));
    out.push_back(std::move(entries));
    out.push_back(std::move(saves));
    out.push_back(std::move(loads));
  }

  // The search-path prefetch (search_path.*), all workers.
  static void collect_search_path(std::vector<MetricFamily>& out, const Stats& st) {
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
      auto f = family(name, help, MetricType::Counter);
      add_value(f, {}, static_cast<double>(v));
      out.push_back(std::move(f));
    };
    counter("localdns_search_path_walks_total",
            "First search expansions that missed the cache and started a walk of the rest.",
            st.search_sets);
    counter("localdns_search_path_queries_total",
            "Speculative upstream queries for the rest of a search walk.", st.search_sent);
    counter("localdns_search_path_useful_total",
            "Speculative queries whose answer a client asked for later.", st.search_useful);
    counter("localdns_search_path_waste_total",
            "Speculative queries whose answer no client asked for within 5 s of the walk.",
            st.search_waste);
    counter("localdns_search_path_cname_total",
            "First search expansions answered with a CNAME to the name that exists.",
            st.search_cname);
    counter("localdns_search_path_cname_deadline_total",
            "First search expansions answered as they are because the walk had not chosen "
            "within search_path.max_hold.",
            st.search_deadline);
    auto skipped = family("localdns_search_path_skipped_total",
                          "Walks not started, or queries of a walk not sent, because of a cap.",
                          MetricType::Counter);
    add_value(skipped, {{"reason", "max_qps"}}, static_cast<double>(st.search_skipped_rate));
    add_value(skipped, {{"reason", "max_qps_per_client"}},
              static_cast<double>(st.search_skipped_client));
    add_value(skipped, {{"reason", "group_busy"}}, static_cast<double>(st.search_skipped_busy));
    add_value(skipped, {{"reason", "in_flight"}}, static_cast<double>(st.search_skipped_in_flight));
    out.push_back(std::move(skipped));
  }

  // The client limits (clients.*), all workers.
  static void collect_clients(std::vector<MetricFamily>& out, const Stats& st) {
    auto refused =
        family("localdns_client_refused_total",
               "Queries answered REFUSED by the client limits, by reason.", MetricType::Counter);
    add_value(refused, {{"reason", "not_allowed"}}, static_cast<double>(st.client_not_allowed));
    add_value(refused, {{"reason", "rate_limited"}}, static_cast<double>(st.client_rate_limited));
    auto dropped = family("localdns_client_dropped_total",
                          "Queries not answered: over the client rate limit with action drop.",
                          MetricType::Counter);
    add_value(dropped, {}, static_cast<double>(st.client_dropped));
    auto evictions = family("localdns_client_limit_table_evictions_total",
                            "Clients evicted (least recently seen) from a worker's rate-limit "
                            "table to track a new one.",
                            MetricType::Counter);
    add_value(evictions, {}, static_cast<double>(st.client_evictions));
    out.push_back(std::move(refused));
    out.push_back(std::move(dropped));
    out.push_back(std::move(evictions));
  }

  void collect_reloads(std::vector<MetricFamily>& out) const {
    const auto& r = server_.reloads();
    auto reloads = family("localdns_config_reloads_total",
                          "Configuration reloads, by result (failure: the old one kept serving).",
                          MetricType::Counter);
    add_value(reloads, {{"result", "success"}},
              static_cast<double>(r.success.load(std::memory_order_relaxed)));
    add_value(reloads, {{"result", "failure"}},
              static_cast<double>(r.failure.load(std::memory_order_relaxed)));
    auto info = family("localdns_config_info",
                       "The configuration serving: its generation (0 as read at start, one more "
                       "per successful reload) and a hash of it.",
                       MetricType::Gauge);
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016llx",
                  static_cast<unsigned long long>(r.hash.load(std::memory_order_relaxed)));
    add_value(info, {{"hash", hash}},
              static_cast<double>(r.generation.load(std::memory_order_relaxed)));
    out.push_back(std::move(reloads));
    out.push_back(std::move(info));
  }

  const Runtime& server_;
  const node::NodeSetup* node_;
  std::string server_label_;
};

}  // namespace

std::string metrics_text(const Runtime& server, const node::NodeSetup* node) {
  Collector c(server, node);
  return prometheus::TextSerializer().Serialize(c.Collect());
}

MetricsEndpoint::MetricsEndpoint(const Runtime& server, const node::NodeSetup* node,
                                 const util::Endpoint& ep, int adopt_fd)
    : http_(std::make_unique<HttpServer>(
          ep,
          [&server, node](const std::string& path) {
            if (path != "/metrics") return HttpServer::Response{404, "not found: try /metrics\n"};
            return HttpServer::Response{200, metrics_text(server, node),
                                        "text/plain; version=0.0.4; charset=utf-8"};
          },
          adopt_fd)) {}

}  // namespace localdns::app
