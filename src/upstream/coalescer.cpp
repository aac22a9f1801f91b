#include <localdns/upstream/coalescer.hpp>

namespace localdns::upstream {

Coalescer::Coalescer() {
  for (unsigned i = 0; i < kShards; ++i)
    shards_.push_back(std::make_unique<Shard>());
}

Coalescer::~Coalescer() = default;

Coalescer::Shard& Coalescer::shard_for(std::string_view key) {
  return *shards_[std::hash<std::string_view>{}(key) % shards_.size()];
}

Coalescer::Role Coalescer::join(std::string_view key, Waiter waiter) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  auto [it, created] = s.waiting.try_emplace(std::string(key));
  if (!created && it->second.size() >= kMaxWaitersPerKey) return Role::Overflow;
  it->second.push_back(std::move(waiter));
  return created ? Role::Leader : Role::Waiting;
}

void Coalescer::complete(std::string_view key, const Result& result) {
  std::vector<Waiter> waiters;
  {
    Shard& s = shard_for(key);
    std::lock_guard lock(s.mu);
    auto it = s.waiting.find(std::string(key));
    if (it == s.waiting.end()) return;
    waiters = std::move(it->second);
    s.waiting.erase(it);
  }
  for (auto& w : waiters)
    w(result);
}

std::size_t Coalescer::pending_keys() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    n += s->waiting.size();
  }
  return n;
}

}  // namespace localdns::upstream
