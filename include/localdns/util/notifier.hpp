// Wakes a thread that waits for a condition other threads make true, such as
// "no upstream query is in flight". The condition lives elsewhere (usually an
// atomic); whoever changes it calls notify() afterwards, and the waiter
// re-checks it under the notifier's lock, so no wake-up is lost.
//
// Thread-safety: notify() from any thread; wait_until() from any thread.
#pragma once

#include <condition_variable>
#include <mutex>

#include <localdns/util/clock.hpp>

namespace localdns::util {

class Notifier {
 public:
  void notify() {
    { std::lock_guard lock(mu_); }  // orders the change before a waiter's next check
    cv_.notify_all();
  }
  // True when `done()` held before `deadline` (a real steady_clock time).
  template <class Pred>
  bool wait_until(TimePoint deadline, Pred done) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, deadline, done);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace localdns::util
