// Messages shared by the microbenchmarks: a query as localdns sends it
// upstream, and a one-record A answer to it.
#pragma once

#include <array>
#include <string>
#include <vector>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/name.hpp>

namespace localdns::bench {

inline std::vector<std::uint8_t> query_for(const std::string& name, std::uint16_t id) {
  std::array<std::uint8_t, 512> buf{};
  auto wire = *dns::name_from_text(name);
  dns::OutgoingQuery q{
      {dns::Bytes(reinterpret_cast<const std::uint8_t*>(wire.data()), wire.size()), 1, 1},
      id,
      true,
      false,
      false};
  std::size_t n = dns::build_query(q, buf);
  return {buf.begin(), buf.begin() + static_cast<long>(n)};
}

inline std::vector<std::uint8_t> answer_for(const std::vector<std::uint8_t>& query) {
  std::vector<std::uint8_t> a = query;
  a.resize(query.size() - dns::kOptRecordSize);
  a[2] = 0x85;  // QR AA RD
  a[3] = 0x80;  // RA
  a[7] = 1;     // ANCOUNT
  a[11] = 1;    // ARCOUNT: the OPT below
  a.insert(a.end(), {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 0, 10});
  a.insert(a.end(), {0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0});
  return a;
}

}  // namespace localdns::bench
