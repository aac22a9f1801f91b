// The fault soak's upstream (tests/soak/soak.sh): the tests' FakeUpstream as a
// program, on a free loopback port, UDP and TCP. It prints "port N", then reads
// commands on stdin, one a line, and answers each with one line:
//   phase NAME   switch to a phase (below); answers "phase NAME" and the counters
//   counters     "counters udp=N tcp=N connections=N open_tcp=N"
// It exits at end of input (the soak closes its end of the pipe), or on "quit".
//
// Phases: healthy (A 192.0.2.1 for every name), slow (every answer 2 s late),
// dead (nothing answered, UDP or TCP), tcp-reset (every TCP connection reset
// when its third query arrives), tc-silent-tcp (UDP answers truncated, TC=1;
// TCP queries read and never answered), servfail (every answer SERVFAIL).
//
//   fault_upstream [--ttl SECONDS]   TTL of the answers (default 86400)
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include "fake_upstream.hpp"

namespace {

using localdns::test::Behaviour;
using localdns::test::FakeUpstream;

std::map<std::string, Behaviour> phases(std::uint32_t ttl) {
  Behaviour healthy;
  healthy.answer_ttl = ttl;
  Behaviour slow = healthy;
  slow.delay = std::chrono::milliseconds(2000);
  Behaviour dead = healthy;
  dead.mode = Behaviour::Mode::Drop;
  Behaviour reset = healthy;
  reset.reset_tcp_after = 3;
  Behaviour tc_silent = healthy;
  tc_silent.truncate_udp = true;
  tc_silent.drop_tcp = true;
  Behaviour servfail = healthy;
  servfail.mode = Behaviour::Mode::ServFail;
  return {{"healthy", healthy},         {"slow", slow},        {"dead", dead}, {"tcp-reset", reset},
          {"tc-silent-tcp", tc_silent}, {"servfail", servfail}};
}

std::string counters(const FakeUpstream& up) {
  return "udp=" + std::to_string(up.udp_queries()) + " tcp=" + std::to_string(up.tcp_queries()) +
         " connections=" + std::to_string(up.tcp_connections()) +
         " open_tcp=" + std::to_string(up.open_tcp_connections());
}

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t ttl = 86400;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--ttl" && i + 1 < argc) {
      ttl = static_cast<std::uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else {
      std::cerr << "usage: fault_upstream [--ttl SECONDS]\n";
      return 2;
    }
  }
  auto table = phases(ttl);
  FakeUpstream up;
  up.set(table.at("healthy"));
  std::cout << "port " << up.port() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line == "quit") break;
    if (line == "counters") {
      std::cout << "counters " << counters(up) << std::endl;
    } else if (line.rfind("phase ", 0) == 0 && table.count(line.substr(6))) {
      up.set(table.at(line.substr(6)));
      std::cout << line << " " << counters(up) << std::endl;
    } else {
      std::cout << "error: unknown command '" << line << "'" << std::endl;
    }
  }
  return 0;
}
