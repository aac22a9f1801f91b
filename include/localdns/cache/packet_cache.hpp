// The packet cache: validated upstream answers stored in wire form, keyed by
// question (name compared case-insensitively), qtype, qclass and the DO and CD
// bits. An entry holds what dns::answer_parts makes of the answer (the records
// kept for clients, their TTL offsets, the upstream's Extended DNS Errors); a
// hit renders it with dns::render_reply, the function that renders fresh
// answers too, with every TTL lowered by the entry's age (never below 0) and
// Stale Answer added when serving stale. A hit does not allocate. Stored
// answers never hold a name that reads TTL bytes: such answers are stored
// with their names expanded, so a reply reads the same at every age.
//
// Threads: one PacketCache is shared by all workers (lookups and inserts), the
// control thread (for_each, erase_name, clear), the metrics scraper (stats)
// and the persister of a warm restart (export_entries, restore).
//
// Locking (the rules live here and in packet_cache.cpp's ShardData):
// - Entries are split over shards by key hash. Each shard is one
//   util::LockGuarded<ShardData>: its hash index, its LRU list, its entry
//   and byte counts, its CacheStats and every entry linked into them are
//   reachable only through the shard's locked handle. Budgets (the global
//   ones divided evenly) are set at construction and by set_limits().
// - Under the lock: the index lookup, the age check, rendering the reply into
//   the caller's buffer (a copy of at most one answer, no allocation), the LRU
//   move and the counters; for insert, replacing, linking and evicting (the
//   evicted entries are freed under the lock). for_each runs its callback
//   under the lock of the shard being visited: the callback must not call
//   back into the cache.
// - Outside the lock: reading the clock, hashing the key, building and
//   allocating a new entry before insert takes the lock.
// - One lock at a time: no code holds two shard locks, or takes any other
//   lock while holding one. Each call takes its shard's lock once (for_each,
//   erase_name, clear and stats take each shard's in turn), so there is no
//   lock order to keep.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
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
  // The question's name, wire form, lower case.
  dns::Bytes qname() const {
    return {reinterpret_cast<const std::uint8_t*>(bytes_.data()), len_ > 5 ? len_ - 5u : 0u};
  }
  static constexpr std::size_t kMaxSize = dns::kMaxNameSize + 5;

 private:
  std::array<char, kMaxSize> bytes_{};
  std::uint16_t len_ = 0;
};

struct CacheSettings {
  std::size_t max_entries = 100'000;
  std::size_t max_bytes = 64u << 20;
  unsigned shards = 32;
  // Prefetch: an entry asked at least `prefetch_hits` times that is in the last
  // `prefetch_percent` of its lifetime is flagged for a background refresh.
  std::uint32_t prefetch_hits = 2;  // 0: never
  std::uint32_t prefetch_percent = 10;
};

// TTL of answers served stale (RFC 8767 4: 30 s recommended).
inline constexpr std::uint32_t kStaleAnswerTtl = 30;

// What kind of answer a lookup may return.
enum class Freshness : std::uint8_t {
  Fresh,       // only unexpired entries
  AllowStale,  // also expired entries inside their stale window (upstream failed)
};

struct LookupResult {
  std::size_t size = 0;   // reply bytes written; 0 = miss
  bool prefetch = false;  // the caller should refresh this entry in the background
  bool stale = false;     // served past its lifetime (RFC 8767)
};

struct CacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t inserts = 0;
  std::uint64_t evictions = 0;  // pushed out by the entry or byte budget
  std::uint64_t expired = 0;
  std::uint64_t prefetches = 0;  // refreshes requested by lookups
  std::uint64_t stale_served = 0;
  std::size_t entries = 0;
  std::size_t bytes = 0;  // accounted bytes, overhead included
};

class PacketCache {
 public:
  explicit PacketCache(CacheSettings settings, NowFn now = &Clock::now);
  ~PacketCache();
  PacketCache(const PacketCache&) = delete;
  PacketCache& operator=(const PacketCache&) = delete;

  // Stores `msg` (an upstream answer that parse_response accepted as `rv`,
  // whose question has the key's name) for `lifetime` seconds, replacing any
  // entry with the same key. The entry stays `stale_window` seconds longer
  // for Freshness::AllowStale lookups.
  void insert(const Key& key, dns::Bytes msg, const dns::ResponseView& rv, std::uint32_t lifetime,
              std::uint32_t stale_window = 0);

  // On a hit writes the client's reply into `out`. Fresh lookups miss on
  // expired entries (kept while inside their stale window); stale answers carry
  // TTLs of at most kStaleAnswerTtl.
  LookupResult lookup(const Key& key, const dns::ReplyShape& shape, dns::MutableBytes out,
                      Freshness freshness = Freshness::Fresh);

  void clear();
  CacheStats stats() const;
  // How often the entry for `key` was rendered since it was stored (0 without
  // one; counts stop at 2^20 - 1, above any cache.prefetch_hits): how the search-path prefetch
  // learns whether a pod asked for an answer it fetched ahead. Takes the shard's lock; renders
  // nothing.
  std::uint32_t hits(const Key& key) const;

  // For `localdns ctl dump`: one entry as operators read it.
  struct EntryInfo {
    std::string name;  // presentation form, lower case
    std::uint16_t qtype = 0;
    std::int64_t ttl_left = 0;  // seconds; negative once expired (kept for serve-stale)
    std::uint8_t rcode = 0;
    std::size_t bytes = 0;  // charged against max_bytes
  };
  // Visits every entry, one shard at a time under its lock.
  void for_each(const std::function<void(const EntryInfo&)>& fn) const;
  // Drops every entry for `qname` (wire form, any case): all types and flags.
  std::size_t erase_name(dns::Bytes qname);
  // Drops every entry whose question name (wire form, lower case) `pred`
  // picks; `pred` runs under the shard's lock and must not call back into
  // the cache. Each shard is visited once: work bounded by the entry count.
  std::size_t erase_if(const std::function<bool(dns::Bytes qname)>& pred);
  // New entry and byte budgets (divided over the shards as at construction);
  // a shard over its new budget evicts from the LRU end at once.
  void set_limits(std::size_t max_entries, std::size_t max_bytes);

  // Warm restarts (cache/persist.hpp). An entry copied out: a DNS message that
  // parse_response reads back into the same entry (ID 0, the records kept for
  // clients with their TTLs as they came, an OPT carrying the upstream's
  // Extended DNS Errors when there were any), with its key and timing.
  struct SavedEntry {
    std::string key;                   // Key::view()
    std::vector<std::uint8_t> answer;  // the message
    std::uint32_t lifetime = 0;        // seconds, as inserted
    std::uint32_t stale_window = 0;
    Clock::duration
        age{};  // when copied; at least `lifetime` for entries kept only for serve-stale
  };
  // Copies the entries of one shard at a time under its lock (most recently
  // used first, entries past their stale window left out), then calls `fn`
  // with that shard's copies outside the lock, so no lock is held longer than
  // one shard's copy. `fn` may call into the cache.
  void export_entries(const std::function<void(std::vector<SavedEntry>&)>& fn) const;
  // Stores an answer read back (`msg` parsed as `rv`) as insert() does, aged
  // `age` already; the budgets apply as for insert. An existing entry for the
  // key is newer and stays. False when not stored: no lifetime, past its
  // stale window, too large, or the key does not match the answer's question.
  bool restore(const Key& key, dns::Bytes msg, const dns::ResponseView& rv, std::uint32_t lifetime,
               std::uint32_t stale_window, Clock::duration age);

  // Bytes charged for an entry beyond what it stores of the answer (the wire,
  // TTL offsets and EDE options): the 32-byte entry header, the allocator's
  // share and the entry's share of the index.
  static constexpr std::size_t kEntryOverhead = 64;

 private:
  struct Shard;
  Shard& shard_for(std::uint64_t key_hash) const;

  CacheSettings settings_;
  NowFn now_;
  std::uint64_t seed_ = 0;  // of the key hash
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace localdns::cache
