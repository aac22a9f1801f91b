#include <algorithm>
#include <arpa/inet.h>

#include <localdns/dns/name.hpp>
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

TopTracker::TopTracker(std::size_t capacity, unsigned sample, std::string cluster_domain)
    : sample_(sample == 0 ? 1 : sample),
      cluster_domain_(std::move(cluster_domain)),
      ring_(new Slot[kRing]),
      names_(capacity),
      nxdomain_(capacity),
      clients_(capacity) {}

void TopTracker::push(SlotKind kind, std::span<const std::uint8_t> bytes) {
  std::uint32_t head = head_.load(std::memory_order_relaxed);
  if (head - tail_.load(std::memory_order_acquire) >= kRing || bytes.size() > 255) {
    dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return;
  }
  Slot& slot = ring_[head % kRing];
  slot.kind = kind;
  slot.len = static_cast<std::uint8_t>(bytes.size());
  std::copy(bytes.begin(), bytes.end(), slot.bytes.begin());
  head_.store(head + 1, std::memory_order_release);
}

void TopTracker::record_name(TopKind kind, std::span<const std::uint8_t> wire_name) {
  push(kind == TopKind::NxDomain ? SlotKind::NxDomain : SlotKind::Name, wire_name);
}

void TopTracker::record_client(std::span<const std::uint8_t> address) {
  push(address.size() == 4 ? SlotKind::ClientV4 : SlotKind::ClientV6, address);
}

void TopTracker::record_client(std::string_view text) {
  push(SlotKind::ClientText, {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
}

void TopTracker::drain() {
  std::lock_guard lock(mu_);
  std::uint32_t tail = tail_.load(std::memory_order_relaxed);
  const std::uint32_t head = head_.load(std::memory_order_acquire);
  for (; tail != head; ++tail) {
    const Slot& slot = ring_[tail % kRing];
    std::span<const std::uint8_t> b(slot.bytes.data(), slot.len);
    switch (slot.kind) {
      case SlotKind::Name:
        names_.add(dns::name_to_text(b), sample_);
        break;
      case SlotKind::NxDomain:
        nxdomain_.add(nxdomain_key(dns::name_to_text(b), cluster_domain_), sample_);
        break;
      case SlotKind::ClientV4:
      case SlotKind::ClientV6: {
        char text[INET6_ADDRSTRLEN] = "?";
        ::inet_ntop(slot.kind == SlotKind::ClientV4 ? AF_INET : AF_INET6, b.data(), text,
                    sizeof text);
        clients_.add(text, sample_);
        break;
      }
      case SlotKind::ClientText:
        clients_.add(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), sample_);
        break;
    }
  }
  tail_.store(tail, std::memory_order_release);
}

std::vector<SpaceSaving::Item> TopTracker::top(TopKind kind, std::size_t n) {
  drain();
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
