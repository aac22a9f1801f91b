// A run of consecutive failures of one listener operation (a UDP receive, a
// TCP accept), for logging it without flooding the log: the first failure of
// the run, then at most one line per kInterval with the count so far, then
// one line when it ends. Plain values, no clock of its own (the caller passes
// the time, only on a failure); one owner, not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

namespace localdns::server {

class FailureStreak {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kInterval{10};

  // One more failure at `now`; true when it is to be logged: the first of
  // the run, or kInterval or more after the last one logged.
  bool fail(Clock::time_point now) {
    ++count_;
    if (count_ != 1 && now - logged_ < kInterval) return false;
    logged_ = now;
    return true;
  }
  bool failing() const { return count_ != 0; }
  std::uint64_t count() const { return count_; }  // failures in this run so far
  // The operation succeeded: the run's failure count (0 when there was none),
  // and a new run starts.
  std::uint64_t end() {
    const auto n = count_;
    count_ = 0;
    return n;
  }

 private:
  std::uint64_t count_ = 0;
  Clock::time_point logged_{};
};

}  // namespace localdns::server
