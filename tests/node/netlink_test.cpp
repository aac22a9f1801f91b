// The interface over route netlink, in a fresh network namespace per test.
// This kernel has no `dummy` link type; the tests use `bridge`, which delivers
// locally the same way, and check the error for `dummy`.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/udp.hpp>
#include <catch2/catch.hpp>

#include <localdns/node/conntrack.hpp>
#include <localdns/node/link.hpp>

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
  CHECK(*removed);
  CHECK_FALSE(nl->inspect("nodelocaldns")->exists);
  auto removed_again = nl->remove("nodelocaldns");
  REQUIRE(removed_again);
  CHECK_FALSE(*removed_again);
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
  // Nothing was added to it.
  CHECK(test::sh("ip addr show dev nodelocaldns").find("169.254.20.10") == std::string::npos);
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
