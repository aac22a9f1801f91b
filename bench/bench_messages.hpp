// Messages shared by the microbenchmarks: a query as localdns sends it
// upstream (localdns's own builder), and a one-record A answer to it (the
// tests' packet builder).
#pragma once

#include <array>
#include <string>
#include <vector>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/name.hpp>

#include "packets.hpp"  // tests/support

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

// The answer: AA, one A record (10.96.0.10, TTL 30), an OPT.
inline std::vector<std::uint8_t> answer_for(const std::vector<std::uint8_t>& query) {
  return test::ResponseBuilder::answering(query)
      .aa()
      .answer(test::a_record(30, {10, 96, 0, 10}))
      .opt()
      .build();
}

}  // namespace localdns::bench
