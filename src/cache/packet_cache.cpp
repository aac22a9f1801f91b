#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/name.hpp>

namespace localdns::cache {

namespace {

constexpr char kFlagDO = 1;
constexpr char kFlagCD = 2;

// One allocation per entry: this header, then the TTL offsets, the key, the
// wire answer (without its OPT record, ID 0) and the upstream's Extended DNS
// Error options. The LRU list is intrusive.
struct Entry {
  Entry* prev = nullptr;
  Entry* next = nullptr;
  Clock::time_point stored;
  std::uint32_t lifetime = 0;
  std::uint32_t stale_window = 0;
  std::uint32_t hits = 0;
  std::uint16_t flags = 0;
  std::uint16_t key_len = 0;
  std::uint16_t wire_len = 0;
  std::uint16_t n_ttls = 0;
  bool prefetching = false;  // a refresh was requested; do not request another
  std::uint8_t ede_len = 0;

  const std::uint16_t* ttls() const { return reinterpret_cast<const std::uint16_t*>(this + 1); }
  std::uint16_t* ttls() { return reinterpret_cast<std::uint16_t*>(this + 1); }
  std::string_view key() const { return {reinterpret_cast<const char*>(ttls() + n_ttls), key_len}; }
  const std::uint8_t* wire() const {
    return reinterpret_cast<const std::uint8_t*>(ttls() + n_ttls) + key_len;
  }
  const std::uint8_t* ede() const { return wire() + wire_len; }
  std::size_t charge() const {
    return PacketCache::kEntryOverhead + n_ttls * sizeof(std::uint16_t) + key_len + wire_len +
           ede_len;
  }

  static Entry* create(std::string_view key, dns::Bytes wire,
                       const std::vector<std::uint16_t>& ttls, dns::Bytes ede) {
    std::size_t total =
        sizeof(Entry) + ttls.size() * sizeof(std::uint16_t) + key.size() + wire.size() + ede.size();
    auto* e = new (::operator new(total)) Entry();
    e->key_len = static_cast<std::uint16_t>(key.size());
    e->wire_len = static_cast<std::uint16_t>(wire.size());
    e->n_ttls = static_cast<std::uint16_t>(ttls.size());
    e->ede_len = static_cast<std::uint8_t>(ede.size());
    if (!ttls.empty()) std::memcpy(e->ttls(), ttls.data(), ttls.size() * sizeof(std::uint16_t));
    auto* k = reinterpret_cast<char*>(e->ttls() + e->n_ttls);
    std::memcpy(k, key.data(), key.size());
    std::memcpy(k + key.size(), wire.data(), wire.size());
    if (!ede.empty()) std::memcpy(k + key.size() + wire.size(), ede.data(), ede.size());
    return e;
  }
  static void destroy(Entry* e) {
    e->~Entry();
    ::operator delete(e);
  }
};
static_assert(sizeof(Entry) <= 48);
static_assert(dns::kMaxEdeBytes <= UINT8_MAX);
static_assert(alignof(Entry) >= alignof(std::uint16_t));

// Per-entry charge for the index: a hash-map node, its bucket, allocator slack.
constexpr std::size_t kIndexCharge = 64;
static_assert(sizeof(Entry) + kIndexCharge <= PacketCache::kEntryOverhead);

thread_local std::array<std::uint8_t, dns::kMaxMessageSize> tl_wire;

struct Hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A stale reply's own EDE option: INFO-CODE only.
constexpr std::size_t kStaleEdeSize = 6;

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
  std::unordered_map<std::string_view, Entry*, Hash, std::equal_to<>> index;  // views into entries
  Entry* head = nullptr;                                                      // most recently used
  Entry* tail = nullptr;
  std::size_t count = 0;
  std::size_t bytes = 0;
  std::size_t max_entries = 0;
  std::size_t max_bytes = 0;
  CacheStats stats;

  ~Shard() { clear(); }

  void link_front(Entry* e) {
    e->prev = nullptr;
    e->next = head;
    if (head) head->prev = e;
    head = e;
    if (!tail) tail = e;
  }
  void unlink(Entry* e) {
    (e->prev ? e->prev->next : head) = e->next;
    (e->next ? e->next->prev : tail) = e->prev;
    e->prev = e->next = nullptr;
  }
  void erase(Entry* e) {
    bytes -= e->charge();
    if (auto it = index.find(e->key()); it != index.end()) index.erase(it);
    unlink(e);
    --count;
    Entry::destroy(e);
  }
  void clear() {
    for (Entry* e = head; e != nullptr;) {
      Entry* next = e->next;
      Entry::destroy(e);
      e = next;
    }
    head = tail = nullptr;
    index.clear();
    count = bytes = 0;
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
  msg = msg.first(std::min(rv.end, msg.size()));  // without trailing bytes
  // The stored form: OPT removed (ours is added per client), ID 0. Hits
  // rewrite every TTL field, so when a name reads TTL bytes (only a hostile
  // upstream compresses so) the names are stored expanded instead.
  std::uint8_t* w = tl_wire.data();
  std::size_t len =
      rv.names_read_ttls ? dns::copy_expanded(msg, rv, tl_wire) : dns::copy_without_opt(msg, rv, w);
  if (len == 0) return;
  dns::write_u16(w, 0);
  dns::MutableBytes wire(w, len);
  dns::clamp_ttls(wire, rv.question_end);  // RFC 2181 8
  dns::Header h = dns::Header::read(w);
  std::vector<std::uint16_t> ttls;
  bool ok = dns::for_each_rr(dns::Bytes(wire), h, rv.question_end, [&](const dns::RrView& rr) {
    ttls.push_back(static_cast<std::uint16_t>(rr.type_offset + 4));
    return true;
  });
  if (!ok || ttls.size() > UINT16_MAX) return;
  std::array<std::uint8_t, dns::kMaxEdeBytes> ede{};
  std::size_t ede_len = rv.opt ? dns::copy_ede(msg, *rv.opt, ede.data()) : 0;

  Entry* e = Entry::create(key.view(), wire, ttls, dns::Bytes(ede.data(), ede_len));
  e->stored = now_();
  e->lifetime = lifetime;
  e->stale_window = stale_window;
  e->flags = rv.header.flags;

  Shard& s = shard_for(key.view());
  std::lock_guard lock(s.mu);
  if (e->charge() > s.max_bytes) {
    Entry::destroy(e);
    return;
  }
  if (auto it = s.index.find(key.view()); it != s.index.end()) s.erase(it->second);
  s.link_front(e);
  s.index.emplace(e->key(), e);
  ++s.count;
  s.bytes += e->charge();
  ++s.stats.inserts;
  while (s.count > s.max_entries || s.bytes > s.max_bytes) {
    s.erase(s.tail);
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
  Entry* entry = it->second;
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
  std::size_t size = e.wire_len + (shape.edns ? dns::kOptRecordSize : 0);
  // EDNS clients also get the upstream's EDE options and, for a stale answer,
  // Stale Answer / Stale NXDOMAIN Answer (RFC 8914 4.4, 4.20); dropped first
  // when they would not fit.
  std::size_t ede = 0;
  if (shape.edns) {
    ede = e.ede_len + (result.stale ? kStaleEdeSize : 0);
    if (size + ede > shape.limit || size + ede > out.size()) ede = 0;
  }
  std::size_t n = 0;
  if (size > shape.limit) {
    n = dns::build_truncated_reply(shape, e.flags, out);
  } else if (size <= out.size() && shape.qname_len + dns::kHeaderSize <= e.wire_len) {
    std::uint8_t* p = out.data();
    std::memcpy(p, e.wire(), e.wire_len);
    for (const std::uint16_t* t = e.ttls(); t != e.ttls() + e.n_ttls; ++t) {
      const std::uint16_t off = *t;
      std::uint32_t ttl = dns::read_u32(p + off);
      ttl = ttl > aged ? ttl - aged : 0;  // never negative, never wraps
      dns::write_u32(p + off, std::min(ttl, remaining));
    }
    dns::Header h = dns::Header::read(p);
    h.id = shape.id;
    h.flags = dns::reply_flags(e.flags, shape);
    if (shape.edns) {
      std::uint8_t* opt =
          dns::write_opt_record(p + e.wire_len, shape.do_bit, static_cast<std::uint16_t>(ede));
      if (ede != 0) {
        std::memcpy(opt, e.ede(), e.ede_len);
        if (result.stale) {
          const bool nx =
              (e.flags & dns::kRcodeMask) == static_cast<std::uint16_t>(dns::Rcode::NXDomain);
          dns::write_ede(opt + e.ede_len, nx ? dns::kEdeStaleNxdomain : dns::kEdeStaleAnswer);
        }
      }
      h.arcount = static_cast<std::uint16_t>(h.arcount + 1);
    }
    h.write(p);
    std::memcpy(p + dns::kHeaderSize, shape.qname.data(), shape.qname_len);
    n = size + ede;
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
  s.unlink(entry);
  s.link_front(entry);
  ++s.stats.hits;
  return result;
}

void PacketCache::clear() {
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    s->clear();
  }
}

void PacketCache::for_each(const std::function<void(const EntryInfo&)>& fn) const {
  const auto now = now_();
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    for (const Entry* e = s->head; e != nullptr; e = e->next) {
      auto key = e->key();
      EntryInfo info;
      info.name = dns::name_to_text(
          dns::Bytes(reinterpret_cast<const std::uint8_t*>(key.data()), key.size() - 5));
      info.qtype =
          dns::read_u16(reinterpret_cast<const std::uint8_t*>(key.data()) + key.size() - 5);
      auto age = std::chrono::duration_cast<std::chrono::seconds>(now - e->stored).count();
      info.ttl_left = static_cast<std::int64_t>(e->lifetime) - age;
      info.rcode = e->wire_len >= 4 ? e->wire()[3] & 0x0F : 0;
      info.bytes = e->charge();
      fn(info);
    }
  }
}

std::size_t PacketCache::erase_name(dns::Bytes qname) {
  std::string lower(qname.size(), '\0');
  for (std::size_t i = 0; i < qname.size(); ++i)
    lower[i] = static_cast<char>(dns::lower(qname[i]));
  std::size_t erased = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    for (Entry* e = s->head; e != nullptr;) {
      Entry* next = e->next;
      auto key = e->key();
      if (key.size() == lower.size() + 5 && key.substr(0, lower.size()) == lower) {
        s->erase(e);
        ++erased;
      }
      e = next;
    }
  }
  return erased;
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
    total.entries += s->count;
    total.bytes += s->bytes;
  }
  return total;
}

}  // namespace localdns::cache
