// Internals of the Corefile translation, shared by its source files.
#pragma once

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <localdns/config/config.hpp>
#include <localdns/config/corefile.hpp>
#include <localdns/config/corefile_syntax.hpp>

namespace localdns::config::corefile::detail {

struct Dropped {
  std::string name;
  std::vector<std::string> where;  // FILE:LINE of each occurrence
  std::string reason;
};

struct Ctx {
  const TranslateOptions& opts;
  Errors errors;
  std::vector<std::string> warnings;
  std::vector<Dropped> dropped;  // one warning line per directive name

  void error(const Directive& d, const std::string& what);
  void drop(const Directive& d, const std::string& reason);
};

struct Key {
  std::string zone;
  std::uint16_t port = 53;
};

std::string loc(const Directive& d);
std::optional<Duration> go_duration(std::string_view s);
std::optional<std::uint64_t> number(std::string_view s);
std::string lower(std::string_view s);
std::optional<std::string> normalize_zone(std::string_view z);
bool within(const std::string& name, const std::string& zone);
std::optional<Key> parse_key(std::string_view key, std::uint16_t default_port, std::string& err);
std::optional<Endpoint> listen_address(std::string_view text, std::uint16_t default_port, bool v6,
                                       bool& wildcard);

// One block's cache plugin, CoreDNS's defaults (plugin/cache/setup.go).
struct BlockCache {
  bool present = false;
  Duration pttl = std::chrono::hours(1), nttl = std::chrono::minutes(30);
  Duration minpttl = std::chrono::seconds(5), minnttl = std::chrono::seconds(5);
  std::size_t pcap = 9984, ncap = 9984;
  bool disable_success = false, disable_denial = false;
  std::optional<std::pair<unsigned, unsigned>> prefetch;  // hits, percent
  std::optional<Duration> serve_stale;
  bool stale_immediate = true;
  Duration servfail = std::chrono::seconds(5);
};

bool in_range(Ctx& ctx, const Directive& d, std::string_view what, Duration v, Duration lo,
              Duration hi);
std::optional<Duration> duration_arg(Ctx& ctx, const Directive& d, std::size_t i);
std::optional<std::uint64_t> count_arg(Ctx& ctx, const Directive& d, std::size_t i,
                                       std::uint64_t lo, std::uint64_t hi);
// Drops `sub` of `parent` under the name "PARENT SUB".
void drop_sub(Ctx& ctx, const Directive& parent, const Directive& sub, const std::string& reason);

void parse_cache(Ctx& ctx, const Directive& d, const std::vector<std::string>& zones,
                 BlockCache& bc);
// The global cache settings from the blocks that have a cache.
void finish_cache(Ctx& ctx, const std::vector<BlockCache>& caches,
                  const std::vector<std::string>& uncached, Config& c);

// Fills c.listen, c.forward, c.cache, c.health, c.metrics, ... from the blocks.
void translate_blocks(Ctx& ctx, const std::vector<ServerBlock>& blocks, Config& c);

}  // namespace localdns::config::corefile::detail
