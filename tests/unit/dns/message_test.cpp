#include <algorithm>
#include <array>

#include <catch2/catch.hpp>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/health.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>

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

TEST_CASE("parse_response records what replies and the cache need on its one walk",
          "[dns][parse]") {
  // 2 answers (TTLs 60, 0x8000'0010: read as 0), an SOA (TTL 50, MINIMUM 40)
  // in authority, an A in additional, the OPT, then an A after the OPT.
  test::Packet p = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 1, 0, 3};
  p.insert(p.end(), {3, 'f', 'o', 'o', 0, 0, 1, 0, 1});  // question ends at 21
  p.insert(p.end(), {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1});
  p.insert(p.end(), {0xC0, 0x0C, 0, 1, 0, 1, 0x80, 0, 0, 0x10, 0, 4, 192, 0, 2, 2});
  p.insert(p.end(), {0xC0, 0x0C, 0, 6, 0, 1, 0, 0, 0, 50, 0, 22, 0, 0});
  for (std::uint8_t v :
       {std::uint8_t{1}, std::uint8_t{2}, std::uint8_t{3}, std::uint8_t{4}, std::uint8_t{40}})
    p.insert(p.end(), {0, 0, 0, v});
  p.insert(p.end(), {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 70, 0, 4, 192, 0, 2, 3});
  const std::size_t opt_at = p.size();
  p.insert(p.end(), {0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0});
  p.insert(p.end(), {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 192, 0, 2, 4});
  p[11] = 3;
  auto rv = dns::parse_response(view(p));
  REQUIRE(rv);
  CHECK(rv->kept_end == opt_at);
  CHECK(rv->kept_records == 4);
  CHECK(rv->kept_additional == 1);
  CHECK(rv->ttl_top_bit);
  // TTL fields: each record's owner (2) + type and class (4) past its start.
  CHECK(rv->ttl_offsets[0] == 21 + 6);
  CHECK(rv->ttl_offsets[1] == 37 + 6);
  CHECK(rv->ttl_offsets[2] == 53 + 6);
  CHECK(rv->ttl_offsets[3] == 87 + 6);
  for (std::size_t i = 0; i < 4; ++i)
    CHECK(dns::read_u32(&p[rv->ttl_offsets[i]]) == (i == 0   ? 60u
                                                    : i == 1 ? 0x8000'0010u
                                                    : i == 2 ? 50u
                                                             : 70u));
  CHECK(rv->min_answer_ttl == 0);  // RFC 2181 8
  REQUIRE(rv->negative_ttl);
  CHECK(*rv->negative_ttl == 40);  // min(SOA TTL, MINIMUM), RFC 2308 5

  SECTION("no answers, no SOA") {
    test::Packet q = {0x12, 0x34, 0x81, 0x83, 0,   1, 0, 0, 0, 0, 0,
                      0,    3,    'f',  'o',  'o', 0, 0, 1, 0, 1};
    auto nx = dns::parse_response(view(q));
    REQUIRE(nx);
    CHECK(nx->min_answer_ttl == UINT32_MAX);
    CHECK_FALSE(nx->negative_ttl);
    CHECK(nx->kept_records == 0);
    CHECK(nx->kept_end == q.size());
    CHECK_FALSE(nx->ttl_top_bit);
  }
}

TEST_CASE("the health name, its query and its answer", "[dns][health]") {
  auto wire = dns::name_from_text(dns::kHealthName);
  REQUIRE(wire);
  CHECK(std::equal(wire->begin(), wire->end(), dns::kHealthNameWire.begin(),
                   dns::kHealthNameWire.end(),
                   [](char a, std::uint8_t b) { return static_cast<std::uint8_t>(a) == b; }));
  auto mixed = make_query("Health.LocalDNS.invalid", "A");
  auto q = dns::parse_query(view(mixed));
  REQUIRE(q.status == dns::QueryStatus::Ok);
  CHECK(dns::is_health_name(q.question.qname));
  CHECK_FALSE(dns::is_health_name(
      dns::parse_query(view(make_query("health.localdns", "A"))).question.qname));

  std::array<std::uint8_t, 512> out{};
  std::size_t n = dns::build_health_query(0x4321, out);
  REQUIRE(n > 0);
  auto hq = dns::parse_query(dns::Bytes(out.data(), n));
  REQUIRE(hq.status == dns::QueryStatus::Ok);
  CHECK(dns::is_health_name(hq.question.qname));
  CHECK(hq.question.qtype == 1);
  CHECK(hq.header.id == 0x4321);

  std::size_t r = dns::build_error_reply(hq, dns::Rcode::NoError, out);
  CHECK(dns::is_health_answer(dns::Bytes(out.data(), r), 0x4321));
  CHECK_FALSE(dns::is_health_answer(dns::Bytes(out.data(), r), 0x4322));
  CHECK_FALSE(dns::is_health_answer(dns::Bytes(out.data(), 11), 0x4321));
  r = dns::build_error_reply(hq, dns::Rcode::ServFail, out);
  CHECK_FALSE(dns::is_health_answer(dns::Bytes(out.data(), r), 0x4321));
}
