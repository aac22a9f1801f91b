// libFuzzer target: arbitrary bytes as a client query and as an upstream
// answer, through the parser, the reply builders and the cache. Every reply
// localdns builds must itself parse; nothing may read or write out of bounds.
// Build and run: tests/fuzz/run.sh [SECONDS]
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>

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
  // A client that asked the same question, with and without EDNS.
  for (bool edns : {false, true}) {
    dns::ReplyShape shape;
    shape.id = 0x4242;
    shape.qname_len = static_cast<std::uint8_t>(rv->question.qname.size());
    std::copy(rv->question.qname.begin(), rv->question.qname.end(), shape.qname.begin());
    shape.qtype = rv->question.qtype;
    shape.qclass = rv->question.qclass;
    shape.edns = edns;
    shape.limit = edns ? dns::kEdnsUdpSize : dns::kClassicUdpSize;
    std::array<std::uint8_t, dns::kMaxMessageSize> out{};
    std::size_t n = dns::build_client_reply(in, *rv, shape, out);
    if (n != 0) {
      check(n <= shape.limit);
      auto back = dns::parse_response(dns::Bytes(out.data(), n));
      check(back.has_value() && back->header.id == 0x4242 && back->opt.has_value() == edns);
    }
    static cache::PacketCache cache(cache::CacheSettings{1000, 1u << 20, 4, 2, 10});
    auto life = cache::cache_lifetime(in, *rv, cache::TtlPolicy{});
    auto key = cache::Key::make(rv->question, false, false);
    cache.insert(key, in, *rv, life.seconds == 0 ? 1 : life.seconds, 1);
    auto hit = cache.lookup(key, shape, out);
    if (hit.size != 0) {
      check(hit.size <= shape.limit);
      auto back = dns::parse_response(dns::Bytes(out.data(), hit.size));
      check(back.has_value() && back->header.id == 0x4242);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dns::Bytes in(data, size);
  as_query(in);
  as_answer(in);
  return 0;
}
