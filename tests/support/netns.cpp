#include "netns.hpp"

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <sched.h>
#include <stdexcept>
#include <string_view>
#include <unistd.h>

#include <localdns/node/process.hpp>

namespace localdns::test {

void require_root_or_skip(const char* why) {
  if (::geteuid() == 0) return;
  // Under CI a skipped root-only test would look like a pass: fail instead.
  if (const char* ci = std::getenv("CI"); ci != nullptr && std::string_view(ci) == "true") {
    std::printf(
        "FAILED: %s needs root (CAP_NET_ADMIN and network namespaces); CI=true does not allow "
        "skipping it\n",
        why);
    std::fflush(stdout);
    std::_Exit(1);
  }
  std::printf("SKIPPED: %s needs root (CAP_NET_ADMIN and network namespaces)\n", why);
  std::fflush(stdout);
  std::_Exit(77);
}

ScopedNetns::ScopedNetns() {
  original_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original_ < 0) throw std::runtime_error("cannot open the current network namespace");
  if (::unshare(CLONE_NEWNET) != 0) throw std::runtime_error("unshare(CLONE_NEWNET) failed");
  sh("ip link set lo up");
}

ScopedNetns::~ScopedNetns() {
  if (original_ >= 0) {
    (void)::setns(original_, CLONE_NEWNET);
    ::close(original_);
  }
}

std::string sh(const std::string& command, bool check) {
  auto r = node::run_process({"/bin/sh", "-c", command}, {}, std::chrono::seconds(30));
  if (!r) throw std::runtime_error(command + ": " + r.error());
  if (check && !r->ok()) throw std::runtime_error(command + ": " + r->describe());
  return r->out;
}

int count_lines_with(const std::string& text, const std::string& needle) {
  int n = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.substr(start, end - start).find(needle) != std::string::npos) ++n;
    start = end + 1;
  }
  return n;
}

}  // namespace localdns::test
