// Which control socket `localdns ctl` talks to without --socket: the default,
// then the systemd unit's RuntimeDirectory, or control_socket of --config.
#include <array>
#include <cstdio>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/control.hpp>

#include "fake_upstream.hpp"
#include "instance.hpp"
#include "run_binary.hpp"

using namespace localdns;
using namespace localdns::test;
using localdns::config::Transport;

namespace {
std::string temp(const std::string& what) {
  return "/tmp/localdns-ctlsock-" + std::to_string(::getpid()) + "-" + what;
}
}  // namespace

TEST_CASE("ctl tries the default socket, then the systemd runtime directory",
          "[integration][ctl]") {
  auto none = app::ctl_socket_candidates(std::nullopt, std::nullopt);
  REQUIRE(none);
  CHECK(*none == std::vector<std::string>{"/run/localdns.sock", "/run/localdns/localdns.sock"});
  auto flag = app::ctl_socket_candidates(std::string("/tmp/x.sock"), std::string("/nonexistent"));
  REQUIRE(flag);
  CHECK(*flag == std::vector<std::string>{"/tmp/x.sock"});  // --socket wins over --config
  auto bare = app::ctl_socket_candidates(
      std::nullopt, std::string(LOCALDNS_SOURCE_DIR) + "/config/bare-metal.yaml");
  REQUIRE(bare);
  CHECK(*bare == std::vector<std::string>{"/run/localdns/localdns.sock"});
  auto off_path = temp("off.yaml");
  std::ofstream(off_path) << "control_socket: off\n";
  auto off = app::ctl_socket_candidates(std::nullopt, off_path);
  REQUIRE_FALSE(off);
  CHECK(off.error() == off_path + ": control_socket is off: no localdns ctl");
  auto missing = app::ctl_socket_candidates(std::nullopt, std::string("/nonexistent/l.yaml"));
  REQUIRE_FALSE(missing);
  CHECK_THAT(missing.error(), Catch::Contains("/nonexistent/l.yaml: cannot open"));
  std::remove(off_path.c_str());
}

TEST_CASE("ctl --config talks to the socket the config names", "[integration][ctl]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto sock = temp("ctl.sock");
  app::ControlServer ctl(ld.server(), nullptr, sock);
  auto cfg = temp("ctl.yaml");
  std::ofstream(cfg) << "listen: [\"127.0.0.1:5353\"]\ncontrol_socket: " << sock << "\n";
  auto r = run("ctl --config " + cfg + " stats");
  CHECK(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("queries"));
  auto bad = run("ctl --config /nonexistent/l.yaml stats");
  CHECK(bad.status == 2);
  CHECK_THAT(bad.output, Catch::Contains("localdns ctl: /nonexistent/l.yaml: cannot open"));
  std::remove(cfg.c_str());
}

TEST_CASE("ctl without a running localdns names every socket it tried", "[integration][ctl]") {
  if (::access("/run/localdns.sock", F_OK) == 0 ||
      ::access("/run/localdns/localdns.sock", F_OK) == 0) {
    WARN("a localdns control socket exists on this host; not checking the message");
    return;
  }
  auto r = run("ctl stats");
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Catch::Contains("cannot connect to /run/localdns.sock: "));
  CHECK_THAT(r.output, Catch::Contains(", /run/localdns/localdns.sock: "));
}
