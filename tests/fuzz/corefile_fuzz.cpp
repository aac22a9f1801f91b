// libFuzzer target: arbitrary bytes as a Corefile, through the syntax parser
// (file imports off; snippets, environment substitution and every bound on).
// A parse either fails with "fuzz:LINE: what" errors and no blocks, or gives
// a tree that, written back out with every token quoted, parses to the same
// tree (where the text allows it: no backslash, no substitution left).
// Build and run: tests/fuzz/run.sh [SECONDS]
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <localdns/config/corefile_syntax.hpp>

using namespace localdns::config::corefile;

namespace {

#define check(ok)                                                          \
  do {                                                                     \
    if (!(ok)) {                                                           \
      std::fprintf(stderr, "check failed: %s (line %d)\n", #ok, __LINE__); \
      std::abort();                                                        \
    }                                                                      \
  } while (0)

std::optional<std::string> fake_env(const std::string& name) {
  if (name.size() == 1 && name[0] >= 'A' && name[0] <= 'Z') return "v" + name;
  if (name == "EMPTY") return std::string();
  return std::nullopt;
}

ParseOptions options(std::size_t input_bytes) {
  ParseOptions o;
  o.source = "fuzz";
  o.allow_file_imports = false;
  o.getenv = fake_env;
  o.limits.max_input_bytes = input_bytes;
  o.limits.max_tokens = 20'000;
  o.limits.max_depth = 8;
  o.limits.max_imports = 64;
  return o;
}

bool plain(const std::string& s) {
  return s.find('\\') == std::string::npos && s.find("{$") == std::string::npos &&
         s.find("{%") == std::string::npos;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool write_directives(const std::vector<Directive>& ds, int depth, std::string& out) {
  for (const auto& d : ds) {
    check(depth <= 8);
    check(d.line >= 1);
    if (!plain(d.name)) return false;
    out += quote(d.name);
    for (const auto& a : d.args) {
      if (!plain(a.text)) return false;
      out += " " + quote(a.text);
    }
    if (d.has_block) {
      out += " {\n";
      if (!write_directives(d.block, depth + 1, out)) return false;
      out += "}";
    } else {
      check(d.block.empty());
    }
    out += "\n";
  }
  return true;
}

bool same(const std::vector<Directive>& a, const std::vector<Directive>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].has_block != b[i].has_block) return false;
    if (a[i].args.size() != b[i].args.size()) return false;
    for (std::size_t k = 0; k < a[i].args.size(); ++k) {
      if (a[i].args[k].text != b[i].args[k].text) return false;
    }
    if (!same(a[i].block, b[i].block)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  ParseResult r = parse(text, options(64 * 1024));
  if (!r.ok()) {
    check(r.blocks.empty());
    for (const auto& e : r.errors) {
      check(e.rfind("fuzz:", 0) == 0);
      std::size_t i = 5;
      while (i < e.size() && e[i] >= '0' && e[i] <= '9')
        ++i;
      check(i > 5 && i + 1 < e.size() && e[i] == ':' && e[i + 1] == ' ');
    }
    return 0;
  }
  std::string out;
  for (const auto& b : r.blocks) {
    check(!b.keys.empty());
    for (const auto& k : b.keys) {
      check(!k.empty());
      if (!plain(k) || k.back() == ',' || k.front() == '(') return 0;
      out += quote(k) + " ";
    }
    out += "{\n";
    if (!write_directives(b.directives, 1, out)) return 0;
    out += "}\n";
  }
  ParseResult again = parse(out, options(16 * 64 * 1024));
  if (!again.ok()) {
    std::fprintf(stderr, "re-parse failed: %s\n%s\n", again.errors.front().c_str(), out.c_str());
    std::abort();
  }
  check(again.blocks.size() == r.blocks.size());
  for (std::size_t i = 0; i < r.blocks.size(); ++i) {
    check(again.blocks[i].keys == r.blocks[i].keys);
    check(same(again.blocks[i].directives, r.blocks[i].directives));
  }
  return 0;
}
