#include <algorithm>
#include <array>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/util/lock_guarded.hpp>
#include <localdns/util/thread_scratch.hpp>

#include "entry_index.hpp"

namespace localdns::cache {

namespace {

constexpr char kFlagDO = 1;
constexpr char kFlagCD = 2;
// A key is the lowercased qname, then qtype, qclass and the flag byte.
constexpr std::size_t kKeySuffix = 5;

// One allocation per entry: this 32-byte header, then the wire answer
// (dns::AnswerParts::wire with ID 0 and its ARCOUNT), its TTL offsets (from
// the next even byte) and, when the upstream sent any, a length byte and its
// Extended DNS Error options. The LRU list is intrusive. What the wire holds
// is not stored again: the key is the wire's question (its name written in the
// key's lower case; a reply carries the client's) and the flag byte, the flags
// are the wire's header flags, and there is one TTL offset per record its
// counts give (make_entry checks). A lookup knows the name's length from its key.
struct Entry {
  // LRU links: addresses without their 3 low bits, which fit 44 bits
  // (EntryIndex::storable: 8-aligned, below 2^47; make_entry checks).
  std::uint64_t prev_ : 44 = 0;
  std::uint64_t hits : 20 = 0;  // renders since stored, saturating at kMaxHits
  std::uint64_t next_ : 44 = 0;
  std::uint64_t wire_len : 16 = 0;
  std::uint64_t key_flags : 2 = 0;    // the key's last byte: kFlagDO, kFlagCD
  std::uint64_t prefetching : 1 = 0;  // a refresh was requested; do not request another
  std::uint64_t has_ede : 1 = 0;
  Clock::time_point stored;
  std::uint32_t lifetime = 0;
  std::uint32_t stale_window = 0;

  // Above the largest cache.prefetch_hits the config accepts (1,000,000).
  static constexpr std::uint32_t kMaxHits = (1u << 20) - 1;
  static constexpr std::uint64_t kLinkMask = (std::uint64_t{1} << 44) - 1;

  static std::uint64_t link_of(const Entry* e) { return reinterpret_cast<std::uintptr_t>(e) >> 3; }
  static Entry* entry_of(std::uint64_t link) {
    return reinterpret_cast<Entry*>(static_cast<std::uintptr_t>(link << 3));
  }
  Entry* prev() const { return entry_of(prev_); }
  Entry* next() const { return entry_of(next_); }
  void set_prev(const Entry* e) { prev_ = link_of(e) & kLinkMask; }
  void set_next(const Entry* e) { next_ = link_of(e) & kLinkMask; }

  const std::uint8_t* wire() const { return reinterpret_cast<const std::uint8_t*>(this + 1); }
  std::uint8_t* wire() { return reinterpret_cast<std::uint8_t*>(this + 1); }
  std::uint16_t flags() const { return dns::read_u16(wire() + 2); }
  // Answer, authority and additional records: one TTL field each.
  std::size_t n_ttls() const {
    const std::uint8_t* w = wire();
    return std::size_t{dns::read_u16(w + 6)} + dns::read_u16(w + 8) + dns::read_u16(w + 10);
  }
  static std::size_t ttls_at(std::size_t wire_len) { return wire_len + (wire_len & 1); }
  const std::uint16_t* ttls() const {
    return reinterpret_cast<const std::uint16_t*>(wire() + ttls_at(wire_len));
  }
  const std::uint8_t* ede_at() const {
    return reinterpret_cast<const std::uint8_t*>(ttls() + n_ttls());
  }
  dns::Bytes ede() const {
    if (has_ede == 0) return {};
    const std::uint8_t* p = ede_at();
    return {p + 1, p[0]};
  }
  // The key's name: the question's, in lower case (create wrote it).
  std::size_t qname_len() const {
    return dns::uncompressed_name_length(dns::Bytes(wire(), wire_len), dns::kHeaderSize)
        .value_or(0);
  }
  // The key but its flag byte: the question's name, qtype and qclass.
  std::string_view key_head() const {
    return {reinterpret_cast<const char*>(wire()) + dns::kHeaderSize, qname_len() + 4u};
  }
  dns::Bytes qname() const { return {wire() + dns::kHeaderSize, qname_len()}; }
  // Names in wire form are prefix-free (a name ends at its first empty label),
  // so the key's name, qtype and qclass matching the bytes after the header
  // means the question is the key's.
  bool has_key(std::string_view key) const {
    const std::size_t head = key.size() - 1;
    return static_cast<std::uint8_t>(key.back()) == key_flags &&
           dns::kHeaderSize + head <= wire_len &&
           std::memcmp(key.data(), wire() + dns::kHeaderSize, head) == 0;
  }
  static std::size_t body_size(std::size_t wire_len, std::size_t n_ttls, std::size_t ede_len) {
    return ttls_at(wire_len) + n_ttls * sizeof(std::uint16_t) + (ede_len != 0 ? 1 + ede_len : 0);
  }
  std::size_t charge() const {
    return PacketCache::kEntryOverhead + body_size(wire_len, n_ttls(), ede().size());
  }

  // A copy of `a` with ID 0, ARCOUNT set and the key's name in the question;
  // TTLs as they came. The caller checked that the question is the key's and
  // that `a` has one TTL offset per record its counts give.
  static Entry* create(std::string_view key, const dns::AnswerParts& a) {
    const std::size_t n_ttls = a.ttl_offsets.size();
    const std::size_t total = sizeof(Entry) + body_size(a.wire.size(), n_ttls, a.ede.size());
    auto* e = new (::operator new(total)) Entry();
    e->wire_len = a.wire.size() & 0xFFFF;
    e->key_flags = static_cast<std::uint8_t>(key.back()) & 3u;
    e->has_ede = a.ede.empty() ? 0u : 1u;
    std::uint8_t* w = e->wire();
    std::memcpy(w, a.wire.data(), a.wire.size());
    std::memcpy(w + dns::kHeaderSize, key.data(), key.size() - kKeySuffix);
    dns::write_u16(w, 0);
    dns::write_u16(w + 2, a.flags);
    dns::write_u16(w + 10, a.arcount);
    std::uint8_t* p = w + ttls_at(a.wire.size());
    if (n_ttls != 0) std::memcpy(p, a.ttl_offsets.data(), n_ttls * sizeof(std::uint16_t));
    p += n_ttls * sizeof(std::uint16_t);
    if (!a.ede.empty()) {
      p[0] = static_cast<std::uint8_t>(a.ede.size());
      std::memcpy(p + 1, a.ede.data(), a.ede.size());
    }
    return e;
  }
  // The parts a reply is rendered from, for a key whose name is `qname_len`
  // bytes. Cached answers have no extended RCODE (cache_lifetime never allows
  // one), so the header's RCODE is all.
  dns::AnswerParts parts(std::size_t qname_len) const {
    dns::AnswerParts a;
    a.wire = dns::Bytes(wire(), wire_len);
    a.flags = flags();
    a.rcode = static_cast<std::uint16_t>(dns::Header{.flags = a.flags}.rcode());
    a.arcount = dns::read_u16(wire() + 10);
    a.qname_len = qname_len;
    a.ttl_offsets = {ttls(), n_ttls()};
    a.ede = ede();
    return a;
  }
  static void destroy(Entry* e) {
    e->~Entry();
    ::operator delete(e);
  }
};
static_assert(sizeof(Entry) == 32);
static_assert(dns::kMaxEdeBytes <= UINT8_MAX);
static_assert(dns::kMaxMessageSize <= UINT16_MAX);
static_assert((kFlagDO | kFlagCD) <= 3);
static_assert(alignof(Entry) >= 8);  // EntryIndex keeps addresses without their low 3 bits

// Per-entry charge beyond the header: the allocator's chunk header and
// rounding, and the index's slots (8 bytes each, 40-80 % used).
constexpr std::size_t kIndexCharge = 32;
static_assert(sizeof(Entry) + kIndexCharge <= PacketCache::kEntryOverhead);

// Room for answers whose records insert() cannot take from the view as they are.
thread_local util::ThreadScratch<dns::AnswerScratch> tl_scratch;

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
    e->set_prev(nullptr);
    e->set_next(head);
    if (head) head->set_prev(e);
    head = e;
    if (!tail) tail = e;
  }
  void unlink(Entry* e) {
    Entry* const prev = e->prev();
    Entry* const next = e->next();
    if (prev) {
      prev->set_next(next);
    } else {
      head = next;
    }
    if (next) {
      next->set_prev(prev);
    } else {
      tail = prev;
    }
    e->set_prev(nullptr);
    e->set_next(nullptr);
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
      Entry* next = e->next();
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
  auto parts = dns::answer_parts(msg, rv, tl_scratch.get());
  // The entry's key is its question: the answer must be for the key's type and class.
  const std::size_t qtype_at = dns::kHeaderSize + rv.question.qname.size();
  if (!parts || parts->wire.size() < qtype_at + 4 ||
      std::memcmp(parts->wire.data() + qtype_at, k.data() + (k.size() - kKeySuffix), 4) != 0) {
    return nullptr;
  }
  // The entry finds its TTL offsets by the record counts.
  const std::uint8_t* w = parts->wire.data();
  if (std::size_t{dns::read_u16(w + 6)} + dns::read_u16(w + 8) + parts->arcount !=
      parts->ttl_offsets.size()) {
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
      for (const Entry* e = s->head; e != nullptr; e = e->next()) {
        const auto age = now - e->stored;
        if (age >= std::chrono::seconds(std::int64_t{e->lifetime} + e->stale_window)) continue;
        SavedEntry& saved = out.emplace_back();
        saved.key.assign(e->key_head());
        saved.key.push_back(static_cast<char>(e->key_flags));
        saved.lifetime = e->lifetime;
        saved.stale_window = e->stale_window;
        saved.age = age;
        const dns::Bytes ede = e->ede();
        const std::size_t opt = !ede.empty() ? dns::kOptRecordSize + ede.size() : 0;
        saved.answer.resize(e->wire_len + opt);
        std::memcpy(saved.answer.data(), e->wire(), e->wire_len);
        if (opt != 0) {
          // The upstream's EDE options travel in an OPT, where insert found them.
          std::uint8_t* p = saved.answer.data() + e->wire_len;
          p = dns::write_opt_record(p, false, static_cast<std::uint16_t>(ede.size()));
          std::memcpy(p, ede.data(), ede.size());
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
    const bool nx = dns::Header{.flags = e.flags()}.rcode() == dns::Rcode::NXDomain;
    stale_ede = nx ? dns::kEdeStaleNxdomain : dns::kEdeStaleAnswer;
  }
  const std::size_t n =
      dns::render_reply(e.parts(key.view().size() - kKeySuffix), shape, aging, stale_ede, out);
  if (n == 0) return {};
  result.size = n;
  if (e.hits < Entry::kMaxHits) ++e.hits;
  if (result.stale) {
    ++s->stats.stale_served;
  } else if (settings_.prefetch_hits != 0 && !e.prefetching &&
             e.hits >= std::min(settings_.prefetch_hits, Entry::kMaxHits) &&
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
    for (const Entry* e = s->head; e != nullptr; e = e->next()) {
      EntryInfo info;
      const dns::Bytes qname = e->qname();
      info.name = dns::name_to_text(qname);
      info.qtype = dns::read_u16(qname.data() + qname.size());
      auto age = std::chrono::duration_cast<std::chrono::seconds>(now - e->stored).count();
      info.ttl_left = static_cast<std::int64_t>(e->lifetime) - age;
      info.rcode = static_cast<std::uint8_t>(dns::Header{.flags = e->flags()}.rcode());
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
      Entry* next = e->next();
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
