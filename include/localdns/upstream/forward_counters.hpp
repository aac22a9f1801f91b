// What the metrics report per upstream server (CoreDNS's forward plugin
// families plus connection counts).
//
// One ForwardCounters per server of a group, owned by its ServerHealth.
// Written by every worker thread on the miss path only (atomic adds), read by
// the metrics scraper and `ctl`.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include <localdns/metrics/query_metrics.hpp>

namespace localdns::upstream {

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

}  // namespace localdns::upstream
