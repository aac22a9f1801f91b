#include <algorithm>

#include <localdns/node/process.hpp>
#include <localdns/node/rules.hpp>
#include <localdns/node/takeover.hpp>

namespace localdns::node {

std::vector<boost::asio::ip::address> rule_addresses(std::string_view line) {
  std::vector<boost::asio::ip::address> out;
  std::size_t pos = 0;
  bool next_is_address = false;
  while (pos < line.size()) {
    auto end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    std::string_view word = line.substr(pos, end - pos);
    pos = end + 1;
    if (next_is_address) {
      next_is_address = false;
      std::string text(word.substr(0, word.find('/')));
      boost::system::error_code ec;
      auto a = boost::asio::ip::make_address(text, ec);
      if (!ec && std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
      continue;
    }
    next_is_address = word == "-d" || word == "-s";
  }
  return out;
}

std::expected<NodeLocalDnsRules, std::string> find_node_local_dns_rules(std::string_view variant) {
  NodeLocalDnsRules found;
  for (bool v6 : {false, true}) {
    const std::string program = (v6 ? "ip6tables-" : "iptables-") + std::string(variant);
    const std::string save = program + "-save";
    if (!have_program(save)) continue;
    auto saved = run_process({save});
    if (!saved) return std::unexpected(saved.error());
    if (!saved->ok()) {
      // A family or variant this kernel lacks holds nothing; a denial is an answer we lack.
      if (saved->err.find("ermission denied") == std::string::npos) continue;
      return std::unexpected(save + ": " + saved->describe());
    }
    NodeLocalDnsRules::Place place{program, 0, {}};
    for (const auto& [table, rules] : parse_iptables_save(saved->out)) {
      std::string script;
      for (const auto& r : rules) {
        if (!r.comment.starts_with(kNodeLocalDnsCommentPrefix)) continue;
        script += "-D" + r.line.substr(2) + "\n";
        ++place.count;
        for (const auto& a : rule_addresses(r.line))
          if (std::find(found.addresses.begin(), found.addresses.end(), a) == found.addresses.end())
            found.addresses.push_back(a);
      }
      if (!script.empty()) place.restore += "*" + table + "\n" + script + "COMMIT\n";
    }
    if (place.count == 0) continue;
    found.count += place.count;
    found.where.push_back(std::move(place));
  }
  return found;
}

std::expected<void, std::string> remove_node_local_dns_rules(const NodeLocalDnsRules& found) {
  for (const auto& place : found.where) {
    const std::string restore = place.program + "-restore";
    auto r = run_process({restore, "-w", "5", "--noflush"}, place.restore);
    if (!r) return std::unexpected(r.error());
    if (!r->ok()) {
      return std::unexpected(restore + " (deleting node-local-dns's rules): " + r->describe());
    }
  }
  return {};
}

std::string Takeover::summary(const std::string& interface_name) const {
  std::string s = "took over node-local-dns's ";
  if (interface) s += "interface " + interface_name;
  if (interface && rules > 0) s += " and ";
  if (rules > 0) s += std::to_string(rules) + (rules == 1 ? " rule" : " rules");
  if (!details.empty()) {
    s += " (";
    for (std::size_t i = 0; i < details.size(); ++i)
      s += (i ? "; " : "") + details[i];
    s += ")";
  }
  return s;
}

}  // namespace localdns::node
