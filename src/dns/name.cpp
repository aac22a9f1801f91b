#include <localdns/dns/name.hpp>

namespace localdns::dns {

std::optional<std::size_t> uncompressed_name_length(Bytes msg, std::size_t pos) {
  std::size_t start = pos;
  while (true) {
    if (pos >= msg.size()) return std::nullopt;
    std::uint8_t len = msg[pos];
    if (len == 0) break;
    if (len > kMaxLabelSize) return std::nullopt;  // pointer or reserved label type
    pos += 1 + len;
    if (pos - start > kMaxNameSize - 1) return std::nullopt;
  }
  return pos + 1 - start;
}

std::optional<std::size_t> skip_name(Bytes msg, std::size_t pos) {
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
      if (!end) end = pos + 2;
      if (target >= pos || target < kHeaderSize) return std::nullopt;
      limit = pos;
      pos = target;
      continue;
    }
    if (len > kMaxLabelSize) return std::nullopt;
    total += 1 + std::size_t{len};
    if (total > kMaxNameSize) return std::nullopt;
    if (len == 0) return end ? *end : pos + 1;
    if (pos + 1 + len >= limit) return std::nullopt;  // the next length byte must fit too
    pos += 1 + len;
  }
}

bool names_equal(Bytes a, Bytes b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void lowercase_name(Bytes name, std::uint8_t* out) {
  for (std::size_t i = 0; i < name.size(); ++i)
    out[i] = lower(name[i]);
}

std::optional<std::string> name_from_text(std::string_view text) {
  std::string wire;
  if (text == "." || text.empty()) return std::string(1, '\0');
  if (text.back() == '.') text.remove_suffix(1);
  while (!text.empty()) {
    std::size_t dot = text.find('.');
    std::string_view label = text.substr(0, dot);
    if (label.empty() || label.size() > kMaxLabelSize) return std::nullopt;
    wire.push_back(static_cast<char>(label.size()));
    for (char c : label)
      wire.push_back(static_cast<char>(lower(static_cast<std::uint8_t>(c))));
    if (dot == std::string_view::npos) break;
    text.remove_prefix(dot + 1);
    if (text.empty()) return std::nullopt;  // "a..": empty label
  }
  wire.push_back('\0');
  if (wire.size() > kMaxNameSize) return std::nullopt;
  return wire;
}

std::string name_to_text(Bytes wire) {
  std::string out;
  std::size_t pos = 0;
  while (pos < wire.size() && wire[pos] != 0) {
    std::size_t len = wire[pos];
    for (std::size_t i = 1; i <= len && pos + i < wire.size(); ++i) {
      auto c = static_cast<char>(wire[pos + i]);
      if (c == '.' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('.');
    pos += 1 + len;
  }
  return out.empty() ? "." : out;
}

}  // namespace localdns::dns
