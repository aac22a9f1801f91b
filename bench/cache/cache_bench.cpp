// The cache hit path, per query: parse the client's query, build its key and
// reply shape, look it up and write the patched reply. Also reports the memory
// one cached entry costs (accounted bytes and resident memory).
// Run: cmake --preset release -DLOCALDNS_BUILD_BENCH=ON && cmake --build --preset release
//      && build/release/bench/cache_bench
#include <array>
#include <benchmark/benchmark.h>
#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>

#include "../bench_messages.hpp"

using namespace localdns;
using bench::answer_for;
using bench::query_for;

namespace {

std::string name(int i) {
  std::string s = "svc-";
  s += std::to_string(i);
  s += ".default.svc.cluster.local";
  return s;
}

void fill(cache::PacketCache& c, int n) {
  for (int i = 0; i < n; ++i) {
    auto q = query_for(name(i), 0);
    auto a = answer_for(q);
    auto v = dns::parse_query(q);
    c.insert(cache::Key::make(v.question, false, false), a, *dns::parse_response(a), 3600);
  }
}

void BM_CacheHit(benchmark::State& state) {
  constexpr int kNames = 1000;
  cache::PacketCache c({});
  fill(c, kNames);
  std::vector<std::vector<std::uint8_t>> queries;
  for (int i = 0; i < kNames; ++i)
    queries.push_back(query_for(name(i), static_cast<std::uint16_t>(i)));
  std::array<std::uint8_t, dns::kEdnsUdpSize> out{};
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& q = queries[i++ % kNames];
    auto v = dns::parse_query(q);
    auto shape = dns::make_reply_shape(v, v.udp_reply_limit());
    auto key = cache::Key::make(v.question, v.edns.do_bit, v.header.flags & dns::kFlagCD);
    benchmark::DoNotOptimize(c.lookup(key, shape, out));
  }
  state.counters["hit_ratio"] =
      static_cast<double>(c.stats().hits) / static_cast<double>(c.stats().hits + c.stats().misses);
}
BENCHMARK(BM_CacheHit);

std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

void BM_MemoryPerEntry(benchmark::State& state) {
  constexpr int kEntries = 200'000;
  for (auto _ : state) {
    auto before = rss_bytes();
    cache::CacheSettings s;
    s.max_entries = kEntries;
    s.max_bytes = std::size_t{1} << 30;
    cache::PacketCache c(s);
    fill(c, kEntries);
    auto after = rss_bytes();
    auto st = c.stats();
    auto wire = answer_for(query_for(name(0), 0)).size() - dns::kOptRecordSize;
    state.counters["entries"] = static_cast<double>(st.entries);
    state.counters["wire_bytes"] = static_cast<double>(wire);
    state.counters["accounted_per_entry"] =
        static_cast<double>(st.bytes) / static_cast<double>(st.entries);
    state.counters["rss_per_entry"] =
        static_cast<double>(after - before) / static_cast<double>(st.entries);
  }
}
BENCHMARK(BM_MemoryPerEntry)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
