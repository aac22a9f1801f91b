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
