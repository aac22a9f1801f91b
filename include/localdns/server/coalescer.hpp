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
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <localdns/util/hash.hpp>
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
  // Longer keys are never filed: join() says Overflow (resolve alone),
  // lead_if_idle() false. A FlightKey is at most 268 bytes.
  static constexpr std::size_t kMaxKeySize = 272;

  // Files `waiter` under `key`; the first for a key starts a round and leads it.
  Role join(std::string_view key, Waiter waiter) {
    if (key.size() > kMaxKeySize) return Role::Overflow;
    const std::uint64_t h = hash(key);
    auto table = shard_for(h).lock();
    auto it = table->find(Probe{key, h});
    if (it == table->end()) {
      table->emplace(KeyBytes(key, h), std::vector<Waiter>{})
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
    if (key.size() > kMaxKeySize) return false;
    const std::uint64_t h = hash(key);
    auto table = shard_for(h).lock();
    if (table->find(Probe{key, h}) != table->end()) return false;
    table->emplace(KeyBytes(key, h), std::vector<Waiter>{});
    return true;
  }

  // Ends the round of `key`: its waiters in the order they joined (the
  // leader's own first), or none when no round is in flight. Each waiter is
  // handed out exactly once; a later join() starts a new round.
  std::vector<Waiter> take(std::string_view key) {
    std::vector<Waiter> out;
    if (key.size() > kMaxKeySize) return out;
    const std::uint64_t h = hash(key);
    auto table = shard_for(h).lock();
    if (auto it = table->find(Probe{key, h}); it != table->end()) {
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
  // Keys live in the table's nodes: filing a key allocates the node and the
  // waiter list, not a string besides. The hash is the one util::hash_key
  // computes once per call (it picks the shard too), kept in the key.
  struct KeyBytes {
    KeyBytes(std::string_view k, std::uint64_t h)
        : hash(h), len(static_cast<std::uint16_t>(k.size())) {
      std::memcpy(bytes.data(), k.data(), k.size());
    }
    std::string_view view() const { return {bytes.data(), len}; }
    std::uint64_t hash;
    std::uint16_t len;
    std::array<char, kMaxKeySize> bytes;
  };
  struct Probe {
    std::string_view key;
    std::uint64_t hash;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(const KeyBytes& k) const { return k.hash; }
    std::size_t operator()(const Probe& p) const { return p.hash; }
  };
  struct Equal {
    using is_transparent = void;
    bool operator()(const KeyBytes& a, const KeyBytes& b) const { return a.view() == b.view(); }
    bool operator()(const Probe& a, const KeyBytes& b) const { return a.key == b.view(); }
    bool operator()(const KeyBytes& a, const Probe& b) const { return a.view() == b.key; }
  };
  using Table = std::unordered_map<KeyBytes, std::vector<Waiter>, Hash, Equal>;
  // One cache line each: workers locking different shards do not share one.
  struct alignas(64) Shard {
    util::LockGuarded<Table> table;
  };

  std::uint64_t hash(std::string_view key) const {
    if (key.empty()) return util::hash_key(key.data(), 0, 0, seed_);
    return util::hash_key(key.data(), key.size() - 1, static_cast<std::uint8_t>(key.back()), seed_);
  }
  util::LockGuarded<Table>& shard_for(std::uint64_t h) {
    return shards_[(h >> 32) % kShards].table;
  }

  std::uint64_t seed_ = util::random_hash_seed();
  std::array<Shard, kShards> shards_;
};

}  // namespace localdns::server
