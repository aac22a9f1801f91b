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

}  // namespace

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

HttpServer::HttpServer(const config::Endpoint& ep, Handler handler)
    : handler_(std::move(handler)), acceptor_(ctx_), retry_(ctx_) {
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

HealthEndpoint::HealthEndpoint(const Server& server, node::NodeSetup* node,
                               const config::Endpoint& ep, NodeCheck node_check)
    : server_(server), node_(node), node_check_(std::move(node_check)) {
  if (!node_check_ && node_ != nullptr) node_check_ = [node] { return node->verify(); };
  auto now = std::chrono::steady_clock::now();
  health_at_ = node_at_ = now;
  // The first state before the first request.
  refresh_health();
  if (node_check_) refresh_node();
  health_thread_ = std::thread([this] { refresh_every(&HealthEndpoint::refresh_health); });
  if (node_check_) {
    node_thread_ = std::thread([this] { refresh_every(&HealthEndpoint::refresh_node); });
  }
  try {
    http_ = std::make_unique<HttpServer>(ep, [this](const std::string& p) { return serve(p); });
  } catch (...) {
    stop_refreshing();
    throw;
  }
}

HealthEndpoint::~HealthEndpoint() {
  http_.reset();
  stop_refreshing();
}

void HealthEndpoint::stop_refreshing() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (health_thread_.joinable()) health_thread_.join();
  if (node_thread_.joinable()) node_thread_.join();
}

void HealthEndpoint::refresh_every(void (HealthEndpoint::*pass)()) {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, kRefreshEvery, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    (this->*pass)();
    lock.lock();
  }
}

void HealthEndpoint::refresh_health() {
  auto started = std::chrono::steady_clock::now();
  auto health = check_health();
  std::lock_guard lock(mu_);
  health_ = std::move(health);
  health_at_ = started;
}

void HealthEndpoint::refresh_node() {
  auto started = std::chrono::steady_clock::now();
  auto problem = check_node();
  std::lock_guard lock(mu_);
  node_problem_ = std::move(problem);
  node_at_ = started;
}

HttpServer::Response HealthEndpoint::check_health() {
  if (!server_.running()) return {503, "not serving\n"};
  for (const auto& ep : server_.config().listen) {
    for (auto* probe : {&probe_udp, &probe_tcp}) {
      if (auto err = probe(ep); !err.empty()) return {503, err + "\n"};
    }
  }
  return {200, "OK\n"};
}

std::string HealthEndpoint::check_node() {
  return node_check_ ? node_check_() : std::string();
}

HttpServer::Response HealthEndpoint::ready(const std::string& node_problem) {
  if (!server_.running()) return {503, "listeners are not serving yet\n"};
  if (!node_problem.empty()) return {503, "node setup: " + node_problem + "\n"};
  const auto& groups = server_.groups();
  const upstream::GroupState* def = groups.empty() ? nullptr : groups.front().get();
  const std::vector<std::string>* def_zones =
      groups.empty() ? nullptr : &server_.config().forward.front().zones;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    const auto& zones = server_.config().forward[i].zones;
    if (std::find(zones.begin(), zones.end(), ".") != zones.end()) {
      def = groups[i].get();
      def_zones = &zones;
    }
  }
  if (def != nullptr) {
    bool answered = false;
    for (const auto& h : def->health)
      answered = answered || h->counters().answered.load(std::memory_order_relaxed);
    if (!answered) {
      return {503, "no upstream of zone " + def_zones->front() + " has answered yet\n"};
    }
  }
  return {200, "OK\n"};
}

std::chrono::milliseconds HealthEndpoint::health_age() {
  std::lock_guard lock(mu_);
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               health_at_);
}

std::chrono::milliseconds HealthEndpoint::node_age() {
  std::lock_guard lock(mu_);
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               node_at_);
}

HttpServer::Response HealthEndpoint::respond(const std::string& path) {
  if (path == "/health") return check_health();
  if (path == "/ready") return ready(check_node());
  return {404, "not found: try /health or /ready\n"};
}

HttpServer::Response HealthEndpoint::serve(const std::string& path) {
  if (path != "/health" && path != "/ready") return {404, "not found: try /health or /ready\n"};
  // Stopping shows at once; the rest comes from the refresher.
  if (!server_.running()) {
    return path == "/health" ? HttpServer::Response{503, "not serving\n"}
                             : HttpServer::Response{503, "listeners are not serving yet\n"};
  }
  // Each answer depends on its own checks only: a slow node check (an
  // iptables-save waiting on a repair) never makes /health stale.
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (path == "/health") {
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - health_at_);
    if (age > kMaxAge) {
      return {503, "health state not refreshed for " + std::to_string(age.count()) + " ms\n"};
    }
    return health_;
  }
  if (node_check_) {
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - node_at_);
    if (age > kMaxAge) {
      return {503, "node setup not checked for " + std::to_string(age.count()) + " ms\n"};
    }
  }
  return ready(node_problem_);
}

}  // namespace localdns::app
