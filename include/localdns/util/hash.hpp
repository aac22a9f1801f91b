// A fast seeded hash for table keys that clients choose (names): a few
// instructions per 8 bytes, where std::hash<std::string_view> (libstdc++'s
// _Hash_bytes) costs about 100 for a 40-byte key. Each table draws its own
// random seed, so clients cannot choose names that collide in every localdns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>

namespace localdns::util {

// 64-bit multiply, high half folded into the low.
inline std::uint64_t fold(std::uint64_t a, std::uint64_t b) {
  __extension__ using U128 = unsigned __int128;
  const U128 r = static_cast<U128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

// A seeded 64-bit hash of `n` bytes at `p`, then one more byte `last` (a
// cache entry keeps its key's flag byte apart from the rest of the key).
inline std::uint64_t hash_key(const char* p, std::size_t n, std::uint8_t last, std::uint64_t seed) {
  constexpr std::uint64_t k1 = 0xa0761d6478bd642full;
  constexpr std::uint64_t k2 = 0xe7037ed1a0b428dbull;
  std::uint64_t h = seed ^ (n * k2);
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = fold(h ^ w, k1);
  }
  std::uint64_t w = last;
  for (std::size_t i = 0; i < n; ++i)
    w = (w << 8) | static_cast<std::uint8_t>(p[i]);
  return fold(fold(h ^ w, k2), k1 ^ seed);
}

// A seed for one table.
inline std::uint64_t random_hash_seed() {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

}  // namespace localdns::util
