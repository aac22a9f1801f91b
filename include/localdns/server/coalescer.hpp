// Request coalescing: concurrent misses for the same cache key share one
// upstream query (the leader's); every waiter gets the outcome. Like unbound's
// mesh: one query state, many replies.
//
// The coalescer is only the table of who waits for which key. It runs no
// code of its waiters and knows nothing of workers: join() files a waiter
// record, take() ends the round and hands every record of the key to the
// leader, which delivers the answer. The record type is the caller's
// (QueryHandler files a server::Waiter: the handler of the worker that owns
// the client, the client, its reply shape, zone, protocol and start time), so
// the leader can send each waiting worker its own records and that worker
// replies on its own thread. It lives in server/ because it is query-level
// state, not upstream state: the upstream module only resolves questions.
//
// Thread-safety: one instance shared by all workers; any member from any
// thread. Keys are split over kShards shards; each shard's table is a
// util::LockGuarded, reachable only under that shard's mutex. The lock covers
// one table edit per call (find and append, insert, or find, move out and
// erase) and nothing else: no waiter is run, no reply built and nothing posted
// under it, and the records handed out by take() are owned by the caller.
// No call holds two shard locks at once (pending_keys() takes them one after
// another), so there is no lock order to keep.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <localdns/util/lock_guarded.hpp>

namespace localdns::server {

enum class JoinRole : std::uint8_t {
  Leader,    // first for this key: resolve, then take() the waiters
  Waiting,   // filed behind the leader's query; nothing more to do
  Overflow,  // too many waiters on this key: not filed, resolve alone
};

template <class Waiter>
class Coalescer {
 public:
  using Role = JoinRole;
  static constexpr std::size_t kMaxWaitersPerKey = 4096;
  static constexpr unsigned kShards = 32;

  // Files `waiter` under `key`; the first for a key starts a round and leads it.
  Role join(std::string_view key, Waiter waiter) {
    auto table = shard_for(key).lock();
    auto it = table->find(key);
    if (it == table->end()) {
      table->emplace(std::string(key), std::vector<Waiter>{})
          .first->second.push_back(std::move(waiter));
      return Role::Leader;
    }
    if (it->second.size() >= kMaxWaitersPerKey) return Role::Overflow;
    it->second.push_back(std::move(waiter));
    return Role::Waiting;
  }

  // Starts a round for `key` with no waiter, unless one is in flight; true
  // when the caller now leads it (a background refresh that needs no reply).
  bool lead_if_idle(std::string_view key) {
    auto table = shard_for(key).lock();
    if (table->find(key) != table->end()) return false;
    table->emplace(std::string(key), std::vector<Waiter>{});
    return true;
  }

  // Ends the round of `key`: its waiters in the order they joined (the
  // leader's own first), or none when no round is in flight. Each waiter is
  // handed out exactly once; a later join() starts a new round.
  std::vector<Waiter> take(std::string_view key) {
    std::vector<Waiter> out;
    auto table = shard_for(key).lock();
    if (auto it = table->find(key); it != table->end()) {
      out = std::move(it->second);
      table->erase(it);
    }
    return out;
  }

  std::size_t pending_keys() const {
    std::size_t n = 0;
    for (const auto& s : shards_)
      n += s.table.lock()->size();
    return n;
  }

 private:
  // Finds by string_view without building a std::string.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Table = std::unordered_map<std::string, std::vector<Waiter>, Hash, std::equal_to<>>;
  // One cache line each: workers locking different shards do not share one.
  struct alignas(64) Shard {
    util::LockGuarded<Table> table;
  };

  util::LockGuarded<Table>& shard_for(std::string_view key) {
    return shards_[Hash{}(key) % kShards].table;
  }

  std::array<Shard, kShards> shards_;
};

}  // namespace localdns::server
