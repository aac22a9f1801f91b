// The packet cache: validated upstream answers stored in wire form, keyed by
// question (name compared case-insensitively), qtype, qclass and the DO and CD
// bits. A hit copies the stored answer into the caller's buffer, then patches
// the ID, the RD/CD bits, the client's letter case, every TTL (lowered by the
// entry's age, never below 0) and the OPT record; it does not allocate.
//
// Thread-safety: shared by all workers. Entries are split over shards by key
// hash; each shard has its own mutex, taken once per lookup or insert, and its
// own LRU list, entry budget and byte budget (the global budgets divided evenly).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>

namespace localdns::cache {

using Clock = std::chrono::steady_clock;
using NowFn = std::function<Clock::time_point()>;

class Key {
 public:
  static Key make(const dns::Question& q, bool do_bit, bool cd);
  std::string_view view() const { return {bytes_.data(), len_}; }

 private:
  std::array<char, dns::kMaxNameSize + 5> bytes_{};
  std::uint16_t len_ = 0;
};

struct CacheSettings {
  std::size_t max_entries = 100'000;
  std::size_t max_bytes = 64u << 20;
  unsigned shards = 32;
};

struct CacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t inserts = 0;
  std::uint64_t evictions = 0;  // pushed out by the entry or byte budget
  std::uint64_t expired = 0;
  std::size_t entries = 0;
  std::size_t bytes = 0;  // accounted bytes, overhead included
};

class PacketCache {
 public:
  explicit PacketCache(CacheSettings settings, NowFn now = &Clock::now);
  ~PacketCache();
  PacketCache(const PacketCache&) = delete;
  PacketCache& operator=(const PacketCache&) = delete;

  // Stores `msg` (an upstream answer that parse_response accepted as `rv`)
  // for `lifetime` seconds, replacing any entry with the same key.
  void insert(const Key& key, dns::Bytes msg, const dns::ResponseView& rv, std::uint32_t lifetime);

  // On a hit writes the client's reply into `out` and returns its size; 0 on a
  // miss or an expired entry.
  std::size_t lookup(const Key& key, const dns::ReplyShape& shape, dns::MutableBytes out);

  void clear();
  CacheStats stats() const;

  // Bytes charged for an entry beyond its key and wire answer.
  static constexpr std::size_t kEntryOverhead = 128;

 private:
  struct Shard;
  Shard& shard_for(std::string_view key);

  CacheSettings settings_;
  NowFn now_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace localdns::cache
