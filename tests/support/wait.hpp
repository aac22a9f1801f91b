// Waiting for a condition in the tests: poll it until it holds or a deadline
// passes, instead of sleeping a fixed time and hoping it held by then. A test
// that passes returns as soon as the condition is true; one that fails says
// so at the deadline.
//
// Thread-safety: free functions; `pred` runs on the calling thread only.
#pragma once

#include <chrono>
#include <thread>

namespace localdns::test {

using Deadline = std::chrono::steady_clock::time_point;

// The deadline `limit` from now.
inline Deadline within(std::chrono::steady_clock::duration limit) {
  return std::chrono::steady_clock::now() + limit;
}

// Polls `pred` every `step` until it holds or `deadline` passes; returns its
// last value (checked once more at the deadline).
template <typename Pred>
bool wait_until(Deadline deadline, Pred&& pred,
                std::chrono::milliseconds step = std::chrono::milliseconds(10)) {
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(step);
  }
  return true;
}

}  // namespace localdns::test
