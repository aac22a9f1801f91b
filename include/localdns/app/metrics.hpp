// Prometheus metrics of a running localdns, on an HTTP endpoint of their own.
// The endpoint runs on its HttpServer's thread and only reads counters.
#pragma once

#include <memory>
#include <string>

#include <localdns/app/http.hpp>
#include <localdns/app/runtime.hpp>
#include <localdns/node/node_setup.hpp>

namespace localdns::app {

// The metrics text for `server`, as /metrics serves it: CoreDNS's families
// (same names and labels where the meaning is the same) and localdns_* ones,
// summed over workers at scrape time (prometheus-cpp's model and text format).
std::string metrics_text(const Runtime& server, const node::NodeSetup* node);

// /metrics on its own port.
class MetricsEndpoint {
 public:
  // `adopt_fd`: a listening socket passed in a handover (HttpServer).
  MetricsEndpoint(const Runtime& server, const node::NodeSetup* node, const util::Endpoint& ep,
                  int adopt_fd = -1);
  HttpServer& http() { return *http_; }

 private:
  std::unique_ptr<HttpServer> http_;
};

}  // namespace localdns::app
