#include <algorithm>

#include <localdns/upstream/forward_counters.hpp>

namespace localdns::upstream {

void ForwardCounters::observe_answer(unsigned rcode, std::chrono::steady_clock::duration took) {
  responses[metrics::rcode_index(rcode)].fetch_add(1, std::memory_order_relaxed);
  auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
  duration[metrics::duration_bucket(us)].fetch_add(1, std::memory_order_relaxed);
  duration_sum_us.fetch_add(us, std::memory_order_relaxed);
  if (!answered.load(std::memory_order_relaxed)) answered.store(true, std::memory_order_relaxed);
}

}  // namespace localdns::upstream
