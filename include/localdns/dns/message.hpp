// Read-only views of DNS messages: client queries and upstream responses.
// Parsing walks the buffer once, validates every length and never allocates;
// views point into the caller's buffer and live no longer than it.
// Thread-safe (pure functions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include <localdns/dns/wire.hpp>

namespace localdns::dns {

enum class Section : std::uint8_t { Answer, Authority, Additional };

// EDNS(0) parameters from an OPT pseudo-record (RFC 6891 6.1.2).
struct Edns {
  bool present = false;
  std::uint16_t udp_size = 0;
  std::uint8_t version = 0;
  bool do_bit = false;
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

// An upstream response whose every record was walked successfully.
struct ResponseView {
  Header header;
  Question question;
  std::size_t question_end = 0;
  std::optional<RrView> opt;  // the OPT record, if any
  Edns edns;
  std::size_t end = 0;  // just past the last record; bytes after it are ignored
};

// Validates structure: header, exactly one question, every RR's name and
// lengths inside the message, at most one OPT and only in the additional section.
std::optional<ResponseView> parse_response(Bytes msg);

// Calls `fn(const RrView&)` for every record after the question; false if the
// message is malformed. `fn` may return false to stop early.
template <class Fn>
bool for_each_rr(Bytes msg, const Header& h, std::size_t question_end, Fn&& fn);

// The message up to its last record, without its OPT record (localdns adds
// its own per client) and without any record after the OPT: moving those
// could break compression pointers into the OPT or each other (servers put
// the OPT last). Copies into `out` (room for the message) with ARCOUNT set;
// returns the length.
std::size_t copy_without_opt(Bytes msg, const ResponseView& rv, std::uint8_t* out);

// True when `rv` answers the question we asked with `id`.
bool response_matches(const ResponseView& rv, std::uint16_t id, const Question& asked);

namespace detail {
std::optional<RrView> read_rr(Bytes msg, std::size_t pos, Section section);
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
