// Reading iptables-save output and rule comments: shared by the rules
// backends, the node-local-dns takeover and `localdns doctor`.
#include <localdns/node/rules.hpp>

namespace localdns::node {

std::string rule_comment(std::string_view line) {
  auto pos = line.find("--comment ");
  std::size_t skip = 10;
  if (pos == std::string_view::npos) {
    pos = line.find("comment \"");  // nft
    skip = 8;
    if (pos == std::string_view::npos) return {};
  }
  pos += skip;
  if (pos < line.size() && line[pos] == '"') {
    std::string out;
    for (std::size_t i = pos + 1; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size()) {
        out += line[++i];
      } else if (line[i] == '"') {
        break;
      } else {
        out += line[i];
      }
    }
    return out;
  }
  auto end = line.find(' ', pos);
  return std::string(line.substr(pos, end == std::string_view::npos ? end : end - pos));
}

SavedTables parse_iptables_save(std::string_view text) {
  SavedTables tables;
  std::string table;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (line.starts_with("*")) {
      table = std::string(line.substr(1));
      tables[table];
    } else if (line.starts_with("-A ") && !table.empty()) {
      auto sp = line.find(' ', 3);
      std::string chain(line.substr(3, sp == std::string_view::npos ? sp : sp - 3));
      tables[table].push_back({chain, std::string(line), rule_comment(line)});
    }
  }
  return tables;
}

}  // namespace localdns::node
