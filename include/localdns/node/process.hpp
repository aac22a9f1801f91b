// Runs a helper program (iptables-restore, nft) with input on stdin and
// collects its output. Bounded in time: a helper that hangs is killed.
#pragma once

#include <chrono>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace localdns::node {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;

  bool ok() const { return exit_code == 0; }
  // "exit 1: <first line of stderr>"
  std::string describe() const;
};

// Fails (with a message) only when the program cannot be started or times out.
std::expected<ProcessResult, std::string> run_process(
    const std::vector<std::string>& argv, std::string_view input = {},
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

// True when `program` is found on PATH (or is an executable path).
bool have_program(const std::string& program);

}  // namespace localdns::node
