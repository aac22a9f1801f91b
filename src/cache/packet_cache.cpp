#include <algorithm>
#include <array>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/util/lock_guarded.hpp>

#include "entry_index.hpp"

namespace localdns::cache {

namespace {

constexpr char kFlagDO = 1;
constexpr char kFlagCD = 2;
// A key is the lowercased qname, then qtype, qclass and the flag byte.
constexpr std::size_t kKeySuffix = 5;

// One allocation per entry: this header, then the TTL offsets, the wire
// answer (dns::AnswerParts::wire with ID 0 and its ARCOUNT) and the upstream's
// Extended DNS Error options. The LRU list is intrusive. The key is not stored
// apart: it is the wire's question (its name written in the key's lower case;
// a reply carries the client's) and the flag byte.
struct Entry {
  Entry* prev = nullptr;
  Entry* next = nullptr;
  Clock::time_point stored;
  std::uint32_t lifetime = 0;
  std::uint32_t stale_window = 0;
  std::uint32_t hits = 0;
  std::uint16_t flags = 0;
  std::uint16_t wire_len = 0;
  std::uint16_t n_ttls = 0;
  std::uint8_t qname_len = 0;
  std::uint8_t key_flags = 0;  // the key's last byte: kFlagDO, kFlagCD
  std::uint8_t ede_len = 0;
  bool prefetching = false;  // a refresh was requested; do not request another

  const std::uint16_t* ttls() const { return reinterpret_cast<const std::uint16_t*>(this + 1); }
  std::uint16_t* ttls() { return reinterpret_cast<std::uint16_t*>(this + 1); }
  const std::uint8_t* wire() const {
    return reinterpret_cast<const std::uint8_t*>(ttls() + n_ttls);
  }
  std::uint8_t* wire() { return reinterpret_cast<std::uint8_t*>(ttls() + n_ttls); }
  const std::uint8_t* ede() const { return wire() + wire_len; }
  // The key but its flag byte: the question's name, qtype and qclass.
  std::string_view key_head() const {
    return {reinterpret_cast<const char*>(wire()) + dns::kHeaderSize, qname_len + 4u};
  }
  dns::Bytes qname() const { return {wire() + dns::kHeaderSize, qname_len}; }
  bool has_key(std::string_view key) const {
    return key.size() == qname_len + kKeySuffix &&
           static_cast<std::uint8_t>(key.back()) == key_flags &&
           std::memcmp(key.data(), wire() + dns::kHeaderSize, qname_len + 4u) == 0;
  }
  std::size_t charge() const {
    return PacketCache::kEntryOverhead + n_ttls * sizeof(std::uint16_t) + wire_len + ede_len;
  }

  // A copy of `a` with ID 0, ARCOUNT set and the key's name in the question;
  // TTLs as they came. The caller checked that the question is the key's.
  static Entry* create(std::string_view key, const dns::AnswerParts& a) {
    const std::size_t n_ttls = a.ttl_offsets.size();
    std::size_t total =
        sizeof(Entry) + n_ttls * sizeof(std::uint16_t) + a.wire.size() + a.ede.size();
    auto* e = new (::operator new(total)) Entry();
    e->qname_len = static_cast<std::uint8_t>(key.size() - kKeySuffix);
    e->key_flags = static_cast<std::uint8_t>(key.back());
    e->wire_len = static_cast<std::uint16_t>(a.wire.size());
    e->n_ttls = static_cast<std::uint16_t>(n_ttls);
    e->ede_len = static_cast<std::uint8_t>(a.ede.size());
    e->flags = a.flags;
    if (n_ttls != 0) std::memcpy(e->ttls(), a.ttl_offsets.data(), n_ttls * sizeof(std::uint16_t));
    std::uint8_t* w = e->wire();
    std::memcpy(w, a.wire.data(), a.wire.size());
    std::memcpy(w + dns::kHeaderSize, key.data(), e->qname_len);
    dns::write_u16(w, 0);
    dns::write_u16(w + 10, a.arcount);
    if (!a.ede.empty()) std::memcpy(w + a.wire.size(), a.ede.data(), a.ede.size());
    return e;
  }
  // The parts a reply is rendered from. Cached answers have no extended
  // RCODE (cache_lifetime never allows one), so the header's RCODE is all.
  dns::AnswerParts parts() const {
    dns::AnswerParts a;
    a.wire = dns::Bytes(wire(), wire_len);
    a.flags = flags;
    a.rcode = static_cast<std::uint16_t>(dns::Header{.flags = flags}.rcode());
    a.arcount = dns::read_u16(wire() + 10);
    a.qname_len = qname_len;
    a.ttl_offsets = {ttls(), n_ttls};
    a.ede = dns::Bytes(ede(), ede_len);
    return a;
  }
  static void destroy(Entry* e) {
    e->~Entry();
    ::operator delete(e);
  }
};
static_assert(sizeof(Entry) <= 48);
static_assert(dns::kMaxEdeBytes <= UINT8_MAX);
static_assert(dns::kMaxNameSize <= UINT8_MAX);
static_assert(alignof(Entry) >= 8);  // EntryIndex keeps addresses without their low 3 bits

// Per-entry charge beyond the header: the allocator's chunk header and
// rounding, and the index's slots (8 bytes each, 40-80 % used).
constexpr std::size_t kIndexCharge = 32;
static_assert(sizeof(Entry) + kIndexCharge <= PacketCache::kEntryOverhead);

// Room for answers whose records insert() cannot take from the view as they are.
thread_local dns::AnswerScratch tl_scratch;

std::uint64_t hash_of(std::string_view key, std::uint64_t seed) {
  return detail::hash_key(key.data(), key.size() - 1, static_cast<std::uint8_t>(key.back()), seed);
}
std::uint64_t hash_of(const Entry& e, std::uint64_t seed) {
  const auto head = e.key_head();
  return detail::hash_key(head.data(), head.size(), e.key_flags, seed);
}

}  // namespace

Key Key::make(const dns::Question& q, bool do_bit, bool cd) {
  Key k;
  std::size_t n = std::min(q.qname.size(), dns::kMaxNameSize);
  auto* p = reinterpret_cast<std::uint8_t*>(k.bytes_.data());
  dns::lowercase_name(q.qname.first(n), p);
  p += n;
  dns::write_u16(p, q.qtype);
  dns::write_u16(p + 2, q.qclass);
  k.bytes_[n + 4] = static_cast<char>((do_bit ? kFlagDO : 0) | (cd ? kFlagCD : 0));
  k.len_ = static_cast<std::uint16_t>(n + kKeySuffix);
  return k;
}

namespace {

// One shard's entries. Reachable only through the shard's lock (see
// packet_cache.hpp, "Locking"): every member, and every Entry linked into the
// index and the LRU list, is read and written with that lock held.
struct ShardData {
  ShardData(std::size_t entry_budget, std::size_t byte_budget, std::uint64_t hash_seed)
      : max_entries(entry_budget), max_bytes(byte_budget), seed(hash_seed) {}
  ShardData(const ShardData&) = delete;
  ShardData& operator=(const ShardData&) = delete;
  ~ShardData() { clear(); }

  detail::EntryIndex<Entry> index;
  Entry* head = nullptr;  // most recently used
  Entry* tail = nullptr;
  std::size_t count = 0;
  std::size_t bytes = 0;
  std::size_t max_entries;
  std::size_t max_bytes;
  std::uint64_t seed;  // the cache's hash seed
  CacheStats stats;

  auto rehash() const {
    return [seed = seed](const Entry* e) { return hash_of(*e, seed); };
  }
  Entry* find(std::uint64_t h, std::string_view key) const {
    return index.find(h, [key](const Entry& e) { return e.has_key(key); });
  }

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
    index.erase(hash_of(*e, seed), e, rehash());
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

}  // namespace

struct PacketCache::Shard {
  Shard(std::size_t entry_budget, std::size_t byte_budget, std::uint64_t seed)
      : data(std::in_place, entry_budget, byte_budget, seed) {}
  util::LockGuarded<ShardData> data;
};

PacketCache::PacketCache(CacheSettings settings, NowFn now)
    : settings_(settings), now_(std::move(now)) {
  seed_ = util::random_hash_seed();
  unsigned n = std::max(1u, settings_.shards);
  for (unsigned i = 0; i < n; ++i) {
    shards_.push_back(std::make_unique<Shard>(std::max<std::size_t>(1, settings_.max_entries / n),
                                              std::max<std::size_t>(1, settings_.max_bytes / n),
                                              seed_));
  }
}

PacketCache::~PacketCache() = default;

PacketCache::Shard& PacketCache::shard_for(std::uint64_t hash) const {
  // The high half picks the shard; the index probes by the low bits.
  return *shards_[((hash >> 32) * shards_.size()) >> 32];
}

namespace {

// A new entry for `msg` (parsed as `rv`), built outside any lock; nullptr when
// it cannot be stored. The stored form is what every reply is rendered from:
// the records before the OPT (ours is added per client), or, when a name reads
// TTL bytes (only a hostile upstream compresses so), the records with names
// expanded, so that rewriting TTLs cannot change a name.
Entry* make_entry(const Key& key, dns::Bytes msg, const dns::ResponseView& rv) {
  // A reply is rendered with the client's qname, which has the key's length.
  const auto k = key.view();
  if (rv.question.qname.size() + kKeySuffix != k.size()) return nullptr;
  msg = msg.first(std::min(rv.end, msg.size()));  // without trailing bytes
  auto parts = dns::answer_parts(msg, rv, tl_scratch);
  // The entry's key is its question: the answer must be for the key's type and class.
  const std::size_t qtype_at = dns::kHeaderSize + rv.question.qname.size();
  if (!parts || parts->wire.size() < qtype_at + 4 ||
      std::memcmp(parts->wire.data() + qtype_at, k.data() + (k.size() - kKeySuffix), 4) != 0) {
    return nullptr;
  }
  Entry* e = Entry::create(k, *parts);
  if (!detail::EntryIndex<Entry>::storable(e)) {
    Entry::destroy(e);
    return nullptr;
  }
  return e;
}

// Links `e` into shard `s` (locked), replacing an entry with its key unless
// `keep_existing`, and evicts from the tail down to the budgets. False (and
// `e` freed) when it was not stored.
bool store(ShardData& s, Entry* e, std::uint64_t h, std::string_view key, bool keep_existing) {
  if (e->charge() > s.max_bytes) {
    Entry::destroy(e);
    return false;
  }
  if (Entry* old = s.find(h, key)) {
    if (keep_existing) {
      Entry::destroy(e);
      return false;
    }
    s.erase(old);
  }
  s.link_front(e);
  s.index.insert(h, e, s.rehash());
  ++s.count;
  s.bytes += e->charge();
  ++s.stats.inserts;
  bool kept = true;
  while (s.count > s.max_entries || s.bytes > s.max_bytes) {
    kept = kept && s.tail != e;
    s.erase(s.tail);
    ++s.stats.evictions;
  }
  return kept;
}

}  // namespace

void PacketCache::insert(const Key& key, dns::Bytes msg, const dns::ResponseView& rv,
                         std::uint32_t lifetime, std::uint32_t stale_window) {
  if (lifetime == 0) return;
  Entry* e = make_entry(key, msg, rv);
  if (e == nullptr) return;
  e->stored = now_();
  e->lifetime = lifetime;
  e->stale_window = stale_window;
  const auto h = hash_of(key.view(), seed_);
  store(*shard_for(h).data.lock(), e, h, key.view(), false);
}

bool PacketCache::restore(const Key& key, dns::Bytes msg, const dns::ResponseView& rv,
                          std::uint32_t lifetime, std::uint32_t stale_window, Clock::duration age) {
  if (lifetime == 0 || age < Clock::duration::zero() ||
      age >= std::chrono::seconds(std::int64_t{lifetime} + stale_window)) {
    return false;
  }
  // The key must be the one this answer's question makes, flags included.
  const auto flags = static_cast<std::uint8_t>(key.view().back());
  if (Key::make(rv.question, (flags & kFlagDO) != 0, (flags & kFlagCD) != 0).view() != key.view()) {
    return false;
  }
  Entry* e = make_entry(key, msg, rv);
  if (e == nullptr) return false;
  e->stored = now_() - age;
  e->lifetime = lifetime;
  e->stale_window = stale_window;
  const auto h = hash_of(key.view(), seed_);
  return store(*shard_for(h).data.lock(), e, h, key.view(), true);
}

void PacketCache::export_entries(const std::function<void(std::vector<SavedEntry>&)>& fn) const {
  std::vector<SavedEntry> out;
  for (const auto& shard : shards_) {
    out.clear();
    {
      const auto now = now_();
      auto s = std::as_const(shard->data).lock();
      out.reserve(s->count);
      for (const Entry* e = s->head; e != nullptr; e = e->next) {
        const auto age = now - e->stored;
        if (age >= std::chrono::seconds(std::int64_t{e->lifetime} + e->stale_window)) continue;
        SavedEntry& saved = out.emplace_back();
        saved.key.assign(e->key_head());
        saved.key.push_back(static_cast<char>(e->key_flags));
        saved.lifetime = e->lifetime;
        saved.stale_window = e->stale_window;
        saved.age = age;
        const std::size_t opt = e->ede_len != 0 ? dns::kOptRecordSize + e->ede_len : 0;
        saved.answer.resize(e->wire_len + opt);
        std::memcpy(saved.answer.data(), e->wire(), e->wire_len);
        if (opt != 0) {
          // The upstream's EDE options travel in an OPT, where insert found them.
          std::uint8_t* p = saved.answer.data() + e->wire_len;
          p = dns::write_opt_record(p, false, e->ede_len);
          std::memcpy(p, e->ede(), e->ede_len);
          dns::write_u16(saved.answer.data() + 10,
                         static_cast<std::uint16_t>(dns::read_u16(e->wire() + 10) + 1));
        }
      }
    }
    if (!out.empty()) fn(out);
  }
}

LookupResult PacketCache::lookup(const Key& key, const dns::ReplyShape& shape,
                                 dns::MutableBytes out, Freshness freshness) {
  const auto h = hash_of(key.view(), seed_);
  Shard& shard = shard_for(h);
  const auto now = now_();
  auto s = shard.data.lock();
  Entry* entry = s->find(h, key.view());
  if (entry == nullptr) {
    ++s->stats.misses;
    return {};
  }
  Entry& e = *entry;
  auto age_s = std::chrono::duration_cast<std::chrono::seconds>(now - e.stored).count();
  if (age_s < 0) age_s = 0;
  const auto age = static_cast<std::uint32_t>(std::min<long long>(age_s, UINT32_MAX));
  LookupResult result;
  if (age >= e.lifetime) {
    bool in_window =
        static_cast<std::uint64_t>(age) < static_cast<std::uint64_t>(e.lifetime) + e.stale_window;
    if (!in_window) {
      s->erase(entry);
      ++s->stats.expired;
    }
    if (!in_window || freshness == Freshness::Fresh) {
      ++s->stats.misses;
      return {};
    }
    result.stale = true;
  }
  // TTLs lowered by the entry's age; stale answers: every TTL at most
  // kStaleAnswerTtl (RFC 8767 4), and Stale Answer / Stale NXDOMAIN Answer
  // (RFC 8914 4.4, 4.20) for EDNS clients.
  const dns::TtlAging aging =
      result.stale ? dns::TtlAging{0, kStaleAnswerTtl} : dns::TtlAging{age, e.lifetime - age};
  std::uint16_t stale_ede = 0;
  if (result.stale) {
    const bool nx = dns::Header{.flags = e.flags}.rcode() == dns::Rcode::NXDomain;
    stale_ede = nx ? dns::kEdeStaleNxdomain : dns::kEdeStaleAnswer;
  }
  const std::size_t n = dns::render_reply(e.parts(), shape, aging, stale_ede, out);
  if (n == 0) return {};
  result.size = n;
  ++e.hits;
  if (result.stale) {
    ++s->stats.stale_served;
  } else if (settings_.prefetch_hits != 0 && !e.prefetching && e.hits >= settings_.prefetch_hits &&
             std::uint64_t{e.lifetime - age} * 100 <=
                 std::uint64_t{e.lifetime} * settings_.prefetch_percent) {
    e.prefetching = true;
    result.prefetch = true;
    ++s->stats.prefetches;
  }
  s->unlink(entry);
  s->link_front(entry);
  ++s->stats.hits;
  return result;
}

void PacketCache::clear() {
  for (auto& shard : shards_)
    shard->data.lock()->clear();
}

void PacketCache::for_each(const std::function<void(const EntryInfo&)>& fn) const {
  const auto now = now_();
  for (const auto& shard : shards_) {
    auto s = std::as_const(shard->data).lock();
    for (const Entry* e = s->head; e != nullptr; e = e->next) {
      EntryInfo info;
      info.name = dns::name_to_text(e->qname());
      info.qtype = dns::read_u16(e->qname().data() + e->qname_len);
      auto age = std::chrono::duration_cast<std::chrono::seconds>(now - e->stored).count();
      info.ttl_left = static_cast<std::int64_t>(e->lifetime) - age;
      info.rcode = static_cast<std::uint8_t>(dns::Header{.flags = e->flags}.rcode());
      info.bytes = e->charge();
      fn(info);
    }
  }
}

std::size_t PacketCache::erase_name(dns::Bytes qname) {
  // Keys hold the name in lower case.
  return erase_if([qname](dns::Bytes key) {
    return key.size() == qname.size() &&
           std::equal(key.begin(), key.end(), qname.begin(),
                      [](std::uint8_t k, std::uint8_t q) { return k == dns::lower(q); });
  });
}

std::size_t PacketCache::erase_if(const std::function<bool(dns::Bytes qname)>& pred) {
  std::size_t erased = 0;
  for (auto& shard : shards_) {
    auto s = shard->data.lock();
    for (Entry* e = s->head; e != nullptr;) {
      Entry* next = e->next;
      if (pred(e->qname())) {
        s->erase(e);
        ++erased;
      }
      e = next;
    }
  }
  return erased;
}

void PacketCache::set_limits(std::size_t max_entries, std::size_t max_bytes) {
  const std::size_t n = shards_.size();
  for (auto& shard : shards_) {
    auto s = shard->data.lock();
    s->max_entries = std::max<std::size_t>(1, max_entries / n);
    s->max_bytes = std::max<std::size_t>(1, max_bytes / n);
    while (s->count > s->max_entries || s->bytes > s->max_bytes) {
      s->erase(s->tail);
      ++s->stats.evictions;
    }
  }
}

std::uint32_t PacketCache::hits(const Key& key) const {
  const auto h = hash_of(key.view(), seed_);
  auto s = std::as_const(shard_for(h).data).lock();
  const Entry* entry = s->find(h, key.view());
  return entry == nullptr ? 0 : entry->hits;
}

CacheStats PacketCache::stats() const {
  CacheStats total;
  for (const auto& shard : shards_) {
    auto s = std::as_const(shard->data).lock();
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
