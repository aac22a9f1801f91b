#include <catch2/catch.hpp>

#include <localdns/dns/message.hpp>

#include "dns_client.hpp"
#include "packets.hpp"

using namespace localdns;
using localdns::test::make_query;

namespace {
dns::Bytes view(const test::Packet& p) {
  return {p.data(), p.size()};
}
}  // namespace

TEST_CASE("parse_query reads header, question and EDNS", "[dns][parse]") {
  auto q = make_query("Api.Default.SVC.cluster.local", "AAAA",
                      {.id = 0xBEEF, .edns = true, .udp_size = 4096, .do_bit = true});
  auto v = dns::parse_query(view(q));
  REQUIRE(v.status == dns::QueryStatus::Ok);
  CHECK(v.header.id == 0xBEEF);
  CHECK(v.question.qtype == 28);
  CHECK(v.question.qclass == 1);
  CHECK(v.question.qname.size() == 31);
  CHECK(v.question.qname[1] == 'A');  // case kept in the view
  CHECK(v.edns.present);
  CHECK(v.edns.do_bit);
  CHECK(v.edns.udp_size == 4096);
  CHECK(v.udp_reply_limit() == dns::kEdnsUdpSize);
}

TEST_CASE("parse_query without EDNS limits UDP replies to 512", "[dns][parse]") {
  auto q = make_query("example.org", "A");
  auto v = dns::parse_query(view(q));
  REQUIRE(v.status == dns::QueryStatus::Ok);
  CHECK_FALSE(v.edns.present);
  CHECK(v.udp_reply_limit() == 512);
  auto small = make_query("example.org", "A", {.edns = true, .udp_size = 100});
  CHECK(dns::parse_query(view(small)).udp_reply_limit() == 512);
}

TEST_CASE("parse_query classifies bad queries", "[dns][parse]") {
  auto good = make_query("example.org", "A", {.edns = true});

  SECTION("short header is dropped") {
    test::Packet p(good.begin(), good.begin() + 11);
    CHECK(dns::parse_query(view(p)).status == dns::QueryStatus::Drop);
  }
  SECTION("responses are dropped") {
    auto p = good;
    p[2] |= 0x80;
    CHECK(dns::parse_query(view(p)).status == dns::QueryStatus::Drop);
  }
  SECTION("opcode other than QUERY is NOTIMP") {
    auto p = good;
    p[2] = static_cast<std::uint8_t>((p[2] & 0x87) | (4 << 3));  // NOTIFY
    CHECK(dns::parse_query(view(p)).status == dns::QueryStatus::NotImp);
  }
  SECTION("QDCOUNT 0 and 2 are FORMERR") {
    auto p = good;
    p[5] = 0;
    CHECK(dns::parse_query(view(p)).status == dns::QueryStatus::FormErr);
    p[5] = 2;
    CHECK(dns::parse_query(view(p)).status == dns::QueryStatus::FormErr);
  }
  SECTION("truncated question is FORMERR") {
    test::Packet p(good.begin(), good.begin() + 20);
    auto v = dns::parse_query(view(p));
    CHECK(v.status == dns::QueryStatus::FormErr);
    CHECK_FALSE(v.question_valid);
  }
  SECTION("ARCOUNT beyond the data is FORMERR") {
    auto p = good;
    p[11] = 2;
    CHECK(dns::parse_query(view(p)).status == dns::QueryStatus::FormErr);
  }
  SECTION("two OPT records are FORMERR") {
    auto p = good;
    std::size_t opt = p.size() - 11;
    p.insert(p.end(), p.begin() + static_cast<long>(opt), p.end());
    p[11] = 2;
    CHECK(dns::parse_query(view(p)).status == dns::QueryStatus::FormErr);
  }
  SECTION("EDNS version 1 is BADVERS") {
    auto p = good;
    p[p.size() - 11 + 6] = 1;  // OPT TTL: ext-rcode, version, flags
    auto v = dns::parse_query(view(p));
    CHECK(v.status == dns::QueryStatus::BadVers);
    CHECK(v.edns.present);
  }
  SECTION("a compression pointer in the question is FORMERR") {
    test::Packet p(good.begin(), good.begin() + 12);
    p.insert(p.end(), {0xC0, 0x0C, 0, 1, 0, 1});
    p[11] = 0;
    CHECK(dns::parse_query(view(p)).status == dns::QueryStatus::FormErr);
  }
}

TEST_CASE("parse_response walks every record and finds the OPT", "[dns][parse]") {
  // Header QR, 1 question, 1 answer (compressed owner), 1 OPT.
  auto p = test::ResponseBuilder(0x1234, "foo")
               .answer(test::a_record(60, {192, 0, 2, 1}))
               .opt({.do_bit = true})
               .build();
  auto rv = dns::parse_response(view(p));
  REQUIRE(rv);
  REQUIRE(rv->opt);
  CHECK(rv->opt->offset == p.size() - 11);
  CHECK(rv->edns.udp_size == 1232);
  CHECK(rv->edns.do_bit);
  std::uint8_t qname[] = {3, 'F', 'O', 'O', 0};
  CHECK(dns::response_matches(*rv, 0x1234, {dns::Bytes(qname, 5), 1, 1}));
  CHECK_FALSE(dns::response_matches(*rv, 0x1235, {dns::Bytes(qname, 5), 1, 1}));
  CHECK_FALSE(dns::response_matches(*rv, 0x1234, {dns::Bytes(qname, 5), 28, 1}));

  SECTION("a record running past the end fails") {
    auto bad = p;
    bad[12 + 9 + 10 + 1] = 200;
    CHECK_FALSE(dns::parse_response(view(bad)));
  }
  SECTION("an OPT in the answer section fails") {
    auto bad = p;
    bad[12 + 9 + 2] = 0;
    bad[12 + 9 + 3] = 41;
    CHECK_FALSE(dns::parse_response(view(bad)));
  }
}
