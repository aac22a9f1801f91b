// The packet cache through the real listeners, with Knot DNS and the fake upstream.
#include <future>
#include <thread>

#include <catch2/catch.hpp>

#include "ask.hpp"
#include "fake_upstream.hpp"
#include "instance.hpp"
#include "knot_server.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

TEST_CASE("a repeated question is answered from the cache", "[integration][cache]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto first = ask(ld.endpoint(), "cached.example");
  REQUIRE(first.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  // Other letter case, other transport, other ID: same cache entry.
  auto second = ask(ld.endpoint(), "CACHED.Example", "A", {.tcp = true, .query = {.id = 4321}});
  CHECK(second.answers == first.answers);
  CHECK(second.qname == "CACHED.Example.");
  CHECK(second.id == 4321);
  CHECK(up.queries_for("cached.example.") == 1);
  CHECK(ld.server().stats().cache_hits == 1);
}

TEST_CASE("cached TTLs count down and entries expire", "[integration][cache]") {
  KnotServer knot("cluster.local", cluster_local_zone());  // records have TTL 30
  config::Config c;
  c.forward = {group({"cluster.local"}, {knot.address()}, Transport::Tcp)};
  c.forward[0].cache.max_ttl = std::chrono::seconds(2);
  Instance ld(c);
  auto first = ask(ld.endpoint(), "api.default.svc.cluster.local");
  REQUIRE(first.answer_ttls.size() == 1);
  CHECK(first.answer_ttls[0] == 30);    // the miss passes the upstream TTL on
  std::this_thread::sleep_for(1100ms);  // the entry ages: the wait is the point
  auto aged = ask(ld.endpoint(), "api.default.svc.cluster.local");
  REQUIRE(aged.answer_ttls.size() == 1);
  CHECK(aged.answer_ttls[0] <= 1);  // capped by the zone's max_ttl, lowered by age
  CHECK(ld.server().stats().cache_hits == 1);
  std::this_thread::sleep_for(1100ms);  // past the 2 s max_ttl
  auto again = ask(ld.endpoint(), "api.default.svc.cluster.local");
  CHECK(again.answer_ttls[0] == 30);  // expired: fetched anew
  CHECK(ld.server().stats().cache_hits == 1);
}

TEST_CASE("NXDOMAIN and NODATA are cached for the SOA-derived time", "[integration][cache]") {
  KnotServer knot("cluster.local", cluster_local_zone());  // SOA TTL 30, MINIMUM 5
  Instance ld({group({"cluster.local"}, {knot.address()}, Transport::Udp)});
  auto nx = ask(ld.endpoint(), "nope.default.svc.cluster.local");
  const auto stored = std::chrono::steady_clock::now();
  CHECK(nx.rcode == "NXDOMAIN");
  auto nodata = ask(ld.endpoint(), "api.default.svc.cluster.local", "AAAA");
  CHECK(nodata.rcode == "NOERROR");
  CHECK(nodata.answers.empty());
  CHECK(ask(ld.endpoint(), "nope.default.svc.cluster.local").rcode == "NXDOMAIN");
  CHECK(ask(ld.endpoint(), "api.default.svc.cluster.local", "AAAA").authority == 1);
  CHECK(ld.server().stats().cache_hits == 2);
  auto st = ld.server().cache_stats();
  CHECK(st.entries == 2);
  // Bounded from below: still an answer from the cache 3.5 s in (of 5 s).
  std::this_thread::sleep_until(stored + std::chrono::milliseconds(3500));
  CHECK(ask(ld.endpoint(), "nope.default.svc.cluster.local").rcode == "NXDOMAIN");
  CHECK(ld.server().stats().cache_hits == 3);
  // And from above: gone once MINIMUM (5 s) has passed.
  std::this_thread::sleep_until(stored + std::chrono::milliseconds(5200));
  ask(ld.endpoint(), "nope.default.svc.cluster.local");
  CHECK(ld.server().stats().cache_hits == 3);
}

TEST_CASE("failures and truncated answers are not cached", "[integration][cache]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::ServFail});
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  CHECK(ask(ld.endpoint(), "sf.example").rcode == "SERVFAIL");
  up.set({});
  auto good = ask(ld.endpoint(), "sf.example");  // the good answer is not hidden
  CHECK(good.rcode == "NOERROR");
  CHECK(up.queries_for("sf.example.") == 2);
  up.set({.truncate_udp = true});
  CHECK(ask(ld.endpoint(), "tc.example").tc);
  CHECK(ask(ld.endpoint(), "tc.example").tc);
  CHECK(up.queries_for("tc.example.") == 2);
}

TEST_CASE("with the cache off every query goes upstream", "[integration][cache]") {
  FakeUpstream up;
  config::Config c;
  c.cache.enabled = false;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Instance ld(c);
  ask(ld.endpoint(), "off.example");
  ask(ld.endpoint(), "off.example");
  CHECK(up.queries_for("off.example.") == 2);
}

namespace {
// `n` clients ask for `name` at once, in their own letter case and ID; a
// third of them over TCP. Returns how many got a reply that matches them.
int storm(const Endpoint& ep, const std::string& name, int n, const std::string& rcode) {
  std::vector<std::future<bool>> fs;
  for (int i = 0; i < n; ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] {
      std::string asked = name;
      for (std::size_t k = 0; k < asked.size(); ++k) {
        if ((i >> (k % 7)) & 1) asked[k] = static_cast<char>(std::toupper(asked[k]));
      }
      auto id = static_cast<std::uint16_t>(1000 + i);
      auto q = make_query(asked, "A", {.id = id});
      auto r = i % 3 == 0 ? tcp_query(ep, q, 5000ms) : udp_query(ep, q, 5000ms);
      if (!r) return false;
      auto d = decode(*r);
      return d.id == id && d.qname == asked + "." && d.rcode == rcode;
    }));
  }
  int good = 0;
  for (auto& f : fs)
    good += f.get();
  return good;
}
}  // namespace

TEST_CASE("100 identical concurrent misses reach upstream once", "[integration][cache]") {
  FakeUpstream up;
  up.set({.delay = 300ms});
  auto transport = GENERATE(Transport::Udp, Transport::Tcp);
  Instance ld({group({"."}, {up.address()}, transport)});
  CHECK(storm(ld.endpoint(), "storm.example", 100, "NOERROR") == 100);
  CHECK(up.queries_for("storm.example.") == 1);
  auto s = ld.server().stats();
  CHECK(s.coalesced + s.cache_hits == 99);
  CHECK(s.coalesced > 0);
}

TEST_CASE("when the shared query fails, every waiter gets SERVFAIL", "[integration][cache]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  auto g = group({"."}, {up.address()}, Transport::Udp);
  g.timeout = 400ms;
  g.attempts = 1;
  Instance ld({g});
  auto t0 = std::chrono::steady_clock::now();
  CHECK(storm(ld.endpoint(), "doomed.example", 50, "SERVFAIL") == 50);
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(up.queries_for("doomed.example.") == 1);
}

TEST_CASE("prefetch refreshes a popular entry before it expires", "[integration][cache]") {
  FakeUpstream up;
  config::Config c;
  c.cache.prefetch_hits = 2;
  c.cache.prefetch_percent = 50;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  c.forward[0].cache.max_ttl = std::chrono::seconds(2);
  Instance ld(c);
  ask(ld.endpoint(), "popular.example");  // miss: upstream 1
  auto stored = std::chrono::steady_clock::now();
  // The entry's age is the point of the waits before the refresh.
  std::this_thread::sleep_for(200ms);
  ask(ld.endpoint(), "popular.example");  // hit 1
  std::this_thread::sleep_for(1000ms);
  ask(ld.endpoint(), "popular.example");  // hit 2, 1 s of 2 left: refresh
  wait_until(within(2000ms), [&] {
    return ld.server().stats().prefetches >= 1 && up.queries_for("popular.example.") >= 2;
  });
  CHECK(up.queries_for("popular.example.") == 2);
  CHECK(ld.server().stats().prefetches == 1);
  // The first entry would have expired by now.
  std::this_thread::sleep_until(stored + 2300ms);
  auto r = ask(ld.endpoint(), "popular.example");
  CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(ld.server().stats().cache_hits == 3);  // clients never saw a miss
  CHECK(up.queries_for("popular.example.") == 2);
}

TEST_CASE("serve-stale answers from an expired entry when upstream is dead",
          "[integration][cache]") {
  FakeUpstream up;
  bool stale_on = GENERATE(true, false);
  auto g = group({"."}, {up.address()}, Transport::Udp);
  g.timeout = 300ms;
  g.attempts = 1;
  g.cache.max_ttl = std::chrono::seconds(1);
  if (stale_on) g.cache.serve_stale = std::chrono::seconds(60);
  Instance ld({g});
  REQUIRE(ask(ld.endpoint(), "stale.example").rcode == "NOERROR");
  std::this_thread::sleep_for(1200ms);  // the entry's 1 s lifetime passes
  up.set({.mode = Behaviour::Mode::Drop});
  auto t0 = std::chrono::steady_clock::now();
  auto r = ask(ld.endpoint(), "stale.example");
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  if (stale_on) {
    CHECK(r.rcode == "NOERROR");
    CHECK(r.answers == std::vector<std::string>{FakeUpstream::answer_address()});
    REQUIRE(r.answer_ttls.size() == 1);
    CHECK(r.answer_ttls[0] <= 30);
    CHECK(ld.server().stats().stale == 1);
  } else {
    CHECK(r.rcode == "SERVFAIL");
  }
  CHECK(up.queries_for("stale.example.") == 2);
}

TEST_CASE("answers cached for a client without RD serve clients with RD", "[integration][cache]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto norec = ask(ld.endpoint(), "rd.example", "A", {.query = {.rd = false}});
  CHECK_FALSE(norec.rd);                // the reply echoes the client's RD
  CHECK(up.queries_without_rd() == 0);  // upstream was asked to recurse anyway
  auto rec = ask(ld.endpoint(), "rd.example");
  CHECK(rec.rd);
  CHECK(rec.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(up.queries_for("rd.example.") == 1);
}

// Last: ldns defines true and false as macros.
#include <ldns/ldns.h>

namespace {
// Record TTLs of each section of a reply, read with ldns (OPT excluded).
struct SectionTtls {
  std::vector<std::uint32_t> answer, authority, additional;
};
SectionTtls section_ttls(const Packet& p) {
  SectionTtls out;
  ldns_pkt* pkt = nullptr;
  if (ldns_wire2pkt(&pkt, p.data(), p.size()) != LDNS_STATUS_OK) return out;
  auto read = [](ldns_rr_list* list, std::vector<std::uint32_t>& ttls) {
    for (std::size_t i = 0; list && i < ldns_rr_list_rr_count(list); ++i)
      ttls.push_back(ldns_rr_ttl(ldns_rr_list_rr(list, i)));
  };
  read(ldns_pkt_answer(pkt), out.answer);
  read(ldns_pkt_authority(pkt), out.authority);
  read(ldns_pkt_additional(pkt), out.additional);
  ldns_pkt_free(pkt);
  return out;
}

SectionTtls ask_ttls(const Endpoint& ep, const std::string& name, const std::string& type) {
  auto r = udp_query(ep, make_query(name, type));
  REQUIRE(r.has_value());
  return section_ttls(*r);
}
}  // namespace

TEST_CASE("authority and additional TTLs age on a hit like answer TTLs", "[integration][cache]") {
  // The MX answer outlives its glue: ageing must lower each TTL on its own.
  KnotServer knot("ttl.test", R"($ORIGIN ttl.test.
$TTL 300
@ IN SOA ns.ttl.test. hostmaster.ttl.test. 1 7200 1800 86400 60
@ IN NS ns
ns IN A 10.0.0.53
mx 100 IN MX 10 mail
mail 40 IN A 10.0.0.25
)");
  Instance ld({group({"ttl.test"}, {knot.address()}, Transport::Udp)});
  auto mx = ask_ttls(ld.endpoint(), "mx.ttl.test", "MX");
  auto nx = ask_ttls(ld.endpoint(), "nope.ttl.test", "A");
  const auto stored = std::chrono::steady_clock::now();
  REQUIRE(mx.answer == std::vector<std::uint32_t>{100});
  REQUIRE(mx.additional == std::vector<std::uint32_t>{40});  // mail A, from Knot
  REQUIRE(nx.authority == std::vector<std::uint32_t>{60});   // SOA: min(TTL, MINIMUM)

  std::this_thread::sleep_until(stored + std::chrono::milliseconds(2300));
  auto hits = ld.server().stats().cache_hits;
  auto aged_mx = ask_ttls(ld.endpoint(), "mx.ttl.test", "MX");
  auto aged_nx = ask_ttls(ld.endpoint(), "nope.ttl.test", "A");
  CHECK(ld.server().stats().cache_hits == hits + 2);
  REQUIRE(aged_mx.answer.size() == 1);
  REQUIRE(aged_mx.additional.size() == 1);
  REQUIRE(aged_nx.authority.size() == 1);
  // 2 to 4 s old: every section lowered by the same age.
  CHECK(aged_mx.answer[0] <= 98);
  CHECK(aged_mx.answer[0] >= 96);
  CHECK(aged_mx.additional[0] <= 38);
  CHECK(aged_mx.additional[0] >= 36);
  CHECK(aged_mx.answer[0] - aged_mx.additional[0] == 60);
  CHECK(aged_nx.authority[0] <= 58);
  CHECK(aged_nx.authority[0] >= 56);
}
