// The overall cap on the search path's speculative queries
// (search_path.max_qps): one instance shared by every worker (app::Shared),
// atomics only; any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace localdns::server {

// The overall cap on speculative queries: one GCRA bucket (rate per second,
// a burst of one second's worth) every worker takes from; 0: no cap.
class SpeculationBudget {
 public:
  void set_rate(unsigned per_second) { rate_.store(per_second, std::memory_order_relaxed); }
  // Takes one query's worth; false when over the rate.
  bool take();

 private:
  std::atomic<unsigned> rate_{0};
  std::atomic<std::int64_t> tat_{0};  // theoretical arrival time, steady clock ns
};

}  // namespace localdns::server
