// The cache plugin: per block, and what one shared cache makes of them.
#include <algorithm>

#include <localdns/config/duration.hpp>

#include "corefile_translate.hpp"

namespace localdns::config::corefile::detail {

using namespace std::chrono_literals;

void parse_cache(Ctx& ctx, const Directive& d, const std::vector<std::string>& zones,
                 BlockCache& bc) {
  if (bc.present) {
    ctx.error(d, "given twice in one server block");
    return;
  }
  bc.present = true;
  std::size_t first_zone = 0;
  if (!d.args.empty()) {
    if (auto ttl = number(d.args[0].text)) {
      if (*ttl == 0 || *ttl > 7 * 24 * 3600) {
        ctx.error(d, "TTL " + d.args[0].text + " must be from 1 to 604800 seconds");
      }
      bc.pttl = bc.nttl = Duration(std::chrono::seconds(*ttl));
      first_zone = 1;
    }
  }
  for (std::size_t i = first_zone; i < d.args.size(); ++i) {
    auto z = normalize_zone(d.args[i].text);
    if (!z) {
      ctx.error(d, "'" + d.args[i].text + "' is neither a TTL nor a zone");
    } else if (std::find(zones.begin(), zones.end(), *z) == zones.end()) {
      Directive named = d;
      named.name = "cache ZONES";
      ctx.drop(named, "localdns caches every zone of the block's group");
      break;
    }
  }
  for (const auto& sub : d.block) {
    const std::string& p = sub.name;
    if (p == "success" || p == "denial") {
      auto cap = count_arg(ctx, sub, 0, 1, 100'000'000);
      std::optional<std::uint64_t> ttl, min;
      if (sub.args.size() > 1) ttl = count_arg(ctx, sub, 1, 1, 7 * 24 * 3600);
      if (sub.args.size() > 2) min = count_arg(ctx, sub, 2, 0, 24 * 3600);
      if (sub.args.size() > 3) ctx.error(sub, "takes CAPACITY [TTL [MINTTL]]");
      (p == "success" ? bc.pcap : bc.ncap) = cap.value_or(9984);
      if (ttl) (p == "success" ? bc.pttl : bc.nttl) = std::chrono::seconds(*ttl);
      if (min) (p == "success" ? bc.minpttl : bc.minnttl) = std::chrono::seconds(*min);
    } else if (p == "prefetch") {
      auto hits = count_arg(ctx, sub, 0, 1, 1'000'000);
      unsigned pct = 10;
      for (std::size_t i = 1; i < sub.args.size(); ++i) {
        const std::string& a = sub.args[i].text;
        if (!a.empty() && a.back() == '%') {
          auto v = number(std::string_view(a).substr(0, a.size() - 1));
          if (!v || *v < 10 || *v > 90) {
            ctx.error(sub, "percentage '" + a + "' must be from 10% to 90%");
          } else {
            pct = static_cast<unsigned>(*v);
          }
        } else if (go_duration(a)) {
          drop_sub(ctx, d, sub,
                   "localdns's prefetch has no DURATION: it counts hits over the entry's lifetime");
        } else {
          ctx.error(sub, "'" + a + "' is neither a duration nor a percentage");
        }
      }
      if (hits) bc.prefetch = std::pair{static_cast<unsigned>(*hits), pct};
    } else if (p == "serve_stale") {
      Duration dur = 1h;
      if (!sub.args.empty()) {
        if (auto v = duration_arg(ctx, sub, 0)) {
          if (in_range(ctx, sub, "serve_stale", *v, 0ms, 7 * 24h)) dur = *v;
        }
      }
      if (sub.args.size() > 1) {
        const std::string& mode = sub.args[1].text;
        if (mode == "verify") {
          bc.stale_immediate = false;
        } else if (mode != "immediate") {
          ctx.error(sub, "expected immediate or verify, got '" + mode + "'");
        }
      }
      bc.serve_stale = dur;
    } else if (p == "servfail") {
      if (auto v = duration_arg(ctx, sub, 0)) {
        if (in_range(ctx, sub, "servfail", *v, 0ms, 5min)) bc.servfail = *v;
      }
    } else if (p == "disable") {
      std::string what = sub.args.empty() ? "" : sub.args[0].text;
      if (what == "success") {
        bc.disable_success = true;
      } else if (what == "denial") {
        bc.disable_denial = true;
      } else {
        ctx.error(sub, "expected success or denial, got '" + what + "'");
      }
    } else if (p == "keepttl") {
      drop_sub(ctx, d, sub, "localdns answers from its cache with the remaining TTL");
    } else {
      ctx.error(sub, "unknown cache property");
    }
  }
}

void finish_cache(Ctx& ctx, const std::vector<BlockCache>& caches,
                  const std::vector<std::string>& uncached, Config& c) {
  if (caches.empty()) {
    c.cache.enabled = false;  // CoreDNS caches nothing without the plugin
    return;
  }
  for (const auto& w : uncached)
    ctx.warnings.push_back(w);
  std::size_t entries = 0;
  std::string parts;
  Duration min_ttl = caches.front().minpttl;
  bool min_ttl_differs = false, denial_min = false, servfail = false, disabled = false;
  bool stale_immediate = false;
  for (const auto& bc : caches) {
    std::size_t n = (bc.disable_success ? 0 : bc.pcap) + (bc.disable_denial ? 0 : bc.ncap);
    entries += n;
    parts += (parts.empty() ? "" : " + ") + std::to_string(n);
    if (bc.minpttl != min_ttl) min_ttl_differs = true;
    min_ttl = std::min(min_ttl, bc.minpttl);
    denial_min = denial_min || bc.minnttl > 0s;
    servfail = servfail || bc.servfail > 0s;
    disabled = disabled || bc.disable_success || bc.disable_denial;
    stale_immediate = stale_immediate || (bc.serve_stale && bc.stale_immediate);
  }
  constexpr std::size_t kMaxEntries = 100'000'000;  // the loader's bound
  if (entries > kMaxEntries) {
    ctx.warnings.push_back("cache: the capacities add up to " + std::to_string(entries) +
                           " entries; localdns's cache.max_entries is at most " +
                           std::to_string(kMaxEntries));
    entries = kMaxEntries;
  }
  c.cache.max_entries = std::max<std::size_t>(entries, 1);
  c.cache.min_ttl = min_ttl;
  if (caches.size() > 1) {
    ctx.warnings.push_back("cache: CoreDNS keeps one cache per server block (" +
                           std::to_string(caches.size()) + " caches: " + parts +
                           " entries); localdns shares one cache of cache.max_entries " +
                           std::to_string(entries) + " (and cache.max_bytes " +
                           std::to_string(c.cache.max_bytes) + ") across all zones");
  }
  if (min_ttl_differs) {
    ctx.warnings.push_back(
        "cache: the server blocks raise short TTLs to different minimums; "
        "localdns has one, cache.min_ttl " +
        format_duration(min_ttl) + " (the smallest)");
  }
  if (denial_min) {
    ctx.warnings.push_back(
        "cache: CoreDNS raises negative-answer TTLs below the denial MINTTL "
        "(default 5s); localdns keeps the shorter TTL the SOA gives");
  }
  if (servfail) {
    ctx.warnings.push_back(
        "cache: CoreDNS caches SERVFAIL answers (servfail, default 5s); "
        "localdns never caches SERVFAIL");
  }
  if (disabled) {
    ctx.warnings.push_back(
        "cache: disable success|denial is not carried over: localdns caches "
        "both kinds of answer in every zone");
  }
  if (stale_immediate) {
    ctx.warnings.push_back(
        "cache: serve_stale immediate (CoreDNS's default mode) answers from an "
        "expired entry while refreshing it; localdns serves an expired entry "
        "only when every upstream attempt fails (as serve_stale verify)");
  }
  std::optional<std::pair<unsigned, unsigned>> prefetch;
  bool prefetch_differs = false;
  for (const auto& bc : caches) {
    if (!bc.prefetch) {
      prefetch_differs = prefetch_differs || prefetch.has_value();
      continue;
    }
    if (prefetch && *prefetch != *bc.prefetch) prefetch_differs = true;
    if (!prefetch) prefetch = bc.prefetch;
  }
  if (prefetch) {
    c.cache.prefetch_hits = prefetch->first;
    c.cache.prefetch_percent = prefetch->second;
    if (prefetch_differs || !std::all_of(caches.begin(), caches.end(),
                                         [](const BlockCache& bc) { return bc.prefetch; })) {
      ctx.warnings.push_back("cache: localdns's prefetch is global: cache.prefetch_hits " +
                             std::to_string(prefetch->first) + ", cache.prefetch_percent " +
                             std::to_string(prefetch->second) + " apply to every zone");
    }
  } else {
    ctx.warnings.push_back(
        "cache: CoreDNS prefetches only with prefetch; localdns refreshes entries asked at least "
        "cache.prefetch_hits " +
        std::to_string(c.cache.prefetch_hits) + " times in the last cache.prefetch_percent " +
        std::to_string(c.cache.prefetch_percent) +
        "% of their lifetime (cache.prefetch_hits: 0 turns it off)");
  }
}

}  // namespace localdns::config::corefile::detail
