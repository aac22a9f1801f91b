// A real authoritative server for tests: Knot DNS (Debian package `knot`)
// started on a free loopback port with a generated zone, stopped by PID.
#pragma once

#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace localdns::test {

class KnotServer {
 public:
  // Serves `zone_text` as `origin`. Throws std::runtime_error when knotd is
  // missing or does not answer within 10 s.
  KnotServer(const std::string& origin, const std::string& zone_text);
  // Serves several zones, each (origin, zone text); ready once the first answers.
  explicit KnotServer(const std::vector<std::pair<std::string, std::string>>& zones);
  ~KnotServer();
  KnotServer(const KnotServer&) = delete;
  KnotServer& operator=(const KnotServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  std::string dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// The cluster.local zone used by the integration tests.
std::string cluster_local_zone();
// A zone outside the cluster, external.test: www (A and AAAA), v4only (A),
// alias (a CNAME to www).
std::string external_test_zone();

}  // namespace localdns::test
