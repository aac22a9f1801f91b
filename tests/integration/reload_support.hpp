// For the reload tests: one localdns process run from a YAML file the test
// rewrites, its log in a file, and the config it is given.
#pragma once

#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <optional>
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

namespace localdns::test {

using namespace std::chrono_literals;

// A scratch directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static int serial = 0;
    path_ = "/tmp/localdns-reload-" + std::to_string(::getpid()) + "-" + std::to_string(++serial);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Replaces `path` as editors and config tools do: a new file renamed over it.
inline void replace_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
  }
  std::filesystem::rename(tmp, path);
}

// One forward group of a test's config: its zones and one UDP server.
struct ReloadGroup {
  std::vector<std::string> zones;
  std::string server;
  std::string timeout = "1s";
};

// The config the tests run: zones a.test and b.test on their own upstreams
// (yaml()), or the groups a test lists (yaml(groups)).
struct ReloadConfig {
  std::uint16_t port = 0;
  std::uint16_t metrics_port = 0;
  std::uint16_t health_port = 0;
  std::string control_socket;
  std::string a_upstream;
  std::string b_upstream;
  std::string grace = "500ms";
  std::string a_timeout = "1s";
  unsigned threads = 2;
  // Listen addresses besides 127.0.0.1:port ("127.0.0.2:5300").
  std::vector<std::string> extra_listen;

  std::string yaml(const std::vector<ReloadGroup>& groups) const {
    std::ostringstream y;
    y << header() << "forward:\n";
    for (const auto& g : groups) {
      y << "  - zones: [";
      for (std::size_t i = 0; i < g.zones.size(); ++i)
        y << (i == 0 ? "" : ", ") << "\"" << g.zones[i] << "\"";
      y << "]\n"
        << "    servers: [\"" << g.server << "\"]\n"
        << "    transport: udp\n"
        << "    timeout: " << g.timeout << "\n"
        << "    attempts: 1\n";
    }
    return y.str();
  }

  std::string yaml() const {
    std::ostringstream y;
    y << header() << "forward:\n"
      << "  - zones: [a.test]\n"
      << "    servers: [\"" << a_upstream << "\"]\n"
      << "    transport: udp\n"
      << "    timeout: " << a_timeout << "\n"
      << "    attempts: 1\n"
      << "  - zones: [b.test]\n"
      << "    servers: [\"" << b_upstream << "\"]\n"
      << "    transport: udp\n"
      << "    attempts: 1\n";
    return y.str();
  }

 private:
  std::string header() const {
    std::ostringstream y;
    y << "listen: [\"127.0.0.1:" << port << "\"";
    for (const auto& l : extra_listen)
      y << ", \"" << l << "\"";
    y << "]\n"
      << "threads: " << threads << "\n"
      << "log_level: info\n"
      << "shutdown_grace: " << grace << "\n"
      << "metrics: \"127.0.0.1:" << metrics_port << "\"\n"
      << "health: \"127.0.0.1:" << health_port << "\"\n"
      << "control_socket: " << control_socket << "\n";
    return y.str();
  }
};

// A sample of a metric family; -1 when the endpoint does not answer.
inline double metric(std::uint16_t port, const std::string& name,
                     std::initializer_list<std::string> labels = {}) {
  try {
    auto [status, body] = http_get(port, "/metrics");
    return status == 200 ? metric_sum(body, name, labels) : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

inline double reloads(std::uint16_t metrics_port, const std::string& result) {
  return metric(metrics_port, "localdns_config_reloads_total", {"result=\"" + result + "\""});
}

// The A answer for `name`, or the rcode / "no reply".
inline std::string answer(const Endpoint& ep, const std::string& name) {
  auto r = udp_query(ep, make_query(name, "A"), 3000ms);
  if (!r) return "no reply";
  auto d = decode(*r);
  if (d.rcode != "NOERROR" || d.answers.empty()) return d.rcode;
  return d.answers.front();
}

}  // namespace localdns::test
