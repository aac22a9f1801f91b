// The interface over route netlink, in a fresh network namespace per test.
// This kernel has no `dummy` link type; the tests use `bridge`, which delivers
// locally the same way, and check the error for `dummy`.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/udp.hpp>
#include <catch2/catch.hpp>

#include <localdns/config/cli.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/node/conntrack.hpp>
#include <localdns/node/link.hpp>
#include <localdns/node/node_setup.hpp>

#include "netns.hpp"

using namespace localdns;
using boost::asio::ip::make_address;

namespace {

// Binds a UDP socket to addr:port; true on success. Tentative IPv6 addresses fail here.
bool can_bind(const boost::asio::ip::address& addr) {
  boost::asio::io_context io;
  boost::asio::ip::udp::socket s(io);
  boost::system::error_code ec;
  s.open(addr.is_v4() ? boost::asio::ip::udp::v4() : boost::asio::ip::udp::v6(), ec);
  if (ec) return false;
  s.bind({addr, 5353}, ec);
  return !ec;
}

}  // namespace

TEST_CASE("netlink: create, find, adopt, address and remove the interface", "[node][netlink]") {
  test::require_root_or_skip("netlink interface test");
  test::ScopedNetns ns;
  auto nl = node::Netlink::open();
  REQUIRE(nl);
  node::LinkSpec spec{
      "nodelocaldns",
      "bridge",
      {make_address("169.254.20.10"), make_address("10.96.0.10"), make_address("fd00::10")}};

  auto before = nl->inspect("nodelocaldns");
  REQUIRE(before);
  CHECK_FALSE(before->exists);

  auto created = nl->ensure(spec);
  REQUIRE(created);
  CHECK(created->created);
  CHECK(created->added.size() == 3);

  auto state = nl->inspect("nodelocaldns");
  REQUIRE(state);
  CHECK(state->exists);
  CHECK(state->kind == "bridge");
  CHECK(state->up);
  for (const auto& a : spec.addresses) {
    CHECK(std::find(state->addresses.begin(), state->addresses.end(), a) != state->addresses.end());
    // IPv6 without duplicate address detection is usable at once.
    CHECK(can_bind(a));
  }
  std::string shown = test::sh("ip addr show dev nodelocaldns");
  CHECK(shown.find("169.254.20.10/32") != std::string::npos);
  CHECK(shown.find("fd00::10/128") != std::string::npos);
  CHECK(shown.find("nodad") != std::string::npos);

  // Adopting what is already there changes nothing.
  auto again = nl->ensure(spec);
  REQUIRE(again);
  CHECK(again->count() == 0);

  // Repairs: an address removed and the link set down by hand come back.
  test::sh("ip addr del 10.96.0.10/32 dev nodelocaldns && ip link set nodelocaldns down");
  auto repaired = nl->ensure(spec);
  REQUIRE(repaired);
  CHECK(repaired->brought_up);
  // Setting a link down also drops its IPv6 addresses; both come back.
  CHECK(repaired->added == std::vector<boost::asio::ip::address>{make_address("10.96.0.10"),
                                                                 make_address("fd00::10")});
  CHECK(repaired->count() == 3);
  CHECK(can_bind(make_address("fd00::10")));

  auto removed = nl->remove("nodelocaldns");
  REQUIRE(removed);
  CHECK(*removed == node::LinkRemoval::removed);
  CHECK_FALSE(nl->inspect("nodelocaldns")->exists);
  auto removed_again = nl->remove("nodelocaldns");
  REQUIRE(removed_again);
  CHECK(*removed_again == node::LinkRemoval::absent);
}

namespace {

// A config as `localdns --local-ip 169.254.20.10 --local-ip 10.96.0.10
// --interface-kind bridge --no-setup-rules` builds it.
config::Config link_config() {
  std::vector<std::string_view> args = {
      "--local-ip", "169.254.20.10",    "--local-ip", "10.96.0.10",         "--interface-kind",
      "bridge",     "--no-setup-rules", "--forward",  ".=udp://10.244.0.53"};
  auto opts = config::parse_cli(args);
  REQUIRE(opts);
  auto cfg = config::build_config(*opts);
  REQUIRE(cfg);
  return *cfg;
}

bool link_exists(const std::string& name) {
  return test::sh("ip link show " + name + " >/dev/null 2>&1 && echo yes", false) == "yes\n";
}

}  // namespace

TEST_CASE("netlink: an interface localdns creates is marked with its alias", "[node][netlink]") {
  test::require_root_or_skip("netlink interface test");
  test::ScopedNetns ns;
  auto nl = node::Netlink::open();
  REQUIRE(nl);
  auto created = nl->ensure({"nodelocaldns", "bridge", {make_address("169.254.20.10")}});
  REQUIRE(created);
  CHECK(created->created);
  CHECK_FALSE(created->adopted);
  auto state = nl->inspect("nodelocaldns");
  REQUIRE(state);
  CHECK(state->alias == "localdns");
  CHECK(state->ours());
  CHECK(test::sh("ip link show dev nodelocaldns").find("alias localdns") != std::string::npos);
  // Marked: the next start uses it as is, teardown deletes it.
  auto again = nl->ensure({"nodelocaldns", "bridge", {make_address("169.254.20.10")}});
  REQUIRE(again);
  CHECK(again->count() == 0);
  CHECK(*nl->remove("nodelocaldns") == node::LinkRemoval::removed);
  CHECK_FALSE(link_exists("nodelocaldns"));
}

TEST_CASE("netlink: an unmarked interface holding another address is refused and never deleted",
          "[node][netlink]") {
  test::require_root_or_skip("netlink interface test");
  test::ScopedNetns ns;
  // Someone's bridge, named and kinded as configured (think `name: cni0, kind: bridge`).
  test::sh(
      "ip link add nodelocaldns type bridge && ip addr add 10.1.2.3/24 dev nodelocaldns && "
      "ip addr add 169.254.20.10/32 dev nodelocaldns");
  auto cfg = link_config();
  {
    node::NodeSetup setup(config::node_settings(cfg));
    auto applied = setup.apply();
    REQUIRE_FALSE(applied);
    INFO(applied.error());
    CHECK_THAT(applied.error(), Catch::Contains("is not marked as localdns's") &&
                                    Catch::Contains("holds other addresses (10.1.2.3)") &&
                                    Catch::Contains("choose another --interface-name"));
    setup.teardown();
  }
  // Nothing was added, marked or deleted.
  REQUIRE(link_exists("nodelocaldns"));
  std::string shown = test::sh("ip addr show dev nodelocaldns");
  CHECK(shown.find("10.1.2.3/24") != std::string::npos);
  CHECK(shown.find("10.96.0.10") == std::string::npos);
  CHECK(test::sh("ip link show dev nodelocaldns").find("alias") == std::string::npos);

  auto report = node::cleanup_node(config::node_settings(cfg));
  CHECK(report.ok);
  CHECK(std::find(report.lines.begin(), report.lines.end(),
                  "interface nodelocaldns is not marked as localdns's (alias ''): left alone") !=
        report.lines.end());
  CHECK(link_exists("nodelocaldns"));
  auto nl = node::Netlink::open();
  REQUIRE(nl);
  CHECK(*nl->remove("nodelocaldns") == node::LinkRemoval::not_ours);
  CHECK(link_exists("nodelocaldns"));

  // Through the binary: a clear error, exit 1, the interface intact.
  std::string out = test::sh(LOCALDNS_BINARY
                             " --local-ip 169.254.20.10 --interface-kind bridge --no-setup-rules"
                             " --forward .=udp://192.0.2.1 --control off 2>&1; echo exit=$?",
                             false);
  INFO(out);
  CHECK(out.find("holds other addresses (10.1.2.3)") != std::string::npos);
  CHECK(out.find("exit=1") != std::string::npos);
  CHECK(test::sh("ip addr show dev nodelocaldns").find("10.1.2.3/24") != std::string::npos);
  out = test::sh(LOCALDNS_BINARY " cleanup --interface-kind bridge 2>&1", false);
  CHECK(out.find("left alone") != std::string::npos);
  CHECK(link_exists("nodelocaldns"));
}

TEST_CASE("netlink: an unmarked interface of the kind with only our addresses is adopted",
          "[node][netlink]") {
  test::require_root_or_skip("netlink interface test");
  for (bool with_address : {false, true}) {
    DYNAMIC_SECTION((with_address ? "holding one of ours" : "empty")) {
      test::ScopedNetns ns;
      // node-local-dns's leftover: its link, never set up, maybe with its address.
      test::sh("ip link add nodelocaldns type bridge");
      if (with_address) test::sh("ip addr add 169.254.20.10/32 dev nodelocaldns");
      auto cfg = link_config();
      node::NodeSetup setup(config::node_settings(cfg));
      REQUIRE(setup.apply());
      std::string shown = test::sh("ip addr show dev nodelocaldns");
      INFO(shown);
      CHECK(test::sh("ip link show dev nodelocaldns").find("alias localdns") != std::string::npos);
      CHECK(shown.find("169.254.20.10/32") != std::string::npos);
      CHECK(shown.find("10.96.0.10/32") != std::string::npos);
      CHECK(shown.find(",UP") != std::string::npos);
      setup.teardown();
      CHECK_FALSE(link_exists("nodelocaldns"));
    }
  }
  SECTION("and removed by cleanup once marked") {
    test::ScopedNetns ns;
    test::sh("ip link add nodelocaldns type bridge");
    auto nl = node::Netlink::open();
    REQUIRE(nl);
    auto adopted = nl->ensure({"nodelocaldns", "bridge", {make_address("169.254.20.10")}});
    REQUIRE(adopted);
    CHECK(adopted->adopted);
    CHECK_FALSE(adopted->created);
    auto report = node::cleanup_node(config::node_settings(link_config()));
    CHECK(report.ok);
    CHECK(std::find(report.lines.begin(), report.lines.end(), "removed interface nodelocaldns") !=
          report.lines.end());
    CHECK_FALSE(link_exists("nodelocaldns"));
  }
}

TEST_CASE("netlink: a kernel without the link kind gets an error that says so", "[node][netlink]") {
  test::require_root_or_skip("netlink interface test");
  test::ScopedNetns ns;
  auto nl = node::Netlink::open();
  REQUIRE(nl);
  // This kernel has no dummy driver; a made-up kind fails the same way where it has one.
  bool has_dummy =
      test::sh("ip link add probe0 type dummy 2>/dev/null && echo yes", false) == "yes\n";
  std::string kind = has_dummy ? "nosuchkind" : "dummy";
  auto r = nl->ensure({"nodelocaldns", kind, {make_address("169.254.20.10")}});
  REQUIRE_FALSE(r);
  INFO(r.error());
  CHECK(r.error().find("the kernel has no '" + kind + "' link type") != std::string::npos);
  CHECK(r.error().find("--interface-kind") != std::string::npos);
  CHECK_FALSE(nl->inspect("nodelocaldns")->exists);
}

TEST_CASE("netlink: an existing interface of another kind is not taken over", "[node][netlink]") {
  test::require_root_or_skip("netlink interface test");
  test::ScopedNetns ns;
  test::sh("ip link add nodelocaldns type veth peer name other0");
  auto nl = node::Netlink::open();
  REQUIRE(nl);
  auto r = nl->ensure({"nodelocaldns", "bridge", {make_address("169.254.20.10")}});
  REQUIRE_FALSE(r);
  CHECK(r.error().find("exists with kind 'veth'") != std::string::npos);
  // Nothing was added to it, and nothing deletes it.
  CHECK(test::sh("ip addr show dev nodelocaldns").find("169.254.20.10") == std::string::npos);
  CHECK(*nl->remove("nodelocaldns") == node::LinkRemoval::not_ours);
  node::cleanup_node(config::node_settings(link_config()));
  CHECK(link_exists("nodelocaldns"));
}

TEST_CASE("netlink: without CAP_NET_ADMIN the error names the capability", "[node][netlink]") {
  test::require_root_or_skip("netlink capability test");
  // A child drops CAP_NET_ADMIN with capsh-free prctl: run as nobody instead.
  std::string out = test::sh(
      "cd / && setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all " LOCALDNS_BINARY
      " --local-ip 169.254.20.10 --interface-kind bridge --no-setup-rules"
      " --forward .=udp://192.0.2.1 2>&1; echo exit=$?",
      false);
  INFO(out);
  CHECK(out.find("CAP_NET_ADMIN") != std::string::npos);
  CHECK(out.find("exit=1") != std::string::npos);
}

TEST_CASE("conntrack: entries for the local addresses are deleted, others kept",
          "[node][conntrack]") {
  test::require_root_or_skip("conntrack test");
  test::ScopedNetns ns;
  test::sh(
      "ip link add nodelocaldns type bridge && ip link set nodelocaldns up && "
      "ip addr add 169.254.20.10/32 dev nodelocaldns");
  // A conntrack match makes this namespace track connections.
  test::sh("iptables-nft -w -A OUTPUT -m conntrack --ctstate NEW -j ACCEPT");
  // bash opens a fresh socket per redirection: a new flow each time.
  test::sh("bash -c 'for p in 53 53 54; do echo x > /dev/udp/169.254.20.10/$p; done'");
  auto table = [] { return test::sh("cat /proc/thread-self/net/nf_conntrack"); };
  std::string before = table();
  INFO(before);
  int dns = test::count_lines_with(before, "dport=53 ");
  REQUIRE(dns >= 1);
  REQUIRE(test::count_lines_with(before, "dport=54 ") >= 1);

  node::RuleTargets t;
  t.locals = {{make_address("169.254.20.10"), 53, std::nullopt}};
  auto r = node::delete_conntrack_entries(t);
  REQUIRE(r);
  CHECK(r->matched == static_cast<unsigned>(dns));
  CHECK(r->deleted == static_cast<unsigned>(dns));
  std::string after = table();
  CHECK(test::count_lines_with(after, "dport=53 ") == 0);
  CHECK(test::count_lines_with(after, "dport=54 ") >= 1);
}
