// Builders for the messages localdns writes: error replies, upstream queries
// and client replies made from upstream answers. All write into caller-owned
// buffers, return the length written (0 when `out` is too small), never allocate
// (but build_client_reply on a thread's first call: its scratch, see there).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include <localdns/dns/message.hpp>

namespace localdns::dns {

// Everything a reply must echo back to one client, copied out of its query so
// the query buffer can be reused while the answer is being fetched.
struct ReplyShape {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;                         // the query's flags; RD and CD are echoed
  std::array<std::uint8_t, kMaxNameSize> qname{};  // letter case as the client wrote it
  std::uint8_t qname_len = 0;
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
  bool edns = false;
  bool do_bit = false;
  std::uint16_t limit = kClassicUdpSize;  // largest reply the transport allows

  Question question() const { return {Bytes(qname.data(), qname_len), qtype, qclass}; }
};

// Fills a ReplyShape from a parsed query (status Ok). `limit` is the client's
// UDP limit, or kMaxMessageSize for TCP.
ReplyShape make_reply_shape(const QueryView& q, std::size_t limit);

// Reply with only header, question (when valid) and OPT (when the query had
// one). For QueryStatus::BadVers the OPT carries extended RCODE BADVERS.
std::size_t build_error_reply(const QueryView& q, Rcode rcode, MutableBytes out);
std::size_t build_error_reply(const ReplyShape& shape, Rcode rcode, MutableBytes out);

// An Extended DNS Error (RFC 8914) localdns adds to a reply it makes itself.
struct ExtendedError {
  std::uint16_t code = 0;
  std::string_view text;  // UTF-8; cut to fit kMaxEdeBytes
};
// The same reply with `ede` in the OPT of an EDNS client (left out when it
// would not fit the client's limit). Clients without EDNS get no EDE.
std::size_t build_error_reply(const ReplyShape& shape, Rcode rcode, const ExtendedError& ede,
                              MutableBytes out);

struct OutgoingQuery {
  Question question;  // qname is copied in lower case
  std::uint16_t id = 0;
  bool rd = true;
  bool cd = false;
  bool do_bit = false;
};

// An upstream query: one question in lower case (so answers are shareable
// between clients) and an OPT advertising kEdnsUdpSize.
std::size_t build_query(const OutgoingQuery& q, MutableBytes out);

// An answer as every reply to it is rendered from it, whether it just came
// from upstream or is read from the cache: the records kept for clients (see
// ResponseView) and where their TTL fields are, and what of its header and OPT
// a reply carries.
struct AnswerParts {
  Bytes wire;  // header, question, kept records, no OPT; a reply rewrites ID and ARCOUNT
  std::uint16_t flags = 0;    // the answer's header flags
  std::uint16_t rcode = 0;    // its full 12-bit RCODE
  std::uint16_t arcount = 0;  // additional records in `wire`
  std::size_t qname_len = 0;
  std::span<const std::uint16_t> ttl_offsets;  // every TTL field in `wire`
  Bytes ede;                                   // the upstream's EDE options, bounded (copy_ede)
};

// Room answer_parts uses where the view does not do: a copy of the records
// with names expanded, TTL offsets beyond the view's, the EDE options.
struct AnswerScratch {
  std::array<std::uint8_t, kMaxMessageSize> wire;
  std::array<std::uint16_t, kMaxRecords> ttl_offsets;
  std::array<std::uint8_t, kMaxEdeBytes> ede;
};

// The parts of upstream answer `msg` (parsed as `rv`); they point into `msg`,
// `rv` and `scratch`. When a kept name reads TTL bytes (rv.names_read_ttls)
// the records are copied with names expanded, into at most `max_wire` bytes;
// std::nullopt when they do not fit.
std::optional<AnswerParts> answer_parts(Bytes msg, const ResponseView& rv, AnswerScratch& scratch,
                                        std::size_t max_wire = kMaxMessageSize);

// How a cache hit ages an answer: each TTL loses `elapsed` seconds (never
// below 0) and is at most `cap`.
struct TtlAging {
  std::uint32_t elapsed = 0;
  std::uint32_t cap = UINT32_MAX;
};

// Renders `answer` as this client's reply, the one function behind both a
// fresh answer and a cache hit: the client's ID, RD/CD bits and qname letter
// case, the answer's other flags, an OPT exactly when the client sent one, and
// TC=1 with empty sections when the result would exceed `shape.limit`. TTLs
// with the top bit set read 0 (RFC 2181 8), then `aging` applies, if any.
// EDNS clients get the full RCODE and the answer's Extended DNS Errors, then
// `own_ede` (an INFO-CODE, 0 for none) when it is given; all of these are
// dropped when they would not fit. A client without EDNS gets SERVFAIL for an
// extended RCODE, which it could not read. Returns 0 when the question does not
// match the answer's length or `out` is too small.
std::size_t render_reply(const AnswerParts& answer, const ReplyShape& shape,
                         std::optional<TtlAging> aging, std::uint16_t own_ede, MutableBytes out);

// An upstream answer rendered for one client as it is (no aging): answer_parts
// (with thread-local scratch, expanding into at most out.size() bytes) and
// render_reply. A thread's first call allocates that scratch
// (util/thread_scratch.hpp), untouched until written.
std::size_t build_client_reply(Bytes answer, const ResponseView& rv, const ReplyShape& shape,
                               MutableBytes out);

// Header, the client's question, our OPT if it sent one, TC=1 and nothing else;
// `answer_flags` supplies QR/AA/RA/RCODE. For answers that exceed shape.limit.
std::size_t build_truncated_reply(const ReplyShape& shape, std::uint16_t answer_flags,
                                  MutableBytes out);

// Writes our OPT record (kOptRecordSize bytes, DO as given) at `p`; returns its
// end, where the caller writes `options_len` bytes of options (RDLENGTH).
std::uint8_t* write_opt_record(std::uint8_t* p, bool do_bit, std::uint16_t options_len = 0);

// Flags of a reply: the answer's, with RD and CD taken from the client's query.
inline std::uint16_t reply_flags(std::uint16_t answer_flags, const ReplyShape& shape) {
  constexpr std::uint16_t kEchoed = kFlagRD | kFlagCD;
  return static_cast<std::uint16_t>((answer_flags & ~kEchoed) | (shape.flags & kEchoed));
}

}  // namespace localdns::dns
