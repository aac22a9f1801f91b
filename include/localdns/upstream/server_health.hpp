// Health of one upstream server and the shared state of an upstream group.
// Shared by every worker thread: all members are atomics or immutable.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <localdns/config/config.hpp>
#include <localdns/metrics/query_metrics.hpp>

namespace localdns::upstream {

// What the metrics report per upstream server (CoreDNS's forward plugin
// families plus connection counts). Written by every worker: atomics, on the
// miss path only.
struct ForwardCounters {
  std::atomic<std::uint64_t> requests{0};  // attempts sent
  std::array<std::atomic<std::uint64_t>, metrics::kRcodeNames.size()> responses{};
  std::array<std::atomic<std::uint64_t>, metrics::kDurationBuckets + 1>
      duration{};  // the metrics' buckets
  std::atomic<std::uint64_t> duration_sum_us{0};
  std::atomic<std::uint64_t> failures{0};  // timeouts, refused or broken connections
  std::atomic<std::uint64_t> healthcheck_failures{0};
  // Our own errors (out of descriptors or buffers, a local firewall): never
  // counted as failures of the server.
  std::atomic<std::uint64_t> local_errors{0};
  std::atomic<std::uint64_t> tcp_connects{0};
  std::atomic<std::int64_t> tcp_open{0};
  std::atomic<bool> answered{false};  // any valid answer since start (readiness)

  void observe_answer(unsigned rcode, std::chrono::steady_clock::duration took);
};

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
  ForwardCounters& counters() { return counters_; }
  const ForwardCounters& counters() const { return counters_; }

 private:
  ForwardCounters counters_;
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
  std::atomic<std::uint64_t> rejects{0};  // queries refused over max_in_flight
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
