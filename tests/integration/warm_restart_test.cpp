// Warm restarts of the localdns executable (cache.persist_file): after a
// SIGTERM and a new start, names asked before are answered from the file's
// entries, not upstream, with TTLs that kept counting down; a damaged file
// is ignored with a warning and localdns serves anyway.
#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

#include "daemon.hpp"
#include "dns_client.hpp"
#include "fake_upstream.hpp"
#include "http_get.hpp"
#include "wait.hpp"

using namespace localdns::test;
using namespace std::chrono_literals;

namespace {

struct Setup {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("localdns-warm-" + std::to_string(::getpid()));
  std::string persist = (dir / "cache.bin").string();
  std::uint16_t port = free_port();
  std::uint16_t metrics_port = free_port();
  Setup() { std::filesystem::create_directories(dir); }
  ~Setup() { std::filesystem::remove_all(dir); }
  Endpoint ep() const { return {"127.0.0.1", port}; }

  std::string config(const FakeUpstream& up, bool persist_file) const {
    std::string path = (dir / (persist_file ? "with.yaml" : "without.yaml")).string();
    std::ofstream y(path);
    y << "listen: [\"127.0.0.1:" << port << "\"]\n"
      << "threads: 2\n"
      << "metrics: \"127.0.0.1:" << metrics_port << "\"\n"
      << "health: off\ncontrol_socket: off\n"
      << (persist_file ? "cache:\n  persist_file: " + persist + "\n" : "")
      << "forward:\n  - zones: [\".\"]\n    servers: [\"" << up.address() << "\"]\n";
    return path;
  }
  std::string log(const std::string& name) const { return (dir / (name + ".log")).string(); }
};

std::string name_of(unsigned i) {
  return "w" + std::to_string(i) + ".warm.test";
}

// Asks every name once; returns the answers' TTLs (0 for no answer).
std::vector<std::uint32_t> ask_all(const Endpoint& ep, unsigned n) {
  std::vector<std::uint32_t> ttls;
  for (unsigned i = 0; i < n; ++i) {
    auto r = udp_query(ep, make_query(name_of(i), "A"), 2000ms);
    auto d = r ? decode(*r) : Reply{};
    ttls.push_back(d.ok && d.rcode == "NOERROR" && !d.answer_ttls.empty() ? d.answer_ttls[0] : 0);
  }
  return ttls;
}

struct RestartFigures {
  unsigned upstream_after_restart = 0;
  std::uint32_t max_ttl_after = 0;
  std::uint32_t min_ttl_after = 0;
  unsigned answered_after = 0;
  std::string second_log;
  std::string metrics;
};

// Fills N names, SIGTERM, starts again with the same config and asks the
// same names at once: how many of them went upstream.
RestartFigures restart_run(bool persist_file, unsigned n) {
  Setup s;
  FakeUpstream up;
  const auto cfg = s.config(up, persist_file);
  std::chrono::steady_clock::time_point filled;
  {
    Daemon first({"--config", cfg}, s.log("first"));
    bool ready = first.wait_ready(s.ep(), 10s);
    INFO(first.log());
    REQUIRE(ready);
    auto ttls = ask_all(s.ep(), n);
    filled = std::chrono::steady_clock::now();
    for (auto t : ttls)
      REQUIRE(t == 300);  // FakeUpstream's TTL, fresh from upstream
    REQUIRE(up.queries() == n);
    // TTLs count in whole seconds: let two pass before the restart so that a
    // TTL that was reset to 300 cannot look aged.
    wait_until(
        filled + 2100ms, [&] { return std::chrono::steady_clock::now() >= filled + 2100ms; }, 50ms);
    REQUIRE(first.terminate(10s));
    if (persist_file) {
      auto log = first.log();
      INFO(log);
      CHECK_THAT(log, Catch::Contains("shutdown save wrote " + std::to_string(n) + " entries"));
      CHECK(std::filesystem::exists(s.persist));
    }
  }
  const unsigned before = up.queries();
  Daemon second({"--config", cfg}, s.log("second"));
  REQUIRE(second.wait_ready(s.ep(), 10s));
  auto ttls = ask_all(s.ep(), n);
  RestartFigures f;
  f.upstream_after_restart = up.queries() - before;
  f.min_ttl_after = 300;
  for (auto t : ttls) {
    if (t == 0) continue;
    ++f.answered_after;
    f.max_ttl_after = std::max(f.max_ttl_after, t);
    f.min_ttl_after = std::min(f.min_ttl_after, t);
  }
  f.metrics = http_get(s.metrics_port, "/metrics").second;
  REQUIRE(second.terminate(10s));
  f.second_log = second.log();
  return f;
}

}  // namespace

TEST_CASE("a restart with cache.persist_file sends no burst of misses upstream",
          "[warm-restart][integration]") {
  constexpr unsigned kNames = 500;
  auto with = restart_run(true, kNames);
  auto without = restart_run(false, kNames);
  std::cout << "warm restart, " << kNames << " names asked again right after a restart: "
            << "upstream queries with cache.persist_file " << with.upstream_after_restart
            << ", without " << without.upstream_after_restart << "; TTLs answered after it "
            << with.min_ttl_after << ".." << with.max_ttl_after << " (with), "
            << without.min_ttl_after << ".." << without.max_ttl_after
            << " (without, upstream's 300)\n";
  INFO(with.second_log);
  CHECK(with.answered_after == kNames);
  CHECK(without.answered_after == kNames);
  CHECK(with.upstream_after_restart == 0);
  CHECK(without.upstream_after_restart == kNames);
  CHECK_THAT(with.second_log,
             Catch::Contains("loaded " + std::to_string(kNames) + " entries from"));
  CHECK(metric_sum(with.metrics, "localdns_cache_persist_entries", {"op=\"loaded\""}) == kNames);
  // The remaining TTL kept counting down across the restart: never reset.
  CHECK(with.max_ttl_after <= 298);
  CHECK(with.min_ttl_after >= 280);
  CHECK(without.max_ttl_after == 300);  // fresh from upstream
}

TEST_CASE("a corrupt, truncated or foreign cache.persist_file is ignored with a warning",
          "[warm-restart][integration]") {
  Setup s;
  FakeUpstream up;
  const auto cfg = s.config(up, true);
  std::string content;
  SECTION("garbage") {
    content = std::string(5000, '\x5a');
  }
  SECTION("a truncated file") {
    Daemon d({"--config", cfg}, s.log("fill"));
    REQUIRE(d.wait_ready(s.ep(), 10s));
    REQUIRE(ask_all(s.ep(), 20).at(19) == 300);
    REQUIRE(d.terminate(10s));
    std::ifstream in(s.persist, std::ios::binary);
    content.assign(std::istreambuf_iterator<char>(in), {});
    REQUIRE(content.size() > 100);
    content.resize(content.size() - 7);
  }
  SECTION("an empty file") {}
  std::ofstream(s.persist, std::ios::binary | std::ios::trunc) << content;

  const unsigned before = up.queries();
  Daemon d({"--config", cfg}, s.log("corrupt"));
  REQUIRE(d.wait_ready(s.ep(), 10s));
  auto ttls = ask_all(s.ep(), 20);
  for (auto t : ttls)
    CHECK(t == 300);                   // served, from upstream
  CHECK(up.queries() - before == 20);  // nothing was believed
  auto metrics = http_get(s.metrics_port, "/metrics").second;
  CHECK(metric_sum(metrics, "localdns_cache_persist_load_failures_total") == 1);
  REQUIRE(d.terminate(10s));
  auto log = d.log();
  INFO(log);
  CHECK_THAT(log, Catch::Contains("[warning]") && Catch::Contains("ignoring persisted cache"));
  // The shutdown save replaced it with a good file.
  Daemon again({"--config", cfg}, s.log("again"));
  REQUIRE(again.wait_ready(s.ep(), 10s));
  REQUIRE(again.terminate(10s));
  CHECK_THAT(again.log(), Catch::Contains("loaded 20 entries from"));
}
