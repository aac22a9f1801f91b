// Private to the config loader: the YAML reader its files share (loader.cpp,
// loader_clients.cpp), and messages the reader and the cross-field checks
// (loader_validate.cpp) share. Pure functions, any thread.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include <localdns/config/config.hpp>
#include <localdns/config/duration.hpp>
#include <localdns/config/loader.hpp>

namespace localdns::config {

inline std::string too_many_servers(std::size_t n) {
  return std::to_string(n) + " servers; a group takes at most " +
         std::to_string(kMaxServersPerGroup);
}

// Walks the YAML tree and records every error with its line.
class Reader {
 public:
  Reader(std::string_view source, Errors& errors) : source_(source), errors_(errors) {}

  void error(const YAML::Node& at, const std::string& path, const std::string& msg) {
    std::string where(source_);
    if (at.IsDefined() && at.Mark().line >= 0) where += ":" + std::to_string(at.Mark().line + 1);
    errors_.push_back(where + ": " + (path.empty() ? "(top level)" : path) + ": " + msg);
  }

  bool expect_map(const YAML::Node& n, const std::string& path,
                  std::initializer_list<std::string_view> keys) {
    if (!n.IsMap()) {
      error(n, path, "expected a mapping");
      return false;
    }
    for (const auto& kv : n) {
      auto key = kv.first.as<std::string>();
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        std::string allowed;
        for (auto k : keys)
          allowed += (allowed.empty() ? "" : ", ") + std::string(k);
        error(kv.first, join(path, key), "unknown key (expected one of: " + allowed + ")");
      }
    }
    return true;
  }

  std::optional<std::string> scalar(const YAML::Node& n, const std::string& path) {
    if (!n.IsScalar()) {
      error(n, path, "expected a single value");
      return std::nullopt;
    }
    return n.Scalar();
  }

  void boolean(const YAML::Node& n, const std::string& path, bool& out) {
    auto s = scalar(n, path);
    if (!s) return;
    if (*s == "true") {
      out = true;
    } else if (*s == "false") {
      out = false;
    } else {
      error(n, path, "expected true or false, got '" + *s + "'");
    }
  }

  template <class Int>
  void integer(const YAML::Node& n, const std::string& path, Int& out, Int lo, Int hi) {
    auto s = scalar(n, path);
    if (!s) return;
    long long v = 0;
    auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (ec != std::errc{} || ptr != s->data() + s->size()) {
      error(n, path, "expected an integer, got '" + *s + "'");
    } else if (v < static_cast<long long>(lo) || v > static_cast<long long>(hi)) {
      error(n, path,
            "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + *s);
    } else {
      out = static_cast<Int>(v);
    }
  }

  void duration(const YAML::Node& n, const std::string& path, Duration& out, Duration lo,
                Duration hi) {
    auto s = scalar(n, path);
    if (!s) return;
    auto d = parse_duration(*s);
    if (!d) {
      error(n, path, "expected a duration like 1500ms, 1.5s or 2m, got '" + *s + "'");
    } else if (*d < lo || *d > hi) {
      error(n, path, "must be between " + format_duration(lo) + " and " + format_duration(hi));
    } else {
      out = *d;
    }
  }

  template <class Enum, std::size_t N>
  void choice(const YAML::Node& n, const std::string& path, Enum& out,
              const std::pair<std::string_view, Enum> (&options)[N]) {
    auto s = scalar(n, path);
    if (!s) return;
    std::string names;
    for (const auto& [name, value] : options) {
      if (*s == name) {
        out = value;
        return;
      }
      names += (names.empty() ? "" : ", ") + std::string(name);
    }
    error(n, path, "expected one of " + names + ", got '" + *s + "'");
  }

  std::vector<YAML::Node> list(const YAML::Node& n, const std::string& path) {
    std::vector<YAML::Node> out;
    if (n.IsScalar()) {
      out.push_back(n);  // a single item may stand for a one-item list
    } else if (n.IsSequence()) {
      for (const auto& item : n)
        out.push_back(item);
    } else {
      error(n, path, "expected a list");
    }
    return out;
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }
  static std::string index(const std::string& path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

 private:
  std::string_view source_;
  Errors& errors_;
};

// The `clients` section (loader_clients.cpp).
void read_clients(Reader& r, const YAML::Node& n, ClientsConfig& c);
// The `search_path` section (loader_search_path.cpp).
void read_search_path(Reader& r, const YAML::Node& n, SearchPathConfig& c);

}  // namespace localdns::config
