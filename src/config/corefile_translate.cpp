// A Corefile's server blocks to localdns's Config. Every choice is listed in
// README.md, "Migrating from node-local-dns: the Corefile".
#include "corefile_translate.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <sys/stat.h>

#include <localdns/config/corefile.hpp>
#include <localdns/config/corefile_syntax.hpp>
#include <localdns/config/duration.hpp>

namespace localdns::config::corefile {

using namespace std::chrono_literals;
namespace detail {

std::string loc(const Directive& d) {
  return d.file + ":" + std::to_string(d.line);
}

void Ctx::error(const Directive& d, const std::string& what) {
  errors.push_back(loc(d) + ": " + d.name + ": " + what);
}

void Ctx::drop(const Directive& d, const std::string& reason) {
  for (auto& e : dropped) {
    if (e.name == d.name) {
      e.where.push_back(loc(d));
      return;
    }
  }
  dropped.push_back({d.name, {loc(d)}, reason});
}

// Go's time.ParseDuration: "300ms", "1.5s", "2m30s", "0".
std::optional<Duration> go_duration(std::string_view s) {
  if (s == "0") return Duration(0);
  if (s.empty()) return std::nullopt;
  double total_ns = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t start = i;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
      ++i;
    if (i == start) return std::nullopt;
    double v = 0;
    auto [p, ec] = std::from_chars(s.data() + start, s.data() + i, v);
    if (ec != std::errc{} || p != s.data() + i) return std::nullopt;
    std::size_t ustart = i;
    while (i < s.size() && !((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
      ++i;
    std::string_view unit = s.substr(ustart, i - ustart);
    double mult = 0;
    if (unit == "ns") {
      mult = 1;
    } else if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xce\xbcs") {
      mult = 1e3;
    } else if (unit == "ms") {
      mult = 1e6;
    } else if (unit == "s") {
      mult = 1e9;
    } else if (unit == "m") {
      mult = 60e9;
    } else if (unit == "h") {
      mult = 3600e9;
    } else {
      return std::nullopt;
    }
    total_ns += v * mult;
    if (!std::isfinite(total_ns) || total_ns > 1e18) return std::nullopt;
  }
  return Duration(static_cast<Duration::rep>(std::llround(total_ns / 1e6)));
}

std::optional<std::uint64_t> number(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A zone as localdns writes it: lower case, trailing dot.
std::optional<std::string> normalize_zone(std::string_view z) {
  std::string s = lower(z);
  if (s.empty() || s == ".") return std::string(".");
  if (s.back() != '.') s.push_back('.');
  if (s.size() > 254) return std::nullopt;
  std::size_t start = 0;
  while (start < s.size()) {
    std::size_t dot = s.find('.', start);
    if (dot == start || dot - start > 63) return std::nullopt;
    for (std::size_t i = start; i < dot; ++i) {
      char c = s[i];
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '*')) {
        return std::nullopt;
      }
    }
    start = dot + 1;
  }
  return s;
}

bool within(const std::string& name, const std::string& zone) {
  if (zone == ".") return true;
  if (name.size() < zone.size()) return false;
  if (name.compare(name.size() - zone.size(), zone.size(), zone) != 0) return false;
  return name.size() == zone.size() || name[name.size() - zone.size() - 1] == '.';
}

std::optional<Key> parse_key(std::string_view key, std::uint16_t default_port, std::string& err) {
  std::string s = lower(key);
  if (s.starts_with("dns://")) {
    s.erase(0, 6);
  } else if (auto p = s.find("://"); p != std::string::npos) {
    err =
        "transport " + s.substr(0, p + 3) + " is not supported: localdns serves plain DNS (dns://)";
    return std::nullopt;
  }
  Key k{".", default_port};
  if (auto colon = s.rfind(':'); colon != std::string::npos) {
    auto port = number(std::string_view(s).substr(colon + 1));
    if (!port || *port == 0 || *port > 65535) {
      err = "'" + std::string(key) + "': the port must be a number from 1 to 65535";
      return std::nullopt;
    }
    k.port = static_cast<std::uint16_t>(*port);
    s.resize(colon);
  }
  if (s.find('/') != std::string::npos) {
    err = "'" + std::string(key) +
          "': network keys (reverse zones from a CIDR) are not supported; write the in-addr.arpa "
          "or ip6.arpa zone";
    return std::nullopt;
  }
  auto zone = normalize_zone(s);
  if (!zone) {
    err = "'" + std::string(key) + "' is not a zone name";
    return std::nullopt;
  }
  k.zone = *zone;
  return k;
}

// "ADDR:PORT", "[V6]:PORT" or ":PORT" (every address: the family of `family`).
std::optional<Endpoint> listen_address(std::string_view text, std::uint16_t default_port, bool v6,
                                       bool& wildcard) {
  wildcard = false;
  if (text.empty()) return std::nullopt;
  if (text.front() == ':') {
    auto port = number(text.substr(1));
    if (!port || *port == 0 || *port > 65535) return std::nullopt;
    wildcard = true;
    return Endpoint{boost::asio::ip::make_address(v6 ? "::" : "0.0.0.0"),
                    static_cast<std::uint16_t>(*port)};
  }
  std::string host(text);
  if (text.starts_with("localhost:")) host = "127.0.0.1" + std::string(text.substr(9));
  auto ep = parse_endpoint(host, default_port);
  if (ep && ep->address.is_unspecified()) wildcard = true;
  return ep;
}

bool in_range(Ctx& ctx, const Directive& d, std::string_view what, Duration v, Duration lo,
              Duration hi) {
  if (v >= lo && v <= hi) return true;
  ctx.error(d, std::string(what) + " " + format_duration(v) + " is outside localdns's range " +
                   format_duration(lo) + " to " + format_duration(hi));
  return false;
}

std::optional<Duration> duration_arg(Ctx& ctx, const Directive& d, std::size_t i) {
  if (i >= d.args.size()) {
    ctx.error(d, "needs a duration");
    return std::nullopt;
  }
  auto v = go_duration(d.args[i].text);
  if (!v) ctx.error(d, "'" + d.args[i].text + "' is not a duration (like 500ms, 5s or 1m)");
  return v;
}

std::optional<std::uint64_t> count_arg(Ctx& ctx, const Directive& d, std::size_t i,
                                       std::uint64_t lo, std::uint64_t hi) {
  if (i >= d.args.size()) {
    ctx.error(d, "needs a number");
    return std::nullopt;
  }
  auto v = number(d.args[i].text);
  if (!v || *v < lo || *v > hi) {
    ctx.error(d, "'" + d.args[i].text + "' must be a number from " + std::to_string(lo) + " to " +
                     std::to_string(hi));
    return std::nullopt;
  }
  return v;
}

void drop_sub(Ctx& ctx, const Directive& parent, const Directive& sub, const std::string& reason) {
  Directive named = sub;
  named.name = parent.name + " " + sub.name;
  ctx.drop(named, reason);
}

}  // namespace detail

using namespace detail;

std::expected<Translation, Errors> translate(std::string_view text, const TranslateOptions& opts) {
  ParseOptions po;
  po.source = opts.source;
  po.base_dir = opts.base_dir;
  po.allow_file_imports = opts.allow_file_imports;
  ParseResult parsed = parse(text, po);
  if (!parsed.ok()) return std::unexpected(parsed.errors);
  Ctx ctx{opts, {}, {}, {}};
  for (auto& w : parsed.warnings)
    ctx.warnings.push_back(w);
  Translation out;
  out.config = default_config();
  // node-cache installs no DNAT: while it is down, queries to its addresses
  // go unanswered. In its template the `.` group is the node's own resolver
  // (`forward . /etc/resolv.conf`), which does not know the cluster's names,
  // so no fallback (a YAML file, node.rules.fallback, can ask for one).
  out.config.node.fallback_auto = false;
  translate_blocks(ctx, parsed.blocks, out.config);
  if (!ctx.errors.empty()) return std::unexpected(std::move(ctx.errors));
  for (const auto& d : ctx.dropped) {
    std::string where;
    for (std::size_t i = 0; i < d.where.size(); ++i)
      where += (i > 0 ? ", " : "") + d.where[i];
    ctx.warnings.push_back("directive " + d.name + " at " + where +
                           " is not carried over: " + d.reason);
  }
  out.warnings = std::move(ctx.warnings);
  return out;
}

std::expected<Translation, Errors> translate_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return std::unexpected(Errors{path + ": cannot open the Corefile"});
  }
  if (!S_ISREG(st.st_mode)) return std::unexpected(Errors{path + ": not a regular file"});
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::unexpected(Errors{path + ": cannot open the Corefile"});
  // One byte past the parser's bound, so that the parser names the excess.
  std::string data(Limits{}.max_input_bytes + 1, '\0');
  f.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<std::size_t>(f.gcount()));
  TranslateOptions opts;
  opts.source = path;
  auto slash = path.rfind('/');
  opts.base_dir = slash == std::string::npos ? "" : path.substr(0, slash == 0 ? 1 : slash);
  return translate(data, opts);
}

}  // namespace localdns::config::corefile
