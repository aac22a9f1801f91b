#include <cerrno>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <localdns/app/observability.hpp>
#include <localdns/dns/builder.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/tcp_listener.hpp>

namespace localdns::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr int kProbeTimeoutMs = 500;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_storage to_sockaddr(const config::Endpoint& ep, socklen_t& len) {
  sockaddr_storage ss{};
  if (ep.address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(ep.port);
    auto b = ep.address.to_v4().to_bytes();
    std::memcpy(&sin->sin_addr, b.data(), 4);
    len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(ep.port);
    auto b = ep.address.to_v6().to_bytes();
    std::memcpy(&sin6->sin6_addr, b.data(), 16);
    len = sizeof(sockaddr_in6);
  }
  return ss;
}

bool wait_for(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, kProbeTimeoutMs) == 1 && (p.revents & events);
}

// The health query: kHealthName A IN, answered by localdns itself.
std::size_t build_probe(std::uint16_t id, std::uint8_t* out, std::size_t cap) {
  static const std::string name = *dns::name_from_text(server::kHealthName);
  dns::Question q{dns::Bytes(reinterpret_cast<const std::uint8_t*>(name.data()), name.size()), 1,
                  1};
  return dns::build_query({q, id, true, false, false}, dns::MutableBytes(out, cap));
}

bool good_answer(const std::uint8_t* msg, std::size_t n, std::uint16_t id) {
  return n >= 12 && dns::read_u16(msg) == id && (msg[2] & 0x80) && (msg[3] & 0x0F) == 0;
}

std::string probe_udp(const config::Endpoint& ep) {
  socklen_t len = 0;
  auto addr = to_sockaddr(ep, len);
  Fd fd(::socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return "udp socket: " + std::string(std::strerror(errno));
  std::uint8_t q[512], r[512];
  auto id = static_cast<std::uint16_t>(::random());
  auto n = build_probe(id, q, sizeof q);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::send(fd.get(), q, n, 0) != static_cast<ssize_t>(n)) {
    return "udp " + ep.to_string() + ": " + std::strerror(errno);
  }
  if (!wait_for(fd.get(), POLLIN)) return "udp " + ep.to_string() + ": no answer in 500 ms";
  auto got = ::recv(fd.get(), r, sizeof r, 0);
  if (got < 0 || !good_answer(r, static_cast<std::size_t>(got), id)) {
    return "udp " + ep.to_string() + ": bad answer";
  }
  return {};
}

std::string probe_tcp(const config::Endpoint& ep) {
  socklen_t len = 0;
  auto addr = to_sockaddr(ep, len);
  Fd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return "tcp socket: " + std::string(std::strerror(errno));
  // From the listen address itself, on a port this socket holds: the listener
  // recognises the probe by it and exempts it from the client caps.
  socklen_t from_len = 0;
  auto from = to_sockaddr({ep.address, 0}, from_len);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), from_len) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&from), &from_len) != 0) {
    return "tcp " + ep.to_string() + ": bind: " + std::strerror(errno);
  }
  std::uint16_t from_port =
      ntohs(from.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&from)->sin_port
                                      : reinterpret_cast<sockaddr_in6*>(&from)->sin6_port);
  server::ProbeExemption exempt({ep.address, from_port});
  int rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len);
  if (rc != 0 && errno != EINPROGRESS) return "tcp " + ep.to_string() + ": " + std::strerror(errno);
  if (rc != 0) {
    int err = 0;
    socklen_t elen = sizeof err;
    if (!wait_for(fd.get(), POLLOUT) ||
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
      return "tcp " + ep.to_string() + ": cannot connect";
    }
  }
  std::uint8_t q[514], r[514];
  auto id = static_cast<std::uint16_t>(::random());
  auto n = build_probe(id, q + 2, sizeof q - 2);
  dns::write_u16(q, static_cast<std::uint16_t>(n));
  if (::send(fd.get(), q, n + 2, MSG_NOSIGNAL) != static_cast<ssize_t>(n + 2)) {
    return "tcp " + ep.to_string() + ": send failed";
  }
  std::size_t have = 0;
  while (have < 2 || have < 2 + std::size_t{dns::read_u16(r)}) {
    if (!wait_for(fd.get(), POLLIN)) return "tcp " + ep.to_string() + ": no answer in 500 ms";
    auto got = ::recv(fd.get(), r + have, sizeof r - have, 0);
    if (got <= 0) return "tcp " + ep.to_string() + ": connection closed";
    have += static_cast<std::size_t>(got);
    if (have == sizeof r) break;
  }
  if (!good_answer(r + 2, have - 2, id)) return "tcp " + ep.to_string() + ": bad answer";
  return {};
}

struct Session : std::enable_shared_from_this<Session> {
  Session(asio::ip::tcp::socket s, const HttpServer& h) : stream(std::move(s)), owner(h) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  http::request<http::string_body> req;
  http::response<http::string_body> res;
  const HttpServer& owner;

  void start() {
    stream.expires_after(std::chrono::seconds(5));
    http::async_read(stream, buffer, req,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (!ec) self->answer();
                     });
  }
  void answer() {
    std::string target(req.target());
    if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
    auto r = req.method() == http::verb::get ? owner.handler()(target)
                                             : HttpServer::Response{405, "GET only\n"};
    res.version(req.version());
    res.result(static_cast<http::status>(r.status));
    res.set(http::field::content_type, r.content_type);
    res.keep_alive(false);
    res.body() = std::move(r.body);
    res.prepare_payload();
    http::async_write(stream, res, [self = shared_from_this()](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    });
  }
};

}  // namespace

HttpServer::HttpServer(const config::Endpoint& ep, Handler handler)
    : handler_(std::move(handler)), acceptor_(ctx_) {
  asio::ip::tcp::endpoint where(ep.address, ep.port);
  acceptor_.open(where.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  // Lets a new localdns bind while the old one still serves (upgrades).
  int one = 1;
  ::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  acceptor_.bind(where);
  acceptor_.listen();
  accept();
  thread_ = std::thread([this] { ctx_.run(); });
}

HttpServer::~HttpServer() {
  ctx_.stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::accept() {
  acceptor_.async_accept([this](beast::error_code ec, asio::ip::tcp::socket s) {
    if (!ec) std::make_shared<Session>(std::move(s), *this)->start();
    if (acceptor_.is_open()) accept();
  });
}

HealthEndpoint::HealthEndpoint(const Server& server, node::NodeSetup* node,
                               const config::Endpoint& ep)
    : server_(server),
      node_(node),
      http_(std::make_unique<HttpServer>(ep, [this](const std::string& p) { return respond(p); })) {
}

HttpServer::Response HealthEndpoint::respond(const std::string& path) {
  if (path == "/health") {
    if (!server_.running()) return {503, "not serving\n"};
    for (const auto& ep : server_.config().listen) {
      for (auto* probe : {&probe_udp, &probe_tcp}) {
        if (auto err = probe(ep); !err.empty()) return {503, err + "\n"};
      }
    }
    return {200, "OK\n"};
  }
  if (path == "/ready") {
    if (!server_.running()) return {503, "listeners are not serving yet\n"};
    if (node_) {
      if (auto problem = node_->verify(); !problem.empty()) {
        return {503, "node setup: " + problem + "\n"};
      }
    }
    const auto& groups = server_.groups();
    const upstream::GroupState* def = groups.empty() ? nullptr : groups.front().get();
    for (const auto& g : groups) {
      if (std::find(g->config.zones.begin(), g->config.zones.end(), ".") != g->config.zones.end()) {
        def = g.get();
      }
    }
    if (def != nullptr) {
      bool answered = false;
      for (const auto& h : def->health)
        answered = answered || h->counters().answered.load(std::memory_order_relaxed);
      if (!answered) {
        return {503, "no upstream of zone " + def->config.zones.front() + " has answered yet\n"};
      }
    }
    return {200, "OK\n"};
  }
  return {404, "not found: try /health or /ready\n"};
}

}  // namespace localdns::app
