// An IP address and port: a listener, an upstream server, an HTTP endpoint.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <boost/asio/ip/address.hpp>

namespace localdns::util {

// Every configured time is kept in milliseconds.
using Duration = std::chrono::milliseconds;

struct Endpoint {
  boost::asio::ip::address address;
  std::uint16_t port = 53;

  std::string to_string() const;  // "1.2.3.4:53", "[::1]:53"
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// The address socket `fd` is bound to (getsockname); nullopt with errno set
// when it cannot be read.
std::optional<Endpoint> bound_endpoint(int fd);

}  // namespace localdns::util
