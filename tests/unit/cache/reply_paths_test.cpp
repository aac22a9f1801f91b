// A cache hit and a fresh answer are rendered by the same function: the same
// upstream answer must reach a client byte for byte the same either way, and
// a hit some seconds later differs only in its TTLs.
#include <array>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>

#include "dns_client.hpp"

using namespace localdns;
using namespace std::chrono_literals;

namespace {

using Packet = test::Packet;

void put16(Packet& p, unsigned v) {
  p.push_back(static_cast<std::uint8_t>(v >> 8));
  p.push_back(static_cast<std::uint8_t>(v));
}
void put32(Packet& p, std::uint32_t v) {
  put16(p, v >> 16);
  put16(p, v & 0xffff);
}

// An upstream answer to `name` A, built record by record.
struct Answer {
  Packet p;
  unsigned an = 0, ns = 0, ar = 0;

  explicit Answer(const std::string& name, unsigned rcode = 0) {
    p = test::make_query(name, "A", {.id = 0x5151});
    p[2] = 0x81;
    p[3] = static_cast<std::uint8_t>(0x80 | rcode);
  }
  Answer& a(std::uint32_t ttl, std::uint8_t last) {
    put16(p, 0xC00C);
    put16(p, 1);
    put16(p, 1);
    put32(p, ttl);
    put16(p, 4);
    p.insert(p.end(), {10, 0, 0, last});
    return *this;
  }
  Answer& answers(unsigned n, std::uint32_t ttl) {
    for (unsigned i = 0; i < n; ++i)
      a(ttl + i, static_cast<std::uint8_t>(i));
    an += n;
    return *this;
  }
  Answer& soa(std::uint32_t ttl, std::uint32_t minimum) {
    put16(p, 0xC00C);
    put16(p, 6);
    put16(p, 1);
    put32(p, ttl);
    put16(p, 22);
    p.insert(p.end(), {0, 0});
    for (std::uint32_t v : {1u, 2u, 3u, 4u})
      put32(p, v);
    put32(p, minimum);
    ++ns;
    return *this;
  }
  Answer& extra(std::uint32_t ttl) {
    a(ttl, 99);
    ++ar;
    return *this;
  }
  Answer& opt(const Packet& options = {}) {
    p.insert(p.end(), {0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0});
    put16(p, static_cast<unsigned>(options.size()));
    p.insert(p.end(), options.begin(), options.end());
    ++ar;
    return *this;
  }
  Packet done() const {
    Packet out = p;
    out[6] = static_cast<std::uint8_t>(an >> 8);
    out[7] = static_cast<std::uint8_t>(an);
    out[9] = static_cast<std::uint8_t>(ns);
    out[11] = static_cast<std::uint8_t>(ar);
    return out;
  }
};

Packet ede(std::uint16_t code, const std::string& text) {
  Packet o;
  put16(o, 15);
  put16(o, static_cast<unsigned>(text.size() + 2));
  put16(o, code);
  for (char c : text)
    o.push_back(static_cast<std::uint8_t>(c));
  return o;
}

// "a." A then MX whose exchange is "x" + a pointer to the A record's last TTL
// byte (offset 28, 0: a root label): stored and sent with names expanded.
Packet mx_reading_ttl() {
  Packet p = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1};
  p.insert(p.end(), {0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 10, 0, 0, 1});
  p.insert(p.end(), {0xC0, 12, 0, 15, 0, 1, 0, 0, 1, 0, 0, 6, 0, 10, 1, 'x', 0xC0, 28});
  return p;
}

struct Case {
  std::string what;
  std::string qname;  // as the client writes it
  Packet answer;
};

std::vector<Case> cases() {
  std::vector<Case> v;
  v.push_back({"two answers and an OPT", "Foo.Example",
               Answer("foo.example").answers(2, 300).opt().done()});
  v.push_back({"no OPT", "foo.example", Answer("foo.example").answers(1, 60).done()});
  v.push_back({"NXDOMAIN with an SOA and EDE", "NX.example",
               Answer("nx.example", 3).soa(60, 30).opt(ede(17, "filtered")).done()});
  v.push_back(
      {"NODATA with an SOA", "nodata.EXAMPLE", Answer("nodata.example").soa(90, 90).opt().done()});
  v.push_back({"an additional record before the OPT", "svc.local",
               Answer("svc.local").answers(1, 30).extra(45).opt().done()});
  v.push_back({"a record after the OPT", "svc.local", [] {
                 auto a = Answer("svc.local").answers(1, 30).opt();
                 a.extra(40);
                 return a.done();
               }()});
  v.push_back({"a TTL with the top bit set", "top.example",
               Answer("top.example").answers(2, 0x8000'0010u).opt().done()});
  v.push_back({"more records than the view keeps TTL offsets of", "Many.Example",
               Answer("many.example")
                   .answers(static_cast<unsigned>(dns::kViewTtlOffsets) + 8, 100)
                   .opt()
                   .done()});
  v.push_back({"names that read TTL bytes", "A", mx_reading_ttl()});
  return v;
}

struct Client {
  std::string what;
  test::QueryOptions options;
  std::size_t limit;  // 0: the UDP limit from EDNS
};

std::vector<Client> clients() {
  return {
      {"plain UDP", {.id = 0x0101}, 0},
      {"EDNS", {.id = 0x0202, .edns = true}, 0},
      {"EDNS with DO", {.id = 0x0303, .edns = true, .do_bit = true}, 0},
      {"no RD", {.id = 0x0404, .rd = false}, 0},
      {"TCP", {.id = 0x0505, .edns = true}, dns::kMaxMessageSize},
      {"EDNS at 512", {.id = 0x0606, .edns = true, .udp_size = 512}, 0},
  };
}

struct Asked {
  dns::ReplyShape shape;
  cache::Key key;
};

Asked ask(const std::string& qname, const Client& c) {
  auto q = test::make_query(qname, "A", c.options);
  auto v = dns::parse_query(q);
  REQUIRE(v.status == dns::QueryStatus::Ok);
  Asked a;
  a.shape = dns::make_reply_shape(v, c.limit != 0 ? c.limit : v.udp_reply_limit());
  a.key = cache::Key::make(v.question, v.edns.do_bit, v.header.flags & dns::kFlagCD);
  return a;
}

Packet fresh(const Packet& answer, const dns::ReplyShape& shape) {
  auto rv = dns::parse_response(answer);
  REQUIRE(rv);
  std::array<std::uint8_t, dns::kMaxMessageSize> out{};
  std::size_t n = dns::build_client_reply(answer, *rv, shape, out);
  REQUIRE(n > 0);
  return Packet(out.begin(), out.begin() + static_cast<long>(n));
}

std::optional<Packet> hit(cache::PacketCache& c, const Asked& a) {
  std::array<std::uint8_t, dns::kMaxMessageSize> out{};
  std::size_t n = c.lookup(a.key, a.shape, out).size;
  if (n == 0) return std::nullopt;
  return Packet(out.begin(), out.begin() + static_cast<long>(n));
}

// `reply` with every TTL but the OPT's lowered by `age` (never below 0).
Packet aged(Packet reply, std::uint32_t age) {
  auto rv = dns::parse_response(reply);
  REQUIRE(rv);
  dns::for_each_rr(dns::Bytes(reply), rv->header, rv->question_end, [&](const dns::RrView& rr) {
    if (rr.type != static_cast<std::uint16_t>(dns::Type::OPT)) {
      dns::write_u32(&reply[rr.type_offset + 4], rr.ttl > age ? rr.ttl - age : 0);
    }
    return true;
  });
  return reply;
}

}  // namespace

TEST_CASE("a cache hit and a fresh answer render the same bytes", "[cache][reply]") {
  constexpr std::uint32_t kLifetime = 3600;  // above every TTL: no cap applies
  for (const auto& k : cases()) {
    auto rv = dns::parse_response(k.answer);
    REQUIRE(rv);
    for (const auto& client : clients()) {
      INFO(k.what << ", " << client.what);
      auto a = ask(k.qname, client);
      auto want = fresh(k.answer, a.shape);
      cache::Clock::time_point now(1000s);
      cache::PacketCache c({}, [&] { return now; });
      c.insert(a.key, k.answer, *rv, kLifetime);
      REQUIRE(c.stats().entries == 1);
      auto got = hit(c, a);
      REQUIRE(got);
      CHECK(*got == want);
      // Later, only the TTLs differ, each lowered by the entry's age (the
      // truncated replies of the 512-byte client have no records left).
      now += 70s;
      auto later = hit(c, a);
      REQUIRE(later);
      CHECK(*later == aged(want, 70));
    }
  }
}

TEST_CASE("the cases above reach the paths they are named for", "[cache][reply]") {
  auto all = cases();
  auto view = [&](std::size_t i) { return *dns::parse_response(all[i].answer); };
  CHECK(view(0).opt);
  CHECK_FALSE(view(1).opt);
  CHECK(view(2).negative_ttl == 30u);
  CHECK(view(4).kept_additional == 1);
  CHECK(view(5).kept_records == 1);  // the record after the OPT is dropped
  CHECK(view(6).ttl_top_bit);
  CHECK(view(7).kept_records > dns::kViewTtlOffsets);
  CHECK(view(8).names_read_ttls);
  // Truncated for the 512-byte clients, whole over TCP.
  auto big = all[7];
  auto t = fresh(big.answer, ask(big.qname, clients()[0]).shape);
  CHECK((t[2] & (dns::kFlagTC >> 8)) != 0);
  auto whole = fresh(big.answer, ask(big.qname, clients()[4]).shape);
  CHECK((whole[2] & (dns::kFlagTC >> 8)) == 0);
}
