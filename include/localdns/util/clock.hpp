// What time it is, as a dependency: classes whose logic depends on time
// (deadlines, backoff, ages, rate windows) take a `const Clock&` so that unit
// tests can run them on a ManualClock. Timers still wait in real time; code
// that arms one computes the wait from clock.now(), so a test that advances a
// ManualClock past a deadline and then fires the timer sees the late branch.
//
// Thread-safety: Clock::real() and ManualClock may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>

namespace localdns::util {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;

  // std::chrono::steady_clock.
  static const Clock& real();
};

// A clock that moves only when told to. Starts at the real clock's now().
class ManualClock final : public Clock {
 public:
  ManualClock() : ticks_(SteadyClock::now().time_since_epoch().count()) {}
  explicit ManualClock(TimePoint start) : ticks_(start.time_since_epoch().count()) {}

  TimePoint now() const override {
    return TimePoint(SteadyClock::duration(ticks_.load(std::memory_order_acquire)));
  }
  void advance(SteadyClock::duration d) { ticks_.fetch_add(d.count(), std::memory_order_acq_rel); }
  void set(TimePoint t) { ticks_.store(t.time_since_epoch().count(), std::memory_order_release); }

 private:
  std::atomic<SteadyClock::rep> ticks_;
};

}  // namespace localdns::util
