// Workers scale: two threads, pinned to CPUs 0 and 1, hammering one shared
// cache::PacketCache, against the same work on disjoint keys.
//
//   hits   every operation a lookup that hits (key and reply shape made
//          beforehand, so the cache itself is most of the work)
//   mix    90 % such hits, 10 % inserts of names from a stream larger than
//          the cache (so inserts also evict); a lookup that misses inserts
//          its answer
//
// Each workload runs with 1 thread (CPU 0); with 2 threads on disjoint key
// sets (each its own 1,000 hot names and insert stream: the baseline, and
// with the 1-thread run what the second CPU adds); with 2 threads on the same
// 1,000 hot names (and, for mix, each its own insert stream); and with 2
// threads on two separate caches (nothing shared at all). Cases are
// interleaved within each repetition; the table shows medians over the
// repetitions of the per-thread operations per second (wall clock) and per
// CPU-second of the thread (which other processes on the machine move less).
//
//   cache_scale [--seconds S (2)] [--reps N (5)]
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <pthread.h>
#include <sched.h>
#include <string>
#include <thread>
#include <vector>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>

#include "../bench_messages.hpp"

using namespace localdns;
using bench::answer_for;
using bench::query_for;

namespace {

constexpr int kHot = 1000;
constexpr int kStream = 30'000;              // insert names per thread
constexpr std::size_t kMaxEntries = 20'000;  // below one stream: inserts evict

struct Prepared {
  cache::Key key;
  dns::ReplyShape shape;
};

struct Answer {
  cache::Key key;
  std::vector<std::uint8_t> wire;
  dns::ResponseView view;
};

std::string name(const std::string& prefix, int i) {
  return prefix + std::to_string(i) + ".default.svc.cluster.local";
}

Prepared prepare(const std::string& n) {
  auto q = query_for(n, 1);
  auto v = dns::parse_query(q);
  return {cache::Key::make(v.question, v.edns.do_bit, v.header.flags & dns::kFlagCD),
          dns::make_reply_shape(v, v.udp_reply_limit())};
}

// Appends answers for `names` (views into their own wire bytes).
void answers(const std::vector<std::string>& names, std::vector<std::unique_ptr<Answer>>& out) {
  for (const auto& n : names) {
    auto a = std::make_unique<Answer>();
    auto q = query_for(n, 0);
    a->wire = answer_for(q);
    auto v = dns::parse_query(q);
    a->key = cache::Key::make(v.question, false, false);
    a->view = *dns::parse_response(a->wire);
    out.push_back(std::move(a));
  }
}

// One thread's data: its hot set (prepared lookups, inserted up front) and
// its insert stream.
struct Work {
  std::vector<Prepared> hot;
  std::vector<std::unique_ptr<Answer>> hot_answers, stream;
  std::array<std::uint16_t, 4096> order{};  // pseudo-random walk over the hot set
};

Work make_work(const std::string& hot_prefix, const std::string& stream_prefix, unsigned seed) {
  Work w;
  std::vector<std::string> hot, stream;
  for (int i = 0; i < kHot; ++i)
    hot.push_back(name(hot_prefix, i));
  for (int i = 0; i < kStream; ++i)
    stream.push_back(name(stream_prefix, i));
  for (const auto& n : hot)
    w.hot.push_back(prepare(n));
  answers(hot, w.hot_answers);
  answers(stream, w.stream);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& o : w.order) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    o = static_cast<std::uint16_t>(x % kHot);
  }
  return w;
}

std::unique_ptr<cache::PacketCache> make_cache() {
  cache::CacheSettings s;
  s.max_entries = kMaxEntries;
  s.max_bytes = std::size_t{1} << 30;
  return std::make_unique<cache::PacketCache>(s);
}

void fill_hot(cache::PacketCache& c, const Work& w) {
  for (const auto& a : w.hot_answers)
    c.insert(a->key, a->wire, a->view, 3600);
}

double thread_cpu_s() {
  timespec ts;
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct ThreadResult {
  double ops_per_s = 0, ops_per_cpu_s = 0;
  std::uint64_t misses = 0;
};

// Runs `threads` threads (thread t on CPU t, on caches[t] and work[t]) for
// `seconds`; insert_every: every n-th operation inserts (0: never).
std::vector<ThreadResult> run(const std::vector<cache::PacketCache*>& caches,
                              const std::vector<Work*>& work, int threads, int insert_every,
                              double seconds) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false}, stop{false};
  std::vector<ThreadResult> res(static_cast<std::size_t>(threads));
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(t, &set);
      ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);
      auto& c = *caches[static_cast<std::size_t>(t)];
      auto& w = *work[static_cast<std::size_t>(t)];
      std::array<std::uint8_t, dns::kEdnsUdpSize> out{};
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      auto t0 = std::chrono::steady_clock::now();
      double c0 = thread_cpu_s();
      std::uint64_t ops = 0, misses = 0;
      std::size_t next_insert = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int k = 0; k < 1024; ++k, ++ops) {
          if (insert_every && ops % static_cast<std::uint64_t>(insert_every) == 0) {
            const auto& a = *w.stream[next_insert++ % w.stream.size()];
            c.insert(a.key, a.wire, a.view, 3600);
            continue;
          }
          auto h = w.order[ops % w.order.size()];
          const auto& p = w.hot[h];
          if (c.lookup(p.key, p.shape, out).size == 0) {
            // As a resolver would: fetch and store. (A thread that other
            // processes keep off its CPU for long can see its hot names
            // evicted by the other thread's inserts.)
            ++misses;
            const auto& a = *w.hot_answers[h];
            c.insert(a.key, a.wire, a.view, 3600);
          }
        }
      }
      double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double cpu = thread_cpu_s() - c0;
      res[static_cast<std::size_t>(t)] = {static_cast<double>(ops) / wall,
                                          static_cast<double>(ops) / std::max(cpu, 1e-9), misses};
    });
  }
  while (ready.load() < threads) {
  }
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  for (auto& th : ts)
    th.join();
  return res;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Case {
  const char* name;
  int threads;
  int insert_every;
  bool shared_keys;
  bool one_cache;
  std::vector<double> per_thread, per_cpu, min_thread;
  std::uint64_t misses = 0;
};

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2;
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: cache_scale [--seconds S] [--reps N]\n");
      return 2;
    }
  }
  if (seconds <= 0 || seconds > 60 || reps < 1 || reps > 100) {
    std::fprintf(stderr, "cache_scale: --seconds must be in (0, 60], --reps 1-100\n");
    return 2;
  }
  if (std::thread::hardware_concurrency() < 2) {
    std::fprintf(stderr, "cache_scale: needs 2 CPUs\n");
    return 2;
  }
  // Hot sets: thread-private (t0-, t1-) and shared (svc-); insert streams
  // are always thread-private.
  Work own0 = make_work("t0-svc-", "t0-new-", 1), own1 = make_work("t1-svc-", "t1-new-", 2);
  Work shared0 = make_work("svc-", "t0-new-", 1), shared1 = make_work("svc-", "t1-new-", 2);

  std::vector<Case> cases = {
      {"hits, 1 thread", 1, 0, false, true, {}, {}, {}},
      {"hits, 2 threads, disjoint keys", 2, 0, false, true, {}, {}, {}},
      {"hits, 2 threads, same 1,000 keys", 2, 0, true, true, {}, {}, {}},
      {"hits, 2 threads, separate caches", 2, 0, false, false, {}, {}, {}},
      {"90/10 mix, 1 thread", 1, 10, false, true, {}, {}, {}},
      {"90/10 mix, 2 threads, disjoint keys", 2, 10, false, true, {}, {}, {}},
      {"90/10 mix, 2 threads, same 1,000 keys", 2, 10, true, true, {}, {}, {}},
      {"90/10 mix, 2 threads, separate caches", 2, 10, false, false, {}, {}, {}},
  };
  for (int r = 0; r < reps; ++r) {
    for (auto& cs : cases) {
      auto c0 = make_cache(), c1 = make_cache();
      Work* w0 = cs.shared_keys ? &shared0 : &own0;
      Work* w1 = cs.shared_keys ? &shared1 : &own1;
      fill_hot(*c0, *w0);
      fill_hot(cs.one_cache ? *c0 : *c1, *w1);
      std::vector<cache::PacketCache*> caches = {c0.get(), cs.one_cache ? c0.get() : c1.get()};
      auto res = run(caches, {w0, w1}, cs.threads, cs.insert_every, seconds);
      double sum = 0, cpu = 0, lo = 1e300;
      for (const auto& t : res) {
        sum += t.ops_per_s;
        cpu += t.ops_per_cpu_s;
        lo = std::min(lo, t.ops_per_s);
        cs.misses += t.misses;
      }
      cs.per_thread.push_back(sum / static_cast<double>(res.size()));
      cs.per_cpu.push_back(cpu / static_cast<double>(res.size()));
      cs.min_thread.push_back(lo);
    }
  }
  std::printf(
      "cache_scale: %d repetitions of %.1f s per case; medians; Mops = million operations\n", reps,
      seconds);
  std::printf(
      "| case | per thread Mops/s | slowest thread Mops/s | per thread Mops per CPU-s | "
      "vs 2-thread disjoint (per CPU-s) | CPU share per thread | total Mops/s | "
      "lookups missed |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& cs = cases[i];
    const auto& base = cases[i < 4 ? 1 : 5];
    double pt = median(cs.per_thread), pc = median(cs.per_cpu);
    std::printf("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %llu |\n", cs.name, pt / 1e6,
                median(cs.min_thread) / 1e6, pc / 1e6, pc / median(base.per_cpu), pt / pc,
                pt * cs.threads / 1e6, static_cast<unsigned long long>(cs.misses));
  }
  return 0;
}
