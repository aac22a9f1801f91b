#include <localdns/upstream/group_state.hpp>

namespace localdns::upstream {

GroupState::GroupState(GroupSettings s) : settings(std::move(s)) {
  for (const auto& ep : settings.servers) {
    health.push_back(std::make_unique<ServerHealth>(ep, settings.fail_threshold));
  }
}

InFlightTicket InFlightTicket::acquire(const std::shared_ptr<GroupState>& g) {
  InFlightTicket t;
  unsigned now = g->in_flight.fetch_add(1, std::memory_order_relaxed);
  if (now >= g->settings.max_in_flight) {
    g->in_flight.fetch_sub(1, std::memory_order_relaxed);
    g->rejects.fetch_add(1, std::memory_order_relaxed);
    return t;
  }
  t.group_ = g;
  return t;
}

void InFlightTicket::release() {
  if (group_ && group_->in_flight.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    if (auto* idle = group_->on_idle.load(std::memory_order_acquire)) idle->notify();
  }
  group_.reset();
}

InFlightTicket::~InFlightTicket() {
  release();
}

}  // namespace localdns::upstream
