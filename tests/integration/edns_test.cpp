// Extended DNS Errors (RFC 8914) that localdns adds itself, through a real
// server and a fault-injecting upstream, decoded with ldns.
#include <thread>

#include <catch2/catch.hpp>

#include "fake_upstream.hpp"
#include "instance.hpp"
#include "ldns_records.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

namespace {

Message ask_edns(const Endpoint& ep, const std::string& name, bool edns = true) {
  auto q = make_query(name, "A", {.id = 77, .edns = edns});
  auto r = udp_query(ep, q, 6000ms);
  REQUIRE(r.has_value());
  auto m = decode_message(*r);
  REQUIRE(m.has_value());
  return *m;
}

config::UpstreamGroup quick(config::UpstreamGroup g) {
  g.timeout = std::chrono::milliseconds(300);
  g.attempts = 2;
  return g;
}

}  // namespace

TEST_CASE("a SERVFAIL after upstream timeouts says No Reachable Authority", "[integration][ede]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  Instance ld({quick(group({"."}, {up.address()}, Transport::Udp))});
  auto m = ask_edns(ld.endpoint(), "silent.example");
  CHECK(m.rcode == 2);
  CHECK(m.ede == std::vector<Ede>{{22, "upstream timed out"}});
  auto plain = ask_edns(ld.endpoint(), "silent2.example", false);
  CHECK(plain.rcode == 2);
  CHECK_FALSE(plain.has_opt);
}

TEST_CASE("a SERVFAIL after refused connections says Network Error", "[integration][ede]") {
  // Nothing listens on this port: every TCP connect is refused at once.
  auto port = free_port();
  Instance ld({quick(group({"."}, {"127.0.0.1:" + std::to_string(port)}, Transport::Tcp))});
  auto m = ask_edns(ld.endpoint(), "closed.example");
  CHECK(m.rcode == 2);
  CHECK(m.ede == std::vector<Ede>{{23, "upstream unreachable or answer unusable"}});
}

TEST_CASE("a stale answer says Stale Answer", "[integration][ede]") {
  FakeUpstream up;
  auto g = quick(group({"."}, {up.address()}, Transport::Udp));
  g.attempts = 1;
  g.cache.max_ttl = std::chrono::seconds(1);
  g.cache.serve_stale = std::chrono::seconds(60);
  Instance ld({g});
  auto fresh = ask_edns(ld.endpoint(), "stale.example");
  REQUIRE(fresh.rcode == 0);
  CHECK(fresh.ede.empty());
  std::this_thread::sleep_for(1200ms);  // the entry's 1 s lifetime passes
  up.set({.mode = Behaviour::Mode::Drop});
  auto m = ask_edns(ld.endpoint(), "stale.example");
  CHECK(m.rcode == 0);
  REQUIRE(m.records.size() == 1);
  CHECK(m.records[0].rdata == FakeUpstream::answer_address());
  CHECK(m.ede == std::vector<Ede>{{3, ""}});
}
