// A localdns server running in-process on a free loopback port, for tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <localdns/app/runtime.hpp>
#include <localdns/config/config.hpp>

#include "dns_client.hpp"

namespace localdns::test {

config::UpstreamGroup group(std::vector<std::string> zones, std::vector<std::string> servers,
                            config::Transport transport);

class Instance {
 public:
  explicit Instance(std::vector<config::UpstreamGroup> groups, unsigned threads = 2);
  explicit Instance(config::Config cfg);
  ~Instance();

  const Endpoint& endpoint() const { return ep_; }
  app::Runtime& server() { return *server_; }
  // Stops the server (bounded); returns how long it took.
  std::chrono::milliseconds stop();

 private:
  Endpoint ep_;
  std::unique_ptr<app::Runtime> server_;
};

}  // namespace localdns::test
