// One query through localdns, decoded; fails the current test on no answer.
#pragma once

#include <catch2/catch.hpp>

#include "dns_client.hpp"

namespace localdns::test {

inline Reply ask(const Endpoint& ep, const std::string& name, const std::string& type = "A",
                 bool tcp = false, QueryOptions o = {}) {
  auto q = make_query(name, type, o);
  auto r = tcp ? tcp_query(ep, q) : udp_query(ep, q);
  REQUIRE(r.has_value());
  return decode(*r);
}

}  // namespace localdns::test
