// What a running localdns shows to operators: Prometheus metrics, the
// /health and /ready endpoints, and (in control.hpp) the control socket.
// Each runs on its own thread and only reads the server's counters.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/app/server.hpp>
#include <localdns/node/node_setup.hpp>

namespace localdns::app {

// A small HTTP/1.1 server (Boost.Beast) on its own thread: GET only, one
// request per connection, each answered by `handler(path)`, which must not
// block. What clients may cost is capped: kMaxConnections at once (a
// newcomer closes the oldest), kMaxRequestBytes of request (431 or 413, then
// closed), kRequestTime per connection; accept errors such as EMFILE close
// the oldest connection or back off, never spin.
class HttpServer {
 public:
  static constexpr std::size_t kMaxConnections = 32;
  static constexpr std::size_t kMaxRequestBytes = 8192;
  static constexpr std::chrono::seconds kRequestTime{5};

  struct Response {
    unsigned status = 200;
    std::string body;
    std::string content_type = "text/plain; charset=utf-8";
  };
  using Handler = std::function<Response(const std::string& path)>;

  // Throws std::system_error when the address cannot be bound.
  HttpServer(const config::Endpoint& ep, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const Handler& handler() const { return handler_; }

  struct Session;
  void forget(std::uint64_t id) { sessions_.erase(id); }  // on the server's thread

 private:
  void accept();
  void close_oldest();

  Handler handler_;
  std::map<std::uint64_t, std::weak_ptr<Session>> sessions_;  // oldest first
  std::uint64_t next_id_ = 0;
  bool accept_failing_ = false;
  boost::asio::io_context ctx_{1};
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_;
  std::thread thread_;
};

// The metrics text for `server`, as /metrics serves it: CoreDNS's families
// (same names and labels where the meaning is the same) and localdns_* ones,
// summed over workers at scrape time (prometheus-cpp's model and text format).
std::string metrics_text(const Server& server, const node::NodeSetup* node);

// /metrics on its own port.
class MetricsEndpoint {
 public:
  MetricsEndpoint(const Server& server, const node::NodeSetup* node, const config::Endpoint& ep);

 private:
  std::unique_ptr<HttpServer> http_;
};

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
  HealthEndpoint(const Server& server, node::NodeSetup* node, const config::Endpoint& ep,
                 NodeCheck node_check = {});
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

  const Server& server_;
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
