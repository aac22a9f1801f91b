// Health of one upstream server: a server is marked down after `threshold`
// consecutive failures (timeouts, refused or broken connections) and up again
// after any valid answer.
//
// One ServerHealth per server of a group, owned by the group's GroupState.
// Shared by every worker thread: all members are atomics or immutable.
#pragma once

#include <atomic>

#include <localdns/upstream/forward_counters.hpp>
#include <localdns/util/endpoint.hpp>

namespace localdns::upstream {

class ServerHealth {
 public:
  ServerHealth(util::Endpoint endpoint, unsigned threshold)
      : endpoint_(std::move(endpoint)), threshold_(threshold) {}

  void record_success();
  void record_failure();
  bool is_down() const { return down_.load(std::memory_order_relaxed); }
  const util::Endpoint& endpoint() const { return endpoint_; }
  ForwardCounters& counters() { return counters_; }
  const ForwardCounters& counters() const { return counters_; }

 private:
  ForwardCounters counters_;
  util::Endpoint endpoint_;
  unsigned threshold_;
  std::atomic<unsigned> consecutive_failures_{0};
  std::atomic<bool> down_{false};
};

}  // namespace localdns::upstream
