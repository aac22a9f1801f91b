#include <algorithm>

#include <spdlog/spdlog.h>

#include <localdns/upstream/server_health.hpp>

namespace localdns::upstream {

void ForwardCounters::observe_answer(unsigned rcode, std::chrono::steady_clock::duration took) {
  responses[metrics::rcode_index(rcode)].fetch_add(1, std::memory_order_relaxed);
  auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
  duration[metrics::duration_bucket(us)].fetch_add(1, std::memory_order_relaxed);
  duration_sum_us.fetch_add(us, std::memory_order_relaxed);
  if (!answered.load(std::memory_order_relaxed)) answered.store(true, std::memory_order_relaxed);
}

void ServerHealth::record_success() {
  consecutive_failures_.store(0, std::memory_order_relaxed);
  if (down_.exchange(false, std::memory_order_relaxed)) {
    spdlog::info("upstream {} is up again", endpoint_.to_string());
  }
}

void ServerHealth::record_failure() {
  counters_.failures.fetch_add(1, std::memory_order_relaxed);
  unsigned n = consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n >= threshold_ && !down_.exchange(true, std::memory_order_relaxed)) {
    spdlog::warn("upstream {} is down after {} consecutive failures; probing it",
                 endpoint_.to_string(), n);
  }
}

GroupState::GroupState(config::UpstreamGroup cfg) : config(std::move(cfg)) {
  for (const auto& ep : config.servers) {
    health.push_back(std::make_unique<ServerHealth>(ep, config.fail_threshold));
  }
}

InFlightTicket InFlightTicket::acquire(const std::shared_ptr<GroupState>& g) {
  InFlightTicket t;
  unsigned now = g->in_flight.fetch_add(1, std::memory_order_relaxed);
  if (now >= g->config.max_in_flight) {
    g->in_flight.fetch_sub(1, std::memory_order_relaxed);
    g->rejects.fetch_add(1, std::memory_order_relaxed);
    return t;
  }
  t.group_ = g;
  return t;
}

void InFlightTicket::release() {
  if (group_) group_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  group_.reset();
}

InFlightTicket::~InFlightTicket() {
  release();
}

}  // namespace localdns::upstream
