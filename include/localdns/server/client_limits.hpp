// Per-client access and rate limits (the `clients` settings): the
// allow-list of client networks, and a token bucket per client address in a
// bounded table with LRU eviction. One ClientLimiter per worker, used on
// that worker's thread only: no lock, nothing shared with other workers (so
// a client whose queries the kernel spreads over several workers' sockets
// has a bucket on each; see README.md, "Per-client limits"). Every node and
// the index are allocated at construction; admit() and allowed() never
// allocate.
#pragma once

#include <array>
#include <cstdint>
#include <sys/socket.h>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include <localdns/server/settings.hpp>
#include <localdns/util/clock.hpp>

namespace localdns::server {

// A client's address in 16 bytes: IPv6 as it is, IPv4 (and IPv4-mapped
// IPv6, as a dual-stack socket reports IPv4 clients) as ::ffff:a.b.c.d.
struct ClientAddress {
  std::array<std::uint8_t, 16> bytes{};

  bool v4() const;
  static ClientAddress of(const sockaddr_storage& sa);
  static ClientAddress of(const boost::asio::ip::address& a);
  friend bool operator==(const ClientAddress&, const ClientAddress&) = default;
};

// The addresses of this host's interfaces (getifaddrs(3)), loopback
// included; empty when they cannot be read.
std::vector<boost::asio::ip::address> interface_addresses();

class ClientLimiter {
 public:
  // `exempt`: addresses the rate limit does not apply to when
  // limits.rate_limit.exempt_node_addresses (the node's own; loopback always
  // is then). Allocates the table: limits.rate_limit.table_size nodes.
  ClientLimiter(const ClientLimits& limits, const std::vector<boost::asio::ip::address>& exempt,
                const util::Clock& clock = util::Clock::real());
  ClientLimiter(const ClientLimiter&) = delete;
  ClientLimiter& operator=(const ClientLimiter&) = delete;

  // The allow-list: true when it is empty or a network of it holds `a`.
  bool allowed(const ClientAddress& a) const;
  bool has_allow_list() const { return !allow_.empty(); }

  bool limits_rate() const { return rate_.qps != 0; }
  bool exempt_cache_hits() const { return rate_.exempt_cache_hits; }
  RateAction action() const { return rate_.action; }

  struct Admission {
    bool ok = true;        // false: over the limit
    bool evicted = false;  // tracking this client evicted the least recently seen one
  };
  // Takes a token from the bucket of `a` (its /32, or its ipv6_prefix),
  // tracking it first if it is new (with a full bucket). Always ok for an
  // exempt address, or with the rate limit off.
  Admission admit(const ClientAddress& a);

  std::size_t tracked() const { return used_; }
  std::size_t capacity() const { return nodes_.size(); }

 private:
  struct Key {
    std::uint64_t hi = 0, lo = 0;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct Node {
    Key key;
    std::int64_t tat = 0;  // GCRA: theoretical arrival time, clock nanoseconds
    std::int32_t prev = -1, next = -1;
  };
  static constexpr std::int32_t kEmpty = -1;

  Key key_of(const ClientAddress& a) const;
  bool exempt(const ClientAddress& a) const;
  std::size_t home(const Key& k) const;
  std::size_t slot_of(const Key& k) const;  // the index slot holding k, or of the gap it would take
  void unlink(std::int32_t n);
  void push_front(std::int32_t n);
  void erase_slot(std::size_t slot);

  // An allowed network as masks over the 16-byte form (an IPv4 one under
  // ::ffff:0:0/96), matched with two ANDs and compares.
  struct Network {
    Key base, mask;
    bool v4 = false;
  };
  std::vector<Network> allow_;
  RateLimit rate_;
  std::vector<ClientAddress> exempt_;
  bool exempt_loopback_ = false;
  const util::Clock& clock_;
  const std::uint64_t seed_;      // of home(), per limiter
  std::int64_t interval_ns_ = 0;  // 1 s / qps
  std::int64_t window_ns_ = 0;    // bucket size x interval
  std::array<std::uint8_t, 16> v6_mask_{};

  std::vector<Node> nodes_;          // table_size, preallocated
  std::vector<std::int32_t> index_;  // open addressing, a power of two >= 2 x nodes
  std::size_t used_ = 0;             // nodes in use
  std::int32_t head_ = kEmpty;       // most recently seen
  std::int32_t tail_ = kEmpty;       // least recently seen: evicted first
};

}  // namespace localdns::server
