// Hostile input: random bytes, truncations and bit flips over UDP, bad length
// prefixes over TCP. localdns must answer FORMERR or drop, and keep serving.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <random>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "fake_upstream.hpp"
#include "instance.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

namespace {
// Sends in batches of 100 and waits for localdns to have read each batch, so
// that the parser is tested rather than the socket buffer of a slow build.
void send_datagrams(const Endpoint& ep, const std::vector<Packet>& packets, app::Runtime& server) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(ep.port);
  inet_pton(AF_INET, ep.address.c_str(), &sa.sin_addr);
  const auto base = server.stats().queries;
  for (std::size_t i = 0; i < packets.size(); ++i) {
    const auto& p = packets[i];
    ::sendto(fd, p.data(), p.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    if (i % 100 == 99 || i + 1 == packets.size()) {
      wait_until(
          within(2s), [&] { return server.stats().queries - base >= i + 1; }, 1ms);
    }
  }
  ::close(fd);
}

void expect_still_serving(const Endpoint& ep) {
  auto r = udp_query(ep, make_query("still.example", "A", {.id = 999}));
  REQUIRE(r);
  auto d = decode(*r);
  CHECK(d.id == 999);
  CHECK(d.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  auto t = tcp_query(ep, make_query("still.example", "A", {.id = 998}));
  REQUIRE(t);
  CHECK(decode(*t).id == 998);
}
}  // namespace

TEST_CASE("thousands of malformed datagrams, then a valid query", "[integration][malformed]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  std::mt19937 rng(20261126);
  std::vector<Packet> packets;
  auto valid = make_query("fuzz.example", "A", {.edns = true});
  for (int i = 0; i < 3000; ++i) {  // random bytes of random length
    Packet p(rng() % 600);
    for (auto& b : p)
      b = static_cast<std::uint8_t>(rng());
    if (p.size() > 2) p[2] &= 0x7f;  // mostly "queries", so the parser is reached
    packets.push_back(std::move(p));
  }
  for (std::size_t len = 0; len < valid.size(); ++len) {  // every truncation
    packets.emplace_back(valid.begin(), valid.begin() + static_cast<long>(len));
  }
  for (int i = 0; i < 3000; ++i) {  // bit flips of a valid query
    Packet p = valid;
    for (int k = 0; k < 3; ++k)
      p[rng() % p.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    packets.push_back(std::move(p));
  }
  send_datagrams(ld.endpoint(), packets, ld.server());
  expect_still_serving(ld.endpoint());
  auto s = ld.server().stats();
  CHECK(s.queries >= packets.size());  // every datagram reached the parser
  CHECK(s.formerr > 1000);
  CHECK(s.dropped > 0);
}

TEST_CASE("malformed queries get FORMERR with the client's ID", "[integration][malformed]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  Packet bad = {0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 60, 'x'};
  auto r = udp_query(ld.endpoint(), bad, 2000ms);
  REQUIRE(r);
  REQUIRE(r->size() >= 12);
  CHECK((*r)[0] == 0xAB);
  CHECK((*r)[1] == 0xCD);
  CHECK(((*r)[3] & 0x0f) == 1);  // FORMERR
  auto notify = make_query("x.example", "SOA", {.id = 0x0102});
  notify[2] = static_cast<std::uint8_t>((notify[2] & 0x87) | (4 << 3));
  auto n = udp_query(ld.endpoint(), notify, 2000ms);
  REQUIRE(n);
  CHECK(decode(*n).rcode == "NOTIMPL");
  auto two = make_query("x.example", "A", {.id = 0x0304});
  two[5] = 2;
  auto t = udp_query(ld.endpoint(), two, 2000ms);
  REQUIRE(t);
  CHECK(((*t)[3] & 0x0f) == 1);
  CHECK(up.queries() == 0);
}

TEST_CASE("bad TCP length prefixes close only that connection", "[integration][malformed]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  SECTION("zero length") {
    TcpStream s(ld.endpoint());
    std::uint8_t zero[2] = {0, 0};
    REQUIRE(s.send_raw(zero, 2));
    CHECK(s.wait_closed(2000ms));
  }
  SECTION("huge length") {
    TcpStream s(ld.endpoint());
    std::uint8_t huge[4] = {0xff, 0xff, 1, 2};
    REQUIRE(s.send_raw(huge, 4));
    CHECK(s.wait_closed(2000ms));
  }
  SECTION("short frames are skipped, the connection keeps working") {
    TcpStream s(ld.endpoint());
    std::uint8_t shorty[7] = {0, 5, 1, 2, 3, 4, 5};
    REQUIRE(s.send_raw(shorty, 7));
    REQUIRE(s.send_framed(make_query("after.example", "A", {.id = 31})));
    auto r = s.read_framed();
    REQUIRE(r);
    CHECK(decode(*r).id == 31);
  }
  SECTION("random garbage streams") {
    std::mt19937 rng(7);
    for (int c = 0; c < 50; ++c) {
      TcpStream s(ld.endpoint());
      Packet junk(rng() % 3000);
      for (auto& b : junk)
        b = static_cast<std::uint8_t>(rng());
      s.send_raw(junk.data(), junk.size());
    }
  }
  SECTION("a connection that stops mid-message") {
    TcpStream s(ld.endpoint());
    std::uint8_t partial[5] = {0, 40, 1, 2, 3};
    REQUIRE(s.send_raw(partial, 5));
  }
  expect_still_serving(ld.endpoint());
}
