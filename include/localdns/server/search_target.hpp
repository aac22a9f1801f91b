// The target X of search_path.mode "cname": once F, the first
// search expansion of a client's name N, came back NXDOMAIN, which later
// candidate of the same search list (if any) the client may be sent to with a
// CNAME, decided from what each candidate's A and AAAA answers were.
//
// A pure function over plain values: no I/O, no clock, no allocation;
// thread-safe. The caller fills the structs, and builds the answer itself
// with dns::synthesize_cname (dns/synth.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace localdns::server {

// What the upstream answered for one (candidate, type).
enum class TargetOutcome : std::uint8_t {
  Pending,   // not known yet (still in flight, or not asked yet)
  NxDomain,  // RCODE NXDOMAIN
  NoData,    // NOERROR without a record of that type (a CNAME chain alone included)
  Records,   // NOERROR with records of that type
  ServFail,  // SERVFAIL, REFUSED or any other failure RCODE
  TimedOut,  // no answer in time (given up on)
};

// One candidate after F, in the client's search order (F itself excluded):
// for Kubernetes `N.svc.<cd>`, `N.<cd>`, `N.<each host_search domain>`, `N.`.
struct TargetCandidate {
  TargetOutcome a = TargetOutcome::Pending;
  TargetOutcome aaaa = TargetOutcome::Pending;
  bool in_cluster = false;  // the name is under the cluster domain
  // Its negative TTL when it is NXDOMAIN (RFC 2308 5: min(SOA TTL, SOA
  // MINIMUM), the smaller of the two types'); UINT32_MAX when not known.
  std::uint32_t negative_ttl = UINT32_MAX;
};

struct SearchInput {
  std::span<const TargetCandidate> candidates;  // in search order, after F
  std::uint16_t qtype = 0;                      // the client's: 1 (A) or 28 (AAAA)
  bool single_label = false;                    // N is one label ("redis")
  std::uint32_t f_negative_ttl = UINT32_MAX;    // F's NXDOMAIN negative TTL
};

enum class Verdict : std::uint8_t {
  AnswerF,  // no target: answer F as it is (its NXDOMAIN)
  Pending,  // the choice waits for an outcome still Pending
  Answer,   // CNAME to candidates[index], which has the asked type
  NoData,   // CNAME to candidates[index], which has only the other type
};

struct SearchTarget {
  Verdict verdict = Verdict::AnswerF;
  std::size_t index = 0;  // Answer, NoData: the target's position in candidates
  // Answer, NoData: min of f_negative_ttl and of the negative_ttl of every
  // candidate before the target (dns::CnameTarget::negative_ttl).
  std::uint32_t negative_ttl = UINT32_MAX;
};

// Walks the candidates in order; each is, from its two outcomes:
//  - skipped: both NXDOMAIN;
//  - the target: one has Records and neither is NXDOMAIN;
//  - a stop (AnswerF): either is SERVFAIL or TimedOut, both NODATA, or
//    NXDOMAIN for one type with NODATA or Records for the other (the name
//    changed between the two answers) — resolvers disagree on what follows;
//  - undecided (Pending): otherwise, while either is Pending.
// The first candidate that is not skipped decides. The target then gives
// Answer when it has Records of qtype, NoData when that is NODATA, and
// AnswerF when it is SERVFAIL, TimedOut or NXDOMAIN for qtype (covered by
// the stop rules above). When N is a single label, only in-cluster
// candidates may be targets: an out-of-cluster one that exists gives
// AnswerF, and so does reaching a point after which no in-cluster candidate
// remains, whatever the outcomes there (they need not be asked). No target
// in the whole list, or qtype other than A or AAAA: AnswerF.
SearchTarget choose_search_target(const SearchInput& in);

}  // namespace localdns::server
