// How long an upstream answer may be cached (RFC 1035 7.3, RFC 2308 5).
// Pure functions; thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include <localdns/dns/message.hpp>

namespace localdns::cache {

struct TtlPolicy {
  std::uint32_t min_ttl = 0;            // seconds; 0 never raises a short TTL
  std::uint32_t max_ttl = 3600;         // positive answers
  std::uint32_t denial_max_ttl = 1800;  // NXDOMAIN and NODATA
  std::uint32_t servfail_ttl = 0;       // SERVFAIL; 0 = not cached
  std::uint32_t stale_window = 0;       // RFC 8767 serve-stale; 0 = off
};

enum class AnswerKind : std::uint8_t { Positive, NxDomain, NoData, ServFail, Uncacheable };

struct Lifetime {
  AnswerKind kind = AnswerKind::Uncacheable;
  std::uint32_t seconds = 0;
};

// Positive: the smallest answer TTL clamped to [min_ttl, max_ttl]. Negative:
// min(SOA TTL, SOA MINIMUM) from the authority section, clamped to
// denial_max_ttl; without an SOA, not cached. TC=1, other RCODEs (the full
// 12-bit RCODE: extended ones included) and unparseable answers are never
// cached. TTLs with the top bit set count as 0 (RFC 2181 8). Reads only the
// view: parse_response gathered the TTLs and the SOA on its walk.
Lifetime cache_lifetime(const dns::ResponseView& rv, const TtlPolicy& policy);

}  // namespace localdns::cache
