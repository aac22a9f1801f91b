// What a running localdns shows to operators: Prometheus metrics, the
// /health and /ready endpoints, and (in control.hpp) the control socket.
// Each runs on its own thread and only reads the server's counters.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <localdns/app/server.hpp>
#include <localdns/node/node_setup.hpp>

namespace localdns::app {

// A small HTTP/1.1 server (Boost.Beast) on its own thread: GET only, one
// request per connection, each answered by `handler(path)`.
class HttpServer {
 public:
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

 private:
  void accept();

  Handler handler_;
  boost::asio::io_context ctx_{1};
  boost::asio::ip::tcp::acceptor acceptor_;
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
// with a one-line reason. Neither waits on an upstream.
class HealthEndpoint {
 public:
  HealthEndpoint(const Server& server, node::NodeSetup* node, const config::Endpoint& ep);

  HttpServer::Response respond(const std::string& path);  // exposed for tests

 private:
  const Server& server_;
  node::NodeSetup* node_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace localdns::app
