// The upstream side of one group on one worker thread: server selection,
// per-server TCP pools, health probes of servers marked down.
//
// One Forwarder per group and worker, owned by the worker (app/). Lives on
// that worker's io_context and is touched only by its thread. Health and the
// in-flight budget are shared with the other workers through GroupState. The
// clock and random source it is given (Clock::real(), Random::system() when
// serving) reach its exchanges, pools and server selection; they must outlive it.
#pragma once

#include <memory>
#include <unordered_set>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/upstream/exchange.hpp>
#include <localdns/upstream/group_state.hpp>
#include <localdns/upstream/selection.hpp>
#include <localdns/upstream/tcp_connection.hpp>
#include <localdns/util/clock.hpp>
#include <localdns/util/random.hpp>

namespace localdns::upstream {

class Forwarder {
 public:
  Forwarder(boost::asio::io_context& ctx, std::shared_ptr<GroupState> group,
            const util::Clock& clock, util::Random& random);
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
  // Replaced on reload: no more probes; exchanges in flight finish normally.
  void retire();
  // No exchange in flight (a retired forwarder may then be destroyed).
  bool idle() const { return live_.empty(); }

  // For Exchange.
  boost::asio::io_context& context() { return ctx_; }
  const GroupSettings& settings() const { return group_->settings; }
  // The group's shared state: one per group for the whole run of the group,
  // the same on every worker (a reload that keeps the group keeps it).
  const GroupState* group() const { return group_.get(); }
  const util::Clock& clock() const { return clock_; }
  util::Random& random() const { return random_; }
  ServerHealth& health(int server) { return *group_->health[server]; }
  TcpPool& pool(int server) { return *pools_[server]; }
  // The server for a query's next attempt; -1 when the group has none.
  int pick_server(std::uint64_t tried_mask);
  bool stopping() const { return stopping_; }
  void track(Exchange* ex) { live_.insert(ex); }
  void untrack(Exchange* ex) { live_.erase(ex); }

 private:
  void probe_tick();

  boost::asio::io_context& ctx_;
  std::shared_ptr<GroupState> group_;
  const util::Clock& clock_;
  util::Random& random_;
  ServerSelector selector_;
  std::vector<std::unique_ptr<TcpPool>> pools_;
  boost::asio::steady_timer probe_timer_;
  bool stopping_ = false;
  bool retired_ = false;
  std::unordered_set<Exchange*> live_;  // exchanges started and not finished
};

}  // namespace localdns::upstream
