#include "knot_server.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <signal.h>
#include <stdexcept>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "dns_client.hpp"

namespace localdns::test {

namespace fs = std::filesystem;

std::string cluster_local_zone() {
  std::string z = R"($ORIGIN cluster.local.
$TTL 30
@ IN SOA ns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
@ IN NS ns
ns IN A 10.0.0.53
kube-dns.kube-system.svc IN A 10.96.0.10
api.default.svc IN A 10.96.0.1
dual.default.svc IN A 10.96.0.20
dual.default.svc IN AAAA fd00::20
*.wild IN A 10.1.2.3
)";
  // A TXT RRset too large for 512 bytes: exercises TC=1 and TCP.
  for (int i = 0; i < 10; ++i) {
    z += "big.default.svc IN TXT \"" + std::string(200, static_cast<char>('a' + i)) + "\"\n";
  }
  return z;
}

std::string external_test_zone() {
  return R"($ORIGIN external.test.
$TTL 60
@ IN SOA ns.external.test. hostmaster.external.test. 1 7200 1800 86400 10
@ IN NS ns
ns IN A 192.0.2.53
www IN A 192.0.2.80
www IN AAAA 2001:db8::80
v4only IN A 192.0.2.81
alias IN CNAME www
)";
}

KnotServer::KnotServer(const std::string& origin, const std::string& zone_text)
    : KnotServer(std::vector<std::pair<std::string, std::string>>{{origin, zone_text}}) {}

KnotServer::KnotServer(const std::vector<std::pair<std::string, std::string>>& zones) {
  if (zones.empty()) throw std::runtime_error("KnotServer: no zone");
  const char* knotd = "/usr/sbin/knotd";
  if (::access(knotd, X_OK) != 0) {
    throw std::runtime_error("knotd not found: install the Debian package 'knot'");
  }
  char tmpl[] = "/tmp/localdns-knot-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  port_ = free_port();
  std::ofstream conf_file(dir_ + "/knot.conf");
  conf_file << "server:\n  rundir: \"" << dir_ << "\"\n  listen: 127.0.0.1@" << port_
            << "\n  udp-workers: 2\n  tcp-workers: 2\n  background-workers: 1\n"
            << "database:\n  storage: \"" << dir_ << "\"\n"
            << "log:\n  - target: stderr\n    any: error\n"
            << "zone:\n";
  for (std::size_t i = 0; i < zones.size(); ++i) {
    const std::string file = "zone" + std::to_string(i);
    std::ofstream(dir_ + "/" + file) << zones[i].second;
    conf_file << "  - domain: " << zones[i].first << "\n    storage: \"" << dir_
              << "\"\n    file: \"" << file << "\"\n";
  }
  conf_file.close();
  std::string conf = dir_ + "/knot.conf";  // before fork: no malloc in the child
  pid_ = ::fork();
  if (pid_ == 0) {
    ::execl(knotd, knotd, "-c", conf.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;  // every zone loaded
    for (const auto& z : zones) {
      auto r = udp_query({"127.0.0.1", port_}, make_query(z.first, "SOA"), 200ms);
      all = all && r && decode(*r).rcode == "NOERROR";
      if (!all) break;
    }
    if (all) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("knotd exited during start-up; see its stderr above");
    }
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  throw std::runtime_error("knotd did not answer within 10 s");
}

KnotServer::~KnotServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

}  // namespace localdns::test
