// Which server of a group the next attempt of a query goes to. Servers not yet
// tried for this query and not marked down come first; then untried ones even
// if down; then any. Among those, the group's policy picks: the first
// (sequential), one at random, or the next in turn (round_robin).
//
// Pure: the caller says how many servers there are, which were tried and
// which are down. One ServerSelector per group and worker, owned by that
// worker's Forwarder; touched only by its thread.
#pragma once

#include <cstdint>

#include <localdns/upstream/settings.hpp>
#include <localdns/util/random.hpp>

namespace localdns::upstream {

// The bit of `server` in a tried or down mask; servers past the 64th have
// none (a group has at most kMaxServersPerGroup).
constexpr std::uint64_t server_bit(int server) {
  return server >= 0 && server < 64 ? std::uint64_t{1} << server : 0;
}

class ServerSelector {
 public:
  ServerSelector(Policy policy, util::Random& random) : policy_(policy), random_(&random) {}

  // A server index in [0, servers), or -1 when the group has none.
  int pick(unsigned servers, std::uint64_t tried_mask, std::uint64_t down_mask);

 private:
  Policy policy_;
  util::Random* random_;
  unsigned rr_next_ = 0;  // round_robin: advances on every pick
};

}  // namespace localdns::upstream
