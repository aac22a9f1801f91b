// Concurrent glibc lookups, as pods make them: getaddrinfo with AF_UNSPEC,
// so glibc sends the A and AAAA queries in parallel from one socket, through
// the search list and ndots of /etc/resolv.conf.
//   lookup_burst TOTAL THREADS NAME...
// Prints: lookups=N failed=F slow=S max_ms=M (slow: one second or more).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <netdb.h>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: lookup_burst TOTAL THREADS NAME...\n");
    return 2;
  }
  const int total = std::atoi(argv[1]);
  const int threads = std::max(1, std::atoi(argv[2]));
  std::vector<std::string> names(argv + 3, argv + argc);
  std::atomic<int> next{0}, failed{0}, slow{0};
  std::atomic<long> max_us{0};
  std::mutex err_mu;
  std::string first_error;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < total; i = next++) {
        const std::string& name = names[static_cast<std::size_t>(i) % names.size()];
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_DGRAM;
        addrinfo* res = nullptr;
        auto t0 = std::chrono::steady_clock::now();
        int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &res);
        long us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
        if (res) ::freeaddrinfo(res);
        if (rc != 0) {
          ++failed;
          std::lock_guard l(err_mu);
          if (first_error.empty()) first_error = name + ": " + ::gai_strerror(rc);
        }
        if (us >= 1'000'000) ++slow;
        long prev = max_us.load();
        while (us > prev && !max_us.compare_exchange_weak(prev, us)) {
        }
      }
    });
  }
  for (auto& t : pool)
    t.join();
  std::printf("lookups=%d failed=%d slow=%d max_ms=%.1f%s%s\n", total, failed.load(), slow.load(),
              static_cast<double>(max_us.load()) / 1000.0,
              first_error.empty() ? "" : " first_error=", first_error.c_str());
  return 0;
}
