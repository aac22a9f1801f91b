#include <algorithm>

#include <localdns/server/search_target.hpp>

namespace localdns::server {
namespace {

constexpr std::uint16_t kTypeA = 1;
constexpr std::uint16_t kTypeAaaa = 28;

enum class State : std::uint8_t { Skipped, Exists, Stop, Pending };

bool failed(TargetOutcome o) {
  return o == TargetOutcome::ServFail || o == TargetOutcome::TimedOut;
}

State state_of(const TargetCandidate& c) {
  if (failed(c.a) || failed(c.aaaa)) return State::Stop;
  const bool nx = c.a == TargetOutcome::NxDomain || c.aaaa == TargetOutcome::NxDomain;
  const bool exists = c.a == TargetOutcome::Records || c.aaaa == TargetOutcome::Records;
  const bool nodata = c.a == TargetOutcome::NoData || c.aaaa == TargetOutcome::NoData;
  // A known answer that contradicts the other type's decides before Pending.
  if (nx && (exists || nodata)) return State::Stop;
  if (c.a == TargetOutcome::Pending || c.aaaa == TargetOutcome::Pending) return State::Pending;
  if (nx) return State::Skipped;
  if (exists) return State::Exists;
  return State::Stop;  // NODATA for both
}

}  // namespace

SearchTarget choose_search_target(const SearchInput& in) {
  SearchTarget none;
  if (in.qtype != kTypeA && in.qtype != kTypeAaaa) return none;
  const std::span<const TargetCandidate> cs = in.candidates;
  // Past the last in-cluster candidate, a single-label name has no target.
  std::size_t end = cs.size();
  if (in.single_label) {
    end = 0;
    for (std::size_t i = 0; i < cs.size(); ++i)
      if (cs[i].in_cluster) end = i + 1;
  }
  std::uint32_t negative = in.f_negative_ttl;
  for (std::size_t i = 0; i < end; ++i) {
    const TargetCandidate& c = cs[i];
    switch (state_of(c)) {
      case State::Skipped:
        negative = std::min(negative, c.negative_ttl);
        continue;
      case State::Stop:
        return none;
      case State::Pending:
        return {Verdict::Pending, 0, UINT32_MAX};
      case State::Exists:
        break;
    }
    if (in.single_label && !c.in_cluster) return none;
    const TargetOutcome asked = in.qtype == kTypeA ? c.a : c.aaaa;
    if (asked == TargetOutcome::Records) return {Verdict::Answer, i, negative};
    if (asked == TargetOutcome::NoData) return {Verdict::NoData, i, negative};
    return none;
  }
  return none;
}

}  // namespace localdns::server
