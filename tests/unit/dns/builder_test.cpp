#include <array>

#include <catch2/catch.hpp>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>

#include "dns_client.hpp"

using namespace localdns;
using test::decode;
using test::make_query;

namespace {

dns::Bytes view(const test::Packet& p) {
  return {p.data(), p.size()};
}

// An upstream answer to "foo.example." A with `n_answers` records and an OPT.
test::Packet upstream_answer(int n_answers, bool with_opt, std::uint16_t id = 0x7777) {
  test::Packet p = {static_cast<std::uint8_t>(id >> 8),
                    static_cast<std::uint8_t>(id),
                    0x81,
                    0x80,
                    0,
                    1,
                    0,
                    static_cast<std::uint8_t>(n_answers),
                    0,
                    0,
                    0,
                    static_cast<std::uint8_t>(with_opt ? 1 : 0)};
  p.insert(p.end(), {3, 'f', 'o', 'o', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1});
  for (int i = 0; i < n_answers; ++i) {
    p.insert(p.end(),
             {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 1, 0x2C, 0, 4, 10, 0, 0, static_cast<std::uint8_t>(i)});
  }
  if (with_opt) p.insert(p.end(), {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0});
  return p;
}

struct Built {
  test::Packet bytes;
  test::Reply reply;
};

Built reply_for(const test::Packet& client_query, const test::Packet& answer, std::size_t limit) {
  auto q = dns::parse_query(view(client_query));
  REQUIRE(q.status == dns::QueryStatus::Ok);
  auto shape = dns::make_reply_shape(q, limit);
  auto rv = dns::parse_response(view(answer));
  REQUIRE(rv);
  std::array<std::uint8_t, 65535> out{};
  std::size_t n = dns::build_client_reply(view(answer), *rv, shape, out);
  REQUIRE(n > 0);
  test::Packet bytes(out.begin(), out.begin() + static_cast<long>(n));
  return {bytes, decode(bytes)};
}

}  // namespace

TEST_CASE("error replies echo ID, question and EDNS", "[dns][builder]") {
  std::array<std::uint8_t, 512> out{};
  SECTION("SERVFAIL with EDNS") {
    auto q = make_query("Mixed.Case.example", "A", {.id = 42, .edns = true, .do_bit = true});
    auto v = dns::parse_query(view(q));
    std::size_t n = dns::build_error_reply(v, dns::Rcode::ServFail, out);
    auto r = decode(test::Packet(out.begin(), out.begin() + static_cast<long>(n)));
    REQUIRE(r.ok);
    CHECK(r.id == 42);
    CHECK(r.rcode == "SERVFAIL");
    CHECK(r.qname == "Mixed.Case.example.");
    CHECK(r.has_opt);
    CHECK(r.edns_udp_size == dns::kEdnsUdpSize);
  }
  SECTION("FORMERR without a usable question has QDCOUNT 0") {
    test::Packet q = {0, 9, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a'};
    auto v = dns::parse_query(view(q));
    REQUIRE(v.status == dns::QueryStatus::FormErr);
    std::size_t n = dns::build_error_reply(v, dns::Rcode::FormErr, out);
    REQUIRE(n == dns::kHeaderSize);
    CHECK(out[5] == 0);
    CHECK((out[3] & 0x0f) == 1);
    CHECK((out[2] & 0x80) != 0);
    CHECK((out[2] & 0x01) != 0);  // RD echoed
  }
  SECTION("BADVERS goes into the OPT's extended RCODE") {
    auto q = make_query("example.org", "A", {.edns = true});
    q[q.size() - 11 + 6] = 1;
    auto v = dns::parse_query(view(q));
    std::size_t n = dns::build_error_reply(v, dns::Rcode::NoError, out);
    REQUIRE(n > 0);
    CHECK((out[3] & 0x0f) == 0);
    CHECK(out[n - 11 + 5] == 1);  // extended RCODE high bits: 16 >> 4
  }
}

TEST_CASE("client replies keep the client's ID and letter case", "[dns][builder]") {
  auto q = make_query("FoO.ExAmPlE", "A", {.id = 0xABCD, .edns = true});
  auto b = reply_for(q, upstream_answer(2, true), 1232);
  REQUIRE(b.reply.ok);
  CHECK(b.reply.id == 0xABCD);
  CHECK(b.reply.qname == "FoO.ExAmPlE.");
  CHECK(b.reply.answers == std::vector<std::string>{"10.0.0.0", "10.0.0.1"});
  CHECK(b.reply.answer_ttls == std::vector<std::uint32_t>{300, 300});
  CHECK(b.reply.has_opt);
  CHECK(b.reply.edns_udp_size == dns::kEdnsUdpSize);
  CHECK_FALSE(b.reply.tc);
}

TEST_CASE("client replies carry an OPT only if the query had one", "[dns][builder]") {
  SECTION("upstream OPT removed for a client without EDNS") {
    auto b = reply_for(make_query("foo.example", "A"), upstream_answer(1, true), 512);
    CHECK_FALSE(b.reply.has_opt);
    CHECK(b.bytes.size() == upstream_answer(1, true).size() - 11);
  }
  SECTION("OPT added for an EDNS client when upstream had none") {
    auto b =
        reply_for(make_query("foo.example", "A", {.edns = true}), upstream_answer(1, false), 1232);
    CHECK(b.reply.has_opt);
  }
}

TEST_CASE("client replies over the limit are truncated", "[dns][builder]") {
  // 40 answers of 16 bytes: 669 bytes, over 512 without EDNS.
  auto answer = upstream_answer(40, true);
  auto b = reply_for(make_query("foo.example", "A", {.id = 5}), answer, 512);
  CHECK(b.reply.tc);
  CHECK(b.reply.answers.empty());
  CHECK(b.reply.id == 5);
  CHECK(b.bytes.size() <= 512);
  auto tcp = reply_for(make_query("foo.example", "A", {.id = 5}), answer, 65535);
  CHECK_FALSE(tcp.reply.tc);
  CHECK(tcp.reply.answers.size() == 40);
}

TEST_CASE("build_query lowercases and advertises EDNS", "[dns][builder]") {
  std::uint8_t name[] = {3, 'W', 'w', 'W', 0};
  std::array<std::uint8_t, 512> out{};
  dns::OutgoingQuery oq{{dns::Bytes(name, 5), 28, 1}, 0x4242, true, true, true};
  std::size_t n = dns::build_query(oq, out);
  auto q = dns::parse_query(dns::Bytes(out.data(), n));
  REQUIRE(q.status == dns::QueryStatus::Ok);
  CHECK(q.header.id == 0x4242);
  CHECK((q.header.flags & dns::kFlagCD) != 0);
  CHECK(q.question.qname[1] == 'w');
  CHECK(q.edns.present);
  CHECK(q.edns.do_bit);
  CHECK(q.edns.udp_size == dns::kEdnsUdpSize);
}

TEST_CASE("records after the upstream OPT are dropped, not moved", "[dns][builder]") {
  // OPT first in the additional section, then an A record whose owner name is
  // a pointer into the OPT's bytes: moving it back over the removed OPT would
  // leave the pointer aimed at other data (found by the fuzzer).
  auto answer = upstream_answer(1, true);
  answer[11] = 2;  // ARCOUNT: the OPT and the record after it
  auto opt_at = static_cast<std::uint8_t>(answer.size() - 11);
  answer.insert(answer.end(), {0xC0, opt_at, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1});
  REQUIRE(dns::parse_response(view(answer)));
  for (bool edns : {false, true}) {
    auto b = reply_for(make_query("foo.example", "A", {.edns = edns}), answer, 1232);
    CHECK(b.reply.rcode == "NOERROR");
    CHECK(b.reply.answers == std::vector<std::string>{"10.0.0.0"});
    CHECK(b.reply.has_opt == edns);
    REQUIRE(dns::parse_response(view(b.bytes)));
    CHECK(dns::parse_response(view(b.bytes))->header.arcount == (edns ? 1 : 0));
  }
}
