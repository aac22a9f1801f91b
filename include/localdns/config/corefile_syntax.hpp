// Corefile syntax (CoreDNS's Caddyfile dialect, coredns/caddy): tokens,
// server blocks, directives and their nested blocks, snippets, `import` and
// environment substitution. Standard library only (plus POSIX glob), so the
// clang libFuzzer target can build it without the rest of localdns.
//
// The lexer follows coredns/caddy: tokens are separated by white space; `#`
// starts a comment to the end of the line (anywhere outside quotes, even in
// the middle of a word); "double quotes" make one token of anything, newlines
// included, where only \" is an escape (any other backslash stays as it is).
// CoreDNS has no backtick quoting, no heredocs and no backslash line
// continuation: a backtick or a trailing backslash is an ordinary character.
// The one continuation is Caddy's: a server block key ending in a comma
// continues the key list on the next line.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace localdns::config::corefile {

struct Token {
  std::string text;  // after environment substitution
  std::string file;  // file it was read from (the main source or an imported file)
  int line = 0;
  int line_breaks = 0;  // inside a quoted token: the next token on its last line is on "its" line
  bool quoted = false;  // a quoted "{" is an argument, not a brace
};

// One directive line: NAME ARG... [{ nested directives }]. Nested directives
// are themselves NAME ARG... lines (`force_tcp`, `success 9984 30`, ...).
struct Directive {
  std::string name;
  std::vector<Token> args;
  bool has_block = false;
  std::vector<Directive> block;
  std::string file;
  int line = 0;
};

struct ServerBlock {
  std::vector<std::string> keys;  // as written (`dns://.:53`, `cluster.local:53`)
  std::vector<Directive> directives;
  std::string file;
  int line = 0;
};

// Every bound an input can hit is an error naming where it was hit.
struct Limits {
  std::size_t max_input_bytes = 1u << 20;  // per file
  std::size_t max_tokens = 200'000;        // all files and snippet expansions together
  std::size_t max_token_bytes = 64u << 10;
  int max_depth = 16;             // nested { } blocks
  int max_import_depth = 8;       // import inside imported file or snippet
  std::size_t max_imports = 256;  // import expansions in total
  std::size_t max_glob_matches = 64;
};

struct ParseOptions {
  std::string source = "Corefile";  // name used in errors
  std::string base_dir;             // relative imports resolve here ("": next to `source`)
  bool allow_file_imports = true;   // false: `import FILE` is an error (snippets still work)
  // Looks an environment variable up; unset = std::getenv.
  std::function<std::optional<std::string>(const std::string&)> getenv;
  Limits limits;
};

struct ParseResult {
  std::vector<ServerBlock> blocks;    // snippets are expanded, not listed
  std::vector<std::string> errors;    // "FILE:LINE: what"; parsing stops at the first
  std::vector<std::string> warnings;  // an import glob that matched no file
  bool ok() const { return errors.empty(); }
};

ParseResult parse(std::string_view text, const ParseOptions& opts = {});

// {$NAME}, {$NAME:default} (Caddy 2's default form) and {%NAME%}, left to
// right in one pass: a substituted value is not scanned again.
std::string substitute_env(
    std::string_view text,
    const std::function<std::optional<std::string>(const std::string&)>& get);

}  // namespace localdns::config::corefile
