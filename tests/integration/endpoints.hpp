// Where the observability tests put localdns's HTTP endpoints and control
// socket: a loopback port, a fresh socket path.
#pragma once

#include <cstdint>
#include <string>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>

#include <localdns/util/endpoint.hpp>

#include "dns_client.hpp"

namespace localdns::test {

inline util::Endpoint loopback(std::uint16_t port) {
  return {boost::asio::ip::make_address("127.0.0.1"), port};
}

inline std::string temp_socket() {
  return "/tmp/localdns-ctl-test-" + std::to_string(::getpid()) + "-" +
         std::to_string(free_port()) + ".sock";
}

}  // namespace localdns::test
