// The localdns executable: flags, config errors, start-up and SIGTERM.
#include <array>
#include <cstdio>
#include <fstream>
#include <signal.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "fake_upstream.hpp"
#include "instance.hpp"
#include "run_binary.hpp"
#include "wait.hpp"

using namespace localdns::test;

TEST_CASE("version and help flags", "[integration][cli]") {
  auto v = run("--version");
  CHECK(v.status == 0);
  CHECK_THAT(v.output, Catch::StartsWith("localdns "));
  auto h = run("--help");
  CHECK(h.status == 0);
  CHECK_THAT(h.output, Catch::Contains("--forward ZONE=PROTO://"));
  auto bad = run("--frobnicate");
  CHECK(bad.status == 2);
  CHECK_THAT(bad.output, Catch::Contains("unknown option '--frobnicate'"));
}

TEST_CASE("check-config names every bad key with its line", "[integration][cli]") {
  std::string path = "/tmp/localdns-check-" + std::to_string(::getpid()) + ".yaml";
  std::ofstream(path) << "listen: [\"127.0.0.1:5353\"]\nforward:\n  - zones: [.]\n"
                         "    servers: [\"192.0.2.1\"]\n    timeout: forever\n    retries: 3\n";
  auto r = run("--check-config " + path);
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Catch::Contains(path + ":5: forward[0].timeout"));
  CHECK_THAT(r.output, Catch::Contains(path + ":6: forward[0].retries: unknown key"));
  CHECK_THAT(r.output, Catch::Contains("2 configuration errors"));
  std::ofstream(path) << "listen: [\"127.0.0.1:5353\"]\nforward:\n  - zones: [.]\n"
                         "    servers: [\"192.0.2.1\"]\n";
  auto ok = run("--check-config " + path);
  CHECK(ok.status == 0);
  std::remove(path.c_str());
}

TEST_CASE("the binary serves with flags and exits cleanly on SIGTERM", "[integration][cli]") {
  FakeUpstream up;
  auto port = free_port();
  // Build every argument before fork(): the child of a threaded process may
  // only call async-signal-safe functions (no malloc) until exec.
  std::string listen = "127.0.0.1:" + std::to_string(port);
  std::string fwd = ".=tcp://" + up.address();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(LOCALDNS_BINARY, LOCALDNS_BINARY, "--listen", listen.c_str(), "--forward", fwd.c_str(),
            "--threads", "2", "--log-level", "warn", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::optional<Packet> r;
  // Until it listens, queries fail at once (ICMP port unreachable): poll for up to 10 s.
  wait_until(
      within(10s),
      [&] {
        r = udp_query({"127.0.0.1", port}, make_query("bin.example", "A"), 100ms);
        return r.has_value();
      },
      100ms);
  if (!r) ::kill(pid, SIGKILL);
  REQUIRE(r);
  CHECK(decode(*r).answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(up.tcp_queries() >= 1);
  ::kill(pid, SIGTERM);
  int status = -1;
  wait_until(within(3s), [&] { return ::waitpid(pid, &status, WNOHANG) == pid; });
  if (!WIFEXITED(status)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL("localdns did not exit within 3 s of SIGTERM");
  }
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a port already in use is a clear start-up error", "[integration][cli]") {
  FakeUpstream up;
  // The fake upstream holds this port for UDP and TCP without SO_REUSEPORT.
  auto r = run("--listen " + up.address() + " --forward .=udp://192.0.2.1 --threads 1");
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Catch::Contains("cannot listen on"));
  CHECK_THAT(r.output, Catch::Contains(up.address()));
}

TEST_CASE("a metrics port the operator chose must bind or localdns exits", "[integration][cli]") {
  FakeUpstream up;  // holds its TCP port without SO_REUSEPORT
  auto listen = "127.0.0.1:" + std::to_string(free_port());
  auto r = run("--listen " + listen + " --forward .=udp://192.0.2.1 --threads 1 --control off" +
               " --health off --metrics " + up.address());
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Catch::Contains("metrics: cannot listen on " + up.address() +
                                       ": Address already in use"));
  CHECK_THAT(run("--metrics nowhere").output, Catch::Contains("--metrics nowhere: expected"));
}
