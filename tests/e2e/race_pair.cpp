// Forces the conntrack race behind the 5-second DNS timeouts: two threads on
// different CPUs send an A and an AAAA query from one connected UDP socket at
// the same instant, as glibc does, once per iteration with a fresh socket.
//   race_pair ADDR PORT ITERATIONS NAME
// Prints: iterations=N answered=A (replies received, at most 2 per iteration).
#include <arpa/inet.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

std::vector<unsigned char> query(std::uint16_t id, const std::string& name, std::uint16_t qtype) {
  std::vector<unsigned char> q = {static_cast<unsigned char>(id >> 8),
                                  static_cast<unsigned char>(id),
                                  0x01,
                                  0x00,
                                  0,
                                  1,
                                  0,
                                  0,
                                  0,
                                  0,
                                  0,
                                  0};
  std::size_t start = 0;
  while (start < name.size()) {
    auto dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    q.push_back(static_cast<unsigned char>(dot - start));
    q.insert(q.end(), name.begin() + static_cast<long>(start),
             name.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  q.push_back(0);
  q.push_back(static_cast<unsigned char>(qtype >> 8));
  q.push_back(static_cast<unsigned char>(qtype));
  q.push_back(0);
  q.push_back(1);
  return q;
}

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % static_cast<int>(std::thread::hardware_concurrency()), &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: race_pair ADDR PORT ITERATIONS NAME\n");
    return 2;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[2])));
  if (::inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) return 2;
  const int iterations = std::atoi(argv[3]);
  const std::string name = argv[4];

  // Only the two senders spin (a third spinning thread would leave one of them
  // without a CPU on a two-core machine): the first one opens the socket,
  // releases the second, sends at once and then collects the replies.
  std::atomic<int> round{0}, sent{0}, fd{-1};
  int answered = 0;
  std::thread b([&] {
    pin(1);
    for (int i = 1; i <= iterations; ++i) {
      while (round.load(std::memory_order_acquire) < i) {
      }
      auto q = query(static_cast<std::uint16_t>(i * 2 + 1), name, 28);
      (void)::send(fd.load(), q.data(), q.size(), 0);
      sent.store(i, std::memory_order_release);
    }
  });
  std::thread a([&] {
    pin(0);
    for (int i = 1; i <= iterations; ++i) {
      auto q = query(static_cast<std::uint16_t>(i * 2), name, 1);
      int s = ::socket(AF_INET, SOCK_DGRAM, 0);
      ::connect(s, reinterpret_cast<sockaddr*>(&to), sizeof to);
      fd.store(s, std::memory_order_relaxed);
      round.store(i, std::memory_order_release);
      (void)::send(s, q.data(), q.size(), 0);
      while (sent.load(std::memory_order_acquire) < i) {
      }
      for (int got = 0; got < 2;) {
        pollfd p{s, POLLIN, 0};
        if (::poll(&p, 1, 1000) <= 0) break;
        unsigned char buf[1500];
        if (::recv(s, buf, sizeof buf, 0) <= 0) break;
        ++got;
        ++answered;
      }
      ::close(s);
    }
  });
  a.join();
  b.join();
  std::printf("iterations=%d answered=%d\n", iterations, answered);
  return 0;
}
