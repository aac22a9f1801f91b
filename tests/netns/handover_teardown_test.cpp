// The last instance out tears down (README.md, "Upgrades"): with node setup
// (interface and NOTRACK rules) in a fresh network namespace, instance A hands
// over to B and stops its sync passes; A's SIGTERM leaves interface and rules
// to B, B's removes them. A donor that gets SIGTERM in the middle of a
// handover leaves them too, and `localdns cleanup` still removes everything.
#include <chrono>
#include <fstream>
#include <string>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/handover.hpp>

#include "daemon.hpp"
#include "netns.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using namespace std::chrono_literals;

namespace {

const Endpoint kLocal{"169.254.20.10", 53};

std::string control_path() {
  return "/tmp/localdns-handover-netns-" + std::to_string(::getpid()) + ".sock";
}

std::vector<std::string> args(const std::string& control) {
  return {"--local-ip",       "169.254.20.10",
          "--interface-kind", "bridge",
          "--forward",        ".=udp://192.0.2.1",
          "--metrics",        "off",
          "--health",         "off",
          "--control-socket", control,
          "--sync-interval",  "1h"};
}

bool link_present() {
  return test::sh("ip link show nodelocaldns 2>/dev/null | wc -l", false) != "0\n";
}

// localdns's rules, in whichever backend it chose.
int rules() {
  return test::count_lines_with(test::sh("iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; "
                                         "nft list ruleset 2>/dev/null",
                                         false),
                                "169.254.20.10");
}

}  // namespace

TEST_CASE(
    "handover teardown: the donor leaves node setup to its successor, the last one removes it",
    "[netns][handover]") {
  test::require_root_or_skip("handover teardown test");
  test::ScopedNetns ns;
  auto control = control_path();
  Daemon a(args(control));
  REQUIRE(a.wait_ready(kLocal, 5s));
  REQUIRE(link_present());
  int before = rules();
  REQUIRE(before > 0);

  Daemon b(args(control));
  REQUIRE(b.wait_log("handover: serving on", 1, 5s));
  REQUIRE(a.wait_log("handover: handed over to pid", 1, 5s));
  // A's sync passes stop: B alone keeps the node in order.
  CHECK(a.log_count("node setup: no more sync passes") == 1);
  REQUIRE(a.terminate(5s));
  INFO("A:\n" << a.log() << "\nB:\n" << b.log());
  CHECK(a.log().find("node setup: left in place for the instance that took over") !=
        std::string::npos);
  CHECK(link_present());
  CHECK(rules() == before);
  CHECK(udp_query(kLocal, make_query("health.localdns.invalid", "A"), 1s).has_value());

  // B had no successor: it is the last one out.
  REQUIRE(b.terminate(5s));
  CHECK_FALSE(link_present());
  CHECK(rules() == 0);
  ::unlink(control.c_str());
}

TEST_CASE("handover teardown: SIGTERM in the middle of a handover leaves node setup in place",
          "[netns][handover]") {
  test::require_root_or_skip("handover teardown test");
  test::ScopedNetns ns;
  auto control = control_path();
  Daemon a(args(control));
  REQUIRE(a.wait_ready(kLocal, 5s));
  int before = rules();
  REQUIRE(before > 0);
  {
    // A successor that got the sockets and never said "taken".
    auto t = app::request_handover(control);
    REQUIRE(t.has_value());
    CHECK(t->pool.received() >= 2);  // each worker's UDP and TCP sockets
    REQUIRE(a.wait_log("handover: pid", 1, 5s));
    REQUIRE(a.terminate(5s));
  }
  INFO(a.log());
  CHECK(a.log().find("stopping before it took the sockets") != std::string::npos);
  CHECK(link_present());
  CHECK(rules() == before);
  // An uninstall still removes everything.
  auto out = test::sh(LOCALDNS_BINARY " cleanup --interface-kind bridge 2>&1", false);
  INFO(out);
  CHECK_FALSE(link_present());
  CHECK(rules() == 0);
  ::unlink(control.c_str());
}
