// The index of one cache shard: an open-addressing hash table (linear
// probing, backward-shift deletion, at most 80 % full) of 8-byte slots, each
// an entry's address and the low 20 bits of its key's hash. A lookup hashes
// the key once (the same hash picks the shard), probes adjacent slots and
// compares a key only where those 20 bits match; an insert allocates nothing
// unless the table grows. Replaces a std::unordered_map, whose node per entry
// cost an allocation on every insert and ~50 bytes of memory per entry.
//
// Thread-safety: none; each instance belongs to one shard and is used under
// that shard's lock (packet_cache.hpp, "Locking").
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

#include <localdns/util/hash.hpp>

namespace localdns::cache::detail {

using util::hash_key;

// T: the entry type, aligned to at least 8 bytes, at an address below 2^47
// (storable(); the caller checks). HashOf: std::uint64_t(const T*), the entry's key
// hash, used when the table grows past 2^20 slots only.
template <class T>
class EntryIndex {
 public:
  EntryIndex() { reset(kMinSlots); }
  EntryIndex(const EntryIndex&) = delete;
  EntryIndex& operator=(const EntryIndex&) = delete;

  std::size_t size() const { return size_; }
  std::size_t capacity() const { return mask_ + 1; }

  static bool storable(const T* e) {
    const auto a = reinterpret_cast<std::uintptr_t>(e);
    return a != 0 && (a >> 47) == 0 && (a & 7) == 0;
  }

  // The entry with hash `h` for which `eq(entry)` holds, or nullptr.
  template <class Eq>
  T* find(std::uint64_t h, Eq&& eq) const {
    const std::uint64_t bits = h & kBitsMask;
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const std::uint64_t s = slots_[i];
      if (s == 0) return nullptr;
      if ((s & kBitsMask) == bits) {
        T* e = entry(s);
        if (eq(*e)) return e;
      }
    }
  }

  // Adds `e` (not in the table; storable()) under hash `h`.
  template <class HashOf>
  void insert(std::uint64_t h, T* e, HashOf&& hash_of) {
    if ((size_ + 1) * 5 > capacity() * 4) grow(hash_of);
    place(h & mask_, slot_of(h, e));
    ++size_;
  }

  // Removes `e`, filed under hash `h`.
  template <class HashOf>
  void erase(std::uint64_t h, const T* e, HashOf&& hash_of) {
    std::size_t i = h & mask_;
    while (entry(slots_[i]) != e) {
      if (slots_[i] == 0) return;
      i = (i + 1) & mask_;
    }
    // Backward shift: pull later members of the probe run into the gap.
    for (std::size_t j = i;;) {
      j = (j + 1) & mask_;
      const std::uint64_t s = slots_[j];
      if (s == 0) break;
      const std::size_t home = home_of(s, hash_of);
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!stays) {
        slots_[i] = s;
        i = j;
      }
    }
    slots_[i] = 0;
    --size_;
  }

  void clear() { reset(kMinSlots); }

 private:
  static constexpr unsigned kBits = 20;
  static constexpr std::uint64_t kBitsMask = (std::uint64_t{1} << kBits) - 1;
  static constexpr std::size_t kMinSlots = 16;

  static T* entry(std::uint64_t s) { return reinterpret_cast<T*>((s >> kBits) << 3); }
  static std::uint64_t slot_of(std::uint64_t h, const T* e) {
    return (static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(e)) >> 3) << kBits |
           (h & kBitsMask);
  }
  template <class HashOf>
  std::size_t home_of(std::uint64_t s, HashOf& hash_of) const {
    if (mask_ <= kBitsMask) return s & mask_;
    return hash_of(static_cast<const T*>(entry(s))) & mask_;
  }
  template <class HashOf>
  void grow(HashOf& hash_of) {
    auto old = std::move(slots_);
    const std::size_t n = capacity();
    const std::size_t size = size_;
    reset(n * 2);
    size_ = size;
    for (std::size_t i = 0; i < n; ++i)
      if (old[i] != 0) place(home_of(old[i], hash_of), old[i]);
  }
  void place(std::size_t i, std::uint64_t s) {
    while (slots_[i] != 0)
      i = (i + 1) & mask_;
    slots_[i] = s;
  }
  void reset(std::size_t n) {
    slots_ = std::make_unique<std::uint64_t[]>(n);
    mask_ = n - 1;
    size_ = 0;
  }

  std::unique_ptr<std::uint64_t[]> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace localdns::cache::detail
