// Private to the doctor checks (checks*.cpp): text helpers and Check
// helpers they share. Pure functions, any thread.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include <localdns/doctor/checks.hpp>

namespace localdns::doctor::detail {

inline std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    auto nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

inline std::vector<std::string_view> split_ws(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
      ++i;
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
      ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

inline std::string fmt_rate(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v >= 10 || v == 0 ? "%.0f" : "%.2f", v);
  return buf;
}

inline std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v)
    out += (out.empty() ? "" : std::string(sep)) + s;
  return out;
}

inline bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

inline bool link_local_text(const std::string& a) {
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(a, ec);
  return !ec && node::is_link_local(addr);
}

inline const Fact* fact(const Check& c, const std::string& key) {
  auto it = c.facts.find(key);
  return it == c.facts.end() ? nullptr : &it->second;
}
inline std::int64_t fact_int(const std::vector<Check>& checks, const std::string& check,
                             const std::string& key) {
  for (const auto& c : checks) {
    if (c.key != check) continue;
    if (const auto* f = fact(c, key)) {
      if (const auto* i = std::get_if<std::int64_t>(f)) return *i;
      if (const auto* b = std::get_if<bool>(f)) return *b ? 1 : 0;
    }
  }
  return 0;
}
inline const Check* find(const std::vector<Check>& checks, const std::string& key) {
  for (const auto& c : checks)
    if (c.key == key) return &c;
  return nullptr;
}

inline Check make_check(int id, std::string key, std::string name) {
  Check c;
  c.id = id;
  c.key = std::move(key);
  c.name = std::move(name);
  return c;
}

}  // namespace localdns::doctor::detail
