#include <localdns/upstream/selection.hpp>

namespace localdns::upstream {

int ServerSelector::pick(unsigned servers, std::uint64_t tried_mask, std::uint64_t down_mask) {
  if (servers == 0) return -1;
  unsigned candidates[64];
  unsigned count = 0;
  for (int pass = 0; pass < 3 && count == 0; ++pass) {
    for (unsigned i = 0; i < servers && i < 64; ++i) {
      const bool tried = tried_mask & server_bit(static_cast<int>(i));
      const bool down = down_mask & server_bit(static_cast<int>(i));
      if ((pass == 0 && !tried && !down) || (pass == 1 && !tried) || pass == 2) {
        candidates[count++] = i;
      }
    }
  }
  switch (policy_) {
    case Policy::Sequential:
      return static_cast<int>(candidates[0]);
    case Policy::Random:
      return static_cast<int>(candidates[random_->below(count)]);
    case Policy::RoundRobin:
      return static_cast<int>(candidates[rr_next_++ % count]);
  }
  return static_cast<int>(candidates[0]);
}

}  // namespace localdns::upstream
