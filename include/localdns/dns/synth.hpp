// The CNAME answer of search_path.mode "cname": a client asked F,
// the first search expansion of its name, F is NXDOMAIN, and a later
// candidate X of the same search list exists. The client then gets, instead
// of F's NXDOMAIN, a NOERROR answer "F CNAME X" followed by X's own answer
// (or, when X has only the other address type, "F CNAME X" and X's SOA: a
// NODATA). Which X, and when, is decided elsewhere (server/search_target.hpp).
//
// Pure functions on caller-owned buffers; thread-safe (a thread-local scratch
// buffer of kMaxMessageSize bytes); never allocate, but for a thread's first
// call, which allocates that scratch (util/thread_scratch.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>

namespace localdns::dns {

// Why no CNAME answer was made; the caller then answers F as it is.
enum class SynthError : std::uint8_t {
  Dnssec,          // the client set DO or CD: a synthesized CNAME is unsigned
  NotAddress,      // the client's question is not class IN, type A or AAAA
  TargetMismatch,  // `target`'s question is not (X, the client's qtype, IN)
  TargetFailed,    // `target` is not NOERROR, or has TC set
  NoSoa,           // `target` has no record of the asked type and no SOA in authority
  NoRoom,          // the answer does not fit kMaxMessageSize, or `out` is too small
};

// X's upstream answer for the client's qtype, as it came (parse_response of
// `msg` is `view`). X itself is the question of that answer.
struct CnameTarget {
  Bytes msg;
  const ResponseView& view;
  // Seconds `msg` has spent in the cache (0 for a fresh answer): each of its
  // TTLs loses them, never below 0, before the minimum is taken.
  std::uint32_t elapsed = 0;
  // The smallest negative TTL of F and of every candidate skipped before X
  // (RFC 2308 5: min(SOA TTL, SOA MINIMUM) of each NXDOMAIN), as
  // server::choose_search_target returns it. UINT32_MAX: none.
  std::uint32_t negative_ttl = UINT32_MAX;
};

// The reply for the client of `shape` (make_reply_shape of its query for F):
// its ID, RD and CD bits, the question as it wrote it (letter case kept), an
// OPT exactly when it sent one; RCODE NOERROR, AA and AD clear.
//  - Answer section: "F CNAME X", then every record of X's answer section in
//    its order (X's own CNAME chain included).
//  - When X's answer section holds no record of the asked type (X has only
//    the other type): authority section = the last SOA of X's authority
//    section (a NODATA); SynthError::NoSoa when X's answer has none.
// Every TTL, the CNAME's included, is the minimum of X's record TTLs (RFC 2181
// 8: a TTL with the top bit set reads 0; aged by `elapsed`), of the SOA's
// MINIMUM in the NODATA variant, and of `negative_ttl`. X's authority
// (except that SOA) and additional sections are left out. Names are
// compressed: the CNAME's owner points at the question, later names at the
// longest suffix already written (record data only for RFC 1035 types).
// When the reply exceeds shape.limit it is TC=1 with empty sections, as
// render_reply makes it. Returns the reply's length in `out`.
std::expected<std::size_t, SynthError> synthesize_cname(const ReplyShape& shape,
                                                        const CnameTarget& target,
                                                        MutableBytes out);

}  // namespace localdns::dns
