// Heavy hitters in bounded memory (Space-Saving, Metwally et al. 2005): at
// most `capacity` keys are tracked; a new key replaces the least counted one
// and inherits its count, so every key counted more than N/capacity times is
// present and no count is underestimated (the `error` bounds the overestimate).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
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
// weighted by `sample`. The query path only copies the key's bytes into a
// fixed ring (no allocation, no lock; dropped when full); drain() turns them
// into text and counts them, on the reader's thread.
//
// Threads: one producer, the owning worker's thread (should_sample, record_*:
// the ring's head and the dropped count have that single writer); readers on
// any thread (drain, top, dropped) serialize on an internal mutex, which the
// producer never takes.
class TopTracker {
 public:
  TopTracker(std::size_t capacity, unsigned sample, std::string cluster_domain = "cluster.local");

  // Random, not every Nth: periodic traffic must not alias with the sampling.
  bool should_sample() { return sample_ <= 1 || next_random() % sample_ == 0; }

  // Hot path, one producer thread per tracker. Names in wire form, any case.
  void record_name(TopKind kind, std::span<const std::uint8_t> wire_name);
  // A client address: 4 or 16 bytes, or text (already formatted elsewhere).
  void record_client(std::span<const std::uint8_t> address);
  void record_client(std::string_view text);

  // Any thread: moves what was recorded into the sketches.
  void drain();
  std::vector<SpaceSaving::Item> top(TopKind kind, std::size_t n);
  unsigned sample() const { return sample_; }
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

  // How an NXDOMAIN'd name is shown: split into the name and the cluster
  // search suffix it was tried with ("api.example.com [search ns1.svc.cluster.local]"),
  // so the ndots:5 walk of each application stands out. Names outside the
  // cluster domain stay as they are.
  static std::string nxdomain_key(std::string_view name, std::string_view cluster_domain);

 private:
  enum class SlotKind : std::uint8_t { Name, NxDomain, ClientV4, ClientV6, ClientText };
  struct Slot {
    SlotKind kind;
    std::uint8_t len;
    std::array<std::uint8_t, 255> bytes;
  };
  static constexpr std::uint32_t kRing = 1024;  // per worker; ~1 s of samples at 130k qps

  void push(SlotKind kind, std::span<const std::uint8_t> bytes);
  static std::uint32_t next_random() {  // xorshift32, per thread
    thread_local std::uint32_t state = 0x9E3779B9u;
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  }

  unsigned sample_;
  std::string cluster_domain_;
  std::unique_ptr<Slot[]> ring_;
  std::atomic<std::uint32_t> head_{0};     // written by the producer
  std::atomic<std::uint32_t> tail_{0};     // written under mu_
  std::atomic<std::uint64_t> dropped_{0};  // written by the producer
  std::mutex mu_;
  SpaceSaving names_, nxdomain_, clients_;
};

}  // namespace localdns::metrics
