// Domain names in wire form (RFC 1035 3.1, 4.1.4): validation, skipping over
// compressed names, case-insensitive comparison and presentation form.
// Pure functions; thread-safe; only the text conversions allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <localdns/dns/wire.hpp>

namespace localdns::dns {

// ASCII-only lowering: DNS case-insensitivity covers A-Z alone (RFC 4343).
inline constexpr std::uint8_t lower(std::uint8_t c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<std::uint8_t>(c + ('a' - 'A')) : c;
}

// Length of the uncompressed name starting at `pos`, label bytes included.
// Fails on compression pointers, bad label types, or names over 255 bytes.
std::optional<std::size_t> uncompressed_name_length(Bytes msg, std::size_t pos);

// Offset just past the (possibly compressed) name starting at `pos`, after
// checking that following its pointers stays inside `msg` and past the header,
// moves strictly backwards, and yields a name of at most 255 bytes.
std::optional<std::size_t> skip_name(Bytes msg, std::size_t pos);

// The same walk, also calling `fn(begin, end)` for every byte range it reads
// (each label with its length byte, each pointer), in reading order.
template <class Fn>
std::optional<std::size_t> walk_name(Bytes msg, std::size_t pos, Fn&& fn);

// Case-insensitive equality of two uncompressed wire names of equal length.
bool names_equal(Bytes a, Bytes b);

// Copies the name in lower case; `out` must hold `name.size()` bytes.
void lowercase_name(Bytes name, std::uint8_t* out);

// Wire form of a presentation name ("cluster.local", "cluster.local.", "."),
// reading the escapes name_to_text writes (\DDD, \. and \X). Lowercased.
// std::nullopt on empty labels, labels over 63, names over 255 or bad escapes.
std::optional<std::string> name_from_text(std::string_view text);

// Presentation form of an uncompressed wire name, with a trailing dot, escaped
// as in master files: \. for a dot inside a label, \\, \" and the other
// specials with a backslash, \DDD for space, control bytes, DEL and bytes
// over 127. Always printable ASCII, so it is safe in logs and `ctl` output;
// letters, digits, '-', '_', '*' and '/' are shown as they are.
std::string name_to_text(Bytes wire);
inline std::string name_to_text(std::string_view wire) {
  return name_to_text(Bytes(reinterpret_cast<const std::uint8_t*>(wire.data()), wire.size()));
}

template <class Fn>
std::optional<std::size_t> walk_name(Bytes msg, std::size_t pos, Fn&& fn) {
  std::optional<std::size_t> end;
  std::size_t total = 0;
  // Every pointer jumps strictly backwards, never into the header (localdns
  // rewrites ID and flags), and what is read after a jump must end before the
  // pointer itself. So a name only uses bytes that precede it: no loops, and
  // dropping what follows the records cannot change it.
  std::size_t limit = msg.size();
  while (true) {
    if (pos >= limit) return std::nullopt;
    std::uint8_t len = msg[pos];
    if ((len & 0xC0) == 0xC0) {
      if (pos + 1 >= limit) return std::nullopt;
      std::size_t target = (std::size_t{len & 0x3Fu} << 8) | msg[pos + 1];
      fn(pos, pos + 2);
      if (!end) end = pos + 2;
      if (target >= pos || target < kHeaderSize) return std::nullopt;
      limit = pos;
      pos = target;
      continue;
    }
    if (len > kMaxLabelSize) return std::nullopt;
    total += 1 + std::size_t{len};
    if (total > kMaxNameSize) return std::nullopt;
    if (len == 0) {
      fn(pos, pos + 1);
      return end ? *end : pos + 1;
    }
    if (pos + 1 + len >= limit) return std::nullopt;  // the next length byte must fit too
    fn(pos, pos + 1 + len);
    pos += 1 + len;
  }
}

}  // namespace localdns::dns
