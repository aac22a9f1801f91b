// Corefile syntax: tokens, blocks, snippets, imports, environment, errors.
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/config/corefile_syntax.hpp>

using namespace localdns::config::corefile;

namespace {

std::string all(const std::vector<std::string>& e) {
  std::string s;
  for (const auto& x : e)
    s += x + "\n";
  return s;
}

std::optional<std::string> env(const std::string& name) {
  if (name == "ZONE") return std::string("example.org");
  if (name == "SPACED") return std::string("a b");
  if (name == "EMPTY") return std::string();
  if (name == "LOOP") return std::string("{$ZONE}");
  return std::nullopt;
}

ParseOptions opts(std::string base_dir = "") {
  ParseOptions o;
  o.base_dir = std::move(base_dir);
  o.getenv = env;
  return o;
}

ParseResult ok(const std::string& text, const ParseOptions& o = opts()) {
  auto r = parse(text, o);
  INFO(text);
  INFO(all(r.errors));
  REQUIRE(r.ok());
  return r;
}

std::string error_of(const std::string& text, const ParseOptions& o = opts()) {
  auto r = parse(text, o);
  INFO(text);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.blocks.empty());
  return r.errors.front();
}

std::vector<std::string> args(const Directive& d) {
  std::vector<std::string> out;
  for (const auto& a : d.args)
    out.push_back(a.text);
  return out;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/localdns-corefile-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& name, const std::string& text) const {
    std::filesystem::create_directories((path / name).parent_path());
    std::ofstream(path / name) << text;
  }
};

}  // namespace

TEST_CASE("server blocks: several keys, transports, ports, comma continuation", "[corefile]") {
  auto r =
      ok("a.example b.example:53 {\n  whoami\n}\ndns://.:53 {\n}\nx.example,\n  y.example, "
         "z.example:1053 {\n}\n");
  REQUIRE(r.blocks.size() == 3);
  CHECK(r.blocks[0].keys == std::vector<std::string>{"a.example", "b.example:53"});
  CHECK(r.blocks[0].line == 1);
  REQUIRE(r.blocks[0].directives.size() == 1);
  CHECK(r.blocks[0].directives[0].name == "whoami");
  CHECK(r.blocks[0].directives[0].line == 2);
  CHECK(r.blocks[1].keys == std::vector<std::string>{"dns://.:53"});
  CHECK(r.blocks[1].directives.empty());
  CHECK(r.blocks[2].keys == std::vector<std::string>{"x.example", "y.example", "z.example:1053"});
  CHECK(error_of("a, {\n}\n") ==
        "Corefile:1: expected another key but found '{' (an extra comma?)");
  CHECK(error_of("a,\n") == "Corefile:1: expected another key after ','");
}

TEST_CASE("comments end at the line's end and never inside quotes", "[corefile]") {
  auto r =
      ok("# header\n. { # after the brace\n  forward . 1.2.3.4#inline\n  log \"a # b\" c\n"
         "  # whole line\n}\n");
  REQUIRE(r.blocks.size() == 1);
  const auto& ds = r.blocks[0].directives;
  REQUIRE(ds.size() == 2);
  CHECK(args(ds[0]) == std::vector<std::string>{".", "1.2.3.4"});
  CHECK(args(ds[1]) == std::vector<std::string>{"a # b", "c"});
  CHECK(ds[1].line == 4);
}

TEST_CASE("quoted tokens: \\\" is the one escape, newlines included, backticks are plain",
          "[corefile]") {
  auto r =
      ok(". {\n  x \"say \\\"hi\\\"\" \"back\\\\slash \\n\" `tick` \"\" after\n"
         "  y \"two\nlines\" same\n  z\n}\n");
  const auto& ds = r.blocks[0].directives;
  REQUIRE(ds.size() == 3);
  CHECK(args(ds[0]) ==
        std::vector<std::string>{"say \"hi\"", "back\\\\slash \\n", "`tick`", "", "after"});
  CHECK(ds[0].args[0].quoted);
  CHECK_FALSE(ds[0].args[2].quoted);
  // The token after a multi-line quoted one, on its last line, is its argument.
  CHECK(args(ds[1]) == std::vector<std::string>{"two\nlines", "same"});
  CHECK(ds[2].name == "z");
  CHECK(ds[2].line == 5);
  CHECK(error_of(". {\n  x \"open\n}\n") == "Corefile:2: unterminated quoted string");
  // A quoted brace is an argument, not a block.
  auto q = ok(". {\n  x \"{\" \"}\"\n}\n");
  CHECK(args(q.blocks[0].directives[0]) == std::vector<std::string>{"{", "}"});
}

TEST_CASE("nested blocks, on several lines or on one", "[corefile]") {
  auto r =
      ok(". {\n  forward . 1.2.3.4 { force_tcp }\n  health 127.0.0.1:8080 {\n    lameduck 5s\n"
         "  }\n  cache {\n    success 9984 30\n    denial 9984 5\n  }\n  errors\n}\n");
  const auto& ds = r.blocks[0].directives;
  REQUIRE(ds.size() == 4);
  CHECK(ds[0].has_block);
  REQUIRE(ds[0].block.size() == 1);
  CHECK(ds[0].block[0].name == "force_tcp");
  CHECK(ds[1].block[0].name == "lameduck");
  CHECK(args(ds[1].block[0]) == std::vector<std::string>{"5s"});
  REQUIRE(ds[2].block.size() == 2);
  CHECK(args(ds[2].block[1]) == std::vector<std::string>{"9984", "5"});
  CHECK(ds[2].block[1].line == 8);
  CHECK(ds[3].name == "errors");
  CHECK_FALSE(ds[3].has_block);
}

TEST_CASE("a file that is one server block needs no braces", "[corefile]") {
  auto r = ok(".:53\nforward . 8.8.8.8\ncache 30\n");
  REQUIRE(r.blocks.size() == 1);
  CHECK(r.blocks[0].keys == std::vector<std::string>{".:53"});
  REQUIRE(r.blocks[0].directives.size() == 2);
  CHECK(r.blocks[0].directives[1].name == "cache");
  CHECK(error_of(".:53\nforward . 8.8.8.8\n}\n") == "Corefile:3: unexpected '}' with no '{' open");
}

TEST_CASE("snippets are imported by name, once declared", "[corefile]") {
  auto r =
      ok("(common) {\n  errors\n  cache {\n    success 10 20\n  }\n}\na.example {\n"
         "  import common\n  forward . 1.1.1.1\n}\nb.example {\n  import common\n}\n");
  REQUIRE(r.blocks.size() == 2);
  const auto& a = r.blocks[0].directives;
  REQUIRE(a.size() == 3);
  CHECK(a[0].name == "errors");
  CHECK(a[0].line == 2);  // where the snippet says it
  CHECK(a[1].block[0].name == "success");
  CHECK(a[2].name == "forward");
  CHECK(r.blocks[1].directives.size() == 2);
  CHECK(error_of("(s) {\n  x\n}\n(s) {\n  y\n}\n") == "Corefile:4: snippet (s) is declared twice");
  CHECK(error_of("(s) {\n  import s\n}\n. {\n  import s\n}\n") ==
        "Corefile:2: snippet s imports itself (an import cycle)");
  CHECK(error_of("(a) {\n  import b\n}\n(b) {\n  import a\n}\n. {\n  import a\n}\n") ==
        "Corefile:5: snippet a imports itself (an import cycle)");
  CHECK(error_of("(s)\n") == "Corefile:1: snippet (s) needs a { block }");
  CHECK(error_of(". {\n  import\n}\n") == "Corefile:2: import needs a file, glob or snippet name");
  CHECK(error_of(". {\n  import a b\n}\n") ==
        "Corefile:2: import takes one argument (a file, glob or snippet name)");
}

TEST_CASE("imports read files and globs next to the importing file", "[corefile]") {
  TempDir dir;
  dir.write("Corefile", "import blocks/*.server\n. {\n  import plugins\n}\n");
  dir.write("plugins", "errors\nimport sub/more\n");
  dir.write("sub/more", "log\n");
  dir.write("blocks/a.server", "a.example {\n  forward . 1.1.1.1\n}\n");
  dir.write("blocks/b.server", "b.example {\n  forward . 2.2.2.2\n}\n");
  auto o = opts(dir.path.string());
  auto r = ok("import blocks/*.server\n. {\n  import plugins\n}\n", o);
  REQUIRE(r.blocks.size() == 3);
  CHECK(r.blocks[0].keys == std::vector<std::string>{"a.example"});
  CHECK(r.blocks[0].file == (dir.path / "blocks/a.server").string());
  CHECK(r.blocks[1].keys == std::vector<std::string>{"b.example"});
  REQUIRE(r.blocks[2].directives.size() == 2);
  CHECK(r.blocks[2].directives[0].name == "errors");
  CHECK(r.blocks[2].directives[1].name == "log");  // sub/more, relative to plugins' directory
  CHECK(r.blocks[2].directives[1].file == (dir.path / "sub/more").string());

  CHECK(error_of(". {\n  import missing\n}\n", o) ==
        "Corefile:2: file to import not found: " + (dir.path / "missing").string());
  auto none = parse(". {\n  import nothing/*.conf\n}\n", o);
  CHECK(none.ok());
  CHECK(none.warnings ==
        std::vector<std::string>{"Corefile:2: no file matches import nothing/*.conf"});
  CHECK(error_of(". {\n  import */*.conf\n}\n", o) ==
        "Corefile:2: import pattern may hold one wildcard (* or ?) only: */*.conf");
  CHECK(error_of(". {\n  import blocks\n}\n", o) ==
        "Corefile:2: cannot import " + (dir.path / "blocks").string() + ": a directory");

  dir.write("loop1", "import loop2\n");
  dir.write("loop2", "import loop1\n");
  CHECK(error_of(". {\n  import loop1\n}\n", o) == (dir.path / "loop2").string() + ":1: import " +
                                                       (dir.path / "loop1").string() +
                                                       " is an import cycle");
  // The main file importing itself.
  o.source = "Corefile";
  CHECK(error_of("import Corefile\n", o) ==
        "Corefile:1: import " + (dir.path / "Corefile").string() + " is an import cycle");

  auto off = o;
  off.allow_file_imports = false;
  CHECK(error_of(". {\n  import plugins\n}\n", off) ==
        "Corefile:2: import plugins: no such snippet (file imports are off)");
}

TEST_CASE("environment: {$NAME}, {$NAME:default}, {%NAME%}, one pass", "[corefile]") {
  auto r =
      ok("{$ZONE}:53 {\n  x {$ZONE} pre{$ZONE}post {%ZONE%} {$UNSET} {$UNSET:dflt} "
         "{$EMPTY:dflt} {$SPACED} {$LOOP} {$ {$} {$open\n}\n");
  CHECK(r.blocks[0].keys == std::vector<std::string>{"example.org:53"});
  CHECK(args(r.blocks[0].directives[0]) ==
        std::vector<std::string>{"example.org", "preexample.orgpost", "example.org", "", "dflt", "",
                                 "a b", "{$ZONE}", "{$", "{$}", "{$open"});
}

TEST_CASE("every bound is an error that says where", "[corefile]") {
  std::string deep = ". {\n";
  for (int i = 0; i < 20; ++i)
    deep += "a {\n";
  CHECK(error_of(deep) == "Corefile:17: blocks nested deeper than 16");
  auto small = opts();
  small.limits.max_tokens = 10;
  CHECK(error_of(". {\n a b c d e f g h i j k\n}\n", small) == "Corefile:2: more than 10 tokens");
  small = opts();
  small.limits.max_input_bytes = 8;
  CHECK(error_of(". {\n  errors\n}\n", small) ==
        "Corefile:1: file is larger than 8 bytes; refused");
  small = opts();
  small.limits.max_imports = 3;
  CHECK(error_of("(s) {\n  x\n}\n. {\n  import s\n  import s\n  import s\n  import s\n}\n",
                 small) == "Corefile:8: more than 3 import expansions");
  small = opts();
  small.limits.max_token_bytes = 4;
  CHECK(error_of(". {\n  abcdef\n}\n", small) == "Corefile:2: a token is longer than 4 bytes");
  // Snippet expansions count against the token bound: no exponential blow-up.
  std::string bomb = "(s0) {\n  x x x x x x x x\n}\n";
  for (int i = 1; i < 8; ++i) {
    std::string prev = "s" + std::to_string(i - 1);
    bomb += "(s" + std::to_string(i) + ") {\n  import " + prev + "\n  import " + prev + "\n}\n";
  }
  bomb += ". {\n  import s7\n}\n";
  small = opts();
  small.limits.max_tokens = 500;
  CHECK(error_of(bomb, small).find("more than 500 tokens after imports and snippets") !=
        std::string::npos);
}

TEST_CASE("structural errors name the file and line", "[corefile]") {
  CHECK(error_of(". {\n  forward . 1.1.1.1 {\n    force_tcp\n}\n") ==
        "Corefile:1: '{' is never closed");
  CHECK(error_of("}\n") == "Corefile:1: unexpected '}'");
  CHECK(error_of("{\n}\n") == "Corefile:1: a server block needs a zone before its '{'");
  CHECK(error_of("\"\" {\n}\n") == "Corefile:1: a server block needs a zone before its '{'");
  CHECK(error_of(". {\n  {\n}\n") == "Corefile:2: unexpected '{': a block follows a directive");
  auto named = opts();
  named.source = "/etc/coredns/Corefile.base";
  CHECK(error_of(". {\n\n\n  x {\n", named) == "/etc/coredns/Corefile.base:4: '{' is never closed");
}
