// Health of one upstream server and the shared state of an upstream group.
// Shared by every worker thread: all members are atomics or immutable.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <localdns/config/config.hpp>

namespace localdns::upstream {

// A server is marked down after `threshold` consecutive failures (timeouts,
// refused or broken connections) and up again after any valid answer.
class ServerHealth {
 public:
  ServerHealth(config::Endpoint endpoint, unsigned threshold)
      : endpoint_(std::move(endpoint)), threshold_(threshold) {}

  void record_success();
  void record_failure();
  bool is_down() const { return down_.load(std::memory_order_relaxed); }
  const config::Endpoint& endpoint() const { return endpoint_; }

 private:
  config::Endpoint endpoint_;
  unsigned threshold_;
  std::atomic<unsigned> consecutive_failures_{0};
  std::atomic<bool> down_{false};
};

// Immutable group settings plus the cross-thread counters of that group.
struct GroupState {
  explicit GroupState(config::UpstreamGroup cfg);

  const config::UpstreamGroup config;
  std::vector<std::unique_ptr<ServerHealth>> health;  // index = server index
  std::atomic<unsigned> in_flight{0};
};

// Holds one unit of a group's in-flight budget; released on destruction.
class InFlightTicket {
 public:
  InFlightTicket() = default;
  static InFlightTicket acquire(const std::shared_ptr<GroupState>& g);
  InFlightTicket(InFlightTicket&& o) noexcept : group_(std::move(o.group_)) {}
  InFlightTicket& operator=(InFlightTicket&&) = delete;
  ~InFlightTicket();
  explicit operator bool() const { return group_ != nullptr; }
  void release();

 private:
  std::shared_ptr<GroupState> group_;
};

}  // namespace localdns::upstream
