#include <cstring>

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
  return walk_name(msg, pos, [](std::size_t, std::size_t) {});
}

bool names_equal(Bytes a, Bytes b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void lowercase_name(Bytes name, std::uint8_t* out) {
  std::size_t i = 0;
  // Eight bytes at a time: 0x20 added to each byte in 'A'..'Z', as lower() does.
  for (; i + 8 <= name.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, name.data() + i, 8);
    const std::uint64_t low7 = w & 0x7f7f7f7f7f7f7f7full;
    const std::uint64_t at_least_a = low7 + 0x3f3f3f3f3f3f3f3full;  // top bit: >= 'A'
    const std::uint64_t past_z = low7 + 0x2525252525252525ull;      // top bit: > 'Z'
    const std::uint64_t upper = at_least_a & ~past_z & ~w & 0x8080808080808080ull;
    w |= upper >> 2;
    std::memcpy(out + i, &w, 8);
  }
  for (; i < name.size(); ++i)
    out[i] = lower(name[i]);
}

std::optional<std::string> name_from_text(std::string_view text) {
  if (text == "." || text.empty()) return std::string(1, '\0');
  std::string wire(1, '\0');  // the first label's length, set when it ends
  std::size_t label_at = 0;
  bool in_label = true;
  auto end_label = [&] {
    std::size_t len = wire.size() - label_at - 1;
    wire[label_at] = static_cast<char>(len);
    return len != 0;  // "a..b", ".a": an empty label
  };
  auto digit = [&](std::size_t k) { return k < text.size() && text[k] >= '0' && text[k] <= '9'; };
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<std::uint8_t>(text[i]);
    if (c == '.') {
      if (!end_label()) return std::nullopt;
      if (i + 1 == text.size()) {  // the trailing dot of an absolute name
        in_label = false;
        break;
      }
      label_at = wire.size();
      wire.push_back('\0');
      continue;
    }
    if (c == '\\') {  // RFC 1035 5.1: \DDD (decimal), or \X for X itself
      if (i + 1 == text.size()) return std::nullopt;
      if (digit(i + 1)) {
        if (!digit(i + 2) || !digit(i + 3)) return std::nullopt;
        int v = (text[i + 1] - '0') * 100 + (text[i + 2] - '0') * 10 + (text[i + 3] - '0');
        if (v > 255) return std::nullopt;
        c = static_cast<std::uint8_t>(v);
        i += 3;
      } else {
        c = static_cast<std::uint8_t>(text[++i]);
      }
    }
    wire.push_back(static_cast<char>(lower(c)));
    if (wire.size() - label_at - 1 > kMaxLabelSize) return std::nullopt;
  }
  if (in_label && !end_label()) return std::nullopt;
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
      const std::uint8_t c = wire[pos + i];
      // As master files and dig show names (RFC 1035 5.1): characters that
      // delimit or quote there get a backslash; space, control characters,
      // DEL and every byte above 127 are written \DDD in decimal. The text
      // is printable ASCII whatever the label holds.
      switch (c) {
        case '.':
        case '\\':
        case '"':
        case '(':
        case ')':
        case ';':
        case '@':
        case '$':
          out.push_back('\\');
          out.push_back(static_cast<char>(c));
          break;
        default:
          if (c <= 0x20 || c >= 0x7f) {
            out.push_back('\\');
            out.push_back(static_cast<char>('0' + c / 100));
            out.push_back(static_cast<char>('0' + c / 10 % 10));
            out.push_back(static_cast<char>('0' + c % 10));
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
    }
    out.push_back('.');
    pos += 1 + len;
  }
  return out.empty() ? "." : out;
}

}  // namespace localdns::dns
