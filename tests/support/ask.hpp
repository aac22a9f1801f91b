// One query through localdns, decoded; fails the current test on no answer.
#pragma once

#include <catch2/catch.hpp>

#include "dns_client.hpp"

namespace localdns::test {

struct AskOptions {
  bool tcp = false;         // over TCP instead of UDP
  QueryOptions query = {};  // ID, RD, EDNS of the query
  std::chrono::milliseconds timeout = 3000ms;
};

inline Reply ask(const Endpoint& ep, const std::string& name, const std::string& type = "A",
                 AskOptions o = {}) {
  auto q = make_query(name, type, o.query);
  auto r = o.tcp ? tcp_query(ep, q, o.timeout) : udp_query(ep, q, o.timeout);
  REQUIRE(r.has_value());
  return decode(*r);
}

}  // namespace localdns::test
