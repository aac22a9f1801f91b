#include <array>
#include <thread>

#include <catch2/catch.hpp>

#include <localdns/cache/cache_policy.hpp>
#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/util/clock.hpp>

#include "cache_query.hpp"
#include "dns_client.hpp"
#include "ldns_records.hpp"
#include "packets.hpp"

using namespace localdns;
using namespace std::chrono_literals;

namespace {

// The cache reads the time through a NowFn; these tests move it by hand.
const util::TimePoint kStart = util::TimePoint(1000s);

cache::NowFn now_of(const util::ManualClock& clock) {
  return [&clock] { return clock.now(); };
}

// An upstream answer for `name` A: answers with `ttls`, an optional SOA in the
// authority section (ttl, minimum), one additional A with `extra_ttl`, an OPT.
test::Packet answer(const std::string& name, unsigned rcode, std::vector<std::uint32_t> ttls,
                    std::optional<std::pair<std::uint32_t, std::uint32_t>> soa = std::nullopt,
                    std::uint32_t extra_ttl = 0, bool tc = false) {
  // Header and question of the query, which has no OPT.
  auto b = test::ResponseBuilder::answering(test::make_query(name, "A", {.id = 0}));
  b.rcode(rcode).tc(tc);
  for (std::size_t i = 0; i < ttls.size(); ++i)
    b.answer(test::a_record(ttls[i], {10, 0, 0, static_cast<std::uint8_t>(i)}));
  if (soa) b.authority(test::soa_record(soa->first, soa->second));
  if (extra_ttl) b.additional(test::a_record(extra_ttl, {10, 9, 9, 9}));
  return b.opt().build();
}

dns::ResponseView view_of(const test::Packet& p) {
  auto rv = dns::parse_response(p);
  REQUIRE(rv);
  return *rv;
}

using Asked = test::CacheQuery;
Asked ask(const std::string& name, test::QueryOptions o = {}, std::size_t limit = 0) {
  return test::cache_query(name, o, limit);
}

std::optional<test::Reply> hit(cache::PacketCache& c, const Asked& a) {
  std::array<std::uint8_t, 65535> out{};
  std::size_t n = c.lookup(a.key, a.shape, out).size;
  if (n == 0) return std::nullopt;
  return test::decode(test::Packet(out.begin(), out.begin() + static_cast<long>(n)));
}

std::optional<test::Packet> hit_bytes(cache::PacketCache& c, const Asked& a,
                                      cache::Freshness f = cache::Freshness::Fresh) {
  std::array<std::uint8_t, 65535> out{};
  std::size_t n = c.lookup(a.key, a.shape, out, f).size;
  if (n == 0) return std::nullopt;
  return test::Packet(out.begin(), out.begin() + static_cast<long>(n));
}

void insert(cache::PacketCache& c, const std::string& name, const test::Packet& ans,
            std::uint32_t lifetime) {
  c.insert(ask(name).key, ans, view_of(ans), lifetime);
}

}  // namespace

TEST_CASE("cache keys ignore case but not type, DO or CD", "[cache]") {
  auto a = ask("Kube-DNS.cluster.local");
  auto b = ask("kube-dns.CLUSTER.local");
  CHECK(a.key.view() == b.key.view());
  CHECK(ask("x.local", {.edns = true, .do_bit = true}).key.view() != ask("x.local").key.view());
  auto q = test::make_query("x.local", "AAAA");
  auto v = dns::parse_query(q);
  CHECK(cache::Key::make(v.question, false, false).view() != ask("x.local").key.view());
  CHECK(cache::Key::make(v.question, false, true).view() !=
        cache::Key::make(v.question, false, false).view());
}

TEST_CASE("a hit answers with the client's ID, case and EDNS", "[cache]") {
  util::ManualClock clock(kStart);
  cache::PacketCache c({}, now_of(clock));
  insert(c, "svc.cluster.local", answer("svc.cluster.local", 0, {30, 30}), 30);
  auto r = hit(c, ask("SVC.Cluster.local", {.id = 4242}));
  REQUIRE(r);
  CHECK(r->id == 4242);
  CHECK(r->qname == "SVC.Cluster.local.");
  CHECK(r->answers == std::vector<std::string>{"10.0.0.0", "10.0.0.1"});
  CHECK_FALSE(r->has_opt);
  CHECK_FALSE(r->aa);
  auto e = hit(c, ask("svc.cluster.local", {.edns = true}));
  REQUIRE(e);
  CHECK(e->has_opt);
  CHECK_FALSE(hit(c, ask("other.cluster.local")));
  CHECK(c.stats().hits == 2);
  CHECK(c.stats().misses == 1);
  c.clear();
  CHECK(c.stats().entries == 0);
  CHECK(c.stats().bytes == 0);
  CHECK_FALSE(hit(c, ask("svc.cluster.local")));
}

TEST_CASE("TTLs age with the entry, each record on its own, never below zero", "[cache]") {
  util::ManualClock clock(kStart);
  cache::PacketCache c({}, now_of(clock));
  insert(c, "a.example", answer("a.example", 0, {300, 200}, std::nullopt, 4), 250);
  clock.advance(10s);
  auto r = hit(c, ask("a.example"));
  REQUIRE(r);
  CHECK(r->answer_ttls == std::vector<std::uint32_t>{240, 190});  // capped at 250 - 10
  clock.advance(200s);
  r = hit(c, ask("a.example"));
  REQUIRE(r);
  CHECK(r->answer_ttls == std::vector<std::uint32_t>{40, 0});
  clock.advance(40s);  // age 250 = lifetime: gone
  CHECK_FALSE(hit(c, ask("a.example")));
  CHECK(c.stats().expired == 1);
  CHECK(c.stats().entries == 0);
}

TEST_CASE("a clock that goes backwards does not wrap TTLs", "[cache]") {
  util::ManualClock clock(kStart);
  cache::PacketCache c({}, now_of(clock));
  insert(c, "b.example", answer("b.example", 0, {60}), 60);
  clock.advance(-5s);
  auto r = hit(c, ask("b.example"));
  REQUIRE(r);
  CHECK(r->answer_ttls == std::vector<std::uint32_t>{60});
}

TEST_CASE("answers over the client's limit come back truncated", "[cache]") {
  util::ManualClock clock(kStart);
  cache::PacketCache c({}, now_of(clock));
  std::vector<std::uint32_t> ttls(40, 60);
  insert(c, "big.example", answer("big.example", 0, ttls), 60);
  auto udp = hit(c, ask("big.example", {.id = 9}, 512));
  REQUIRE(udp);
  CHECK(udp->tc);
  CHECK(udp->answers.empty());
  CHECK(udp->id == 9);
  auto tcp = hit(c, ask("big.example", {}, 65535));
  REQUIRE(tcp);
  CHECK(tcp->answers.size() == 40);
}

TEST_CASE("cache lifetimes follow RFC 1035 and RFC 2308", "[cache]") {
  cache::TtlPolicy p;
  p.max_ttl = 30;
  p.denial_max_ttl = 5;
  auto life = [&](const test::Packet& a) { return cache::cache_lifetime(view_of(a), p); };
  CHECK(life(answer("x.", 0, {300, 20})).seconds == 20);
  CHECK(life(answer("x.", 0, {300})).seconds == 30);
  CHECK(life(answer("x.", 3, {}, std::pair{60u, 3u})).seconds == 3);  // min(TTL, MINIMUM)
  CHECK(life(answer("x.", 3, {}, std::pair{60u, 3u})).kind == cache::AnswerKind::NxDomain);
  CHECK(life(answer("x.", 3, {}, std::pair{2u, 60u})).seconds == 2);
  CHECK(life(answer("x.", 3, {}, std::pair{600u, 600u})).seconds == 5);  // denial_max_ttl
  CHECK(life(answer("x.", 0, {}, std::pair{60u, 4u})).kind == cache::AnswerKind::NoData);
  CHECK(life(answer("x.", 0, {}, std::pair{60u, 4u})).seconds == 4);
  CHECK(life(answer("x.", 3, {})).kind == cache::AnswerKind::Uncacheable);  // no SOA
  CHECK(life(answer("x.", 2, {})).kind == cache::AnswerKind::Uncacheable);  // SERVFAIL
  CHECK(life(answer("x.", 5, {})).kind == cache::AnswerKind::Uncacheable);  // REFUSED
  CHECK(life(answer("x.", 0, {60}, std::nullopt, 0, true)).kind ==
        cache::AnswerKind::Uncacheable);                                     // TC
  CHECK(life(answer("x.", 0, {0})).kind == cache::AnswerKind::Uncacheable);  // TTL 0
  p.min_ttl = 10;
  CHECK(life(answer("x.", 0, {2})).seconds == 10);
}

TEST_CASE("memory stays within a small byte budget, oldest evicted first", "[cache]") {
  util::ManualClock clock(kStart);
  cache::CacheSettings s;
  s.max_bytes = 8 * 1024;
  s.shards = 1;
  cache::PacketCache c(s, now_of(clock));
  insert(c, "keep.example", answer("keep.example", 0, {60}), 60);
  for (int i = 0; i < 500; ++i) {
    auto name = "n" + std::to_string(i) + ".example";
    insert(c, name, answer(name, 0, {60}), 60);
    if (i % 10 == 0) CHECK(hit(c, ask("keep.example")));  // recently used: survives
  }
  auto st = c.stats();
  CHECK(st.bytes <= s.max_bytes);
  CHECK(st.evictions > 400);
  CHECK(hit(c, ask("keep.example")));
  CHECK(hit(c, ask("n499.example")));
  CHECK_FALSE(hit(c, ask("n0.example")));
}

TEST_CASE("the entry budget holds across shards", "[cache]") {
  util::ManualClock clock(kStart);
  cache::CacheSettings s;
  s.max_entries = 256;
  s.shards = 16;
  cache::PacketCache c(s, now_of(clock));
  for (int i = 0; i < 2000; ++i) {
    auto name = "e" + std::to_string(i) + ".example";
    insert(c, name, answer(name, 0, {60}), 60);
  }
  CHECK(c.stats().entries <= 256);
  CHECK(c.stats().entries > 128);  // keys spread over the shards
}

TEST_CASE("concurrent hits and inserts from several threads", "[cache]") {
  cache::PacketCache c({});
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        auto name = "c" + std::to_string((i * 7 + t) % 300) + ".example";
        if (i % 3 == 0) {
          auto a = answer(name, 0, {60});
          c.insert(ask(name).key, a, *dns::parse_response(a), 60);
        } else if (auto r = hit(c, ask(name)); r && r->qname != name + ".") {
          ++bad;
        }
      }
    });
  }
  for (auto& th : threads)
    th.join();
  CHECK(bad == 0);
  CHECK(c.stats().entries <= 300);
}

TEST_CASE("popular entries near expiry are flagged for prefetch once", "[cache]") {
  util::ManualClock clock(kStart);
  cache::CacheSettings s;
  s.prefetch_hits = 2;
  s.prefetch_percent = 10;
  cache::PacketCache c(s, now_of(clock));
  insert(c, "p.example", answer("p.example", 0, {100}), 100);
  std::array<std::uint8_t, 1232> out{};
  auto a = ask("p.example");
  clock.advance(50s);
  CHECK_FALSE(c.lookup(a.key, a.shape, out).prefetch);  // 1 hit, half its life left
  clock.advance(41s);                                   // 9 s of 100 left
  auto r = c.lookup(a.key, a.shape, out);
  CHECK(r.size > 0);
  CHECK(r.prefetch);
  CHECK_FALSE(c.lookup(a.key, a.shape, out).prefetch);  // already being refreshed
  CHECK(c.stats().prefetches == 1);
  insert(c, "p.example", answer("p.example", 0, {100}), 100);  // the refresh lands
  clock.advance(91s);
  c.lookup(a.key, a.shape, out);
  CHECK(c.lookup(a.key, a.shape, out).prefetch);
}

TEST_CASE("expired entries are served stale only when asked, within the window", "[cache]") {
  util::ManualClock clock(kStart);
  cache::PacketCache c({}, now_of(clock));
  auto a = ask("s.example");
  c.insert(a.key, answer("s.example", 0, {300}), view_of(answer("s.example", 0, {300})), 10, 60);
  std::array<std::uint8_t, 1232> out{};
  clock.advance(20s);
  CHECK(c.lookup(a.key, a.shape, out).size == 0);  // expired for normal lookups
  auto stale = c.lookup(a.key, a.shape, out, cache::Freshness::AllowStale);
  REQUIRE(stale.size > 0);
  CHECK(stale.stale);
  auto r = test::decode(test::Packet(out.begin(), out.begin() + static_cast<long>(stale.size)));
  CHECK(r.answer_ttls == std::vector<std::uint32_t>{cache::kStaleAnswerTtl});
  clock.advance(60s);  // past lifetime + window
  CHECK(c.lookup(a.key, a.shape, out, cache::Freshness::AllowStale).size == 0);
  CHECK(c.stats().entries == 0);
  CHECK(c.stats().stale_served == 1);
}

TEST_CASE("answers whose owner names read TTL bytes are stored expanded", "[cache]") {
  // Question "a." at 12; answer A at 15 (owner pointer to 12); additional
  // record whose owner points at the answer's TTL field (offset 21), which a
  // hit rewrites as the entry ages. Only a hostile upstream compresses so.
  std::size_t ttl_at = 19 + 6;
  test::Rr pointing_into_ttl{
      test::kTypeA, 60, {10, 0, 0, 2}, {0xC0, static_cast<std::uint8_t>(ttl_at + 3)}};
  auto p = test::ResponseBuilder(0x1234, "a")
               .answer(test::a_record(60, {10, 0, 0, 1}))
               .additional(pointing_into_ttl)
               .build();
  p[ttl_at + 3] = 0;  // the TTL's last byte, now 0, doubles as a root label
  auto rv = dns::parse_response(p);
  REQUIRE(rv);
  CHECK(rv->names_read_ttls);
  util::ManualClock clock(kStart);
  cache::PacketCache c({}, now_of(clock));
  c.insert(ask("a").key, p, *rv, 60);
  CHECK(c.stats().entries == 1);
  clock.advance(10s);  // the TTL byte now reads 50
  auto got = hit_bytes(c, ask("a"));
  REQUIRE(got);
  auto m = test::decode_message(*got);
  REQUIRE(m);
  REQUIRE(m->records.size() == 2);
  CHECK(m->records[1].owner == ".");
  CHECK(m->records[1].rdata == "10.0.0.2");
  // The same answer with an honest owner name is stored as it came.
  p[p.size() - 15] = 12;
  auto honest = dns::parse_response(p);
  REQUIRE(honest);
  CHECK_FALSE(honest->names_read_ttls);
}

namespace {

// "a." A: an A record at 19 (TTL field at 25), then an MX whose exchange is
// "x" + a pointer to the A record's last TTL byte (offset 28, 0: a root
// label). A hit rewrites that byte as the entry ages; only a hostile upstream
// compresses so.
test::Packet mx_reading_ttl(std::uint32_t ttl) {
  return test::ResponseBuilder(0x1234, "a")
      .answer(test::a_record(ttl, {10, 0, 0, 1}))
      .answer({test::kTypeMx, ttl, {0, 10, 1, 'x', 0xC0, 28}})
      .build();
}

// The records as ldns reads them, TTLs left out.
std::vector<test::Record> records_of(const test::Packet& p) {
  auto m = test::decode_message(p);
  REQUIRE(m);
  for (auto& r : m->records)
    r.ttl = 0;
  return m->records;
}

}  // namespace

TEST_CASE("names in record data that read TTL bytes are stored expanded", "[cache]") {
  auto p = mx_reading_ttl(256);
  auto rv = dns::parse_response(p);
  REQUIRE(rv);
  auto upstream = records_of(p);
  REQUIRE(upstream.size() == 2);
  CHECK(upstream[1].rdata == "10 x.");
  util::ManualClock clock(kStart);
  cache::PacketCache c({}, now_of(clock));
  c.insert(ask("a").key, p, *rv, 256, 60);
  CHECK(c.stats().entries == 1);  // rewritten, not refused
  for (auto age : {0s, 10s, 200s}) {
    clock.set(kStart + age);
    auto got = hit_bytes(c, ask("a"));
    REQUIRE(got);
    CHECK(records_of(*got) == upstream);
    auto m = test::decode_message(*got);
    REQUIRE(m);
    CHECK(m->records[0].ttl == 256 - static_cast<std::uint32_t>(age.count()));
  }
  clock.set(kStart + 300s);  // stale: every TTL rewritten to 30
  auto stale = hit_bytes(c, ask("a"), cache::Freshness::AllowStale);
  REQUIRE(stale);
  CHECK(records_of(*stale) == upstream);
}

TEST_CASE("extended RCODEs and top-bit TTLs are classified on their real values", "[cache]") {
  cache::TtlPolicy p;
  auto life = [&](const test::Packet& a) { return cache::cache_lifetime(view_of(a), p); };
  auto badvers = answer("x.", 0, {60});
  badvers[badvers.size() - 6] = 1;  // OPT extended RCODE: 16, BADVERS
  CHECK(view_of(badvers).rcode() == 16);
  CHECK(life(badvers).kind == cache::AnswerKind::Uncacheable);
  auto nx_ext = answer("x.", 3, {}, std::pair{60u, 60u});
  nx_ext[nx_ext.size() - 6] = 1;  // 16 | 3 = 19: not NXDOMAIN
  CHECK(life(nx_ext).kind == cache::AnswerKind::Uncacheable);
  // RFC 2181 8: the top bit set reads as 0.
  CHECK(life(answer("x.", 0, {0x8000'0E10u})).kind == cache::AnswerKind::Uncacheable);
  CHECK(life(answer("x.", 3, {}, std::pair{0x8000'0E10u, 60u})).kind ==
        cache::AnswerKind::Uncacheable);
  p.min_ttl = 30;  // kept 30 s, but the record still reads 0
  auto big = answer("t.example", 0, {0x8000'0E10u, 60});
  REQUIRE(life(big).seconds == 30);
  util::ManualClock clock(kStart);
  cache::PacketCache c({}, now_of(clock));
  insert(c, "t.example", big, 30);
  auto r = hit(c, ask("t.example"));
  REQUIRE(r);
  CHECK(r->answer_ttls == std::vector<std::uint32_t>{0, 30});
}

TEST_CASE("hits carry the upstream's EDE, and stale hits say so", "[cache]") {
  auto nx = answer("nx.example", 3, {}, std::pair{60u, 60u});
  // OPT options: EDE 17 "filtered".
  test::Packet o = {0, 15, 0, 10, 0, 17, 'f', 'i', 'l', 't', 'e', 'r', 'e', 'd'};
  nx[nx.size() - 1] = static_cast<std::uint8_t>(o.size());
  nx.insert(nx.end(), o.begin(), o.end());
  util::ManualClock clock(kStart);
  cache::PacketCache c({}, now_of(clock));
  c.insert(ask("nx.example").key, nx, view_of(nx), 60, 300);
  auto fresh = hit_bytes(c, ask("nx.example", {.edns = true}));
  REQUIRE(fresh);
  auto m = test::decode_message(*fresh);
  REQUIRE(m);
  CHECK(m->rcode == 3);
  CHECK(m->ede == std::vector<test::Ede>{{17, "filtered"}});
  auto plain = hit_bytes(c, ask("nx.example"));
  REQUIRE(plain);
  CHECK_FALSE(test::decode_message(*plain)->has_opt);
  clock.advance(120s);
  auto stale = hit_bytes(c, ask("nx.example", {.edns = true}), cache::Freshness::AllowStale);
  REQUIRE(stale);
  m = test::decode_message(*stale);
  REQUIRE(m);
  CHECK(m->ede == std::vector<test::Ede>{{17, "filtered"}, {dns::kEdeStaleNxdomain, ""}});

  auto pos = answer("pos.example", 0, {60});
  c.insert(ask("pos.example").key, pos, view_of(pos), 60, 300);
  INFO("entries " << c.stats().entries << " inserts " << c.stats().inserts);
  clock.advance(90s);
  auto s2 = hit_bytes(c, ask("pos.example", {.edns = true}), cache::Freshness::AllowStale);
  REQUIRE(s2);
  m = test::decode_message(*s2);
  REQUIRE(m);
  CHECK(m->ede == std::vector<test::Ede>{{dns::kEdeStaleAnswer, ""}});
}
