// The upstream side of one group on one worker thread: server selection,
// per-server TCP pools, health probes of servers marked down.
// Lives on one worker's io_context; not thread-safe. Health and the in-flight
// budget are shared with the other workers through GroupState.
#pragma once

#include <memory>
#include <random>
#include <unordered_set>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/upstream/exchange.hpp>
#include <localdns/upstream/tcp_connection.hpp>

namespace localdns::upstream {

class Forwarder {
 public:
  Forwarder(boost::asio::io_context& ctx, std::shared_ptr<GroupState> group);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Resolves through the group's servers; `done` runs exactly once, perhaps
  // before this returns (Overloaded, or every server unusable at once).
  void resolve(const Request& req, Completion done);

  // Sends a probe to every server marked down, every probe_interval. One
  // worker per group runs this.
  void start_probing();
  // Fails what is in flight (each exchange completes with Failed, so its
  // clients get SERVFAIL) and closes connections; later resolves fail at once
  // and no exchange opens or uses a connection again.
  void shutdown();

  // For Exchange.
  boost::asio::io_context& context() { return ctx_; }
  const GroupState& group() const { return *group_; }
  ServerHealth& health(int server) { return *group_->health[server]; }
  TcpPool& pool(int server) { return *pools_[server]; }
  int pick_server(std::uint64_t tried_mask);
  bool stopping() const { return stopping_; }
  void track(Exchange* ex) { live_.insert(ex); }
  void untrack(Exchange* ex) { live_.erase(ex); }

 private:
  void probe_tick();

  boost::asio::io_context& ctx_;
  std::shared_ptr<GroupState> group_;
  std::vector<std::unique_ptr<TcpPool>> pools_;
  boost::asio::steady_timer probe_timer_;
  unsigned rr_next_ = 0;
  bool stopping_ = false;
  std::unordered_set<Exchange*> live_;  // exchanges started and not finished
};

}  // namespace localdns::upstream
