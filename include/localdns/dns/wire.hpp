// Wire-format constants and byte helpers (RFC 1035 section 4.1).
// Pure functions on caller-owned buffers; thread-safe, never allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace localdns::dns {

using Bytes = std::span<const std::uint8_t>;
using MutableBytes = std::span<std::uint8_t>;

inline constexpr std::size_t kHeaderSize = 12;
inline constexpr std::size_t kMaxNameSize = 255;  // RFC 1035 2.3.4, wire form
inline constexpr std::size_t kMaxLabelSize = 63;
inline constexpr std::size_t kMaxMessageSize = 65535;
inline constexpr std::uint16_t kClassicUdpSize = 512;  // RFC 1035 4.2.1
// Advertised and enforced EDNS UDP payload size (DNS Flag Day 2020): large enough
// for typical answers, small enough to avoid IP fragmentation.
inline constexpr std::uint16_t kEdnsUdpSize = 1232;
inline constexpr std::size_t kOptRecordSize = 11;  // root name + fixed part, no options
// Most records one message can hold: each takes at least 11 bytes (root owner
// and fixed fields), after the header and a question of at least 5.
inline constexpr std::size_t kMaxRecords = (kMaxMessageSize - kHeaderSize - 5) / 11;

enum class Type : std::uint16_t {
  A = 1,
  NS = 2,
  CNAME = 5,
  SOA = 6,
  PTR = 12,
  MX = 15,
  TXT = 16,
  AAAA = 28,
  SRV = 33,
  OPT = 41,
  ANY = 255,
};
inline constexpr std::uint16_t kClassIN = 1;

enum class Rcode : std::uint8_t {
  NoError = 0,
  FormErr = 1,
  ServFail = 2,
  NXDomain = 3,
  NotImp = 4,
  Refused = 5,
};
inline constexpr std::uint16_t kExtRcodeBadVers = 16;  // RFC 6891 6.1.3

// Extended DNS Errors (RFC 8914): EDNS option 15, a 2-byte INFO-CODE and an
// optional UTF-8 EXTRA-TEXT.
inline constexpr std::uint16_t kOptionEde = 15;
inline constexpr std::uint16_t kEdeOther = 0;
inline constexpr std::uint16_t kEdeStaleAnswer = 3;
inline constexpr std::uint16_t kEdeProhibited = 18;
inline constexpr std::uint16_t kEdeStaleNxdomain = 19;
inline constexpr std::uint16_t kEdeNoReachableAuthority = 22;
inline constexpr std::uint16_t kEdeNetworkError = 23;
// Bytes of EDE options (option headers included) carried from one upstream
// answer to a client; what does not fit is dropped, text cut at a character.
inline constexpr std::size_t kMaxEdeBytes = 128;

// Header flag bits, in the 16-bit flags word (RFC 1035 4.1.1, RFC 4035 3.1).
inline constexpr std::uint16_t kFlagQR = 0x8000;
inline constexpr std::uint16_t kFlagAA = 0x0400;
inline constexpr std::uint16_t kFlagTC = 0x0200;
inline constexpr std::uint16_t kFlagRD = 0x0100;
inline constexpr std::uint16_t kFlagRA = 0x0080;
inline constexpr std::uint16_t kFlagAD = 0x0020;
inline constexpr std::uint16_t kFlagCD = 0x0010;
inline constexpr std::uint16_t kOpcodeMask = 0x7800;
inline constexpr std::uint16_t kRcodeMask = 0x000f;
inline constexpr std::uint16_t kEdnsFlagDO = 0x8000;  // in the OPT TTL's low 16 bits

inline std::uint16_t read_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t read_u32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}
inline void write_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
inline void write_u32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

// The fixed 12-byte header, decoded.
struct Header {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;
  std::uint16_t qdcount = 0;
  std::uint16_t ancount = 0;
  std::uint16_t nscount = 0;
  std::uint16_t arcount = 0;

  static Header read(const std::uint8_t* p) {
    return {read_u16(p),     read_u16(p + 2), read_u16(p + 4),
            read_u16(p + 6), read_u16(p + 8), read_u16(p + 10)};
  }
  void write(std::uint8_t* p) const {
    write_u16(p, id);
    write_u16(p + 2, flags);
    write_u16(p + 4, qdcount);
    write_u16(p + 6, ancount);
    write_u16(p + 8, nscount);
    write_u16(p + 10, arcount);
  }
  std::uint8_t opcode() const { return static_cast<std::uint8_t>((flags & kOpcodeMask) >> 11); }
  Rcode rcode() const { return static_cast<Rcode>(flags & kRcodeMask); }
  bool qr() const { return flags & kFlagQR; }
  bool tc() const { return flags & kFlagTC; }
};

}  // namespace localdns::dns
