// Search-path arithmetic (README.md, "Search path"): whether a question has
// the shape of a pod resolver's first search expansion F, the names that
// pod's resolver asks after F (its candidates, in search order), and when
// each of them may be asked on the pod's behalf. Pure: no I/O, no state
// beyond the compiled settings; any thread.
//
// A pod in namespace <ns> with the Kubernetes resolv.conf (search
// <ns>.svc.<cd> svc.<cd> <cd> <node's domains>, ndots:5) resolving a name N
// with fewer dots than ndots asks, one after another, N.<ns>.svc.<cd> (F),
// N.svc.<cd>, N.<cd>, N.<each node domain>, then N. itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <localdns/dns/message.hpp>
#include <localdns/dns/wire.hpp>
#include <localdns/server/settings.hpp>

namespace localdns::server {

// F, split: its wire name is N's labels, then the namespace label, then
// svc.<cluster domain>.
struct Expansion {
  std::size_t n_len = 0;     // bytes of N's labels (length bytes included) at the start
  std::size_t n_labels = 0;  // N's labels
  std::size_t ns_len = 0;    // bytes of the namespace label that follows
};

// One name of the rest of the walk: wire form, lower case.
struct SearchCandidate {
  std::string name;
  bool in_cluster = false;  // under the cluster domain
};

// What one question of a candidate (or F) came back with.
enum class CandidateOutcome : std::uint8_t {
  Pending,   // not asked yet, or no answer yet
  NxDomain,  // the name does not exist
  NoData,    // it exists, without records of the type asked (a CNAME chain alone too)
  Records,   // it has records of the type asked (at the end of a CNAME chain, too)
  ServFail,  // SERVFAIL, REFUSED or another error RCODE; or not routable
  Timeout,   // no answer: every upstream timed out or failed
};

// An upstream answer `msg` (parsed as `v`) as the walk reads it: NXDOMAIN;
// NOERROR with a record of the question's type in the answer section
// (Records) or without one (NoData); any other RCODE is ServFail.
CandidateOutcome outcome_of(dns::Bytes msg, const dns::ResponseView& v);

class SearchPath {
 public:
  explicit SearchPath(const SearchPathSettings& settings);

  // The shape of a first expansion: `qname` (wire form, any letter case) is
  // N.<ns>.svc.<cluster domain> with <ns> one label and N at least one label
  // with fewer dots than ndots, and `qtype` is A or AAAA. Never: N ending in
  // one of the host search domains (already qualified), a label of N or <ns>
  // starting with '_' (_port._proto names), N under in-addr.arpa or ip6.arpa.
  std::optional<Expansion> match(dns::Bytes qname, std::uint16_t qtype) const;

  // The candidates after F, in search order: N.svc.<cd> and N.<cd> (in the
  // cluster), N.<each host search domain> and N. (outside). A name listed
  // earlier is not listed again.
  std::vector<SearchCandidate> candidates(dns::Bytes qname, const Expansion& f) const;

  const SearchPathSettings& settings() const { return settings_; }

 private:
  SearchPathSettings settings_;
  std::string cluster_;            // wire form, lower case
  std::vector<std::string> host_;  // wire forms, lower case
};

// The release order: how many of `candidates` (a prefix) may have been asked,
// given F's outcome and the candidates' outcomes so far (index = candidate).
// The in-cluster candidates (which come first) go at once, with F; the
// candidate outside the cluster at index i only once F and every candidate
// before i came back NXDOMAIN, the only answer after which every resolver
// moves on to the next name (so no name leaves the cluster that the pod's own
// resolver would not ask).
std::size_t releasable(std::span<const SearchCandidate> candidates, CandidateOutcome f,
                       std::span<const CandidateOutcome> outcomes);

}  // namespace localdns::server
