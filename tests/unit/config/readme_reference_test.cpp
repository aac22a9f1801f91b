// README.md's configuration reference against the loader: every key in the
// table loads with a value the table documents for it, and every key the
// loader takes is in the table.
#include <fstream>
#include <map>
#include <set>

#include <catch2/catch.hpp>

#include <localdns/config/loader.hpp>

using namespace localdns::config;
using namespace std::chrono_literals;

namespace {
std::string all(const Errors& e) {
  std::string s;
  for (const auto& x : e)
    s += x + "\n";
  return s;
}
}  // namespace

namespace {

// The rows of README.md's "Configuration reference" table.
struct Row {
  std::string key, default_text, meaning;
};

std::vector<std::string> table_cells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  for (std::size_t i = 1; i < line.size(); ++i) {  // after the leading '|'
    if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (line[i] == '|') {
      auto b = cell.find_first_not_of(' '), e = cell.find_last_not_of(' ');
      cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  return cells;
}

std::vector<Row> readme_config_rows() {
  std::ifstream f(std::string(LOCALDNS_SOURCE_DIR) + "/README.md");
  std::string line;
  bool in_section = false, in_table = false;
  std::vector<Row> rows;
  while (std::getline(f, line)) {
    if (line.starts_with("## ")) {
      if (in_section) break;
      in_section = line == "## Configuration reference";
      continue;
    }
    if (!in_section) continue;
    if (!line.starts_with("|")) {
      if (in_table) break;
      continue;
    }
    in_table = true;
    auto cells = table_cells(line);
    if (cells.size() < 3 || !cells[0].starts_with("`")) continue;  // the header, the rule
    rows.push_back({cells[0].substr(1, cells[0].size() - 2), cells[1], cells[2]});
  }
  return rows;
}

// The `code` spans of a table cell.
std::vector<std::string> code_spans(const std::string& cell) {
  std::vector<std::string> out;
  for (auto b = cell.find('`'); b != std::string::npos; b = cell.find('`', b + 1)) {
    auto e = cell.find('`', b + 1);
    if (e == std::string::npos) break;
    out.push_back(cell.substr(b + 1, e - b - 1));
    b = e;
  }
  return out;
}

// A YAML document built from dotted keys: "forward[].tcp.max_age" sets
// max_age in the tcp mapping of the first item of the forward list.
class Doc {
 public:
  void set(const std::string& key, const std::string& value) {
    Node* n = &root_;
    std::size_t b = 0;
    while (true) {
      auto dot = key.find('.', b);
      std::string name = key.substr(b, dot == std::string::npos ? std::string::npos : dot - b);
      bool item = name.ends_with("[]");
      if (item) name.resize(name.size() - 2);
      n = &n->children[name];
      n->list = n->list || item;
      if (dot == std::string::npos) break;
      b = dot + 1;
    }
    n->value = value;
  }
  std::string text() const { return emit(root_, 0); }

 private:
  struct Node {
    std::map<std::string, Node> children;
    bool list = false;
    std::optional<std::string> value;
  };
  static std::string emit(const Node& n, std::size_t indent) {
    std::string out, pad(indent, ' ');
    for (const auto& [name, child] : n.children) {
      if (child.value && !child.list) {
        out += pad + name + ": " + *child.value + "\n";
      } else if (child.value) {
        out += pad + name + ":\n" + pad + "  - " + *child.value + "\n";
      } else if (child.list) {
        out += pad + name + ":\n" + pad + "  -\n" + emit(child, indent + 4);
      } else {
        out += pad + name + ":\n" + emit(child, indent + 2);
      }
    }
    return out;
  }
  Node root_;
};

// How errors name a key: list items by number.
std::string shown_key(std::string key) {
  for (auto p = key.find("[]"); p != std::string::npos; p = key.find("[]"))
    key.replace(p, 2, "[0]");
  return key;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t b = 0;
  while (b < s.size()) {
    auto e = s.find(", ", b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 2;
  }
  return out;
}

}  // namespace

TEST_CASE("every key of the README's configuration reference loads", "[config][docs]") {
  const auto rows = readme_config_rows();
  REQUIRE(rows.size() > 40);
  std::map<std::string, const Row*> by_key;
  for (const auto& r : rows)
    by_key[r.key] = &r;
  // The values to try for a key: its documented default when that is a
  // value (one that names another key stands for that key's default), which
  // must then load as it is; else the values its meaning shows in `code`.
  auto candidates = [&](const Row& r) {
    auto defaults = code_spans(r.default_text);
    if (defaults.empty()) return code_spans(r.meaning);
    auto v = defaults.front();
    if (auto it = by_key.find(v); it != by_key.end() && it->second != &r) {
      auto other = code_spans(it->second->default_text);
      if (!other.empty()) v = other.front();
    }
    return std::vector<std::string>{v};
  };
  auto loads = [](const Doc& d) { return load_config_text(d.text(), "readme.yaml"); };
  // A key inside a list item ("forward[].x") goes into an item that also
  // holds the keys documented as required there, each with a value that
  // draws no complaint about itself.
  auto base = [&](const std::string& key) {
    Doc doc;
    auto list = key.find("[].");
    if (list == std::string::npos) return doc;
    for (const auto& req : rows) {
      if (req.default_text != "required" || req.key == key ||
          req.key.compare(0, list + 3, key, 0, list + 3) != 0) {
        continue;
      }
      for (const auto& v : candidates(req)) {
        Doc trial = doc;
        trial.set(req.key, v);
        auto c = loads(trial);
        bool complains = false;
        for (const auto& e : c ? Errors{} : c.error()) {
          auto at = e.find(shown_key(req.key));
          complains = complains ||
                      (at != std::string::npos && e.find(": required", at) == std::string::npos);
        }
        if (!complains) {
          doc = trial;
          break;
        }
      }
    }
    return doc;
  };

  std::size_t checked = 0, compared = 0;
  for (const auto& r : rows) {
    // A section ("forward"): its keys have rows of their own.
    bool section = std::any_of(rows.begin(), rows.end(), [&](const Row& o) {
      return o.key.starts_with(r.key + ".") || o.key.starts_with(r.key + "[]");
    });
    if (section) continue;
    INFO("README key " << r.key << " (default: " << r.default_text << ")");
    auto values = candidates(r);
    REQUIRE_FALSE(values.empty());
    std::string tried;
    bool loaded = false;
    for (const auto& v : values) {
      Doc doc = base(r.key);
      doc.set(r.key, v);
      auto c = loads(doc);
      tried += "--- readme.yaml\n" + doc.text() + (c ? std::string("loads\n") : all(c.error()));
      loaded = c.has_value();
      if (loaded) break;
    }
    INFO(tried);
    CHECK(loaded);
    ++checked;
    // A documented default must be the loader's default: setting the key to
    // it changes nothing. (Defaults that name another key are inherited,
    // and stored as set, so they are not compared.)
    auto defaults = code_spans(r.default_text);
    if (!loaded || defaults.empty() || by_key.contains(defaults.front())) continue;
    Doc with = base(r.key);
    Doc without = with;
    with.set(r.key, defaults.front());
    auto a = loads(with);
    auto b = loads(without);
    if (!a || !b) continue;  // a key whose item needs it (forward[].servers)
    INFO("setting " << r.key << " to its documented default " << defaults.front()
                    << " changes the configuration");
    CHECK(*a == *b);
    ++compared;
  }
  CHECK(checked > 40);
  CHECK(compared > 30);
}

namespace {

// The keys the loader takes below `path` ("" for the top level), found
// through its own errors: an unknown key is answered with the list of the
// keys expected there. A key that is neither a mapping nor a list of
// mappings is a leaf.
void loader_keys(const std::string& path, std::set<std::string>& leaves, int depth = 0) {
  auto expected_keys = [](const std::string& at) -> std::optional<std::vector<std::string>> {
    std::string probe = at.empty() ? "zz_probe" : at + ".zz_probe";
    Doc doc;
    doc.set(probe, "1");
    auto c = load_config_text(doc.text(), "probe.yaml");
    if (c) return std::nullopt;
    const std::string marker = shown_key(probe) + ": unknown key (expected one of: ";
    for (const auto& e : c.error()) {
      if (auto m = e.find(marker); m != std::string::npos) {
        auto b = m + marker.size();
        return split_list(e.substr(b, e.find(')', b) - b));
      }
    }
    return std::nullopt;
  };
  REQUIRE(depth < 6);
  std::string at = path;
  auto keys = expected_keys(at);
  if (!keys && !path.empty()) {
    at = path + "[]";  // a list of mappings?
    keys = expected_keys(at);
  }
  if (!keys) {
    leaves.insert(path);
    return;
  }
  for (const auto& k : *keys)
    loader_keys(at.empty() ? k : at + "." + k, leaves, depth + 1);
}

}  // namespace

TEST_CASE("every key the loader takes is in the README's configuration reference",
          "[config][docs]") {
  std::set<std::string> documented;
  for (const auto& r : readme_config_rows())
    documented.insert(r.key);
  std::set<std::string> leaves;
  loader_keys("", leaves);
  REQUIRE(leaves.size() > 40);
  CHECK(leaves.count("forward[].tcp.max_age") == 1);  // the walk reaches into list items
  CHECK(leaves.count("node.interface.kind") == 1);
  for (const auto& k : leaves) {
    INFO("loader key " << k);
    CHECK(documented.count(k) == 1);
  }
}
