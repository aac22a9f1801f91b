// DNS over TCP from clients (RFC 7766): pipelining, out-of-order answers,
// split framing, idle timeout and connection caps.
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "fake_upstream.hpp"
#include "instance.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

TEST_CASE("pipelined queries on one connection all come back", "[integration][tcp]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  TcpStream s(ld.endpoint());
  REQUIRE(s.connected());
  Packet all;
  for (std::uint16_t i = 0; i < 50; ++i) {
    auto q = make_query("p" + std::to_string(i) + ".example", "A", {.id = i});
    all.push_back(static_cast<std::uint8_t>(q.size() >> 8));
    all.push_back(static_cast<std::uint8_t>(q.size()));
    all.insert(all.end(), q.begin(), q.end());
  }
  REQUIRE(s.send_raw(all.data(), all.size()));  // one write, 50 queries
  std::set<std::uint16_t> ids;
  for (int i = 0; i < 50; ++i) {
    auto r = s.read_framed();
    REQUIRE(r.has_value());
    auto d = decode(*r);
    CHECK(d.qname == "p" + std::to_string(d.id) + ".example.");
    CHECK(d.rcode == "NOERROR");
    ids.insert(d.id);
  }
  CHECK(ids.size() == 50);
}

TEST_CASE("answers are sent as they complete, out of order", "[integration][tcp]") {
  FakeUpstream slow, quick;
  slow.set({.delay = 300ms});
  Instance ld({group({"slow.example"}, {slow.address()}, Transport::Udp),
               group({"."}, {quick.address()}, Transport::Udp)});
  TcpStream s(ld.endpoint());
  REQUIRE(s.send_framed(make_query("a.slow.example", "A", {.id = 1})));
  REQUIRE(s.send_framed(make_query("b.quick.example", "A", {.id = 2})));
  auto first = s.read_framed();
  auto second = s.read_framed();
  REQUIRE(first);
  REQUIRE(second);
  CHECK(decode(*first).id == 2);
  CHECK(decode(*second).id == 1);
}

TEST_CASE("length prefix and message split across segments", "[integration][tcp]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  TcpStream s(ld.endpoint());
  auto q = make_query("split.example", "A", {.id = 77});
  Packet framed{static_cast<std::uint8_t>(q.size() >> 8), static_cast<std::uint8_t>(q.size())};
  framed.insert(framed.end(), q.begin(), q.end());
  for (std::uint8_t b : framed) {
    REQUIRE(s.send_raw(&b, 1));
    std::this_thread::sleep_for(2ms);
  }
  auto r = s.read_framed();
  REQUIRE(r);
  CHECK(decode(*r).id == 77);
}

TEST_CASE("idle client connections are closed", "[integration][tcp]") {
  FakeUpstream up;
  config::Config c;
  c.tcp_clients.idle_timeout = 300ms;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Instance ld(c);
  TcpStream s(ld.endpoint());
  REQUIRE(s.send_framed(make_query("idle.example", "A")));
  REQUIRE(s.read_framed());
  CHECK(s.wait_closed(2000ms));
}

TEST_CASE("connections over the cap are refused, the others served", "[integration][tcp]") {
  FakeUpstream up;
  config::Config c;
  c.tcp_clients.max_connections = 2;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Instance ld(c);
  TcpStream a(ld.endpoint()), b(ld.endpoint());
  REQUIRE(a.send_framed(make_query("a.example", "A")));
  REQUIRE(b.send_framed(make_query("b.example", "A")));
  REQUIRE(a.read_framed());
  REQUIRE(b.read_framed());
  TcpStream third(ld.endpoint());
  CHECK(third.wait_closed(2000ms));
  REQUIRE(a.send_framed(make_query("again.example", "A")));
  CHECK(a.read_framed().has_value());
}

TEST_CASE("the pipelining cap delays reading but answers everything", "[integration][tcp]") {
  FakeUpstream up;
  up.set({.delay = 100ms});
  config::Config c;
  c.tcp_clients.max_pipelined = 3;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Instance ld(c);
  TcpStream s(ld.endpoint());
  for (std::uint16_t i = 0; i < 12; ++i) {
    REQUIRE(s.send_framed(make_query("cap" + std::to_string(i) + ".example", "A", {.id = i})));
  }
  std::set<std::uint16_t> ids;
  for (int i = 0; i < 12; ++i) {
    auto r = s.read_framed(3000ms);
    REQUIRE(r);
    ids.insert(decode(*r).id);
  }
  CHECK(ids.size() == 12);
}
