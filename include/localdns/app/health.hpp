// /health and /ready of a running localdns. The HTTP thread answers from the
// refresher threads' last results (under the endpoint's mutex); tests call
// respond() on their own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <localdns/app/http.hpp>
#include <localdns/app/runtime.hpp>
#include <localdns/node/node_setup.hpp>

namespace localdns::app {

// /health: 200 only if every listen address answers a local name over UDP
// and TCP. /ready: 200 once listeners are bound, node setup (if any) is in
// place right now, and a server of the default zone has answered; else 503
// with a one-line reason. Neither waits on an upstream, and neither runs a
// probe on the HTTP thread: one refresher thread runs the listener probes
// and another the node check, each every kRefreshEvery, and requests are
// answered from their last results (at most kRefreshEvery plus one pass old;
// 503 once older than kMaxAge). /health depends on the probes' state only,
// /ready on the node check's too, so a slow node check never fails /health.
class HealthEndpoint {
 public:
  static constexpr std::chrono::milliseconds kRefreshEvery{500};
  static constexpr std::chrono::milliseconds kMaxAge{2000};

  // What /ready checks of the node: node->verify() unless given (tests give a
  // check of their own, e.g. a slow one).
  using NodeCheck = std::function<std::string()>;
  // `adopt_fd`: a listening socket passed in a handover (HttpServer).
  HealthEndpoint(const Runtime& server, node::NodeSetup* node, const util::Endpoint& ep,
                 NodeCheck node_check = {}, int adopt_fd = -1);
  HttpServer& http() { return *http_; }
  ~HealthEndpoint();
  HealthEndpoint(const HealthEndpoint&) = delete;
  HealthEndpoint& operator=(const HealthEndpoint&) = delete;

  // Runs the checks now, on the calling thread (for tests).
  HttpServer::Response respond(const std::string& path);
  // From the refresher's last result: what the HTTP endpoint answers.
  HttpServer::Response serve(const std::string& path);
  // How old the state behind /health and behind /ready's node check is.
  std::chrono::milliseconds health_age();
  std::chrono::milliseconds node_age();

 private:
  HttpServer::Response check_health();
  std::string check_node();
  HttpServer::Response ready(const std::string& node_problem);
  void refresh_health();
  void refresh_node();
  void refresh_every(void (HealthEndpoint::*pass)());
  void stop_refreshing();

  const Runtime& server_;
  node::NodeSetup* node_;
  NodeCheck node_check_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  HttpServer::Response health_{503, "starting\n"};
  std::string node_problem_;
  std::chrono::steady_clock::time_point health_at_;  // when the last probe pass started
  std::chrono::steady_clock::time_point node_at_;    // when the last node check started
  std::thread health_thread_;
  std::thread node_thread_;  // only with a node check
  std::unique_ptr<HttpServer> http_;
};

}  // namespace localdns::app
