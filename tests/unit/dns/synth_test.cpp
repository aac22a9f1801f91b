#include <array>
#include <string>

#include <catch2/catch.hpp>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/synth.hpp>

#include "dns_client.hpp"
#include "ldns_records.hpp"
#include "packets.hpp"

using namespace localdns;
using test::Packet;

namespace {

constexpr std::uint16_t kCname = 5;
constexpr std::uint16_t kAaaa = 28;
constexpr std::uint16_t kNs = 2;
const std::string kAsked = "Www.External.TEST.default.svc.cluster.local";

dns::Bytes view(const Packet& p) {
  return {p.data(), p.size()};
}

test::Rr cname(std::string_view owner, std::uint32_t ttl, std::string_view target) {
  return {kCname, ttl, test::wire_name(target), test::wire_name(owner)};
}
test::Rr a_at(std::string_view owner, std::uint32_t ttl, std::array<std::uint8_t, 4> addr) {
  auto r = test::a_record(ttl, addr);
  r.owner = test::wire_name(owner);
  return r;
}

// X's upstream answer: ID and question as localdns asks upstream (lower case).
test::ResponseBuilder x_answer(std::uint16_t qtype = test::kTypeA) {
  return test::ResponseBuilder(0x4242, "www.external.test", qtype);
}

struct Out {
  dns::SynthError error{};
  bool ok = false;
  Packet bytes;
  test::Reply reply;    // header view
  test::Message whole;  // every record
};

Out synth(const Packet& client_query, const Packet& x, std::uint32_t negative = UINT32_MAX,
          std::uint32_t elapsed = 0) {
  auto q = dns::parse_query(view(client_query));
  REQUIRE(q.status == dns::QueryStatus::Ok);
  auto shape = dns::make_reply_shape(q, q.udp_reply_limit());
  auto rv = dns::parse_response(view(x));
  REQUIRE(rv);
  std::array<std::uint8_t, 65535> buf{};
  auto n = dns::synthesize_cname(
      shape, {.msg = view(x), .view = *rv, .elapsed = elapsed, .negative_ttl = negative}, buf);
  Out o;
  if (!n) {
    o.error = n.error();
    return o;
  }
  o.ok = true;
  o.bytes.assign(buf.begin(), buf.begin() + static_cast<long>(*n));
  o.reply = test::decode(o.bytes);
  REQUIRE(o.reply.ok);
  auto m = test::decode_message(o.bytes);
  REQUIRE(m);
  o.whole = *m;
  return o;
}

test::Record rec(int section, std::string owner, std::uint16_t type, std::uint32_t ttl,
                 std::string rdata) {
  return {section, std::move(owner), type, 1, ttl, std::move(rdata)};
}

const std::string kF = "www.external.test.default.svc.cluster.local.";

}  // namespace

TEST_CASE("the CNAME answer: CNAME to X, then X's records, as the client asked", "[dns][synth]") {
  auto q = test::make_query(kAsked, "A", {.id = 0xBEEF, .edns = true});
  auto x = x_answer().aa().answer(test::a_record(300, {10, 0, 0, 1})).build();
  auto o = synth(q, x, 30);
  REQUIRE(o.ok);
  CHECK(o.reply.id == 0xBEEF);
  CHECK(o.reply.qname == kAsked + ".");  // the client's letter case
  CHECK(o.reply.rcode == "NOERROR");
  CHECK_FALSE(o.reply.aa);  // localdns is not authoritative for the CNAME
  CHECK(o.reply.rd);
  CHECK_FALSE(o.reply.tc);
  CHECK(o.reply.has_opt);
  CHECK(o.reply.edns_udp_size == dns::kEdnsUdpSize);
  CHECK(o.whole.records == std::vector<test::Record>{
                               rec(0, kF, kCname, 30, "www.external.test."),
                               rec(0, "www.external.test.", test::kTypeA, 30, "10.0.0.1"),
                           });
  // The CNAME's owner is a pointer to the question, which reads the
  // client's letter case; X's record points at the CNAME's target.
  const std::size_t question_end = dns::kHeaderSize + test::wire_name(kAsked).size() + 4;
  CHECK(o.bytes[question_end] == 0xC0);
  CHECK(o.bytes[question_end + 1] == 0x0C);
  const std::size_t x_at = question_end + 2 + 10;  // CNAME rdata
  const std::size_t a_owner = x_at + test::wire_name("www.external.test").size();
  CHECK(o.bytes[a_owner] == 0xC0);
  CHECK(o.bytes[a_owner + 1] == x_at);
}

TEST_CASE("the CNAME answer keeps X's own CNAME chain in order", "[dns][synth]") {
  auto q = test::make_query(kAsked, "A", {.id = 7});
  auto x = x_answer()
               .answer(cname("www.external.test", 600, "cdn.Example.net"))
               .answer(cname("cdn.example.net", 900, "edge.cdn.example.net"))
               .answer(a_at("edge.cdn.example.net", 120, {192, 0, 2, 1}))
               .answer(a_at("edge.cdn.example.net", 120, {192, 0, 2, 2}))
               .authority(
                   {kNs, 3600, test::wire_name("ns1.example.net"), test::wire_name("example.net")})
               .additional(a_at("ns1.example.net", 3600, {192, 0, 2, 53}))
               .build();
  auto o = synth(q, x);
  REQUIRE(o.ok);
  CHECK(o.reply.id == 7);
  CHECK_FALSE(o.reply.has_opt);  // none asked for
  // TTL: the smallest of X's records; authority and additional left out.
  CHECK(o.whole.records == std::vector<test::Record>{
                               rec(0, kF, kCname, 120, "www.external.test."),
                               rec(0, "www.external.test.", kCname, 120, "cdn.example.net."),
                               rec(0, "cdn.example.net.", kCname, 120, "edge.cdn.example.net."),
                               rec(0, "edge.cdn.example.net.", test::kTypeA, 120, "192.0.2.1"),
                               rec(0, "edge.cdn.example.net.", test::kTypeA, 120, "192.0.2.2"),
                           });
  // Compression: every owner is a pointer (2 bytes); "www.external.test" and
  // "cdn.example.net" share no suffix with what precedes them and are written
  // in full (19, 17); "edge.cdn.example.net" is "edge" and a pointer (5 + 2).
  const std::size_t question = test::wire_name(kAsked).size() + 4;
  const std::size_t fixed = 10;  // type, class, TTL, RDLENGTH
  CHECK(o.bytes.size() == dns::kHeaderSize + question + (2 + fixed + 19) + (2 + fixed + 17) +
                              (2 + fixed + 7) + 2 * (2 + fixed + 4));
}

TEST_CASE("the CNAME answer's TTL is the minimum of X's and the negative TTLs", "[dns][synth]") {
  auto q = test::make_query(kAsked, "A");
  auto x = x_answer()
               .answer(cname("www.external.test", 50, "edge.example.net"))
               .answer(a_at("edge.example.net", 300, {192, 0, 2, 1}))
               .build();
  SECTION("a negative TTL below X's") {
    auto o = synth(q, x, 20);
    REQUIRE(o.ok);
    for (const auto& r : o.whole.records)
      CHECK(r.ttl == 20);
  }
  SECTION("X's smallest record TTL below the negative TTLs") {
    auto o = synth(q, x, 3600);
    REQUIRE(o.ok);
    REQUIRE(o.whole.records.size() == 3);
    for (const auto& r : o.whole.records)
      CHECK(r.ttl == 50);
  }
  SECTION("time in the cache ages X's TTLs first") {
    auto o = synth(q, x, 3600, 45);
    REQUIRE(o.ok);
    for (const auto& r : o.whole.records)
      CHECK(r.ttl == 5);
    auto gone = synth(q, x, 3600, 400);
    REQUIRE(gone.ok);
    for (const auto& r : gone.whole.records)
      CHECK(r.ttl == 0);
  }
  SECTION("a TTL with the top bit set reads 0") {
    auto top = x_answer().answer(test::a_record(0x8000'0010u, {192, 0, 2, 1})).build();
    auto o = synth(q, top, 3600);
    REQUIRE(o.ok);
    for (const auto& r : o.whole.records)
      CHECK(r.ttl == 0);
  }
}

TEST_CASE("X with only the other type: CNAME plus NODATA with X's SOA", "[dns][synth]") {
  auto q = test::make_query("WWW.external.test.Default.svc.cluster.local", "AAAA",
                            {.id = 0x0102, .edns = true});
  auto soa = test::soa_record(900, 120);
  soa.owner = test::wire_name("external.test");
  SECTION("no chain") {
    auto x = x_answer(kAaaa).authority(soa).build();
    auto o = synth(q, x, 600);
    REQUIRE(o.ok);
    CHECK(o.reply.id == 0x0102);
    CHECK(o.reply.qname == "WWW.external.test.Default.svc.cluster.local.");
    CHECK(o.reply.rcode == "NOERROR");
    CHECK(o.reply.authority == 1);
    CHECK(o.whole.records == std::vector<test::Record>{
                                 rec(0, kF, kCname, 120, "www.external.test."),
                                 rec(1, "external.test.", test::kTypeSoa, 120, ". . 1 2 3 4 120"),
                             });
  }
  SECTION("X's chain kept, the SOA's TTL counts when smaller than its MINIMUM") {
    auto small = test::soa_record(60, 120);
    small.owner = test::wire_name("example.net");
    auto x = x_answer(kAaaa)
                 .answer(cname("www.external.test", 300, "edge.example.net"))
                 .authority(small)
                 .build();
    auto o = synth(q, x, 600);
    REQUIRE(o.ok);
    CHECK(o.whole.records == std::vector<test::Record>{
                                 rec(0, kF, kCname, 60, "www.external.test."),
                                 rec(0, "www.external.test.", kCname, 60, "edge.example.net."),
                                 rec(1, "example.net.", test::kTypeSoa, 60, ". . 1 2 3 4 120"),
                             });
  }
  SECTION("without a SOA there is no answer") {
    auto x = x_answer(kAaaa).build();
    auto o = synth(q, x, 600);
    REQUIRE_FALSE(o.ok);
    CHECK(o.error == dns::SynthError::NoSoa);
  }
}

TEST_CASE("no CNAME answer for DO or CD, or for what is not an address query", "[dns][synth]") {
  auto x = x_answer().answer(test::a_record(300, {10, 0, 0, 1})).build();
  SECTION("DO") {
    auto o = synth(test::make_query(kAsked, "A", {.edns = true, .do_bit = true}), x);
    REQUIRE_FALSE(o.ok);
    CHECK(o.error == dns::SynthError::Dnssec);
  }
  SECTION("CD") {
    auto q = test::make_query(kAsked, "A");
    q[3] |= 0x10;
    auto o = synth(q, x);
    REQUIRE_FALSE(o.ok);
    CHECK(o.error == dns::SynthError::Dnssec);
  }
  SECTION("MX") {
    auto mx = test::ResponseBuilder(1, "www.external.test", test::kTypeMx).build();
    auto o = synth(test::make_query(kAsked, "MX"), mx);
    REQUIRE_FALSE(o.ok);
    CHECK(o.error == dns::SynthError::NotAddress);
  }
  SECTION("X answered for the other type") {
    auto o = synth(test::make_query(kAsked, "AAAA"), x);
    REQUIRE_FALSE(o.ok);
    CHECK(o.error == dns::SynthError::TargetMismatch);
  }
  SECTION("X not NOERROR") {
    auto nx = x_answer().rcode(3).build();
    auto o = synth(test::make_query(kAsked, "A"), nx);
    REQUIRE_FALSE(o.ok);
    CHECK(o.error == dns::SynthError::TargetFailed);
  }
}

TEST_CASE("a CNAME answer over the client's limit is TC with empty sections", "[dns][synth]") {
  auto b = x_answer();
  for (int i = 0; i < 40; ++i)
    b.answer(test::a_record(300, {10, 0, 1, static_cast<std::uint8_t>(i)}));
  auto x = b.build();
  SECTION("512 bytes without EDNS") {
    auto o = synth(test::make_query(kAsked, "A", {.id = 99}), x);
    REQUIRE(o.ok);
    CHECK(o.reply.tc);
    CHECK(o.reply.id == 99);
    CHECK(o.reply.qname == kAsked + ".");
    CHECK(o.reply.rcode == "NOERROR");
    CHECK(o.whole.records.empty());
    CHECK(o.bytes.size() <= 512);
  }
  SECTION("the same answer fits an EDNS client's 1232") {
    auto o = synth(test::make_query(kAsked, "A", {.edns = true}), x);
    REQUIRE(o.ok);
    CHECK_FALSE(o.reply.tc);
    CHECK(o.whole.records.size() == 41);
  }
}
