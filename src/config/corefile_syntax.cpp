#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <glob.h>
#include <map>
#include <memory>
#include <sstream>
#include <sys/stat.h>

#include <localdns/config/corefile_syntax.hpp>

namespace localdns::config::corefile {

namespace {

struct ParseError {
  std::string message;
};

std::string where(const std::string& file, int line) {
  return file + ":" + std::to_string(line) + ": ";
}

[[noreturn]] void fail(const std::string& file, int line, const std::string& what) {
  throw ParseError{where(file, line) + what};
}

std::vector<Token> lex(std::string_view text, const std::string& file, const Limits& limits) {
  if (text.size() > limits.max_input_bytes) {
    fail(file, 1,
         "file is larger than " + std::to_string(limits.max_input_bytes) + " bytes; refused");
  }
  std::vector<Token> out;
  std::string val;
  bool in_token = false, quoted = false, escaped = false, comment = false;
  int line = 1, token_line = 1;
  auto emit = [&] {
    if (out.size() >= limits.max_tokens) {
      fail(file, token_line, "more than " + std::to_string(limits.max_tokens) + " tokens");
    }
    out.push_back(Token{std::move(val), file, token_line, line - token_line, quoted});
    val.clear();
    in_token = false;
    quoted = false;
  };
  auto add = [&](char c) {
    if (val.size() >= limits.max_token_bytes) {
      fail(file, token_line,
           "a token is longer than " + std::to_string(limits.max_token_bytes) + " bytes");
    }
    val.push_back(c);
  };
  for (char c : text) {
    if (quoted) {
      if (escaped) {
        if (c != '"') add('\\');  // only \" is an escape
        add(c);
        escaped = false;
        if (c == '\n') ++line;
        continue;
      }
      if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        emit();
      } else {
        if (c == '\n') ++line;
        add(c);
      }
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      if (in_token) emit();
      if (c == '\n') {
        ++line;
        comment = false;
      }
      continue;
    }
    if (c == '#') comment = true;
    if (comment) continue;
    if (!in_token) {
      in_token = true;
      token_line = line;
      if (c == '"') {
        quoted = true;
        continue;
      }
    }
    add(c);
  }
  if (quoted) fail(file, token_line, "unterminated quoted string");
  if (in_token) emit();
  return out;
}

bool is(const Token* t, std::string_view text) {
  return t != nullptr && !t->quoted && t->text == text;
}

std::string dir_name(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

class Parser {
 public:
  explicit Parser(const ParseOptions& opts) : opts_(opts) {}

  void run(std::string_view text, ParseResult& result) {
    push(lex(text, opts_.source, opts_.limits), {});
    while (peek() != nullptr) {
      if (is(peek(), "import")) {
        do_import();
        continue;
      }
      server_block(result);
    }
  }

  std::vector<std::string> warnings;

 private:
  struct Source {
    std::vector<Token> tokens;
    std::size_t pos = 0;
    std::vector<std::string> chain;  // imports that led here, for cycles and depth
    int id = 0;
  };

  void push(std::vector<Token> tokens, std::vector<std::string> chain) {
    total_tokens_ += tokens.size();
    if (total_tokens_ > opts_.limits.max_tokens) {
      const Token& t = last_.file.empty() ? tokens.front() : last_;
      fail(t.file, t.line,
           "more than " + std::to_string(opts_.limits.max_tokens) +
               " tokens after imports and snippets");
    }
    if (tokens.empty()) return;
    stack_.push_back(Source{std::move(tokens), 0, std::move(chain), next_id_++});
  }

  const Token* peek() {
    while (!stack_.empty() && stack_.back().pos >= stack_.back().tokens.size())
      stack_.pop_back();
    if (stack_.empty()) return nullptr;
    return &stack_.back().tokens[stack_.back().pos];
  }

  // The next token starts a new line: a new file or snippet, or a later line.
  bool at_line_start() {
    const Token* t = peek();
    if (t == nullptr) return true;
    if (last_id_ < 0) return true;
    return stack_.back().id != last_id_ || t->line != last_.line + last_.line_breaks ||
           t->file != last_.file;
  }

  Token take() {
    peek();
    Source& s = stack_.back();
    Token t = s.tokens[s.pos++];
    last_ = t;
    last_id_ = s.id;
    return t;
  }

  Token take_substituted() {
    Token t = take();
    t.text = substitute_env(t.text, getenv_);
    return t;
  }

  std::vector<std::string> current_chain() {
    peek();
    return stack_.empty() ? std::vector<std::string>{} : stack_.back().chain;
  }

  void do_import() {
    std::vector<std::string> chain = current_chain();
    Token kw = take();
    if (peek() == nullptr || at_line_start())
      fail(kw.file, kw.line, "import needs a file, glob or snippet name");
    Token arg = take_substituted();
    if (peek() != nullptr && !at_line_start()) {
      fail(kw.file, kw.line, "import takes one argument (a file, glob or snippet name)");
    }
    if (arg.text.empty()) fail(kw.file, kw.line, "import needs a non-empty file name");
    if (++imports_ > opts_.limits.max_imports) {
      fail(kw.file, kw.line,
           "more than " + std::to_string(opts_.limits.max_imports) + " import expansions");
    }
    if (static_cast<int>(chain.size()) >= opts_.limits.max_import_depth) {
      fail(kw.file, kw.line,
           "imports nested deeper than " + std::to_string(opts_.limits.max_import_depth));
    }
    if (auto it = snippets_.find(arg.text); it != snippets_.end()) {
      std::string id = "(" + arg.text + ")";
      if (std::find(chain.begin(), chain.end(), id) != chain.end()) {
        fail(kw.file, kw.line, "snippet " + arg.text + " imports itself (an import cycle)");
      }
      chain.push_back(id);
      push(it->second, std::move(chain));
      return;
    }
    if (!opts_.allow_file_imports) {
      fail(kw.file, kw.line, "import " + arg.text + ": no such snippet (file imports are off)");
    }
    import_files(kw, arg.text, std::move(chain));
  }

  void import_files(const Token& kw, const std::string& pattern, std::vector<std::string> chain) {
    std::string dir = kw.file != opts_.source  ? dir_name(kw.file)
                      : opts_.base_dir.empty() ? dir_name(opts_.source)
                                               : opts_.base_dir;
    std::string full = pattern.front() == '/' || dir.empty() ? pattern : dir + "/" + pattern;
    auto count = [&](char c) { return std::count(full.begin(), full.end(), c); };
    bool brackets = full.find('[') != std::string::npos && full.find(']') != std::string::npos;
    if (count('*') > 1 || count('?') > 1 || brackets) {
      fail(kw.file, kw.line, "import pattern may hold one wildcard (* or ?) only: " + pattern);
    }
    bool wildcard = full.find_first_of("*?[]") != std::string::npos;
    std::vector<std::string> matches;
    glob_t g{};
    int rc = ::glob(full.c_str(), 0, nullptr, &g);
    if (rc == 0) {
      for (std::size_t i = 0; i < g.gl_pathc; ++i)
        matches.emplace_back(g.gl_pathv[i]);
    }
    ::globfree(&g);
    if (matches.empty()) {
      if (!wildcard) fail(kw.file, kw.line, "file to import not found: " + full);
      warnings.push_back(where(kw.file, kw.line) + "no file matches import " + pattern);
      return;
    }
    if (matches.size() > opts_.limits.max_glob_matches) {
      fail(kw.file, kw.line,
           "import " + pattern + " matches more than " +
               std::to_string(opts_.limits.max_glob_matches) + " files");
    }
    // Pushed last to first so that the first match is read first.
    for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
      const std::string& path = *it;
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) fail(kw.file, kw.line, "cannot import " + path);
      if (S_ISDIR(st.st_mode)) fail(kw.file, kw.line, "cannot import " + path + ": a directory");
      char* real = ::realpath(path.c_str(), nullptr);
      std::string id = real != nullptr ? real : path;
      std::free(real);
      if (std::find(chain.begin(), chain.end(), id) != chain.end() || id == main_id()) {
        fail(kw.file, kw.line, "import " + path + " is an import cycle");
      }
      std::ifstream f(path, std::ios::binary);
      if (!f) fail(kw.file, kw.line, "cannot read " + path);
      std::string data;
      data.resize(opts_.limits.max_input_bytes + 1);
      f.read(data.data(), static_cast<std::streamsize>(data.size()));
      data.resize(static_cast<std::size_t>(f.gcount()));
      auto sub = chain;
      sub.push_back(id);
      push(lex(data, path, opts_.limits), std::move(sub));
    }
  }

  // The main source, when it is a file: importing it again is a cycle.
  std::string main_id() {
    for (const std::string& path : {opts_.source, opts_.base_dir + "/" + opts_.source}) {
      char* real = ::realpath(path.c_str(), nullptr);
      std::string id = real != nullptr ? real : "";
      std::free(real);
      if (!id.empty()) return id;
    }
    return "";
  }

  void server_block(ParseResult& result) {
    ServerBlock b;
    b.file = peek()->file;
    b.line = peek()->line;
    bool expecting_another = false;
    bool first = true;
    while (true) {
      const Token* t = peek();
      if (t == nullptr) {
        if (expecting_another) fail(last_.file, last_.line, "expected another key after ','");
        break;
      }
      if (!first && !expecting_another && at_line_start()) break;
      if (!first && is(t, "import") && at_line_start()) {
        do_import();
        continue;
      }
      if (is(t, "{")) {
        if (expecting_another) {
          fail(t->file, t->line, "expected another key but found '{' (an extra comma?)");
        }
        break;
      }
      if (is(t, "}")) fail(t->file, t->line, "unexpected '}'");
      first = false;
      Token k = take_substituted();
      if (k.text.empty()) continue;
      expecting_another = k.text.back() == ',';
      if (expecting_another) k.text.pop_back();
      if (!k.text.empty()) b.keys.push_back(k.text);
    }
    if (b.keys.size() == 1 && b.keys[0].size() >= 2 && b.keys[0].front() == '(' &&
        b.keys[0].back() == ')') {
      snippet(b.keys[0].substr(1, b.keys[0].size() - 2), b);
      return;
    }
    if (b.keys.empty() && is(peek(), "{")) {
      fail(peek()->file, peek()->line, "a server block needs a zone before its '{'");
    }
    if (is(peek(), "{")) {
      Token open = take();
      directives(b.directives, 1, true, open);
    } else if (peek() != nullptr) {
      Token start = last_;
      directives(b.directives, 1, false, start);  // one block without braces, to the end
    }
    if (!b.keys.empty()) result.blocks.push_back(std::move(b));
  }

  void snippet(const std::string& name, const ServerBlock& b) {
    if (!is(peek(), "{")) fail(b.file, b.line, "snippet (" + name + ") needs a { block }");
    Token open = take();
    if (snippets_.count(name) != 0) {
      fail(b.file, b.line, "snippet (" + name + ") is declared twice");
    }
    std::vector<Token> body;
    int depth = 1;
    while (true) {
      const Token* t = peek();
      if (t == nullptr) fail(open.file, open.line, "snippet (" + name + "): '{' is never closed");
      if (is(t, "}") && --depth == 0) {
        take();
        break;
      }
      if (is(t, "{") && ++depth > opts_.limits.max_depth) {
        fail(t->file, t->line,
             "blocks nested deeper than " + std::to_string(opts_.limits.max_depth));
      }
      body.push_back(take());
    }
    snippets_.emplace(name, std::move(body));
  }

  // Directives up to the closing brace (or the end, for a block without braces).
  void directives(std::vector<Directive>& out, int depth, bool until_brace, const Token& open) {
    if (depth > opts_.limits.max_depth) {
      fail(open.file, open.line,
           "blocks nested deeper than " + std::to_string(opts_.limits.max_depth));
    }
    while (true) {
      const Token* t = peek();
      if (t == nullptr) {
        if (until_brace) fail(open.file, open.line, "'{' is never closed");
        return;
      }
      if (is(t, "}")) {
        if (!until_brace) fail(t->file, t->line, "unexpected '}' with no '{' open");
        take();
        return;
      }
      if (is(t, "{")) fail(t->file, t->line, "unexpected '{': a block follows a directive");
      if (is(t, "import")) {
        do_import();
        continue;
      }
      Directive d;
      Token name = take_substituted();
      d.name = name.text;
      d.file = name.file;
      d.line = name.line;
      while (const Token* a = peek()) {
        if (at_line_start() || is(a, "}")) break;
        if (is(a, "{")) {
          Token brace = take();
          d.has_block = true;
          directives(d.block, depth + 1, true, brace);
          break;
        }
        d.args.push_back(take_substituted());
      }
      out.push_back(std::move(d));
    }
  }

  const ParseOptions& opts_;
  std::function<std::optional<std::string>(const std::string&)> getenv_ =
      opts_.getenv ? opts_.getenv : [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  std::vector<Source> stack_;
  std::map<std::string, std::vector<Token>> snippets_;
  Token last_;
  int last_id_ = -1;
  int next_id_ = 0;
  std::size_t total_tokens_ = 0;
  std::size_t imports_ = 0;
};

}  // namespace

std::string substitute_env(
    std::string_view text,
    const std::function<std::optional<std::string>(const std::string&)>& get) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    bool unix_form = text.compare(i, 2, "{$") == 0;
    bool windows_form = text.compare(i, 2, "{%") == 0;
    if (!unix_form && !windows_form) {
      out.push_back(text[i++]);
      continue;
    }
    std::string_view end = unix_form ? "}" : "%}";
    std::size_t close = text.find(end, i + 2);
    if (close == std::string_view::npos || close == i + 2) {
      out.append(text.substr(i));  // not a reference: kept as written
      break;
    }
    std::string ref(text.substr(i + 2, close - i - 2));
    std::optional<std::string> fallback;
    if (unix_form) {
      if (auto colon = ref.find(':'); colon != std::string::npos) {
        fallback = ref.substr(colon + 1);
        ref.resize(colon);
      }
    }
    std::optional<std::string> value = ref.empty() ? std::nullopt : get(ref);
    if (value) {
      out += *value;
    } else if (fallback) {
      out += *fallback;  // Caddy 2: the default stands in for an unset variable only
    }
    i = close + end.size();
  }
  return out;
}

ParseResult parse(std::string_view text, const ParseOptions& opts) {
  ParseResult result;
  Parser p(opts);
  try {
    p.run(text, result);
  } catch (const ParseError& e) {
    result.blocks.clear();
    result.errors.push_back(e.message);
  }
  result.warnings = std::move(p.warnings);
  return result;
}

}  // namespace localdns::config::corefile
