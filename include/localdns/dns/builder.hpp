// Builders for the messages localdns writes: error replies, upstream queries
// and client replies made from upstream answers. All write into caller-owned
// buffers, return the length written (0 when `out` is too small), never allocate.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
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

// Turns an upstream answer into this client's reply: its ID, its RD/CD bits,
// its qname letter case, an OPT exactly when the client sent one, and TC=1
// with empty sections when the result would exceed `shape.limit`. TTLs with
// the top bit set read 0 (RFC 2181 8). EDNS clients get the upstream's full
// RCODE and its Extended DNS Errors (bounded, dropped first when space is
// short); a client without EDNS gets SERVFAIL for an extended RCODE, which it
// could not read.
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
