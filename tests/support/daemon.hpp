// One localdns executable run by a test: its output in a log file, its
// signals, its exit. Killed (SIGKILL) when the test leaves it running.
#pragma once

#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

#include "dns_client.hpp"
#include "wait.hpp"

namespace localdns::test {

class Daemon {
 public:
  // `log_path` empty: a log file of its own, removed with the Daemon.
  explicit Daemon(const std::vector<std::string>& args, std::string log_path = {})
      : log_path_(std::move(log_path)), own_log_(log_path_.empty()) {
    if (own_log_) {
      static int serial = 0;
      log_path_ = "/tmp/localdns-daemon-" + std::to_string(::getpid()) + "-" +
                  std::to_string(++serial) + ".log";
    }
    // Built before fork(): the child of a threaded process may only call
    // async-signal-safe functions until exec.
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(LOCALDNS_BINARY));
    for (const auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int out = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(out >= 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execv(LOCALDNS_BINARY, argv.data());
      ::_exit(127);
    }
    ::close(out);
    REQUIRE(pid_ > 0);
  }
  ~Daemon() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (own_log_) std::remove(log_path_.c_str());
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const { ::kill(pid_, sig); }

  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::size_t log_count(const std::string& needle) const {
    auto text = log();
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
      ++n;
    return n;
  }
  // Until `needle` was logged `count` times; false on timeout or exit.
  bool wait_log(const std::string& needle, std::size_t count, std::chrono::milliseconds timeout) {
    using namespace std::chrono_literals;
    bool seen = false;
    wait_until(
        within(timeout),
        [&] {
          seen = log_count(needle) >= count;
          return seen || !alive();
        },
        20ms);
    return seen;
  }

  // Still running (not exited, not killed)?
  bool alive() {
    if (exited_) return false;
    if (::waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    return !exited_;
  }
  // The wait status once it ended within `timeout`, else nullopt.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    using namespace std::chrono_literals;
    wait_until(
        within(timeout), [&] { return !alive(); }, 5ms);
    if (!exited_) return std::nullopt;
    return status_;
  }
  // SIGTERM, then true when it exited with status 0 within `timeout`.
  bool terminate(std::chrono::milliseconds timeout) {
    signal(SIGTERM);
    auto status = wait_exit(timeout);
    return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
  }

  // Answers locally (the health name) once its listeners are up.
  bool wait_ready(const Endpoint& ep, std::chrono::milliseconds timeout) {
    using namespace std::chrono_literals;
    bool answered = false;
    wait_until(
        within(timeout),
        [&] {
          answered = udp_query(ep, make_query("health.localdns.invalid", "A"), 100ms).has_value();
          return answered || !alive();
        },
        20ms);
    return answered;
  }

 private:
  std::string log_path_;
  bool own_log_;
  pid_t pid_ = -1;
  int status_ = 0;
  bool exited_ = false;
};

}  // namespace localdns::test
