// Per-worker query metrics in the shape of CoreDNS's: requests by zone,
// protocol, family and type; responses by zone and rcode; duration and size
// histograms. One instance per worker, written by that worker's thread only
// (plain relaxed loads and stores, no locked instructions on the hot path);
// a scrape, on any thread, reads and sums all instances. Label values are fixed at construction:
// bounded cardinality.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace localdns::metrics {

// A counter written by one thread and read by others.
class LocalCounter {
 public:
  void add(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// CoreDNS's buckets: request duration 0.25 ms .. 8.192 s (x2 each), sizes in bytes.
inline constexpr std::size_t kDurationBuckets = 16;
inline constexpr std::array<std::uint64_t, 14> kSizeBounds = {
    0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000, 48000, 64000};
double duration_bound_seconds(std::size_t i);  // upper bound of bucket i
// The duration bucket of `micros` (kDurationBuckets: +Inf).
inline std::size_t duration_bucket(std::uint64_t micros) {
  std::size_t i = 0;
  while (i < kDurationBuckets && micros > (std::uint64_t{250} << i))
    ++i;
  return i;
}

// The types CoreDNS reports by name; everything else is "other".
inline constexpr std::array<std::string_view, 15> kTypeNames = {
    "A",   "AAAA",  "NS",   "PTR", "SOA",    "CNAME", "MX",   "TXT",
    "SRV", "HTTPS", "SVCB", "DS",  "DNSKEY", "ANY",   "other"};
std::size_t type_index(std::uint16_t qtype);

inline constexpr std::array<std::string_view, 7> kRcodeNames = {
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other"};
std::size_t rcode_index(unsigned rcode);

enum class Proto : std::uint8_t { Udp = 0, Tcp = 1 };
enum class Family : std::uint8_t { V4 = 0, V6 = 1 };

// Histogram with fixed bounds, written by one thread.
template <std::size_t N>
struct LocalHistogram {
  std::array<LocalCounter, N + 1> buckets;  // last one: +Inf
  LocalCounter sum;                         // in the unit of observe()
};

class QueryMetrics {
 public:
  // `zones`: label values; the last one is used for queries no zone routes
  // (CoreDNS calls that zone "dropped").
  explicit QueryMetrics(std::size_t zones);

  void request(std::size_t zone, Proto p, Family f, std::uint16_t qtype, std::size_t size);
  void response(std::size_t zone, Proto p, unsigned rcode, std::size_t size, std::uint64_t micros);

  std::size_t zones() const { return zones_; }
  std::uint64_t requests(std::size_t zone, Proto p, Family f, std::size_t type) const;
  std::uint64_t responses(std::size_t zone, std::size_t rcode) const;
  const LocalHistogram<kDurationBuckets>& duration(std::size_t zone) const;  // sum in us
  const LocalHistogram<kSizeBounds.size()>& request_size(std::size_t zone, Proto p) const;
  const LocalHistogram<kSizeBounds.size()>& response_size(std::size_t zone, Proto p) const;

 private:
  std::size_t zones_;
  std::unique_ptr<LocalCounter[]> requests_;                      // zone x proto x family x type
  std::unique_ptr<LocalCounter[]> responses_;                     // zone x rcode
  std::unique_ptr<LocalHistogram<kDurationBuckets>[]> duration_;  // zone
  std::unique_ptr<LocalHistogram<kSizeBounds.size()>[]> request_size_;   // zone x proto
  std::unique_ptr<LocalHistogram<kSizeBounds.size()>[]> response_size_;  // zone x proto
};

}  // namespace localdns::metrics
