#include <future>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <localdns/app/http.hpp>
#include <localdns/server/tcp_listener.hpp>

namespace localdns::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct HttpServer::Session : std::enable_shared_from_this<Session> {
  Session(asio::ip::tcp::socket s, HttpServer& h, std::uint64_t i)
      : stream(std::move(s)), owner(h), id(i) {}
  ~Session() { owner.forget(id); }
  beast::tcp_stream stream;
  beast::flat_buffer buffer{HttpServer::kMaxRequestBytes};
  http::request_parser<http::string_body> parser;
  http::response<http::string_body> res;
  HttpServer& owner;
  std::uint64_t id;

  void start() {
    parser.header_limit(static_cast<std::uint32_t>(HttpServer::kMaxRequestBytes));
    parser.body_limit(HttpServer::kMaxRequestBytes);
    stream.expires_after(HttpServer::kRequestTime);  // the whole exchange, write included
    http::async_read(
        stream, buffer, parser,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }
  void close() {
    beast::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
  }
  void on_read(beast::error_code ec) {
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      send(431, "request header too large\n", 11);
    } else if (ec == http::error::body_limit) {
      send(413, "request too large\n", 11);
    } else if (ec && ec.category() == beast::error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      send(400, "bad request\n", 11);
    } else if (!ec) {
      auto& req = parser.get();
      std::string target(req.target());
      if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
      auto r = req.method() == http::verb::get ? owner.handler()(target)
                                               : HttpServer::Response{405, "GET only\n"};
      send(r.status, std::move(r.body), req.version(), r.content_type);
    }
  }
  void send(unsigned status, std::string body, unsigned version,
            const std::string& type = "text/plain; charset=utf-8") {
    res.version(version);
    res.result(static_cast<http::status>(status));
    res.set(http::field::content_type, type);
    res.keep_alive(false);
    res.body() = std::move(body);
    res.prepare_payload();
    http::async_write(stream, res, [self = shared_from_this()](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    });
  }
};

HttpServer::HttpServer(const util::Endpoint& ep, Handler handler, int adopt_fd)
    : handler_(std::move(handler)), acceptor_(ctx_), retry_(ctx_) {
  asio::ip::tcp::endpoint where(ep.address, ep.port);
  if (adopt_fd >= 0) {
    // server::adopt_tcp_acceptor checks it is listening on `ep` (closes it otherwise).
    acceptor_ = server::adopt_tcp_acceptor(ctx_, ep, adopt_fd);
  } else {
    acceptor_.open(where.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    // Lets a new localdns bind while the old one still serves (upgrades with --no-handover).
    int one = 1;
    ::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    acceptor_.bind(where);
    acceptor_.listen();
  }
  listen_fd_ = acceptor_.native_handle();
  accept();
  thread_ = std::thread([this] { ctx_.run(); });
}

HttpServer::~HttpServer() {
  ctx_.stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::stop_accepting() {
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  asio::post(ctx_, [this, done] {
    beast::error_code ignored;
    acceptor_.close(ignored);
    retry_.cancel();
    done->set_value();
  });
  fut.wait_for(std::chrono::seconds(1));
}

void HttpServer::close_oldest() {
  if (sessions_.empty()) return;
  auto oldest = sessions_.begin()->second.lock();
  sessions_.erase(sessions_.begin());
  if (oldest) oldest->close();
}

void HttpServer::accept() {
  acceptor_.async_accept([this](beast::error_code ec, asio::ip::tcp::socket s) {
    if (!acceptor_.is_open() || ec == asio::error::operation_aborted) return;
    if (ec) {
      if (!accept_failing_) spdlog::warn("http accept failed: {}; backing off", ec.message());
      accept_failing_ = true;
      if ((ec == asio::error::no_descriptors || ec.value() == ENFILE) && !sessions_.empty()) {
        close_oldest();  // frees a descriptor for the connection waiting
        accept();
        return;
      }
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([this](beast::error_code e) {
        if (!e && acceptor_.is_open()) accept();
      });
      return;
    }
    accept_failing_ = false;
    while (sessions_.size() >= kMaxConnections)
      close_oldest();  // a newcomer is not locked out by idle connections
    auto session = std::make_shared<Session>(std::move(s), *this, next_id_++);
    sessions_.emplace(session->id, session);
    session->start();
    accept();
  });
}

}  // namespace localdns::app
