// Per-query costs of the pieces every answer goes through: parse the query,
// route it, build the upstream query, turn an upstream answer into the reply.
// Run: cmake --preset release -DLOCALDNS_BUILD_BENCH=ON && cmake --build --preset release
//      && build/release/bench/dns_bench
#include <array>
#include <benchmark/benchmark.h>
#include <vector>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/server/zone_router.hpp>

#include "../bench_messages.hpp"

using namespace localdns;

namespace {

std::vector<std::uint8_t> query_bytes() {
  return bench::query_for("kube-dns.kube-system.svc.cluster.local", 0x1234);
}

std::vector<std::uint8_t> answer_bytes(const std::vector<std::uint8_t>& query) {
  return bench::answer_for(query);
}

void BM_ParseQuery(benchmark::State& state) {
  auto q = query_bytes();
  for (auto _ : state) {
    auto v = dns::parse_query(q);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_ParseQuery);

void BM_Route(benchmark::State& state) {
  server::ZoneRouter router(
      server::GroupZones{{"cluster.local.", "in-addr.arpa.", "ip6.arpa."}, {"."}});
  auto q = query_bytes();
  auto v = dns::parse_query(q);
  for (auto _ : state)
    benchmark::DoNotOptimize(router.route(v.question.qname));
}
BENCHMARK(BM_Route);

void BM_BuildClientReply(benchmark::State& state) {
  auto q = query_bytes();
  auto a = answer_bytes(q);
  auto v = dns::parse_query(q);
  auto shape = dns::make_reply_shape(v, v.udp_reply_limit());
  std::array<std::uint8_t, 1232> out{};
  for (auto _ : state) {
    auto rv = dns::parse_response(a);
    std::size_t n = dns::build_client_reply(a, *rv, shape, out);
    benchmark::DoNotOptimize(n);
  }
}
BENCHMARK(BM_BuildClientReply);

}  // namespace
