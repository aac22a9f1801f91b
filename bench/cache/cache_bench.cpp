// The cache hit path, per query: parse the client's query, build its key and
// reply shape, look it up and write the patched reply. Also reports the memory
// one cached entry costs (accounted bytes and resident memory).
// Run: cmake --preset release -DLOCALDNS_BUILD_BENCH=ON && cmake --build --preset release
//      && build/release/bench/cache_bench
#include <array>
#include <benchmark/benchmark.h>
#include <cstdio>
#include <fstream>
#include <memory>
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

// Cache fill, as bench/run.sh's workload F: 100,000 distinct names asked for
// the first time (a miss, then the upstream's answer stored), then again (a
// hit). The two steps are functions of their own so that callgrind can count
// each: valgrind --tool=callgrind --toggle-collect='*fill_miss_store*' (or
// '*fill_hit*') build/.../cache_bench --benchmark_filter=Fill.
namespace {

constexpr int kFillNames = 100'000;

struct FillSet {
  std::vector<std::vector<std::uint8_t>> queries, answers;
  FillSet() {
    for (int i = 0; i < kFillNames; ++i) {
      auto q =
          query_for("f" + std::to_string(i) + ".fill.cluster.local", static_cast<std::uint16_t>(i));
      answers.push_back(answer_for(q));
      queries.push_back(std::move(q));
    }
  }
};

cache::CacheSettings fill_settings() {
  cache::CacheSettings s;
  s.max_entries = 200'000;
  return s;
}

// The client's query misses; the upstream's answer is parsed and stored.
[[gnu::noinline]] bool fill_miss_store(cache::PacketCache& c, const FillSet& f, int i,
                                       dns::MutableBytes out) {
  auto v = dns::parse_query(f.queries[i]);
  auto shape = dns::make_reply_shape(v, v.udp_reply_limit());
  auto key = cache::Key::make(v.question, v.edns.do_bit, v.header.flags & dns::kFlagCD);
  if (c.lookup(key, shape, out).size != 0) return false;
  auto rv = dns::parse_response(f.answers[i]);
  c.insert(key, f.answers[i], *rv, 3600);
  return true;
}

// The same query again: a hit, rendered into `out`.
[[gnu::noinline]] std::size_t fill_hit(cache::PacketCache& c, const FillSet& f, int i,
                                       dns::MutableBytes out) {
  auto v = dns::parse_query(f.queries[i]);
  auto shape = dns::make_reply_shape(v, v.udp_reply_limit());
  auto key = cache::Key::make(v.question, v.edns.do_bit, v.header.flags & dns::kFlagCD);
  return c.lookup(key, shape, out).size;
}

void BM_FillMissStore(benchmark::State& state) {
  static const FillSet f;
  std::array<std::uint8_t, dns::kEdnsUdpSize> out{};
  std::int64_t stored = 0;
  for (auto _ : state) {
    auto c = std::make_unique<cache::PacketCache>(fill_settings());
    for (int i = 0; i < kFillNames; ++i)
      stored += fill_miss_store(*c, f, i, out);
    state.PauseTiming();  // the cache's destruction is not the workload
    c.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(stored);
}
BENCHMARK(BM_FillMissStore)->Unit(benchmark::kMillisecond);

void BM_FillHit(benchmark::State& state) {
  static const FillSet f;
  std::array<std::uint8_t, dns::kEdnsUdpSize> out{};
  cache::PacketCache c(fill_settings());
  for (int i = 0; i < kFillNames; ++i)
    fill_miss_store(c, f, i, out);
  int i = 0;
  std::int64_t hits = 0;
  for (auto _ : state) {
    hits += fill_hit(c, f, i, out) != 0;
    i = i + 1 == kFillNames ? 0 : i + 1;
  }
  state.SetItemsProcessed(hits);
  state.counters["hit_ratio"] = static_cast<double>(hits) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_FillHit);

}  // namespace
