#include <localdns/upstream/settings.hpp>

namespace localdns::upstream {

std::string_view to_string(Transport t) {
  switch (t) {
    case Transport::Tcp:
      return "tcp";
    case Transport::Udp:
      return "udp";
    case Transport::PreferUdp:
      return "prefer_udp";
  }
  return "?";
}

std::string_view to_string(Policy p) {
  switch (p) {
    case Policy::Sequential:
      return "sequential";
    case Policy::Random:
      return "random";
    case Policy::RoundRobin:
      return "round_robin";
  }
  return "?";
}

}  // namespace localdns::upstream
