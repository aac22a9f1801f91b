// Heavy hitters in bounded memory (Space-Saving, Metwally et al. 2005): at
// most `capacity` keys are tracked; a new key replaces the least counted one
// and inherits its count, so every key counted more than N/capacity times is
// present and no count is underestimated (the `error` bounds the overestimate).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace localdns::metrics {

class SpaceSaving {
 public:
  struct Item {
    std::string key;
    std::uint64_t count = 0;
    std::uint64_t error = 0;  // count may exceed the truth by at most this
  };

  explicit SpaceSaving(std::size_t capacity) : capacity_(capacity) {}

  void add(std::string_view key, std::uint64_t weight = 1);
  // The n largest, count descending.
  std::vector<Item> top(std::size_t n) const;
  std::size_t size() const { return counts_.size(); }
  std::size_t capacity() const { return capacity_; }
  void clear();

 private:
  struct Slot {
    std::uint64_t count;
    std::uint64_t error;
  };
  std::size_t capacity_;
  std::unordered_map<std::string, Slot> counts_;
  std::set<std::pair<std::uint64_t, std::string>> order_;  // (count, key), ascending
};

enum class TopKind { Names, NxDomain, Clients };

// What `localdns ctl top` reports, for one worker: 1 in `sample` queries
// is recorded (heavy hitters stay heavy under uniform sampling), each count
// weighted by `sample`. Thread-safe; the lock is taken only on sampled queries.
class TopTracker {
 public:
  TopTracker(std::size_t capacity, unsigned sample);

  // Random, not every Nth: periodic traffic must not alias with the sampling.
  bool should_sample() { return sample_ <= 1 || next_random() % sample_ == 0; }
  void record(TopKind kind, std::string_view key);
  std::vector<SpaceSaving::Item> top(TopKind kind, std::size_t n) const;
  unsigned sample() const { return sample_; }

  // How an NXDOMAIN'd name is shown: split into the name and the cluster
  // search suffix it was tried with ("api.example.com [search ns1.svc.cluster.local]"),
  // so the ndots:5 walk of each application stands out. Names outside the
  // cluster domain stay as they are.
  static std::string nxdomain_key(std::string_view name, std::string_view cluster_domain);

 private:
  unsigned sample_;
  static std::uint32_t next_random() {  // xorshift32, per thread
    thread_local std::uint32_t state = 0x9E3779B9u;
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  }
  mutable std::mutex mu_;
  SpaceSaving names_, nxdomain_, clients_;
};

}  // namespace localdns::metrics
