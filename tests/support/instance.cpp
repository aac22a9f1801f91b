#include "instance.hpp"

#include <stdexcept>
#include <system_error>

#include <localdns/config/duration.hpp>
#include <localdns/config/loader.hpp>

namespace localdns::test {

config::UpstreamGroup group(std::vector<std::string> zones, std::vector<std::string> servers,
                            config::Transport transport) {
  config::UpstreamGroup g;
  g.zones = std::move(zones);
  for (const auto& s : servers) {
    auto ep = config::parse_endpoint(s, 53);
    if (!ep) throw std::runtime_error("bad endpoint " + s);
    g.servers.push_back(*ep);
  }
  g.transport = transport;
  return g;
}

namespace {
config::Config make_config(std::vector<config::UpstreamGroup> groups, unsigned threads) {
  config::Config c;
  c.threads = threads;
  c.forward = std::move(groups);
  return c;
}
}  // namespace

Instance::Instance(std::vector<config::UpstreamGroup> groups, unsigned threads)
    : Instance(make_config(std::move(groups), threads)) {}

Instance::Instance(config::Config cfg) {
  if (cfg.threads == 0) cfg.threads = 2;
  for (int attempt = 0; !server_; ++attempt) {
    ep_.port = free_port();
    cfg.listen = {{boost::asio::ip::make_address("127.0.0.1"), ep_.port}};
    auto errors = config::validate(cfg);
    if (!errors.empty()) throw std::runtime_error("invalid test config: " + errors.front());
    try {
      server_ = std::make_unique<app::Runtime>(cfg);
    } catch (const std::system_error&) {
      if (attempt == 10) throw;  // the port was taken after free_port() checked it
    }
  }
  server_->start();
}

Instance::~Instance() {
  if (server_) server_->stop();
}

std::chrono::milliseconds Instance::stop() {
  auto t0 = std::chrono::steady_clock::now();
  server_->stop();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0);
}

}  // namespace localdns::test
