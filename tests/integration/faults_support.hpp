// What the upstream fault tests share: patient queries, bursts of them,
// groups with short timeouts, and a server's forwarding counters.
#pragma once

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "ask.hpp"
#include "fake_upstream.hpp"
#include "instance.hpp"
#include "wait.hpp"

namespace localdns::test {

using Clock = std::chrono::steady_clock;

// One A query, its ID made from the name; waits up to `timeout` (longer than
// ask()'s default: these upstreams are slow or silent on purpose).
inline Reply ask_a(const Endpoint& ep, const std::string& name,
                   std::chrono::milliseconds timeout = 6000ms) {
  return ask(
      ep, name, "A",
      {.query = {.id = static_cast<std::uint16_t>(name.size() * 7 + 1)}, .timeout = timeout});
}

inline long elapsed_ms(Clock::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

// Sends `n` queries at once from separate threads; returns the replies.
inline std::vector<Reply> burst(const Endpoint& ep, int n, const std::string& prefix) {
  std::vector<std::future<Reply>> fs;
  for (int i = 0; i < n; ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] {
      auto name = prefix + std::to_string(i) + ".example";
      auto q = make_query(name, "A", {.id = static_cast<std::uint16_t>(i)});
      auto r = udp_query(ep, q, 8000ms);
      return r ? decode(*r) : Reply{};
    }));
  }
  std::vector<Reply> out;
  for (auto& f : fs)
    out.push_back(f.get());
  return out;
}

inline config::UpstreamGroup fast(config::UpstreamGroup g, int timeout_ms = 300,
                                  unsigned attempts = 2) {
  g.timeout = std::chrono::milliseconds(timeout_ms);
  g.attempts = attempts;
  return g;
}

inline upstream::ForwardCounters& counters(Instance& ld, std::size_t server = 0) {
  return ld.server().groups()[0]->health[server]->counters();
}

}  // namespace localdns::test
