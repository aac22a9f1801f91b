// The packet cache: validated upstream answers stored in wire form, keyed by
// question (name compared case-insensitively), qtype, qclass and the DO and CD
// bits. A hit copies the stored answer into the caller's buffer, then patches
// the ID, the RD/CD bits, the client's letter case, every TTL (lowered by the
// entry's age, never below 0) and the OPT record (with the upstream's Extended
// DNS Errors, and Stale Answer when serving stale); it does not allocate.
// Stored answers never hold a name that reads TTL bytes: such answers are
// stored with their names expanded, so a reply reads the same at every age.
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

  // Stores `msg` (an upstream answer that parse_response accepted as `rv`)
  // for `lifetime` seconds, replacing any entry with the same key. The entry
  // stays `stale_window` seconds longer for Freshness::AllowStale lookups.
  void insert(const Key& key, dns::Bytes msg, const dns::ResponseView& rv, std::uint32_t lifetime,
              std::uint32_t stale_window = 0);

  // On a hit writes the client's reply into `out`. Fresh lookups miss on
  // expired entries (kept while inside their stale window); stale answers carry
  // TTLs of at most kStaleAnswerTtl.
  LookupResult lookup(const Key& key, const dns::ReplyShape& shape, dns::MutableBytes out,
                      Freshness freshness = Freshness::Fresh);

  void clear();
  CacheStats stats() const;

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

  // Bytes charged for an entry beyond its key, wire answer and TTL offsets: the
  // entry header and its share of the index.
  static constexpr std::size_t kEntryOverhead = 112;

 private:
  struct Shard;
  Shard& shard_for(std::string_view key);

  CacheSettings settings_;
  NowFn now_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace localdns::cache
