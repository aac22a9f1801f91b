// Random numbers, as a dependency: query IDs and server choice take a
// `Random&` so that unit tests can fix the sequence. Random::system() is
// arc4random (glibc 2.36): unpredictable, which query IDs must be (RFC 5452).
//
// Thread-safety: Random::system() may be used from any thread; a
// SequenceRandom belongs to one test thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace localdns::util {

class Random {
 public:
  virtual ~Random() = default;
  virtual std::uint32_t next() = 0;
  // Uniform in [0, bound); bound > 0.
  virtual std::uint32_t below(std::uint32_t bound) = 0;

  static Random& system();
};

// Returns the given values in turn, then starts over (each reduced modulo the
// bound for below()).
class SequenceRandom final : public Random {
 public:
  explicit SequenceRandom(std::vector<std::uint32_t> values) : values_(std::move(values)) {}
  std::uint32_t next() override {
    auto v = values_.empty() ? 0 : values_[i_++ % values_.size()];
    return v;
  }
  std::uint32_t below(std::uint32_t bound) override { return next() % bound; }

 private:
  std::vector<std::uint32_t> values_;
  std::size_t i_ = 0;
};

}  // namespace localdns::util
