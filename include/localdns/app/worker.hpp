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
#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <localdns/config/config.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/tcp_listener.hpp>
#include <localdns/server/udp_listener.hpp>
#include <localdns/server/zone_router.hpp>
#include <localdns/upstream/forwarder.hpp>

namespace localdns::app {

// State shared by all workers of one server.
struct Shared {
  std::shared_ptr<const config::Config> config;
  server::ServerSettings server;  // config::server_settings(*config)
  std::shared_ptr<const server::ZoneRouter> router;
  std::vector<std::shared_ptr<upstream::GroupState>> groups;
  std::unique_ptr<cache::PacketCache> cache;
  std::unique_ptr<server::QueryCoalescer> coalescer;
  server::CacheWiring cache_wiring;
  server::TcpClientBudget tcp_clients;
};

class Worker {
 public:
  // Binds every listener; throws std::system_error if one cannot be bound.
  Worker(unsigned index, Shared& shared);
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

  const server::HandlerStats& stats() const { return handler_.stats(); }
  const metrics::QueryMetrics* metrics() const { return handler_.metrics(); }
  metrics::TopTracker* top() const { return handler_.top(); }

 private:
  unsigned index_;
  Shared& shared_;
  boost::asio::io_context ctx_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::unique_ptr<upstream::Forwarder>> forwarders_;
  server::QueryHandler handler_;
  std::vector<std::unique_ptr<server::UdpListener>> udp_;
  std::vector<std::unique_ptr<server::TcpListener>> tcp_;
};

}  // namespace localdns::app
