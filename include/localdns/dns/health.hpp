// The health name: what localdns's own health checks (the HTTP /health
// probe, the systemd readiness check, `doctor`) ask a listener, and what the
// query handler answers NOERROR itself: never forwarded, never cached, never
// counted in the query metrics. Under .invalid (RFC 6761 6.4), so no real
// zone can own it. Pure functions; thread-safe; never allocate.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/dns/wire.hpp>

namespace localdns::dns {

inline constexpr std::string_view kHealthName = "health.localdns.invalid";
// Its wire form, lower case.
inline constexpr std::array<std::uint8_t, 25> kHealthNameWire = {
    6,   'h', 'e', 'a', 'l', 't', 'h', 8,   'l', 'o', 'c', 'a', 'l',
    'd', 'n', 's', 7,   'i', 'n', 'v', 'a', 'l', 'i', 'd', 0};

// True when `qname` (uncompressed wire form, any letter case) is the health name.
inline bool is_health_name(Bytes qname) {
  return qname.size() == kHealthNameWire.size() && names_equal(qname, Bytes(kHealthNameWire));
}

// The health query: the health name, A IN, RD, with `id`. Returns its length
// (0 when `out` is too small).
inline std::size_t build_health_query(std::uint16_t id, MutableBytes out) {
  const Question q{Bytes(kHealthNameWire), static_cast<std::uint16_t>(Type::A), kClassIN};
  return build_query({q, id, true, false, false}, out);
}

// True when `reply` answers a health query sent with `id`: a response with
// that ID and RCODE NOERROR.
inline bool is_health_answer(Bytes reply, std::uint16_t id) {
  if (reply.size() < kHeaderSize) return false;
  const Header h = Header::read(reply.data());
  return h.id == id && h.qr() && h.rcode() == Rcode::NoError;
}

}  // namespace localdns::dns
