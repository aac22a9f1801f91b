// Read-only views of DNS messages: client queries and upstream responses.
// Parsing walks the buffer once, validates every length and never allocates;
// views point into the caller's buffer and live no longer than it.
// Thread-safe (pure functions).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include <localdns/dns/wire.hpp>

namespace localdns::dns {

enum class Section : std::uint8_t { Answer, Authority, Additional };

// EDNS(0) parameters from an OPT pseudo-record (RFC 6891 6.1.2).
struct Edns {
  bool present = false;
  std::uint16_t udp_size = 0;
  std::uint8_t version = 0;
  bool do_bit = false;
  std::uint8_t ext_rcode = 0;  // upper 8 bits of the 12-bit RCODE
};

struct Question {
  Bytes qname;  // uncompressed wire name, letter case as sent
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
};

// What to do with a query, decided by the parser (RFC 1035 4.1.1, RFC 6891 7).
enum class QueryStatus : std::uint8_t {
  Ok,
  Drop,     // header unreadable or QR set: no reply at all
  FormErr,  // malformed after the header
  NotImp,   // opcode other than QUERY
  BadVers,  // EDNS version other than 0
};

struct QueryView {
  QueryStatus status = QueryStatus::Drop;
  Header header;
  bool question_valid = false;  // qname/qtype/qclass are usable for the reply
  Question question;
  Edns edns;  // valid when status is Ok or BadVers, or an OPT was read before the error

  // Largest reply the client accepts over UDP: 512 without EDNS, otherwise its
  // advertised size clamped to [512, kEdnsUdpSize].
  std::uint16_t udp_reply_limit() const;
};

QueryView parse_query(Bytes msg);

// Location and fixed fields of one resource record.
struct RrView {
  Section section = Section::Answer;
  std::size_t offset = 0;       // owner name start
  std::size_t type_offset = 0;  // just past the owner name
  std::uint16_t type = 0;
  std::uint16_t rclass = 0;
  std::uint32_t ttl = 0;
  std::size_t rdata_offset = 0;
  std::uint16_t rdlength = 0;
  std::size_t end() const { return rdata_offset + rdlength; }
};

// TTL fields a ResponseView remembers itself; answers with more records kept
// for clients have the rest found again by answer_parts (see reply.hpp).
inline constexpr std::size_t kViewTtlOffsets = 32;

// An upstream response whose every record was walked successfully. The one
// walk of parse_response also records what every later user needs, so no one
// walks the records again: what is kept for clients (the records before the
// OPT, their TTL fields), and the inputs of the cache lifetime.
struct ResponseView {
  Header header;
  Question question;
  std::size_t question_end = 0;
  std::optional<RrView> opt;  // the OPT record, if any
  Edns edns;
  std::size_t end = 0;  // just past the last record; bytes after it are ignored
  // Some name kept for clients (owner or record data, before the OPT) reads
  // bytes of a TTL field. Replies that rewrite TTLs (cache hits, the RFC 2181
  // clamp) must then be built from copy_expanded().
  bool names_read_ttls = false;

  // Records kept for clients: those before the OPT (all when there is none).
  // They end at kept_end; kept_additional of them are in the additional section.
  std::size_t kept_end = 0;
  std::uint16_t kept_records = 0;
  std::uint16_t kept_additional = 0;
  // Offsets of the TTL fields of the first min(kept_records, kViewTtlOffsets)
  // kept records, in message order.
  std::array<std::uint16_t, kViewTtlOffsets> ttl_offsets{};
  // Some kept record has a TTL with the top bit set (RFC 2181 8: read as 0).
  bool ttl_top_bit = false;

  // Cache lifetime inputs (RFC 2181 8 applied to record TTLs): the smallest
  // answer-section TTL (UINT32_MAX without answers) and, from the last SOA of
  // the authority section, min(SOA TTL, SOA MINIMUM) (RFC 2308 5).
  std::uint32_t min_answer_ttl = UINT32_MAX;
  std::optional<std::uint32_t> negative_ttl;

  // The full 12-bit RCODE (RFC 6891 6.1.3): OPT extended bits and header bits.
  std::uint16_t rcode() const {
    return static_cast<std::uint16_t>((std::uint16_t{edns.ext_rcode} << 4) |
                                      (header.flags & kRcodeMask));
  }
};

// Validates structure: header, exactly one question, every RR's name and
// lengths inside the message, at most one OPT and only in the additional
// section. Names in the record data of the types that carry them (NS, CNAME,
// SOA, PTR, MX, SRV, DNAME, NAPTR, RRSIG, ... see rdata_names) follow the
// owner-name rules of walk_name and must fit their record data exactly, so no
// name can reach the header, the OPT or anything dropped after it.
std::optional<ResponseView> parse_response(Bytes msg);

// Calls `fn(offset)` for the start of every domain name in the record data of
// `rr`; `fn` returns the offset just past that name, or std::nullopt to fail.
// Covers the types whose record data holds names that may be compressed
// (RFC 1035 3.3, RFC 3597 4, and DNAME, KX, RRSIG, NSEC). Other types are
// opaque. False when the record data does not match its type's layout.
template <class Fn>
bool rdata_names(Bytes msg, const RrView& rr, Fn&& fn);

// Calls `fn(const RrView&)` for every record after the question; false if the
// message is malformed. `fn` may return false to stop early.
template <class Fn>
bool for_each_rr(Bytes msg, const Header& h, std::size_t question_end, Fn&& fn);

// The same records with every name (owners and record data of the types
// rdata_names knows) written out in full, without compression: nothing then
// depends on bytes a reply rewrites. Header and question are copied. Returns
// the length, or 0 when the result does not fit `out`.
std::size_t copy_expanded(Bytes msg, const ResponseView& rv, MutableBytes out);

// Copies the Extended DNS Error options of an OPT record into `out` (room for
// kMaxEdeBytes), bounded by kMaxEdeBytes: text that is not UTF-8 is dropped,
// text that does not fit is cut at a character boundary. Returns the length.
std::size_t copy_ede(Bytes msg, const RrView& opt, std::uint8_t* out);

// Writes one EDE option (text cut to fit kMaxEdeBytes); returns its end.
std::uint8_t* write_ede(std::uint8_t* p, std::uint16_t code, std::string_view text = {});

// True when `rv` answers the question we asked with `id`.
bool response_matches(const ResponseView& rv, std::uint16_t id, const Question& asked);

namespace detail {
std::optional<RrView> read_rr(Bytes msg, std::size_t pos, Section section);

// Record data layouts: > 0 a fixed number of bytes, then these markers.
inline constexpr std::int8_t kName = -1;        // a domain name
inline constexpr std::int8_t kCharString = -2;  // a length byte and that many bytes
inline constexpr std::int8_t kRest = -3;        // opaque bytes up to the end
inline constexpr std::int8_t kEnd = 0;
// The layout of `type`, or null when its record data holds no names.
const std::int8_t* rdata_layout(std::uint16_t type);
}  // namespace detail

template <class Fn>
bool rdata_names(Bytes msg, const RrView& rr, Fn&& fn) {
  const std::int8_t* f = detail::rdata_layout(rr.type);
  if (f == nullptr) return true;
  std::size_t pos = rr.rdata_offset;
  const std::size_t end = rr.end();
  for (; *f != detail::kEnd; ++f) {
    if (*f == detail::kRest) return true;
    if (*f > 0) {
      pos += static_cast<std::size_t>(*f);
    } else if (*f == detail::kCharString) {
      if (pos >= end) return false;
      pos += 1 + std::size_t{msg[pos]};
    } else {
      if (pos >= end) return false;
      auto next = fn(pos);
      if (!next) return false;
      pos = *next;
    }
    if (pos > end) return false;
  }
  return pos == end;
}

template <class Fn>
bool for_each_rr(Bytes msg, const Header& h, std::size_t question_end, Fn&& fn) {
  std::size_t pos = question_end;
  const std::uint16_t counts[3] = {h.ancount, h.nscount, h.arcount};
  for (int s = 0; s < 3; ++s) {
    for (std::uint16_t i = 0; i < counts[s]; ++i) {
      auto rr = detail::read_rr(msg, pos, static_cast<Section>(s));
      if (!rr) return false;
      if (!fn(*rr)) return true;
      pos = rr->end();
    }
  }
  return true;
}

}  // namespace localdns::dns
