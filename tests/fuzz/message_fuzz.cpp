// libFuzzer target: arbitrary bytes as a client query and as an upstream
// answer, through the parser, the reply builders and the cache. Every reply
// localdns builds must itself parse; nothing may read or write out of bounds.
// Every reply made from an answer, on a miss and from the cache at age 0,
// after ageing and stale, must hold the same records (names, types, classes,
// record data, as a lenient decoder written here reads them) as the answer,
// with TTLs aged as promised; EDE options stay bounded.
// Build and run: tests/fuzz/run.sh [SECONDS]
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <vector>

#include <localdns/cache/cache_policy.hpp>
#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>

using namespace localdns;

namespace {

#define check(ok)                                                          \
  do {                                                                     \
    if (!(ok)) {                                                           \
      std::fprintf(stderr, "check failed: %s (line %d)\n", #ok, __LINE__); \
      __builtin_trap();                                                    \
    }                                                                      \
  } while (0)

// A record as a lenient client decodes it: names followed through pointers
// anywhere in the message and lower-cased, in the owner and in the record data
// of the types whose data holds names (RFC 1035 3.3, RFC 3597 4, KX, DNAME,
// RRSIG, NSEC); other record data as bytes.
struct Rec {
  std::vector<std::uint8_t> owner;
  std::uint16_t type = 0;
  std::uint16_t rclass = 0;
  std::uint32_t ttl = 0;
  std::vector<std::uint8_t> rdata;
  bool operator==(const Rec&) const = default;
};

bool read_name(dns::Bytes m, std::size_t pos, std::vector<std::uint8_t>& out, std::size_t& end) {
  bool jumped = false;
  for (int hops = 0; hops < 128;) {
    if (pos >= m.size()) return false;
    std::uint8_t len = m[pos];
    if ((len & 0xC0) == 0xC0) {
      if (pos + 1 >= m.size()) return false;
      if (!jumped) end = pos + 2;
      jumped = true;
      pos = ((len & 0x3Fu) << 8) | m[pos + 1];
      ++hops;
      continue;
    }
    if (len > 63 || pos + 1 + len > m.size()) return false;
    out.push_back(len);
    for (std::size_t i = 0; i < len; ++i) {
      std::uint8_t c = m[pos + 1 + i];
      out.push_back(c >= 'A' && c <= 'Z' ? static_cast<std::uint8_t>(c + 32) : c);
    }
    if (out.size() > 255) return false;
    if (len == 0) {
      if (!jumped) end = pos + 1;
      return true;
    }
    pos += 1 + len;
  }
  return false;
}

// Fixed byte counts > 0; -1 name, -2 character-string, -3 the rest.
std::vector<int> layout(std::uint16_t type) {
  switch (type) {
    case 2:
    case 3:
    case 4:
    case 5:
    case 7:
    case 8:
    case 9:
    case 12:
    case 39:
      return {-1};
    case 6:
      return {-1, -1, 20};
    case 14:
    case 17:
      return {-1, -1};
    case 15:
    case 18:
    case 21:
    case 36:
      return {2, -1};
    case 26:
      return {2, -1, -1};
    case 33:
      return {6, -1};
    case 35:
      return {4, -2, -2, -2, -1};
    case 24:
    case 46:
      return {18, -1, -3};
    case 30:
    case 47:
      return {-1, -3};
    default:
      return {-3};
  }
}

// The records before the OPT (the OPT itself left out); nullopt if unreadable.
std::optional<std::vector<Rec>> records(dns::Bytes m) {
  if (m.size() < 12) return std::nullopt;
  auto h = dns::Header::read(m.data());
  if (h.qdcount != 1) return std::nullopt;
  std::vector<std::uint8_t> qname;
  std::size_t pos = 0;
  if (!read_name(m, 12, qname, pos) || pos + 4 > m.size()) return std::nullopt;
  pos += 4;
  std::vector<Rec> out;
  unsigned total = unsigned{h.ancount} + h.nscount + h.arcount;
  for (unsigned i = 0; i < total; ++i) {
    Rec r;
    std::size_t end = 0;
    if (!read_name(m, pos, r.owner, end) || end + 10 > m.size()) return std::nullopt;
    r.type = dns::read_u16(&m[end]);
    r.rclass = dns::read_u16(&m[end + 2]);
    r.ttl = dns::read_u32(&m[end + 4]);
    std::size_t rd = end + 10;
    std::size_t rd_end = rd + dns::read_u16(&m[end + 8]);
    if (rd_end > m.size()) return std::nullopt;
    if (r.type == 41) break;
    std::size_t p = rd;
    for (int f : layout(r.type)) {
      if (f > 0) {
        if (p + static_cast<std::size_t>(f) > rd_end) return std::nullopt;
        r.rdata.insert(r.rdata.end(), &m[p], &m[p] + f);
        p += static_cast<std::size_t>(f);
      } else if (f == -2) {
        if (p >= rd_end || p + 1 + m[p] > rd_end) return std::nullopt;
        r.rdata.insert(r.rdata.end(), &m[p], &m[p] + 1 + m[p]);
        p += 1 + m[p];
      } else if (f == -1) {
        std::size_t name_end = 0;
        if (!read_name(m, p, r.rdata, name_end) || name_end > rd_end) return std::nullopt;
        p = name_end;
      } else {
        r.rdata.insert(r.rdata.end(), m.begin() + static_cast<long>(p),
                       m.begin() + static_cast<long>(rd_end));
        p = rd_end;
      }
    }
    if (p != rd_end) return std::nullopt;
    out.push_back(std::move(r));
    pos = rd_end;
  }
  return out;
}

// The records a reply must hold: the answer's, TTLs as `ttl_of` makes them.
template <class TtlFn>
void check_same(const std::vector<Rec>& upstream, dns::Bytes reply, TtlFn&& ttl_of) {
  auto got = records(reply);
  check(got.has_value());
  check(got->size() == upstream.size());
  for (std::size_t i = 0; i < upstream.size(); ++i) {
    Rec want = upstream[i];
    want.ttl = ttl_of((want.ttl & 0x8000'0000u) ? 0 : want.ttl);  // RFC 2181 8
    check((*got)[i] == want);
  }
}

// The OPT of a reply: EDE options only, well formed, within the bound.
void check_ede(dns::Bytes reply, bool stale) {
  auto rv = dns::parse_response(reply);
  check(rv.has_value());
  if (!rv->opt) return;
  std::size_t pos = rv->opt->rdata_offset;
  std::size_t total = 0;
  while (pos < rv->opt->end()) {
    check(pos + 6 <= rv->opt->end());
    check(dns::read_u16(&reply[pos]) == dns::kOptionEde);
    std::size_t len = dns::read_u16(&reply[pos + 2]);
    total += 4 + len;
    pos += 4 + len;
  }
  check(pos == rv->opt->end());
  check(total <= dns::kMaxEdeBytes + (stale ? 6 : 0));
}

// A reply localdns emptied and flagged TC=1 because the records did not fit
// the client's limit (the upstream's own TC flag is passed on as well).
bool made_truncated(const dns::ResponseView& reply, const std::vector<Rec>& upstream) {
  const auto& h = reply.header;
  return h.tc() && h.ancount == 0 && h.nscount == 0 && h.arcount == (reply.opt ? 1 : 0) &&
         !upstream.empty();
}

cache::Clock::time_point fuzz_now{};

void as_query(dns::Bytes in) {
  auto q = dns::parse_query(in);
  std::array<std::uint8_t, 1232> out{};
  if (q.status == dns::QueryStatus::Drop) return;
  std::size_t n = dns::build_error_reply(q, dns::Rcode::FormErr, out);
  check(n >= dns::kHeaderSize);
  if (q.status != dns::QueryStatus::Ok) return;
  auto shape = dns::make_reply_shape(q, q.udp_reply_limit());
  n = dns::build_error_reply(shape, dns::Rcode::ServFail, out);
  check(n > 0 && dns::parse_response(dns::Bytes(out.data(), n)).has_value());
}

void as_answer(dns::Bytes in) {
  auto rv = dns::parse_response(in);
  if (!rv) return;
  // What localdns accepts, a lenient client reads too (it is no stricter).
  auto upstream = records(in);
  check(upstream.has_value());
  const bool extended = rv->rcode() > 15;
  // A client that asked the same question, in other letter case, with and
  // without EDNS.
  for (bool edns : {false, true}) {
    dns::ReplyShape shape;
    shape.id = 0x4242;
    shape.qname_len = static_cast<std::uint8_t>(rv->question.qname.size());
    std::copy(rv->question.qname.begin(), rv->question.qname.end(), shape.qname.begin());
    for (std::size_t i = 0; i < shape.qname_len; ++i) {
      std::uint8_t& c = shape.qname[i];
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) c ^= 0x20;
    }
    shape.qtype = rv->question.qtype;
    shape.qclass = rv->question.qclass;
    shape.edns = edns;
    shape.limit = edns ? dns::kEdnsUdpSize : dns::kClassicUdpSize;
    std::array<std::uint8_t, dns::kMaxMessageSize> out{};
    std::size_t n = dns::build_client_reply(in, *rv, shape, out);
    if (n != 0) {
      check(n <= shape.limit);
      dns::Bytes reply(out.data(), n);
      auto back = dns::parse_response(reply);
      check(back.has_value() && back->header.id == 0x4242 && back->opt.has_value() == edns);
      check_ede(reply, false);
      if (extended && !edns) {
        check(back->rcode() == 2 && back->header.ancount == 0);
      } else if (!made_truncated(*back, *upstream)) {
        check(back->rcode() == rv->rcode());
        check_same(*upstream, reply, [](std::uint32_t t) { return t; });
      }
    }
    // A cache of its own per input: no entry of an earlier input can answer.
    cache::PacketCache cache(cache::CacheSettings{1000, 1u << 20, 4, 2, 10},
                             [] { return fuzz_now; });
    auto life = cache::cache_lifetime(*rv, cache::TtlPolicy{});
    const std::uint32_t lifetime = life.seconds == 0 ? 7 : life.seconds;
    auto key = cache::Key::make(rv->question, false, false);
    const auto stored = fuzz_now;
    cache.insert(key, in, *rv, lifetime, 60);
    // Age 0, some way into the lifetime, and stale.
    for (std::uint32_t age : {0u, lifetime / 2, lifetime + 5}) {
      fuzz_now = stored + std::chrono::seconds(age);
      bool stale = age >= lifetime;
      auto hit = cache.lookup(key, shape, out,
                              stale ? cache::Freshness::AllowStale : cache::Freshness::Fresh);
      if (hit.size == 0) continue;
      check(hit.size <= shape.limit && hit.stale == stale);
      dns::Bytes reply(out.data(), hit.size);
      auto back = dns::parse_response(reply);
      check(back.has_value() && back->header.id == 0x4242);
      check_ede(reply, stale);
      if (made_truncated(*back, *upstream)) continue;  // over the client's limit
      check_same(*upstream, reply, [&](std::uint32_t t) {
        if (stale) return std::min(t, cache::kStaleAnswerTtl);
        return std::min(t > age ? t - age : 0, lifetime - age);
      });
    }
    fuzz_now = stored + std::chrono::hours(1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dns::Bytes in(data, size);
  as_query(in);
  as_answer(in);
  return 0;
}
