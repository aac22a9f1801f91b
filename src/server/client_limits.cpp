#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <localdns/server/client_limits.hpp>
#include <localdns/util/random.hpp>

namespace localdns::server {

namespace {

constexpr std::array<std::uint8_t, 12> kMappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

ClientAddress from_v4(const std::uint8_t* b) {
  ClientAddress out;
  std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), out.bytes.begin());
  std::copy(b, b + 4, out.bytes.begin() + 12);
  return out;
}

std::uint64_t load64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v = (v << 8) | p[i];
  return v;
}

// The top `bits` bits (0 to 64) of a 64-bit word.
std::uint64_t top_bits(unsigned bits) {
  return bits == 0 ? 0 : bits >= 64 ? ~std::uint64_t{0} : ~std::uint64_t{0} << (64 - bits);
}

}  // namespace

bool ClientAddress::v4() const {
  return std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), bytes.begin());
}

ClientAddress ClientAddress::of(const sockaddr_storage& sa) {
  if (sa.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(sa);
    return from_v4(reinterpret_cast<const std::uint8_t*>(&in.sin_addr));
  }
  ClientAddress out;
  if (sa.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(sa);
    std::memcpy(out.bytes.data(), &in6.sin6_addr, 16);
  }
  return out;
}

ClientAddress ClientAddress::of(const boost::asio::ip::address& a) {
  if (a.is_v4()) return from_v4(a.to_v4().to_bytes().data());
  ClientAddress out;
  out.bytes = a.to_v6().to_bytes();
  return out;
}

std::vector<boost::asio::ip::address> interface_addresses() {
  std::vector<boost::asio::ip::address> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (auto* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    if (i->ifa_addr->sa_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      boost::asio::ip::address_v4::bytes_type b;
      std::memcpy(b.data(), &in->sin_addr, 4);
      out.emplace_back(boost::asio::ip::address_v4(b));
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      boost::asio::ip::address_v6::bytes_type b;
      std::memcpy(b.data(), &in6->sin6_addr, 16);
      out.emplace_back(boost::asio::ip::address_v6(b, in6->sin6_scope_id));
    }
  }
  ::freeifaddrs(list);
  return out;
}

ClientLimiter::ClientLimiter(const ClientLimits& limits,
                             const std::vector<boost::asio::ip::address>& exempt,
                             const util::Clock& clock)
    : rate_(limits.rate_limit),
      clock_(clock),
      seed_(std::uint64_t{util::Random::system().next()} << 32 | util::Random::system().next()) {
  for (const auto& n : limits.allow) {
    auto b = ClientAddress::of(n.base);
    unsigned prefix = std::min(n.prefix + (n.base.is_v4() ? 96u : 0u), 128u);
    Network net;
    net.mask = {top_bits(std::min(prefix, 64u)), top_bits(prefix > 64 ? prefix - 64 : 0)};
    net.base = {load64(b.bytes.data()) & net.mask.hi, load64(b.bytes.data() + 8) & net.mask.lo};
    net.v4 = n.base.is_v4();
    allow_.push_back(net);
  }
  if (rate_.exempt_node_addresses) {
    exempt_loopback_ = true;
    for (const auto& a : exempt)
      exempt_.push_back(ClientAddress::of(a));
    for (const auto& a : limits.node_addresses)
      exempt_.push_back(ClientAddress::of(a));
    std::sort(exempt_.begin(), exempt_.end(),
              [](const auto& x, const auto& y) { return x.bytes < y.bytes; });
    exempt_.erase(std::unique(exempt_.begin(), exempt_.end()), exempt_.end());
  }
  unsigned prefix = std::min(rate_.ipv6_prefix, 128u);
  for (unsigned i = 0; i < 16; ++i) {
    unsigned keep = prefix >= (i + 1) * 8 ? 8 : prefix > i * 8 ? prefix - i * 8 : 0;
    v6_mask_[i] = static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  if (rate_.qps == 0) return;  // no table
  interval_ns_ = 1'000'000'000 / static_cast<std::int64_t>(rate_.qps);
  window_ns_ = interval_ns_ * static_cast<std::int64_t>(std::max(1u, rate_.bucket()));
  std::size_t n = std::max<std::size_t>(1, rate_.table_size);
  nodes_.resize(n);
  index_.assign(std::bit_ceil(2 * n), kEmpty);
}

bool ClientLimiter::allowed(const ClientAddress& a) const {
  if (allow_.empty()) return true;
  const std::uint64_t hi = load64(a.bytes.data()), lo = load64(a.bytes.data() + 8);
  const bool v4 = hi == 0 && (lo >> 32) == 0xffff;
  return std::any_of(allow_.begin(), allow_.end(), [&](const Network& n) {
    return n.v4 == v4 && (hi & n.mask.hi) == n.base.hi && (lo & n.mask.lo) == n.base.lo;
  });
}

bool ClientLimiter::exempt(const ClientAddress& a) const {
  if (exempt_loopback_) {
    if (a.v4() && a.bytes[12] == 127) return true;
    static constexpr std::array<std::uint8_t, 16> kLoopback6{0, 0, 0, 0, 0, 0, 0, 0,
                                                             0, 0, 0, 0, 0, 0, 0, 1};
    if (a.bytes == kLoopback6) return true;
  }
  return std::binary_search(exempt_.begin(), exempt_.end(), a,
                            [](const auto& x, const auto& y) { return x.bytes < y.bytes; });
}

ClientLimiter::Key ClientLimiter::key_of(const ClientAddress& a) const {
  if (a.v4()) return {load64(a.bytes.data()), load64(a.bytes.data() + 8)};
  std::array<std::uint8_t, 16> m;
  for (unsigned i = 0; i < 16; ++i)
    m[i] = a.bytes[i] & v6_mask_[i];
  // An IPv6 network can never equal an IPv4 client: those are under
  // ::ffff:0:0/96, which a dual-stack socket reports as IPv4 only.
  return {load64(m.data()), load64(m.data() + 8)};
}

std::size_t ClientLimiter::home(const Key& k) const {
  // Seeded per limiter: a client that picks many addresses cannot aim them
  // at one run of slots.
  std::uint64_t h = (k.hi ^ seed_) * 0x9e3779b97f4a7c15ULL ^ (k.lo + 0x632be59bd9b4e019ULL);
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 32;
  return static_cast<std::size_t>(h) & (index_.size() - 1);
}

std::size_t ClientLimiter::slot_of(const Key& k) const {
  const std::size_t mask = index_.size() - 1;
  std::size_t s = home(k);
  // The index has at least twice as many slots as nodes: a gap always comes.
  while (index_[s] != kEmpty && !(nodes_[static_cast<std::size_t>(index_[s])].key == k))
    s = (s + 1) & mask;
  return s;
}

// Linear probing's deletion without tombstones: later entries of the run
// move back into the gap when their home slot allows it.
void ClientLimiter::erase_slot(std::size_t slot) {
  const std::size_t mask = index_.size() - 1;
  std::size_t gap = slot;
  for (std::size_t j = (slot + 1) & mask; index_[j] != kEmpty; j = (j + 1) & mask) {
    std::size_t h = home(nodes_[static_cast<std::size_t>(index_[j])].key);
    // Movable when its home is not in (gap, j], cyclically.
    bool stays = gap <= j ? (h > gap && h <= j) : (h > gap || h <= j);
    if (stays) continue;
    index_[gap] = index_[j];
    gap = j;
  }
  index_[gap] = kEmpty;
}

void ClientLimiter::unlink(std::int32_t n) {
  auto& node = nodes_[static_cast<std::size_t>(n)];
  if (node.prev != kEmpty) {
    nodes_[static_cast<std::size_t>(node.prev)].next = node.next;
  } else {
    head_ = node.next;
  }
  if (node.next != kEmpty) {
    nodes_[static_cast<std::size_t>(node.next)].prev = node.prev;
  } else {
    tail_ = node.prev;
  }
  node.prev = node.next = kEmpty;
}

void ClientLimiter::push_front(std::int32_t n) {
  auto& node = nodes_[static_cast<std::size_t>(n)];
  node.prev = kEmpty;
  node.next = head_;
  if (head_ != kEmpty) nodes_[static_cast<std::size_t>(head_)].prev = n;
  head_ = n;
  if (tail_ == kEmpty) tail_ = n;
}

ClientLimiter::Admission ClientLimiter::admit(const ClientAddress& a) {
  Admission out;
  if (rate_.qps == 0 || exempt(a)) return out;
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.now().time_since_epoch()).count();
  const Key k = key_of(a);
  std::size_t slot = slot_of(k);
  std::int32_t n = index_[slot];
  if (n == kEmpty) {
    if (used_ < nodes_.size()) {
      n = static_cast<std::int32_t>(used_++);
    } else {
      n = tail_;
      unlink(n);
      erase_slot(slot_of(nodes_[static_cast<std::size_t>(n)].key));
      out.evicted = true;
      slot = slot_of(k);  // the erase may have moved entries of k's run
    }
    index_[slot] = n;
    auto& node = nodes_[static_cast<std::size_t>(n)];
    node.key = k;
    node.tat = now;  // a new client starts with a full bucket
    push_front(n);
  } else if (n != head_) {
    unlink(n);
    push_front(n);
  }
  // GCRA, the token bucket in one number: the query conforms when the
  // bucket, drained by one more query, still fits the window.
  auto& node = nodes_[static_cast<std::size_t>(n)];
  std::int64_t next = std::max(node.tat, now) + interval_ns_;
  if (next - now > window_ns_) {
    out.ok = false;
    return out;
  }
  node.tat = next;
  return out;
}

}  // namespace localdns::server
