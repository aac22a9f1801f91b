#include <localdns/metrics/query_metrics.hpp>

namespace localdns::metrics {

namespace {
constexpr std::size_t kTypes = kTypeNames.size();
constexpr std::size_t kRcodes = kRcodeNames.size();
}  // namespace

double duration_bound_seconds(std::size_t i) {
  return 0.00025 * static_cast<double>(std::uint64_t{1} << i);
}

std::size_t type_index(std::uint16_t qtype) {
  switch (qtype) {
    case 1:
      return 0;
    case 28:
      return 1;
    case 2:
      return 2;
    case 12:
      return 3;
    case 6:
      return 4;
    case 5:
      return 5;
    case 15:
      return 6;
    case 16:
      return 7;
    case 33:
      return 8;
    case 65:
      return 9;
    case 64:
      return 10;
    case 43:
      return 11;
    case 48:
      return 12;
    case 255:
      return 13;
    default:
      return 14;
  }
}

std::size_t rcode_index(unsigned rcode) {
  return rcode < kRcodes - 1 ? rcode : kRcodes - 1;
}

QueryMetrics::QueryMetrics(std::size_t zones)
    : zones_(zones),
      requests_(new LocalCounter[zones * 2 * 2 * kTypes]),
      responses_(new LocalCounter[zones * kRcodes]),
      duration_(new LocalHistogram<kDurationBuckets>[zones]),
      request_size_(new LocalHistogram<kSizeBounds.size()>[zones * 2]),
      response_size_(new LocalHistogram<kSizeBounds.size()>[zones * 2]) {}

namespace {

template <std::size_t N>
void observe_size(LocalHistogram<N>& h, std::size_t size) {
  std::size_t i = 0;
  while (i < kSizeBounds.size() && size > kSizeBounds[i])
    ++i;
  h.buckets[i].add();
  h.sum.add(size);
}

}  // namespace

void QueryMetrics::request(std::size_t zone, Proto p, Family f, std::uint16_t qtype,
                           std::size_t size) {
  auto pi = static_cast<std::size_t>(p), fi = static_cast<std::size_t>(f);
  requests_[((zone * 2 + pi) * 2 + fi) * kTypes + type_index(qtype)].add();
  observe_size(request_size_[zone * 2 + pi], size);
}

void QueryMetrics::response(std::size_t zone, Proto p, unsigned rcode, std::size_t size,
                            std::uint64_t micros) {
  responses_[zone * kRcodes + rcode_index(rcode)].add();
  observe_size(response_size_[zone * 2 + static_cast<std::size_t>(p)], size);
  auto& d = duration_[zone];
  d.buckets[duration_bucket(micros)].add();
  d.sum.add(micros);
}

std::uint64_t QueryMetrics::requests(std::size_t zone, Proto p, Family f, std::size_t type) const {
  auto pi = static_cast<std::size_t>(p), fi = static_cast<std::size_t>(f);
  return requests_[((zone * 2 + pi) * 2 + fi) * kTypes + type].get();
}

std::uint64_t QueryMetrics::responses(std::size_t zone, std::size_t rcode) const {
  return responses_[zone * kRcodes + rcode].get();
}

const LocalHistogram<kDurationBuckets>& QueryMetrics::duration(std::size_t zone) const {
  return duration_[zone];
}

const LocalHistogram<kSizeBounds.size()>& QueryMetrics::request_size(std::size_t zone,
                                                                     Proto p) const {
  return request_size_[zone * 2 + static_cast<std::size_t>(p)];
}

const LocalHistogram<kSizeBounds.size()>& QueryMetrics::response_size(std::size_t zone,
                                                                      Proto p) const {
  return response_size_[zone * 2 + static_cast<std::size_t>(p)];
}

}  // namespace localdns::metrics
