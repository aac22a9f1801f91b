// One worker thread: its own io_context, its own SO_REUSEPORT sockets on every
// listen address, its own upstream connections, its own query handler. Each
// of these is written by the worker's thread only (the handler's counters,
// metrics and top tracker are read by scrapers on other threads). Workers
// share the immutable config and zone router, per-group atomics, and the
// packet cache and coalescer (sharded, each shard under its own lock). A
// coalesced answer comes home: the worker whose query completes posts each
// other waiting worker one completion, which replies on that worker's thread.
// Constructed on the main thread, then run() on its own thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/app/fd_passing.hpp>
#include <localdns/config/config.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/search_budget.hpp>
#include <localdns/server/tcp_listener.hpp>
#include <localdns/server/udp_listener.hpp>
#include <localdns/server/zone_router.hpp>
#include <localdns/upstream/forwarder.hpp>

namespace localdns::app {

// What a reload hands every worker: immutable once built, shared by all.
// `router` maps names to indexes of `groups` and `policies`. A group the
// reload kept (config::ReloadPlan::kept_from) is the same GroupState as
// before, perhaps at another index: each worker keeps its forwarder and
// pools; a new GroupState gets new forwarders, and the forwarders of groups
// no longer listed are retired (they finish what they have in flight).
struct Generation {
  std::uint64_t number = 0;
  std::shared_ptr<const server::ZoneRouter> router;
  std::vector<std::shared_ptr<upstream::GroupState>> groups;  // index = group
  std::vector<cache::TtlPolicy> policies;                     // index = group
  unsigned query_log_sample = 0;
  server::ClientLimits clients;  // each worker builds a new limiter from it
  server::SearchPathSettings search_path;
};

// State shared by all workers of one server. `config` is the configuration
// read at start, `router` and `groups` those at start (Runtime keeps the
// current ones, under its mutex); each worker keeps its own router and copy
// of `cache_wiring`, which reloads change on the worker's thread.
struct Shared {
  std::shared_ptr<const config::Config> config;
  server::ServerSettings server;  // config::server_settings(*config)
  std::shared_ptr<const server::ZoneRouter> router;
  std::vector<std::shared_ptr<upstream::GroupState>> groups;
  // Zone labels the query metrics have room for, for the whole run: the
  // zones at start plus room for zones that reloads add.
  std::size_t zone_labels = 0;
  std::unique_ptr<cache::PacketCache> cache;
  std::unique_ptr<server::QueryCoalescer> coalescer;
  server::CacheWiring cache_wiring;
  server::TcpClientBudget tcp_clients;
  server::SpeculationBudget search_budget;  // search_path.max_qps, all workers
};

// A reload's new listen endpoints, bound for one worker by the thread that
// reloads (Worker::bind) and handed to the worker (change_listeners), which
// starts them. Index = endpoint. Destroyed unstarted, they close again.
struct NewListeners {
  std::vector<util::Endpoint> endpoints;
  std::vector<std::unique_ptr<server::UdpListener>> udp;
  std::vector<std::unique_ptr<server::TcpListener>> tcp;
};

class Worker {
 public:
  // Binds every listener; throws std::system_error if one cannot be bound.
  // With `adopted` (an upgrade handover), first takes the sockets passed for
  // this worker (FdPool::take, `workers` in all); binds only where none was.
  Worker(unsigned index, Shared& shared, FdPool* adopted = nullptr, unsigned workers = 1);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void run();  // blocks until stop(); call on the worker's own thread

  // Shutdown, in this order; thread-safe, each posted to the worker's context.
  // Reads no new UDP queries and accepts no new TCP connections.
  void stop_listening();
  // Fails every upstream query in flight: their clients get SERVFAIL (or a
  // stale answer), here now, or, for a coalesced client of another worker,
  // from a completion posted to that worker before `done` runs (so it is
  // queued there ahead of drain_clients). `done` runs on the worker's thread
  // afterwards.
  void fail_upstreams(std::function<void()> done);
  // Closes each client TCP connection once its replies are written; `done`
  // runs on the worker's thread when none is left. Call after every worker's
  // fail_upstreams() is done, so that replies posted by others are counted.
  void drain_clients(std::function<void()> done);
  // Stops the context at once; completions other workers posted to it and it
  // did not run yet are destroyed unrun with it. The sockets stay open until
  // destruction.
  void stop();

  // Reload: on the worker's thread, between two events, so that no query
  // sees half of it: swaps in the router, the forwarders (a kept group's
  // forwarder moves to its new index; the groups `gen` no longer lists are
  // retired: they finish what they have in flight, then are destroyed) and
  // the TTL policies; `done` runs there afterwards. Thread-safe.
  void apply(std::shared_ptr<const Generation> gen, std::function<void()> done);

  // Reload, listeners. bind(): on the calling thread (the worker may run),
  // UDP and TCP sockets on each endpoint for this worker, not yet serving;
  // throws std::system_error naming the address, what it bound closed again.
  NewListeners bind(const std::vector<util::Endpoint>& endpoints);
  // On the worker's thread: starts `added`; stops reading UDP and accepting
  // TCP on each of `removed` at once, lets the answers in flight there be
  // written for `drain` (TCP connections close once answered), then closes
  // them and runs `closed` (on the worker's thread). A removed UDP socket's
  // descriptor stays held `hold` longer (UdpListener::unbind), the longest a
  // query still upstream may take to be answered. Other listeners are not
  // touched. Thread-safe.
  void change_listeners(NewListeners added, std::vector<util::Endpoint> removed,
                        std::chrono::milliseconds drain, std::chrono::milliseconds hold,
                        std::function<void()> closed);
  // Upgrade handover, each on the worker's thread. A dup() of every listening
  // socket with its description; then `done(fds)`.
  void export_listeners(std::function<void(std::vector<PassedFd>)> done);
  // The successor took the sockets: stops reading UDP and accepting TCP, and
  // closes each client connection once idle (TcpListener::release_when_idle);
  // `done` runs when none is left.
  void hand_over(std::function<void()> done);

  const server::HandlerStats& stats() const { return handler_.stats(); }
  const metrics::QueryMetrics* metrics() const { return handler_.metrics(); }
  metrics::TopTracker* top() const { return handler_.top(); }

 private:
  unsigned index_;
  Shared& shared_;
  void reap();

  boost::asio::io_context ctx_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::unique_ptr<upstream::Forwarder>> forwarders_;
  std::vector<std::shared_ptr<upstream::GroupState>> groups_;  // of forwarders_, by index
  // Replaced by a reload, destroyed once idle (checked every 500 ms).
  std::vector<std::unique_ptr<upstream::Forwarder>> retired_;
  boost::asio::steady_timer reap_timer_{ctx_};
  bool reaping_ = false;
  server::CacheWiring wiring_;              // this worker's copy: apply() swaps its policies
  server::ClientLimits clients_;            // the limiter's settings; apply() compares
  server::SearchPathSettings search_path_;  // the handler's; apply() compares
  std::shared_ptr<const server::ZoneRouter> router_;  // the handler's; apply() swaps it
  server::QueryHandler handler_;
  std::vector<std::unique_ptr<server::UdpListener>> udp_;
  std::vector<std::unique_ptr<server::TcpListener>> tcp_;
  // Listeners a reload removed, until closed and their descriptors released.
  struct Closing {
    explicit Closing(boost::asio::io_context& ctx) : timer(ctx) {}
    std::vector<std::unique_ptr<server::UdpListener>> udp;
    std::vector<std::unique_ptr<server::TcpListener>> tcp;
    boost::asio::steady_timer timer;
  };
  std::list<Closing> closing_;
  // Each listener's endpoint, as text (udp_where_[i] for udp_[i]): after a
  // handover to fewer workers, one worker may hold several per endpoint.
  std::vector<std::string> udp_where_, tcp_where_;
};

}  // namespace localdns::app
