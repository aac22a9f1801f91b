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
// probe on the HTTP thread: a refresher thread runs the probes and the node
// check every kRefreshEvery and requests are answered from its last result
// (at most kRefreshEvery plus one pass old; 503 once older than kMaxAge).
class HealthEndpoint {
 public:
  static constexpr std::chrono::milliseconds kRefreshEvery{500};
  static constexpr std::chrono::milliseconds kMaxAge{2000};

  HealthEndpoint(const Server& server, node::NodeSetup* node, const config::Endpoint& ep);
  ~HealthEndpoint();
  HealthEndpoint(const HealthEndpoint&) = delete;
  HealthEndpoint& operator=(const HealthEndpoint&) = delete;

  // Runs the checks now, on the calling thread (for tests).
  HttpServer::Response respond(const std::string& path);
  // From the refresher's last result: what the HTTP endpoint answers.
  HttpServer::Response serve(const std::string& path);

 private:
  HttpServer::Response check_health();
  std::string check_node();
  HttpServer::Response ready(const std::string& node_problem);
  void refresh();

  const Server& server_;
  node::NodeSetup* node_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  HttpServer::Response health_{503, "starting\n"};
  std::string node_problem_;
  std::chrono::steady_clock::time_point refreshed_;  // when the last pass started
  std::thread refresher_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace localdns::app
