#include <algorithm>

#include <localdns/metrics/top.hpp>

namespace localdns::metrics {

void SpaceSaving::add(std::string_view key, std::uint64_t weight) {
  if (capacity_ == 0) return;
  std::string k(key);
  if (auto it = counts_.find(k); it != counts_.end()) {
    order_.erase({it->second.count, k});
    it->second.count += weight;
    order_.insert({it->second.count, k});
    return;
  }
  Slot slot{weight, 0};
  if (counts_.size() >= capacity_) {
    auto least = order_.begin();
    slot = {least->first + weight, least->first};
    counts_.erase(least->second);
    order_.erase(least);
  }
  order_.insert({slot.count, k});
  counts_.emplace(std::move(k), slot);
}

std::vector<SpaceSaving::Item> SpaceSaving::top(std::size_t n) const {
  std::vector<Item> out;
  for (auto it = order_.rbegin(); it != order_.rend() && out.size() < n; ++it) {
    out.push_back({it->second, it->first, counts_.at(it->second).error});
  }
  return out;
}

void SpaceSaving::clear() {
  counts_.clear();
  order_.clear();
}

TopTracker::TopTracker(std::size_t capacity, unsigned sample)
    : sample_(sample == 0 ? 1 : sample),
      names_(capacity),
      nxdomain_(capacity),
      clients_(capacity) {}

void TopTracker::record(TopKind kind, std::string_view key) {
  std::lock_guard lock(mu_);
  auto& s = kind == TopKind::Names ? names_ : kind == TopKind::NxDomain ? nxdomain_ : clients_;
  s.add(key, sample_);
}

std::vector<SpaceSaving::Item> TopTracker::top(TopKind kind, std::size_t n) const {
  std::lock_guard lock(mu_);
  const auto& s = kind == TopKind::Names      ? names_
                  : kind == TopKind::NxDomain ? nxdomain_
                                              : clients_;
  return s.top(n);
}

std::string TopTracker::nxdomain_key(std::string_view name, std::string_view cluster_domain) {
  std::string n(name);
  if (!n.empty() && n.back() == '.') n.pop_back();
  std::string cd(cluster_domain);
  if (n.size() <= cd.size() + 1 || !n.ends_with(cd) || n[n.size() - cd.size() - 1] != '.') {
    return n;
  }
  std::string base = n.substr(0, n.size() - cd.size() - 1);
  std::string suffix = cd;
  if (base.ends_with(".svc")) {
    base.resize(base.size() - 4);
    suffix = "svc." + cd;
    // "<name>.<namespace>.svc": the last label is the pod's namespace.
    if (auto dot = base.rfind('.'); dot != std::string::npos) {
      suffix = base.substr(dot + 1) + "." + suffix;
      base.resize(dot);
    }
  }
  return base + " [search " + suffix + "]";
}

}  // namespace localdns::metrics
