// The state one upstream group shares across worker threads: its settings,
// the health of each server, and the in-flight budget.
//
// One GroupState per group, owned by shared_ptr: app/ makes it, every
// worker's Forwarder for the group and every InFlightTicket hold it. Shared
// by every worker thread: all members are atomics or immutable.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <localdns/upstream/server_health.hpp>
#include <localdns/upstream/settings.hpp>
#include <localdns/util/notifier.hpp>

namespace localdns::upstream {

struct GroupState {
  explicit GroupState(GroupSettings s);

  const GroupSettings settings;
  std::vector<std::unique_ptr<ServerHealth>> health;  // index = server index
  std::atomic<unsigned> in_flight{0};
  std::atomic<std::uint64_t> rejects{0};  // queries refused over max_in_flight
  // Told when in_flight drops to zero, while set (shutdown waits on it). The
  // notifier must outlive every ticket of the group.
  std::atomic<util::Notifier*> on_idle{nullptr};
  // A group this one replaced on reload had an answering server: readiness
  // does not wait for this one's first answer. Set before workers see it.
  std::atomic<bool> answered_before{false};
};

// Holds one unit of a group's in-flight budget; released on destruction.
// Owned by the exchange it admits; moved, never shared.
class InFlightTicket {
 public:
  InFlightTicket() = default;
  static InFlightTicket acquire(const std::shared_ptr<GroupState>& g);
  InFlightTicket(InFlightTicket&& o) noexcept : group_(std::move(o.group_)) {}
  InFlightTicket& operator=(InFlightTicket&&) = delete;
  ~InFlightTicket();
  explicit operator bool() const { return group_ != nullptr; }
  void release();

 private:
  std::shared_ptr<GroupState> group_;
};

}  // namespace localdns::upstream
