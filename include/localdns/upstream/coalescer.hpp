// Request coalescing: concurrent misses for the same cache key share one
// upstream query (the leader's); every waiter gets the outcome. Like unbound's
// mesh: one query state, many replies.
//
// Thread-safety: shared by all workers. Keys are split over shards, each with
// its own mutex; waiters run outside the lock, on the thread that completes
// the query, so a waiter that must reply on another thread posts there itself.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <localdns/upstream/exchange.hpp>

namespace localdns::upstream {

class Coalescer {
 public:
  using Waiter = std::move_only_function<void(const Result&)>;
  static constexpr std::size_t kMaxWaitersPerKey = 4096;
  static constexpr unsigned kShards = 32;

  Coalescer();
  ~Coalescer();

  enum class Role : std::uint8_t {
    Leader,    // first for this key: resolve, then call complete()
    Waiting,   // attached to the leader's query; nothing more to do
    Overflow,  // too many waiters on this key: not attached, resolve alone
  };
  Role join(std::string_view key, Waiter waiter);

  // Runs every waiter of `key` (the leader's first) with `result`, exactly once.
  void complete(std::string_view key, const Result& result);

  std::size_t pending_keys() const;

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, std::vector<Waiter>> waiting;
  };
  Shard& shard_for(std::string_view key);
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace localdns::upstream
