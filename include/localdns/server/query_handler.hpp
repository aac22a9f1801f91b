// Turns one client query into a reply: parse, route by zone, forward, answer.
// One per worker; every member runs on that worker's thread only, so its
// stats, metrics, top tracker and query-log tick each have one writer (other
// threads only read the counters). Replies that need an upstream are sent
// later through the client's ClientRef, on the same thread: an answer that
// another worker's query brings (coalescing) is posted back here first.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <sys/socket.h>
#include <variant>
#include <vector>

#include <boost/asio/io_context.hpp>

#include <localdns/cache/cache_policy.hpp>
#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/builder.hpp>
#include <localdns/metrics/query_metrics.hpp>
#include <localdns/metrics/top.hpp>
#include <localdns/server/client_limits.hpp>
#include <localdns/server/coalescer.hpp>
#include <localdns/server/zone_router.hpp>
#include <localdns/upstream/forwarder.hpp>

namespace localdns::server {

class TcpSession;

struct UdpClient {
  int fd = -1;  // the listener's socket; any SO_REUSEPORT sibling would do
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
};
struct TcpClient {
  std::weak_ptr<TcpSession> session;
  bool v6 = false;
  ClientAddress addr;  // the peer's, for the client limits
};
using ClientRef = std::variant<UdpClient, TcpClient>;

// A counter written by its handler's thread and read by others (stats,
// metrics): a relaxed load and store, no locked read-modify-write.
class Counter {
 public:
  [[gnu::always_inline]] void inc(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

struct HandlerStats {
  Counter queries;
  Counter dropped;  // unreadable header or QR set: no reply
  Counter formerr;
  Counter notimp;
  Counter refused;   // no zone, group over its in-flight cap, or the client limits
  Counter servfail;  // upstream timeout or failure
  Counter forwarded;
  Counter truncated;  // replies sent with TC=1 because they did not fit
  Counter cache_hits;
  Counter coalesced;   // misses that joined a query already in flight
  Counter prefetches;  // background refreshes started
  Counter stale;       // expired answers served because upstream failed (RFC 8767)
  // The client limits (clients.*): REFUSED to a client outside clients.allow,
  // REFUSED or dropped over the rate limit, and clients the bucket table
  // evicted (least recently seen) to track a new one.
  Counter client_not_allowed;
  Counter client_rate_limited;
  Counter client_dropped;
  Counter client_evictions;
  // Search-path prefetch (search_path.*): walks started, speculative
  // queries sent, and of those the ones a client asked for later (useful)
  // or never (waste, known kUsefulWindow after the walk ends); CNAME answers
  // made, first expansions answered as they are at search_path.max_hold;
  // walks or queries the caps stopped, by cap.
  Counter search_sets;
  Counter search_sent;
  Counter search_useful;
  Counter search_waste;
  Counter search_cname;
  Counter search_deadline;
  Counter search_skipped_rate;       // search_path.max_qps
  Counter search_skipped_client;     // search_path.max_qps_per_client
  Counter search_skipped_busy;       // the group above half its max_in_flight
  Counter search_skipped_in_flight;  // a walk for the same (N, ns, qtype) in flight
};

class QueryHandler;
class CandidateSet;
class SearchPrefetch;
class SpeculationBudget;

// How the query came in.
enum class Transport : std::uint8_t { Udp, Tcp };

// A client waiting for an upstream answer.
struct Asker {
  ClientRef client;
  dns::ReplyShape shape;
  int zone = 0;
  metrics::Proto proto = metrics::Proto::Udp;
  std::chrono::steady_clock::time_point start;
};
// An asker filed in the coalescer, with the handler of the worker that owns
// its client: the answer is delivered there, on that worker's thread.
// A search-path walk waits too, with no client: `set` is told the outcome
// of its question `probe` instead (SearchPrefetch::report).
struct Waiter {
  QueryHandler* home = nullptr;
  Asker asker;
  std::shared_ptr<CandidateSet> set;
  int probe = -1;
};
using QueryCoalescer = Coalescer<Waiter>;

// A coalescer key: the cache key and the group that resolves it. Queries
// for one question share an upstream query only when they route to the
// same group: after a reload moved a zone, a query routed to its new group
// never waits for the old group's answer. The group is named by its
// GroupState, which lives while any of its queries is in flight.
class FlightKey {
 public:
  FlightKey(const cache::Key& key, const upstream::GroupState* group);
  std::string_view view() const { return {bytes_.data(), len_}; }

 private:
  std::array<char, cache::Key::kMaxSize + sizeof(std::uintptr_t)> bytes_;
  std::uint16_t len_ = 0;
};

// The cache and how long each upstream group's answers may stay in it.
struct CacheWiring {
  cache::PacketCache* cache = nullptr;     // null: caching off
  std::vector<cache::TtlPolicy> policies;  // index = group
  QueryCoalescer* coalescer = nullptr;     // null: every miss queries upstream
};

struct HandlerOptions {
  bool metrics = true;        // per-worker CoreDNS-style query metrics
  unsigned top_sample = 128;  // heavy hitters: record 1 in N queries; 0: off
  std::size_t top_capacity = 1024;
  std::string cluster_domain = "cluster.local";  // for grouping NXDOMAINs
  unsigned query_log_sample = 0;                 // log 1 in N answers; 0: off
  // Zone labels the metrics have room for (every router this handler is
  // given labels its zones below it); 0: the first router's label count.
  std::size_t zone_labels = 0;
};

enum class Action : std::uint8_t { Reply, Async, Drop };
struct Outcome {
  Action action = Action::Drop;
  std::size_t len = 0;  // bytes written to `out` for Action::Reply
};

class QueryHandler {
 public:
  // `executor` is the worker's: handle() is called on its thread, the
  // forwarders in `fwds` complete there, and other workers post the answers
  // of coalesced queries to it.
  QueryHandler(const ZoneRouter& router, std::vector<std::unique_ptr<upstream::Forwarder>>& fwds,
               const CacheWiring& cache, boost::asio::io_context::executor_type executor,
               HandlerOptions options = {});
  ~QueryHandler();

  // The largest reply `transport` allows this client is kMaxMessageSize over
  // TCP and derived from its EDNS over UDP. On the executor's thread only.
  Outcome handle(dns::Bytes query, Transport transport, const ClientRef& client,
                 dns::MutableBytes out);

  // Any thread may read these; only this handler's thread writes them.
  const HandlerStats& stats() const { return stats_; }
  // Null when metrics are off. Labels: router.zone_labels() (up to
  // HandlerOptions::zone_labels), then "dropped" at dropped_zone().
  const metrics::QueryMetrics* metrics() const { return metrics_.get(); }
  metrics::QueryMetrics* metrics() { return metrics_.get(); }
  metrics::TopTracker* top() const { return top_.get(); }
  std::size_t dropped_zone() const { return dropped_zone_; }

  // Reload, on this handler's thread. The forwarders and the cache wiring
  // the handler was given are the worker's to swap between queries (group
  // i: forwarders[i] and policies[i] of the same generation), and so is the
  // router: `router` must outlive its use here (until the next
  // set_router). A query in flight keeps the forwarder it started on; its
  // answer is delivered, and cached only if that forwarder is still current
  // and the name still routes to it (else it came from the old upstream).
  void set_query_log_sample(unsigned n) { query_log_sample_ = n; }
  void set_router(const ZoneRouter& router) { router_ = &router; }
  // Builds this worker's limiter (a new one: buckets start full); with
  // exempt_node_addresses it reads the interface addresses (getifaddrs) now.
  // Nothing at all is checked per query when `limits` sets neither an
  // allow-list nor a rate.
  void set_client_limits(const ClientLimits& limits);
  // The search-path prefetch (off: nothing at all is done per query); a
  // walk in flight goes on under the new settings. `budget` is the overall
  // cap, shared by the workers; it must outlive the handler.
  void set_search_path(const SearchPathSettings& settings, SpeculationBudget* budget);
  // The same with at most `max_sets` walks in flight on this worker
  // (SearchPrefetch::kMaxSetsPerWorker otherwise).
  void set_search_path(const SearchPathSettings& settings, SpeculationBudget* budget,
                       std::size_t max_sets);
  const SearchPrefetch* search_path() const { return search_.get(); }

 private:
  friend class SearchPrefetch;
  // Replies to one of this worker's clients; on this handler's thread.
  void deliver(const Asker& asker, const upstream::Result& result, const cache::Key& key);
  // The leader's query for `key` is done (on this, the leader's, thread):
  // this worker's waiters are answered here and now; each other worker gets
  // one posted completion with all of its waiters and a shared copy of the
  // answer.
  void complete(const FlightKey& flight, const cache::Key& key, const upstream::Result& result);
  // Runs on this handler's thread, posted by the leader's worker.
  // `clients`: some waiter of the round, on any worker, has a client (a
  // search-path walk learns that a client asked what it fetched).
  void deliver_all(std::span<const Waiter> waiters, const upstream::Result& result,
                   const cache::Key& key, bool clients);
  void store(const cache::Key& key, const upstream::Result& result,
             const upstream::Forwarder* from);
  // The current index of `fwd`, or -1 once a reload replaced it.
  int index_of(const upstream::Forwarder* fwd) const;
  // The TTL policy of the group `key` routes to now; null without one.
  const cache::TtlPolicy* policy_for(const cache::Key& key) const;
  void prefetch(int group, const cache::Key& key, const upstream::Request& req);
  // Leads the shared upstream query for `key`; waiters already joined.
  void lead(int group, const FlightKey& flight, const cache::Key& key,
            const upstream::Request& req);
  // The same for a first search expansion in search_path.mode cname: the
  // round ends when `set` has chosen (search_cname.cpp).
  void lead_held(int group, const FlightKey& flight, const cache::Key& key,
                 const upstream::Request& req, std::shared_ptr<CandidateSet> set);
  void send(const ClientRef& client, dns::Bytes reply);

  const ZoneRouter* router_;
  std::vector<std::unique_ptr<upstream::Forwarder>>& forwarders_;
  const CacheWiring& cache_;
  boost::asio::io_context::executor_type executor_;
  HandlerStats stats_;
  // An answer was sent: NXDOMAIN heavy hitters and the sampled query log.
  void note_answer(const ClientRef& client, dns::Bytes reply, std::uint64_t micros,
                   const char* source);

  std::unique_ptr<metrics::QueryMetrics> metrics_;
  std::unique_ptr<metrics::TopTracker> top_;
  std::unique_ptr<ClientLimiter> limits_;   // null: no client limits
  std::unique_ptr<SearchPrefetch> search_;  // null: search_path.mode off, or no coalescer
  unsigned query_log_sample_ = 0;
  std::uint32_t query_log_tick_ = 0;
  std::size_t dropped_zone_ = 0;  // metrics label index of "dropped"
};

}  // namespace localdns::server
