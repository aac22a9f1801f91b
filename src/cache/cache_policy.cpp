#include <algorithm>
#include <limits>

#include <localdns/cache/cache_policy.hpp>

namespace localdns::cache {

namespace {
// RFC 2181 8: a TTL with the top bit set counts as 0.
std::uint32_t ttl_value(std::uint32_t ttl) {
  return (ttl & 0x8000'0000u) ? 0 : ttl;
}
}  // namespace

Lifetime cache_lifetime(dns::Bytes msg, const dns::ResponseView& rv, const TtlPolicy& policy) {
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
  std::uint32_t min_answer = std::numeric_limits<std::uint32_t>::max();
  std::optional<std::uint32_t> soa;
  bool ok = dns::for_each_rr(msg, h, rv.question_end, [&](const dns::RrView& rr) {
    if (rr.section == dns::Section::Answer) {
      min_answer = std::min(min_answer, ttl_value(rr.ttl));
    } else if (rr.section == dns::Section::Authority &&
               rr.type == static_cast<std::uint16_t>(dns::Type::SOA) && rr.rdlength >= 22) {
      std::uint32_t minimum = dns::read_u32(&msg[rr.end() - 4]);
      soa = std::min(ttl_value(rr.ttl), minimum);  // RFC 2308 5
    }
    return true;
  });
  if (!ok) return {};
  if (h.rcode() == dns::Rcode::NoError && h.ancount > 0) {
    std::uint32_t ttl =
        std::clamp(min_answer, policy.min_ttl, std::max(policy.min_ttl, policy.max_ttl));
    return ttl == 0 ? Lifetime{} : Lifetime{AnswerKind::Positive, ttl};
  }
  if (!soa) return {};  // RFC 2308 5: no SOA, no negative caching
  std::uint32_t ttl = std::min(*soa, policy.denial_max_ttl);
  if (ttl == 0) return {};
  return {h.rcode() == dns::Rcode::NXDomain ? AnswerKind::NxDomain : AnswerKind::NoData, ttl};
}

}  // namespace localdns::cache
