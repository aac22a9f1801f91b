#include <array>

#include <catch2/catch.hpp>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>

#include "dns_client.hpp"
#include "ldns_records.hpp"
#include "packets.hpp"

using namespace localdns;
using test::decode;
using test::make_query;

namespace {

dns::Bytes view(const test::Packet& p) {
  return {p.data(), p.size()};
}

// An upstream answer to "foo.example." A with `n_answers` records (10.0.0.i, TTL 300).
test::ResponseBuilder foo_answer(int n_answers, std::uint16_t id = 0x7777) {
  test::ResponseBuilder b(id, "foo.example");
  for (int i = 0; i < n_answers; ++i)
    b.answer(test::a_record(300, {10, 0, 0, static_cast<std::uint8_t>(i)}));
  return b;
}

// The same, with an OPT (UDP size 4096) or without.
test::Packet upstream_answer(int n_answers, bool with_opt, std::uint16_t id = 0x7777) {
  auto b = foo_answer(n_answers, id);
  if (with_opt) b.opt({.udp_size = 4096});
  return b.build();
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

namespace {

// "a." MX: one record (TTL field at 25) whose exchange is "x" + a pointer to
// `target`, then an OPT.
test::Packet mx_with_pointer(std::uint8_t target, std::array<std::uint8_t, 4> ttl = {0, 0, 1, 0}) {
  std::uint32_t t = (std::uint32_t{ttl[0]} << 24) | (std::uint32_t{ttl[1]} << 16) |
                    (std::uint32_t{ttl[2]} << 8) | ttl[3];
  return test::ResponseBuilder(0x1234, "a", test::kTypeMx)
      .answer({test::kTypeMx, t, {0, 10, 1, 'x', 0xC0, target}})
      .opt()
      .build();
}

}  // namespace

TEST_CASE("names in record data must point backwards, past the header", "[dns][builder]") {
  // The OPT starts at 37; its bytes are replaced per client, so a pointer
  // into them would dangle in every reply.
  CHECK(dns::parse_response(view(mx_with_pointer(12))));        // the question name: fine
  CHECK_FALSE(dns::parse_response(view(mx_with_pointer(37))));  // into the OPT
  CHECK_FALSE(dns::parse_response(view(mx_with_pointer(2))));   // into the header
  CHECK_FALSE(dns::parse_response(view(mx_with_pointer(35))));  // itself
  auto extra = mx_with_pointer(12);
  extra.insert(extra.begin() + 37, 0);  // a byte after the exchange name
  extra[30] = 7;                        // inside RDLENGTH
  CHECK_FALSE(dns::parse_response(view(extra)));
}

TEST_CASE("a miss keeps names that read TTL bytes when it clamps the TTL", "[dns][builder]") {
  // TTL 0x8001'7800 (top bit set: read as 0, RFC 2181 8) whose bytes from 26
  // on spell the name "x."; the exchange "x" + pointer to 26 reads "x.x.".
  auto answer = mx_with_pointer(26, {0x80, 1, 'x', 0});
  auto upstream = test::decode_message(answer);
  REQUIRE(upstream);
  REQUIRE(upstream->records.size() == 1);
  CHECK(upstream->records[0].rdata == "10 x.x.");
  for (bool edns : {false, true}) {
    auto b = reply_for(make_query("a", "MX", {.edns = edns}), answer, 1232);
    auto m = test::decode_message(b.bytes);
    REQUIRE(m);
    REQUIRE(m->records.size() == 1);
    CHECK(m->records[0].rdata == "10 x.x.");
    CHECK(m->records[0].ttl == 0);
  }
}

namespace {

// upstream_answer(1, true) with the OPT's extended RCODE bits and options.
test::Packet with_opt(std::uint8_t ext_rcode, const test::Packet& options, unsigned rcode = 0) {
  return foo_answer(1).rcode(rcode).opt({.ext_rcode = ext_rcode, .options = options}).build();
}

using test::ede_option;

}  // namespace

TEST_CASE("TTLs with the top bit set reach clients as 0", "[dns][builder]") {
  auto answer = upstream_answer(2, true);
  answer[29 + 6] = 0x80;  // first answer's TTL: 0x8000012C
  auto b = reply_for(make_query("foo.example", "A"), answer, 512);
  CHECK(b.reply.answer_ttls == std::vector<std::uint32_t>{0, 300});
}

TEST_CASE("the upstream's extended RCODE reaches EDNS clients", "[dns][builder]") {
  auto answer = with_opt(1, {});  // header NOERROR + OPT 1 << 4: BADVERS
  auto rv = dns::parse_response(view(answer));
  REQUIRE(rv);
  CHECK(rv->rcode() == dns::kExtRcodeBadVers);
  auto e = reply_for(make_query("foo.example", "A", {.edns = true}), answer, 1232);
  auto m = test::decode_message(e.bytes);
  REQUIRE(m);
  CHECK(m->rcode == 16);
  // Without EDNS it cannot be expressed; NOERROR would be a lie.
  auto plain = reply_for(make_query("foo.example", "A"), answer, 512);
  CHECK(plain.reply.rcode == "SERVFAIL");
  CHECK(plain.reply.answers.empty());
  CHECK_FALSE(plain.reply.has_opt);
}

TEST_CASE("Extended DNS Errors from upstream reach EDNS clients, bounded", "[dns][builder]") {
  test::Packet opts = {0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};  // a cookie: not carried
  for (auto b : ede_option(17, "blocked by policy"))
    opts.push_back(b);
  auto answer = with_opt(0, opts, 3);
  auto b = reply_for(make_query("foo.example", "A", {.edns = true}), answer, 1232);
  auto m = test::decode_message(b.bytes);
  REQUIRE(m);
  CHECK(m->rcode == 3);
  CHECK(m->ede == std::vector<test::Ede>{{17, "blocked by policy"}});
  auto plain = reply_for(make_query("foo.example", "A"), answer, 512);
  CHECK_FALSE(plain.reply.has_opt);

  SECTION("long text is cut at a character, invalid UTF-8 dropped, the total bounded") {
    std::string euro;
    for (int i = 0; i < 100; ++i)
      euro += "\xE2\x82\xAC";  // 300 bytes of U+20AC
    auto many = ede_option(1, euro);
    auto bad = ede_option(2, "\xFF\xFEoops");
    for (auto byte : bad)
      many.push_back(byte);
    auto r = reply_for(make_query("foo.example", "A", {.edns = true}), with_opt(0, many), 1232);
    auto mm = test::decode_message(r.bytes);
    REQUIRE(mm);
    REQUIRE(mm->ede.size() == 1);  // the first fills the budget
    CHECK(mm->ede[0].code == 1);
    CHECK(mm->ede[0].text.size() == (dns::kMaxEdeBytes - 6) / 3 * 3);
    CHECK(mm->ede[0].text == euro.substr(0, mm->ede[0].text.size()));
    auto r2 = reply_for(make_query("foo.example", "A", {.edns = true}), with_opt(0, bad), 1232);
    auto m2 = test::decode_message(r2.bytes);
    REQUIRE(m2);
    CHECK(m2->ede == std::vector<test::Ede>{{2, ""}});
  }
  SECTION("dropped when they would not fit the client's limit") {
    // 509 bytes, + OPT 520
    auto big = foo_answer(30).rcode(3).opt({.options = ede_option(17, "blocked")}).build();
    auto r = reply_for(make_query("foo.example", "A", {.edns = true, .udp_size = 512}), big, 525);
    auto mm = test::decode_message(r.bytes);
    REQUIRE(mm);
    CHECK(mm->records.size() == 30);
    CHECK(mm->ede.empty());
  }
}

TEST_CASE("error replies carry localdns's own EDE to EDNS clients", "[dns][builder]") {
  std::array<std::uint8_t, 512> out{};
  for (bool edns : {false, true}) {
    auto q = make_query("foo.example", "A", {.edns = edns});
    auto shape = dns::make_reply_shape(dns::parse_query(view(q)), 512);
    std::size_t n = dns::build_error_reply(
        shape, dns::Rcode::ServFail, {dns::kEdeNoReachableAuthority, "upstream timed out"}, out);
    auto m = test::decode_message(test::Packet(out.begin(), out.begin() + static_cast<long>(n)));
    REQUIRE(m);
    CHECK(m->rcode == 2);
    if (edns) {
      CHECK(m->ede == std::vector<test::Ede>{{22, "upstream timed out"}});
    } else {
      CHECK_FALSE(m->has_opt);
    }
  }
}

TEST_CASE("a truncated reply keeps the extended RCODE", "[dns][builder]") {
  auto answer = foo_answer(40).opt({.ext_rcode = 1}).build();  // 669 bytes, BADVERS
  auto b = reply_for(make_query("foo.example", "A", {.edns = true}), answer, 512);
  CHECK(b.reply.tc);
  auto m = test::decode_message(b.bytes);
  REQUIRE(m);
  CHECK(m->rcode == 16);
}
