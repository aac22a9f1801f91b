// Warm restarts: the packet cache written to a file and read back at start,
// so that a restarted localdns answers from what it had cached instead of
// sending every name upstream again.
//
// The file, all integers big-endian:
//   header  magic "LDNSCACH" (8 bytes), version u32 (kPersistVersion),
//           entry count u32, body length u64, CRC-32 of the body u32
//   body    per entry: key length u16, key (PacketCache::Key), answer length
//           u16, answer (a DNS message, PacketCache::SavedEntry), expiry i64
//           (seconds since the Unix epoch: steady clocks do not survive a
//           restart), lifetime u32, stale window u32 (seconds)
// Entries are written most recently used first, one cache shard after
// another; they are restored in reverse, so the cache's budget evicts the
// least recently used when it is now smaller.
//
// Loading never trusts the file: a short, oversized, foreign (magic or
// version), or corrupt (CRC, a length past the body, a count the body cannot
// hold) file is ignored as a whole, and each answer must parse as a DNS
// response (dns::parse_response) whose question makes its key, or that entry
// is skipped.
//
// Threads: these functions run on the caller's thread; the cache does its own
// locking (save copies one shard at a time under its lock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <localdns/cache/packet_cache.hpp>

namespace localdns::cache {

inline constexpr char kPersistMagic[8] = {'L', 'D', 'N', 'S', 'C', 'A', 'C', 'H'};
inline constexpr std::uint32_t kPersistVersion = 1;
inline constexpr std::size_t kPersistHeaderSize = 8 + 4 + 4 + 8 + 4;

// Wall-clock seconds since the Unix epoch.
using WallSeconds = std::int64_t;
WallSeconds wall_now();

struct SaveResult {
  bool ok = false;
  std::size_t entries = 0;
  std::size_t bytes = 0;  // the file's size
  std::string error;      // when !ok: what failed, with the path
};

// The file's contents for `cache` at wall time `now`; `entries` gets the count.
std::vector<std::uint8_t> encode_cache(const PacketCache& cache, WallSeconds now,
                                       std::size_t& entries);

// Writes the file: a temporary file next to `path` (unique to this process),
// fsync, rename over `path`, fsync of the directory.
SaveResult save_cache(const PacketCache& cache, const std::string& path, WallSeconds now);

struct LoadOptions {
  std::size_t max_file_bytes = 256u << 20;  // larger files are ignored
  // The longest serve-stale window now configured: windows read back are cut
  // to it, and 0 drops every expired entry.
  std::uint32_t max_stale_window = 0;
};

struct LoadResult {
  bool ok = false;       // false: the file was ignored (or could not be read)
  bool missing = false;  // no file (ok stays false; not an error at first start)
  std::size_t loaded = 0;
  std::size_t expired = 0;  // past their lifetime and stale window
  std::size_t skipped = 0;  // not a valid answer, or not stored (budget, key)
  std::string error;        // when !ok: why, with the path
};

// Restores the entries of file contents `file` at wall time `now`.
LoadResult decode_cache(PacketCache& cache, std::span<const std::uint8_t> file, WallSeconds now,
                        const LoadOptions& options);

// Reads `path` (at most options.max_file_bytes) and decode_cache()s it.
LoadResult load_cache(PacketCache& cache, const std::string& path, WallSeconds now,
                      const LoadOptions& options);

}  // namespace localdns::cache
