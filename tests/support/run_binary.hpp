// Runs the localdns binary under test (LOCALDNS_BINARY) with shell-quoted
// arguments and collects its exit status and output (stdout and stderr).
#pragma once

#include <array>
#include <cstdio>
#include <string>
#include <sys/wait.h>

namespace localdns::test {

struct Run {
  int status;
  std::string output;  // stdout and stderr
};

inline Run run(const std::string& args) {
  std::string cmd = std::string(LOCALDNS_BINARY) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  std::string out;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p))
    out.append(buf.data(), n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace localdns::test
