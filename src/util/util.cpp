#include <stdlib.h>  // arc4random (glibc 2.36)
#include <sys/socket.h>

#include <boost/asio/ip/udp.hpp>

#include <localdns/util/clock.hpp>
#include <localdns/util/endpoint.hpp>
#include <localdns/util/random.hpp>

namespace localdns::util {

namespace {

class RealClock final : public Clock {
 public:
  TimePoint now() const override { return SteadyClock::now(); }
};

class SystemRandom final : public Random {
 public:
  std::uint32_t next() override { return arc4random(); }
  std::uint32_t below(std::uint32_t bound) override { return arc4random_uniform(bound); }
};

}  // namespace

const Clock& Clock::real() {
  static const RealClock clock;
  return clock;
}

Random& Random::system() {
  static SystemRandom random;
  return random;
}

std::optional<Endpoint> bound_endpoint(int fd) {
  boost::asio::ip::udp::endpoint bound;  // sockaddr storage for either protocol
  auto len = static_cast<socklen_t>(bound.capacity());
  if (::getsockname(fd, bound.data(), &len) != 0) return std::nullopt;
  bound.resize(len);
  return Endpoint{bound.address(), bound.port()};
}

std::string Endpoint::to_string() const {
  if (address.is_v6()) return "[" + address.to_string() + "]:" + std::to_string(port);
  return address.to_string() + ":" + std::to_string(port);
}

}  // namespace localdns::util
