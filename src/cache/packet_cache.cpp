#include <algorithm>
#include <cstring>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/name.hpp>

namespace localdns::cache {

namespace {

constexpr char kFlagDO = 1;
constexpr char kFlagCD = 2;

struct Entry {
  std::string key;
  std::vector<std::uint8_t> wire;  // the answer without its OPT record
  std::vector<std::uint16_t> ttl_offsets;
  Clock::time_point stored;
  std::uint32_t lifetime = 0;
  std::uint32_t stale_window = 0;
  std::uint32_t hits = 0;
  std::uint16_t flags = 0;
  bool prefetching = false;  // a refresh was requested; do not request another

  std::size_t charge() const {
    return key.size() + wire.size() + ttl_offsets.size() * sizeof(std::uint16_t) +
           PacketCache::kEntryOverhead;
  }
};

struct Hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Hits rewrite every TTL field. An owner name that reads bytes of a TTL field
// (only a hostile upstream compresses that way) would change, or break, as the
// entry ages: such answers are not cached. `ttls` is sorted.
bool names_avoid_ttls(dns::Bytes wire, const dns::Header& h, std::size_t question_end,
                      const std::vector<std::uint16_t>& ttls) {
  bool clear = true;
  auto overlaps = [&](std::size_t begin, std::size_t end) {
    auto it = std::upper_bound(ttls.begin(), ttls.end(), begin);  // first TTL after begin
    if (it != ttls.begin() && std::size_t{*std::prev(it)} + 4 > begin) return true;
    return it != ttls.end() && *it < end;
  };
  dns::for_each_rr(wire, h, question_end, [&](const dns::RrView& rr) {
    dns::walk_name(wire, rr.offset, [&](std::size_t b, std::size_t e) {
      if (overlaps(b, e)) clear = false;
    });
    return clear;
  });
  return clear;
}

}  // namespace

Key Key::make(const dns::Question& q, bool do_bit, bool cd) {
  Key k;
  std::size_t n = std::min(q.qname.size(), dns::kMaxNameSize);
  for (std::size_t i = 0; i < n; ++i)
    k.bytes_[i] = static_cast<char>(dns::lower(q.qname[i]));
  auto* p = reinterpret_cast<std::uint8_t*>(k.bytes_.data() + n);
  dns::write_u16(p, q.qtype);
  dns::write_u16(p + 2, q.qclass);
  k.bytes_[n + 4] = static_cast<char>((do_bit ? kFlagDO : 0) | (cd ? kFlagCD : 0));
  k.len_ = static_cast<std::uint16_t>(n + 5);
  return k;
}

struct PacketCache::Shard {
  std::mutex mu;
  std::list<Entry> lru;  // front: most recently used
  std::unordered_map<std::string_view, std::list<Entry>::iterator, Hash, std::equal_to<>> index;
  std::size_t bytes = 0;
  std::size_t max_entries = 0;
  std::size_t max_bytes = 0;
  CacheStats stats;

  void erase(std::list<Entry>::iterator it) {
    bytes -= it->charge();
    index.erase(std::string_view(it->key));
    lru.erase(it);
  }
};

PacketCache::PacketCache(CacheSettings settings, NowFn now)
    : settings_(settings), now_(std::move(now)) {
  unsigned n = std::max(1u, settings_.shards);
  for (unsigned i = 0; i < n; ++i) {
    auto s = std::make_unique<Shard>();
    s->max_entries = std::max<std::size_t>(1, settings_.max_entries / n);
    s->max_bytes = std::max<std::size_t>(1, settings_.max_bytes / n);
    shards_.push_back(std::move(s));
  }
}

PacketCache::~PacketCache() = default;

PacketCache::Shard& PacketCache::shard_for(std::string_view key) {
  return *shards_[Hash{}(key) % shards_.size()];
}

void PacketCache::insert(const Key& key, dns::Bytes msg, const dns::ResponseView& rv,
                         std::uint32_t lifetime, std::uint32_t stale_window) {
  if (lifetime == 0) return;
  Entry e;
  e.key.assign(key.view());
  e.stored = now_();
  e.lifetime = lifetime;
  e.stale_window = stale_window;
  e.flags = rv.header.flags;
  msg = msg.first(std::min(rv.end, msg.size()));  // without trailing bytes
  if (rv.opt) {
    e.wire.assign(msg.begin(), msg.begin() + static_cast<long>(rv.opt->offset));
    e.wire.insert(e.wire.end(), msg.begin() + static_cast<long>(rv.opt->end()), msg.end());
    dns::write_u16(e.wire.data() + 10, static_cast<std::uint16_t>(rv.header.arcount - 1));
  } else {
    e.wire.assign(msg.begin(), msg.end());
  }
  dns::write_u16(e.wire.data(), 0);
  dns::Header h = dns::Header::read(e.wire.data());
  bool ok = dns::for_each_rr(e.wire, h, rv.question_end, [&](const dns::RrView& rr) {
    e.ttl_offsets.push_back(static_cast<std::uint16_t>(rr.type_offset + 4));
    return true;
  });
  if (!ok || e.wire.size() > dns::kMaxMessageSize) return;
  if (!names_avoid_ttls(e.wire, h, rv.question_end, e.ttl_offsets)) return;

  Shard& s = shard_for(key.view());
  std::lock_guard lock(s.mu);
  if (e.charge() > s.max_bytes) return;
  if (auto it = s.index.find(key.view()); it != s.index.end()) s.erase(it->second);
  s.lru.push_front(std::move(e));
  s.index.emplace(std::string_view(s.lru.front().key), s.lru.begin());
  s.bytes += s.lru.front().charge();
  ++s.stats.inserts;
  while (s.lru.size() > s.max_entries || s.bytes > s.max_bytes) {
    s.erase(std::prev(s.lru.end()));
    ++s.stats.evictions;
  }
}

LookupResult PacketCache::lookup(const Key& key, const dns::ReplyShape& shape,
                                 dns::MutableBytes out, Freshness freshness) {
  Shard& s = shard_for(key.view());
  const auto now = now_();
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key.view());
  if (it == s.index.end()) {
    ++s.stats.misses;
    return {};
  }
  auto entry = it->second;
  Entry& e = *entry;
  auto age_s = std::chrono::duration_cast<std::chrono::seconds>(now - e.stored).count();
  if (age_s < 0) age_s = 0;
  const auto age = static_cast<std::uint32_t>(std::min<long long>(age_s, UINT32_MAX));
  LookupResult result;
  if (age >= e.lifetime) {
    bool in_window =
        static_cast<std::uint64_t>(age) < static_cast<std::uint64_t>(e.lifetime) + e.stale_window;
    if (!in_window) {
      s.erase(entry);
      ++s.stats.expired;
    }
    if (!in_window || freshness == Freshness::Fresh) {
      ++s.stats.misses;
      return {};
    }
    result.stale = true;
  }
  // Stale answers: every TTL at most kStaleAnswerTtl (RFC 8767 4).
  const std::uint32_t remaining = result.stale ? kStaleAnswerTtl : e.lifetime - age;
  const std::uint32_t aged = result.stale ? 0 : age;
  std::size_t size = e.wire.size() + (shape.edns ? dns::kOptRecordSize : 0);
  std::size_t n = 0;
  if (size > shape.limit) {
    n = dns::build_truncated_reply(shape, e.flags, out);
  } else if (size <= out.size() && shape.qname_len + dns::kHeaderSize <= e.wire.size()) {
    std::uint8_t* p = out.data();
    std::memcpy(p, e.wire.data(), e.wire.size());
    for (std::uint16_t off : e.ttl_offsets) {
      std::uint32_t ttl = dns::read_u32(p + off);
      ttl = ttl > aged ? ttl - aged : 0;  // never negative, never wraps
      dns::write_u32(p + off, std::min(ttl, remaining));
    }
    dns::Header h = dns::Header::read(p);
    h.id = shape.id;
    h.flags = dns::reply_flags(e.flags, shape);
    if (shape.edns) {
      dns::write_opt_record(p + e.wire.size(), shape.do_bit);
      h.arcount = static_cast<std::uint16_t>(h.arcount + 1);
    }
    h.write(p);
    std::memcpy(p + dns::kHeaderSize, shape.qname.data(), shape.qname_len);
    n = size;
  }
  if (n == 0) return {};
  result.size = n;
  ++e.hits;
  if (result.stale) {
    ++s.stats.stale_served;
  } else if (settings_.prefetch_hits != 0 && !e.prefetching && e.hits >= settings_.prefetch_hits &&
             std::uint64_t{e.lifetime - age} * 100 <=
                 std::uint64_t{e.lifetime} * settings_.prefetch_percent) {
    e.prefetching = true;
    result.prefetch = true;
    ++s.stats.prefetches;
  }
  s.lru.splice(s.lru.begin(), s.lru, entry);
  ++s.stats.hits;
  return result;
}

void PacketCache::clear() {
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    s->index.clear();
    s->lru.clear();
    s->bytes = 0;
  }
}

CacheStats PacketCache::stats() const {
  CacheStats total;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    total.hits += s->stats.hits;
    total.misses += s->stats.misses;
    total.inserts += s->stats.inserts;
    total.evictions += s->stats.evictions;
    total.expired += s->stats.expired;
    total.prefetches += s->stats.prefetches;
    total.stale_served += s->stats.stale_served;
    total.entries += s->lru.size();
    total.bytes += s->bytes;
  }
  return total;
}

}  // namespace localdns::cache
