// The base module: the lock-guarded value, the manual clock, the fixed random
// sequence, the notifier that shutdown waits on and per-thread scratch.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <link.h>
#include <map>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <localdns/util/clock.hpp>
#include <localdns/util/lock_guarded.hpp>
#include <localdns/util/notifier.hpp>
#include <localdns/util/random.hpp>
#include <localdns/util/thread_scratch.hpp>

using namespace localdns;
using namespace std::chrono_literals;

TEST_CASE("a lock-guarded value is reached only through its lock", "[util]") {
  util::LockGuarded<std::map<int, int>> table;
  constexpr int kPerThread = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i)
        table.lock()->emplace(t * kPerThread + i, i);
    });
  }
  for (auto& th : threads)
    th.join();
  const auto& view = table;
  CHECK(view.with([](const auto& m) { return m.size(); }) == 4 * kPerThread);
  CHECK(view.lock()->at(kPerThread + 7) == 7);
}

TEST_CASE("a manual clock moves only when told", "[util]") {
  util::ManualClock clock;
  auto t0 = clock.now();
  CHECK(clock.now() == t0);
  clock.advance(1500ms);
  CHECK(clock.now() - t0 == 1500ms);
  clock.set(t0);
  CHECK(clock.now() == t0);
  CHECK(util::Clock::real().now() >= t0);
}

TEST_CASE("a sequence random source repeats its values, reduced to the bound", "[util]") {
  util::SequenceRandom r({7, 12, 3});
  CHECK(r.next() == 7);
  CHECK(r.below(5) == 2);
  CHECK(r.next() == 3);
  CHECK(r.next() == 7);
  for (int i = 0; i < 100; ++i)
    CHECK(util::Random::system().below(10) < 10);
}

TEST_CASE("a notifier wakes its waiter when the condition turns true", "[util]") {
  util::Notifier n;
  std::atomic<int> left{3};
  std::thread worker([&] {
    for (int i = 0; i < 3; ++i) {
      left.fetch_sub(1);
      n.notify();
    }
  });
  // A deadline far away: the wait ends because the condition holds, not by timing out.
  bool done = n.wait_until(util::SteadyClock::now() + 30s, [&] { return left.load() == 0; });
  worker.join();
  CHECK(done);
  CHECK(left.load() == 0);
  // A condition that never holds: false at the deadline.
  auto start = util::SteadyClock::now();
  CHECK_FALSE(n.wait_until(start + 50ms, [] { return false; }));
  CHECK(util::SteadyClock::now() - start >= 50ms);
}

namespace {
using ScratchBuffer = std::array<std::uint8_t, 65535>;
// At namespace scope, as in localdns: each thread's first use constructs its
// instance and registers its destructor. (A function's static thread_local is
// constructed only on threads that pass its declaration, so a lambda's thread
// would never free what it allocated.)
thread_local util::ThreadScratch<ScratchBuffer> scratch;
}  // namespace

TEST_CASE("thread scratch: one buffer per thread, the same on every call", "[util]") {
  using Buffer = ScratchBuffer;
  Buffer* mine = &scratch.get();
  CHECK(&scratch.get() == mine);
  mine->front() = 1;
  Buffer* other = nullptr;
  bool same = false;
  std::thread([&] {  // Catch2's assertions stay on the test's thread
    other = &scratch.get();
    other->front() = 2;
    same = &scratch.get() == other;
  })
      .join();
  CHECK(same);
  CHECK(other != mine);
  CHECK(mine->front() == 1);
}

TEST_CASE("every thread starts with little thread-local storage", "[util]") {
  // The C library zeroes a new thread's static TLS block, so each thread
  // holds all of it in memory; per-thread buffers belong in ThreadScratch.
  std::size_t tls = 0;
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* out) {
        // The first object is the executable, which holds localdns's code.
        for (int i = 0; i < info->dlpi_phnum; ++i)
          if (info->dlpi_phdr[i].p_type == PT_TLS)
            *static_cast<std::size_t*>(out) = info->dlpi_phdr[i].p_memsz;
        return 1;
      },
      &tls);
  CHECK(tls < 16 * 1024);
}
