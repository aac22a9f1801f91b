// The whole hit path through QueryHandler::handle, as a listener calls it,
// with the per-worker metrics and heavy-hitter sampling on and off: what
// counting costs per query; and with the client limits (clients.*) on: an
// allow-list, and a rate limit that exempts hits or counts every one.
#include <array>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/zone_router.hpp>

#include "../bench_messages.hpp"

using namespace localdns;

namespace {

std::string name(int i) {
  return "svc-" + std::to_string(i) + ".default.svc.cluster.local";
}

void run(benchmark::State& state, server::HandlerOptions options,
         const server::ClientLimits& limits = {}) {
  constexpr int kNames = 1000;
  server::ZoneRouter router(server::GroupZones{{"cluster.local", "."}});
  std::vector<std::unique_ptr<upstream::Forwarder>> forwarders;  // hits only
  cache::PacketCache cache({});
  server::CacheWiring wiring;
  wiring.cache = &cache;
  wiring.policies = {cache::TtlPolicy{}};
  std::vector<std::vector<std::uint8_t>> queries;
  for (int i = 0; i < kNames; ++i) {
    auto q = bench::query_for(name(i), static_cast<std::uint16_t>(i));
    auto a = bench::answer_for(q);
    auto v = dns::parse_query(q);
    cache.insert(cache::Key::make(v.question, false, false), a, *dns::parse_response(a), 3600);
    queries.push_back(std::move(q));
  }
  boost::asio::io_context io;
  server::QueryHandler handler(router, forwarders, wiring, io.get_executor(), options);
  handler.set_client_limits(limits);
  server::UdpClient udp;
  auto* sin = reinterpret_cast<sockaddr_in*>(&udp.addr);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(0x0A000001);
  udp.addr_len = sizeof(sockaddr_in);
  server::ClientRef client = udp;
  std::array<std::uint8_t, dns::kMaxMessageSize> out{};
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& q = queries[i++ % kNames];
    auto r = handler.handle(q, server::Transport::Udp, client, out);
    benchmark::DoNotOptimize(r);
  }
  state.counters["hits"] = static_cast<double>(handler.stats().cache_hits.get());
}

void BM_HandleHit_MetricsOff(benchmark::State& state) {
  run(state, {.metrics = false, .top_sample = 0});
}
void BM_HandleHit_MetricsOn(benchmark::State& state) {
  run(state, {.metrics = true, .top_sample = 0});
}
void BM_HandleHit_MetricsAndTop(benchmark::State& state) {
  run(state, {});  // the defaults: metrics on, 1 in 16 queries into the top sketches
}

// Ten allowed networks, the client in the last; a rate no hit reaches.
server::ClientLimits limits(bool exempt_hits) {
  server::ClientLimits l;
  for (int i = 0; i < 9; ++i)
    l.allow.push_back({boost::asio::ip::make_address("192.168." + std::to_string(i) + ".0"), 24});
  l.allow.push_back({boost::asio::ip::make_address("10.0.0.0"), 8});
  l.rate_limit.qps = 1'000'000;
  l.rate_limit.burst = 10'000'000;
  l.rate_limit.exempt_cache_hits = exempt_hits;
  l.rate_limit.exempt_node_addresses = false;
  return l;
}
void BM_HandleHit_ClientLimitsExemptHits(benchmark::State& state) {
  run(state, {.metrics = false, .top_sample = 0}, limits(true));
}
void BM_HandleHit_ClientLimitsCountHits(benchmark::State& state) {
  run(state, {.metrics = false, .top_sample = 0}, limits(false));
}

}  // namespace

BENCHMARK(BM_HandleHit_MetricsOff);
BENCHMARK(BM_HandleHit_ClientLimitsExemptHits);
BENCHMARK(BM_HandleHit_ClientLimitsCountHits);
BENCHMARK(BM_HandleHit_MetricsOn);
BENCHMARK(BM_HandleHit_MetricsAndTop);
