#include <spdlog/spdlog.h>

#include <localdns/upstream/server_health.hpp>

namespace localdns::upstream {

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

}  // namespace localdns::upstream
