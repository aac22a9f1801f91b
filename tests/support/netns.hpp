// Network namespaces for tests that change interfaces and firewall rules.
// They need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); without it a test prints
// why and exits with 77, which ctest reports as skipped (with 1 under CI=true).
#pragma once

#include <string>

namespace localdns::test {

// Exits the test process with 77 (ctest: skipped) unless running as root;
// under CI=true with 1 (a failure), so that CI cannot pass by skipping.
void require_root_or_skip(const char* why);

// Moves the calling thread into a fresh network namespace (loopback up) and
// back to the original one when destroyed. Threads and programs the thread
// starts meanwhile inherit the namespace.
class ScopedNetns {
 public:
  ScopedNetns();
  ~ScopedNetns();
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;

 private:
  int original_ = -1;
};

// Runs `command` with /bin/sh in the calling thread's namespace; returns
// stdout. Throws std::runtime_error when it exits non-zero and `check` is set.
std::string sh(const std::string& command, bool check = true);

// Lines of `text` that contain `needle`.
int count_lines_with(const std::string& text, const std::string& needle);

}  // namespace localdns::test
