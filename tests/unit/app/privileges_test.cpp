// The capability sets localdns keeps after start: what it needs, and how it reads them back.
#include <linux/capability.h>

#include <boost/asio/ip/address.hpp>
#include <catch2/catch.hpp>

#include <localdns/app/privileges.hpp>
#include <localdns/config/config.hpp>

using namespace localdns;
using app::CapMask;

namespace {
constexpr CapMask bit(unsigned cap) {
  return CapMask{1} << cap;
}
constexpr const char* kStatus =
    "Name:\tlocaldns\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t0000000000003400\n"
    "CapEff:\t0000000000003400\nCapBnd:\t0000000000003400\nCapAmb:\t0000000000000000\n"
    "NoNewPrivs:\t0\n";
}  // namespace

TEST_CASE("capability sets are read from every Cap line of a status file", "[privileges]") {
  auto sets = app::parse_capability_sets(kStatus);
  REQUIRE(sets);
  CHECK(sets->permitted == 0x3400);
  CHECK(sets->effective == 0x3400);
  CHECK(sets->bounding == 0x3400);
  CHECK(sets->inheritable == 0);
  CHECK(sets->ambient == 0);
}

TEST_CASE("a status file with a missing, empty or malformed Cap line gives no sets",
          "[privileges]") {
  std::string s = kStatus;
  auto without = [&](const std::string& line) {
    std::string t = s;
    t.erase(t.find(line), line.size());
    return t;
  };
  CHECK_FALSE(app::parse_capability_sets(without("CapAmb:\t0000000000000000\n")));
  CHECK_FALSE(app::parse_capability_sets(without("CapBnd:\t0000000000003400\n")));
  std::string junk = s;
  junk.replace(junk.find("0000000000003400"), 16, "00000000000034zz");
  CHECK_FALSE(app::parse_capability_sets(junk));
  std::string empty = s;
  empty.replace(empty.find("0000000000003400"), 16, "");
  CHECK_FALSE(app::parse_capability_sets(empty));
  // "XCapEff:" is not the CapEff line.
  std::string shifted = s;
  shifted.replace(shifted.find("CapEff:"), 7, "XCapEff:");
  CHECK_FALSE(app::parse_capability_sets(shifted));
}

TEST_CASE("the kept capabilities follow what the run still does", "[privileges]") {
  CHECK(app::needed_capabilities({}) == 0);
  CHECK(app::needed_capabilities({.low_port = true}) == bit(CAP_NET_BIND_SERVICE));
  CHECK(app::needed_capabilities({.node_setup = true}) ==
        (bit(CAP_NET_ADMIN) | bit(CAP_NET_BIND_SERVICE)));
  CHECK(app::needed_capabilities({.node_setup = true, .iptables_legacy = true}) ==
        (bit(CAP_NET_ADMIN) | bit(CAP_NET_BIND_SERVICE) | bit(CAP_NET_RAW)));
  // iptables-legacy alone, without node setup, runs no helper: nothing.
  CHECK(app::needed_capabilities({.iptables_legacy = true}) == 0);
  CHECK(app::capability_names(0) == "none");
  CHECK(app::capability_names(bit(CAP_NET_ADMIN) | bit(CAP_NET_RAW)) == "net_admin, net_raw");
}

TEST_CASE("a port below 1024 anywhere in the config keeps CAP_NET_BIND_SERVICE", "[privileges]") {
  config::Config c = config::default_config();
  c.metrics.enabled = false;
  c.health.enabled = false;
  c.listen = {config::Endpoint{boost::asio::ip::make_address("127.0.0.1"), 5353}};
  CHECK_FALSE(app::has_low_port(c));
  c.listen.push_back(config::Endpoint{boost::asio::ip::make_address("127.0.0.1"), 53});
  CHECK(app::has_low_port(c));
}
