// The HTTP server behind /metrics, /health and /ready: its own thread, GET
// only, answered from a handler that must not block.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/util/endpoint.hpp>

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

  // Throws std::system_error when the address cannot be bound. With
  // `adopt_fd` (a listening socket on `ep` another localdns passed in a
  // handover), takes it over instead of binding.
  HttpServer(const util::Endpoint& ep, Handler handler, int adopt_fd = -1);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const Handler& handler() const { return handler_; }
  // The listening socket, for a handover to dup(); any thread.
  int listen_fd() const { return listen_fd_; }
  // Accepts no more connections (the successor accepts on the same socket);
  // those open are still answered. Waits for the server's thread, at most 1 s.
  void stop_accepting();

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
  int listen_fd_ = -1;
  std::thread thread_;
};

}  // namespace localdns::app
