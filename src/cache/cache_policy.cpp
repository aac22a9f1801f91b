#include <algorithm>

#include <localdns/cache/cache_policy.hpp>

namespace localdns::cache {

Lifetime cache_lifetime(const dns::ResponseView& rv, const TtlPolicy& policy) {
  const auto& h = rv.header;
  if (h.tc()) return {};
  // The full RCODE: an extended one (BADVERS, ...) is never cached, even when
  // its low 4 bits read NOERROR or NXDOMAIN.
  const std::uint16_t rcode = rv.rcode();
  if (rcode == static_cast<std::uint16_t>(dns::Rcode::ServFail)) {
    if (policy.servfail_ttl == 0) return {};
    return {AnswerKind::ServFail, policy.servfail_ttl};
  }
  if (rcode != static_cast<std::uint16_t>(dns::Rcode::NoError) &&
      rcode != static_cast<std::uint16_t>(dns::Rcode::NXDomain)) {
    return {};
  }
  if (h.rcode() == dns::Rcode::NoError && h.ancount > 0) {
    std::uint32_t ttl =
        std::clamp(rv.min_answer_ttl, policy.min_ttl, std::max(policy.min_ttl, policy.max_ttl));
    return ttl == 0 ? Lifetime{} : Lifetime{AnswerKind::Positive, ttl};
  }
  if (!rv.negative_ttl) return {};  // RFC 2308 5: no SOA, no negative caching
  std::uint32_t ttl = std::min(*rv.negative_ttl, policy.denial_max_ttl);
  if (ttl == 0) return {};
  return {h.rcode() == dns::Rcode::NXDomain ? AnswerKind::NxDomain : AnswerKind::NoData, ttl};
}

}  // namespace localdns::cache
