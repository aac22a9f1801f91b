#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <localdns/cache/persist.hpp>
#include <localdns/dns/message.hpp>

namespace localdns::cache {

namespace {

// Fixed part of a record: the two length fields, expiry, lifetime, window.
constexpr std::size_t kRecordFixed = 2 + 2 + 8 + 4 + 4;
constexpr std::size_t kMaxKey = dns::kMaxNameSize + 5;

void put_u16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  put_u16(out, static_cast<std::uint16_t>(v >> 16));
  put_u16(out, static_cast<std::uint16_t>(v));
}
void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
  put_u32(out, static_cast<std::uint32_t>(v));
}
std::uint64_t read_u64(const std::uint8_t* p) {
  return (std::uint64_t{dns::read_u32(p)} << 32) | dns::read_u32(p + 4);
}
void set_u32(std::uint8_t* p, std::uint32_t v) {
  dns::write_u32(p, v);
}
void set_u64(std::uint8_t* p, std::uint64_t v) {
  dns::write_u32(p, static_cast<std::uint32_t>(v >> 32));
  dns::write_u32(p + 4, static_cast<std::uint32_t>(v));
}

std::uint32_t crc_of(std::span<const std::uint8_t> body) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large bodies in pieces.
  constexpr std::size_t kPiece = 1u << 30;
  for (std::size_t at = 0; at < body.size(); at += kPiece) {
    auto n = static_cast<uInt>(std::min(kPiece, body.size() - at));
    crc = ::crc32(crc, body.data() + at, n);
  }
  return static_cast<std::uint32_t>(crc);
}

std::string errno_text(int err) {
  return std::strerror(err);
}

// One record of a file whose structure was checked; spans into the file.
struct Record {
  std::span<const std::uint8_t> key;
  std::span<const std::uint8_t> answer;
  std::int64_t expiry = 0;
  std::uint32_t lifetime = 0;
  std::uint32_t stale_window = 0;
};

}  // namespace

WallSeconds wall_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::uint8_t> encode_cache(const PacketCache& cache, WallSeconds now,
                                       std::size_t& entries) {
  std::vector<std::uint8_t> out(kPersistHeaderSize);
  entries = 0;
  cache.export_entries([&](std::vector<PacketCache::SavedEntry>& shard) {
    for (const auto& e : shard) {
      if (e.key.size() > kMaxKey || e.answer.size() > dns::kMaxMessageSize) continue;
      // Whole seconds of age, as lookups count them.
      const auto age = std::chrono::duration_cast<std::chrono::seconds>(e.age).count();
      put_u16(out, static_cast<std::uint16_t>(e.key.size()));
      out.insert(out.end(), e.key.begin(), e.key.end());
      put_u16(out, static_cast<std::uint16_t>(e.answer.size()));
      out.insert(out.end(), e.answer.begin(), e.answer.end());
      put_u64(out, static_cast<std::uint64_t>(now + std::int64_t{e.lifetime} - age));
      put_u32(out, e.lifetime);
      put_u32(out, e.stale_window);
      ++entries;
    }
  });
  std::memcpy(out.data(), kPersistMagic, sizeof kPersistMagic);
  set_u32(out.data() + 8, kPersistVersion);
  set_u32(out.data() + 12, static_cast<std::uint32_t>(entries));
  const std::span<const std::uint8_t> body(out.data() + kPersistHeaderSize,
                                           out.size() - kPersistHeaderSize);
  set_u64(out.data() + 16, body.size());
  set_u32(out.data() + 24, crc_of(body));
  return out;
}

SaveResult save_cache(const PacketCache& cache, const std::string& path, WallSeconds now) {
  SaveResult r;
  auto data = encode_cache(cache, now, r.entries);
  r.bytes = data.size();
  // Unique to this process: two instances on a node (an upgrade's overlap)
  // may save at the same time; the last rename wins, each file whole.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    r.error = "cannot create " + tmp + ": " + errno_text(errno);
    return r;
  }
  auto fail = [&](const std::string& what) {
    r.error = what + " " + tmp + ": " + errno_text(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return r;
  };
  for (std::size_t at = 0; at < data.size();) {
    ssize_t n = ::write(fd, data.data() + at, data.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("cannot write");
    at += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot fsync");
  if (::close(fd) != 0) {
    r.error = "cannot close " + tmp + ": " + errno_text(errno);
    ::unlink(tmp.c_str());
    return r;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    r.error = "cannot rename " + tmp + " to " + path + ": " + errno_text(errno);
    ::unlink(tmp.c_str());
    return r;
  }
  // The rename itself is durable once the directory is synced.
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  r.ok = true;
  return r;
}

LoadResult decode_cache(PacketCache& cache, std::span<const std::uint8_t> file, WallSeconds now,
                        const LoadOptions& options) {
  LoadResult r;
  if (file.size() > options.max_file_bytes) {
    r.error = "larger than " + std::to_string(options.max_file_bytes) + " bytes";
    return r;
  }
  if (file.size() < kPersistHeaderSize) {
    r.error = "truncated (no header)";
    return r;
  }
  if (std::memcmp(file.data(), kPersistMagic, sizeof kPersistMagic) != 0) {
    r.error = "not a localdns cache file (bad magic)";
    return r;
  }
  if (auto v = dns::read_u32(file.data() + 8); v != kPersistVersion) {
    r.error = "unsupported version " + std::to_string(v);
    return r;
  }
  const std::uint32_t count = dns::read_u32(file.data() + 12);
  const std::uint64_t body_len = read_u64(file.data() + 16);
  const auto body = file.subspan(kPersistHeaderSize);
  if (body_len != body.size()) {
    r.error = "truncated or padded (body of " + std::to_string(body.size()) +
              " bytes, header says " + std::to_string(body_len) + ")";
    return r;
  }
  if (crc_of(body) != dns::read_u32(file.data() + 24)) {
    r.error = "corrupt (CRC mismatch)";
    return r;
  }
  if (count > body.size() / kRecordFixed) {
    r.error = "corrupt (entry count " + std::to_string(count) + " exceeds the body)";
    return r;
  }
  // Every length is checked against what is left of the body before use.
  std::vector<Record> records;
  records.reserve(count);
  std::size_t at = 0;
  auto take = [&](std::size_t n) -> std::span<const std::uint8_t> {
    if (n > body.size() - at) return {};
    auto s = body.subspan(at, n);
    at += n;
    return s;
  };
  for (std::uint32_t i = 0; i < count; ++i) {
    Record rec;
    auto klen = take(2);
    if (klen.empty()) break;
    rec.key = take(dns::read_u16(klen.data()));
    auto alen = take(2);
    if (rec.key.empty() || rec.key.size() > kMaxKey || alen.empty()) break;
    rec.answer = take(dns::read_u16(alen.data()));
    auto fixed = take(16);
    if (rec.answer.empty() || fixed.empty()) break;
    rec.expiry = static_cast<std::int64_t>(read_u64(fixed.data()));
    rec.lifetime = dns::read_u32(fixed.data() + 8);
    rec.stale_window = dns::read_u32(fixed.data() + 12);
    records.push_back(rec);
  }
  if (records.size() != count || at != body.size()) {
    r.error = "corrupt (entry " + std::to_string(records.size()) + " of " + std::to_string(count) +
              " overruns the body)";
    return r;
  }
  r.ok = true;
  // Least recently used first: the most recent end up at the front.
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    const Record& rec = *it;
    const std::uint32_t window = std::min(rec.stale_window, options.max_stale_window);
    // Remaining lifetime in seconds; the age follows from it (never negative:
    // a wall clock set back cannot make an entry younger than new).
    const std::int64_t remaining = rec.expiry - now;
    std::int64_t age = std::int64_t{rec.lifetime} - remaining;
    if (age < 0) age = 0;
    if (rec.lifetime == 0 || age >= std::int64_t{rec.lifetime} + window) {
      ++r.expired;
      continue;
    }
    const dns::Bytes msg(rec.answer.data(), rec.answer.size());
    auto rv = dns::parse_response(msg);
    if (!rv || rec.key.size() != rv->question.qname.size() + 5) {
      ++r.skipped;
      continue;
    }
    const auto flags = rec.key.back();
    const auto key = Key::make(rv->question, (flags & 1) != 0, (flags & 2) != 0);
    if (std::memcmp(key.view().data(), rec.key.data(), rec.key.size()) != 0 ||
        !cache.restore(key, msg, *rv, rec.lifetime, window, std::chrono::seconds(age))) {
      ++r.skipped;
      continue;
    }
    ++r.loaded;
  }
  return r;
}

LoadResult load_cache(PacketCache& cache, const std::string& path, WallSeconds now,
                      const LoadOptions& options) {
  LoadResult r;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.missing = errno == ENOENT;
    r.error = path + ": " + errno_text(errno);
    return r;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    r.error = path + ": not a regular file";
    ::close(fd);
    return r;
  }
  if (static_cast<std::uint64_t>(st.st_size) > options.max_file_bytes) {
    r.error = path + ": larger than " + std::to_string(options.max_file_bytes) + " bytes";
    ::close(fd);
    return r;
  }
  // One byte more than expected shows a file that grew since fstat.
  std::vector<std::uint8_t> data(static_cast<std::size_t>(st.st_size) + 1);
  std::size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r.error = path + ": " + errno_text(errno);
      ::close(fd);
      return r;
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  data.resize(got);
  r = decode_cache(cache, data, now, options);
  if (!r.ok) r.error = path + ": " + r.error;
  return r;
}

}  // namespace localdns::cache
