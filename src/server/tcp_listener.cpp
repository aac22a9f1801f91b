#include <cstring>
#include <sys/socket.h>
#include <system_error>

#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <localdns/server/tcp_listener.hpp>

namespace localdns::server {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

TcpSession::TcpSession(asio::ip::tcp::socket sock, TcpListener& owner)
    : sock_(std::move(sock)),
      idle_(sock_.get_executor()),
      owner_(&owner),
      rbuf_(2 + kMaxQuerySize),
      last_active_(Clock::now()) {
  boost::system::error_code ec;
  auto local = sock_.local_endpoint(ec);
  v6_ = !ec && local.address().is_v6();
  auto remote = sock_.remote_endpoint(ec);
  if (!ec) peer_ = remote.address().to_string();
}

TcpSession::~TcpSession() = default;

void TcpSession::start() {
  error_code ignored;
  sock_.set_option(asio::ip::tcp::no_delay(true), ignored);
  arm_idle();
  read();
}

void TcpSession::arm_idle() {
  auto idle = owner_->config().idle_timeout;
  idle_.expires_after(idle);
  idle_.async_wait([self = shared_from_this(), idle](error_code ec) {
    if (ec || self->closed_) return;
    if (self->pending_ == 0 && Clock::now() - self->last_active_ >= idle) {
      self->close();  // RFC 7766 6.2.3: servers close idle connections
    } else {
      self->arm_idle();
    }
  });
}

void TcpSession::read() {
  if (reading_ || closed_ || peer_done_ || pending_ >= owner_->config().max_pipelined) return;
  reading_ = true;
  sock_.async_read_some(
      asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_),
      [self = shared_from_this()](error_code ec, std::size_t n) { self->on_read(ec, n); });
}

void TcpSession::on_read(error_code ec, std::size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    if (ec == asio::error::eof && (pending_ > 0 || writing_now_ || !outbox_.empty())) {
      peer_done_ = true;  // answer what was asked, then close
      return;
    }
    close();
    return;
  }
  rlen_ += n;
  last_active_ = Clock::now();
  process_frames();
  read();
}

void TcpSession::process_frames() {
  if (in_process_ || closed_) return;
  in_process_ = true;
  auto self = shared_from_this();
  std::size_t off = 0;
  auto& handler = owner_->handler();
  while (!closed_ && rlen_ - off >= 2 && pending_ < owner_->config().max_pipelined) {
    std::size_t len = dns::read_u16(&rbuf_[off]);
    if (len == 0 || len > kMaxQuerySize) {
      spdlog::debug("tcp client sent a length prefix of {}: closing", len);
      close();
      break;
    }
    if (rlen_ - off < 2 + len) break;
    ++pending_;
    auto outcome = handler.handle(dns::Bytes(&rbuf_[off + 2], len), true,
                                  TcpClient{weak_from_this(), v6_}, owner_->scratch());
    off += 2 + len;
    if (outcome.action == Action::Async) continue;
    --pending_;
    if (outcome.action == Action::Reply) queue(dns::Bytes(owner_->scratch().data(), outcome.len));
  }
  if (!closed_ && off > 0) {
    std::memmove(rbuf_.data(), rbuf_.data() + off, rlen_ - off);
    rlen_ -= off;
  }
  in_process_ = false;
}

void TcpSession::send_reply(dns::Bytes reply) {
  if (closed_) return;
  --pending_;
  queue(reply);
  if (!in_process_) {
    process_frames();  // frames held back by the pipelining cap
    read();
  }
}

void TcpSession::queue(dns::Bytes reply) {
  std::uint8_t len[2];
  dns::write_u16(len, static_cast<std::uint16_t>(reply.size()));
  outbox_.insert(outbox_.end(), len, len + 2);
  outbox_.insert(outbox_.end(), reply.begin(), reply.end());
  write();
}

void TcpSession::write() {
  if (writing_now_ || closed_) return;
  if (outbox_.empty()) {
    if (peer_done_ && pending_ == 0) close();
    return;
  }
  writing_now_ = true;
  writing_.swap(outbox_);
  asio::async_write(sock_, asio::buffer(writing_),
                    [self = shared_from_this()](error_code ec, std::size_t) {
                      self->writing_now_ = false;
                      self->writing_.clear();
                      if (ec) {
                        self->close();
                        return;
                      }
                      self->last_active_ = Clock::now();
                      self->write();
                    });
}

void TcpSession::close_after_flush() {
  if (closed_) return;
  peer_done_ = true;  // as after a client's half-close: no more reads
  write();            // closes now when nothing is queued, in flight or pending
}

void TcpSession::close() {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();
  error_code ignored;
  idle_.cancel();
  sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  sock_.close(ignored);
  owner_->on_session_closed(this);
}

TcpListener::TcpListener(asio::io_context& ctx, const config::Endpoint& ep,
                         const config::TcpClientConfig& cfg, QueryHandler& handler,
                         std::atomic<unsigned>& open_connections)
    : acceptor_(ctx),
      cfg_(cfg),
      handler_(handler),
      open_connections_(open_connections),
      retry_(ctx),
      scratch_(dns::kMaxMessageSize) {
  asio::ip::tcp::endpoint local(ep.address, ep.port);
  error_code ec;
  acceptor_.open(local.protocol(), ec);
  int one = 1;
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec &&
      ::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
  if (!ec && ep.address.is_v6()) acceptor_.set_option(asio::ip::v6_only(true), ec);
  if (!ec) acceptor_.bind(local, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::system_error(ec.value(), std::generic_category(),
                            "cannot listen on tcp " + ep.to_string());
  }
}

TcpListener::~TcpListener() {
  stop(true);
}

void TcpListener::start() {
  accept();
}

void TcpListener::accept() {
  acceptor_.async_accept([this](error_code ec, asio::ip::tcp::socket sock) {
    if (stopped_) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      spdlog::warn("tcp accept failed: {}; retrying", ec.message());
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([this](error_code e) {
        if (!e && !stopped_) accept();
      });
      return;
    }
    if (open_connections_.fetch_add(1, std::memory_order_relaxed) >= cfg_.max_connections) {
      open_connections_.fetch_sub(1, std::memory_order_relaxed);
      error_code ignored;
      sock.close(ignored);  // over the cap: refuse the connection, keep serving the others
    } else {
      auto session = std::make_shared<TcpSession>(std::move(sock), *this);
      sessions_.emplace(session.get(), session);
      session->start();
    }
    accept();
  });
}

void TcpListener::on_session_closed(TcpSession* s) {
  if (sessions_.erase(s) > 0) open_connections_.fetch_sub(1, std::memory_order_relaxed);
  if (drained_ && sessions_.empty()) std::exchange(drained_, nullptr)();
}

void TcpListener::drain(std::function<void()> done) {
  stop(false);
  if (sessions_.empty()) {
    done();
    return;
  }
  drained_ = std::move(done);
  std::vector<std::shared_ptr<TcpSession>> sessions;
  for (auto& [ptr, s] : sessions_)
    sessions.push_back(s);
  for (auto& s : sessions)
    s->close_after_flush();  // may close and erase at once
}

void TcpListener::stop(bool close_sessions) {
  drained_ = nullptr;
  stopped_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  retry_.cancel();
  if (close_sessions) {
    auto sessions = std::move(sessions_);
    sessions_.clear();
    for (auto& [ptr, s] : sessions) {
      s->close();
      open_connections_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
}

}  // namespace localdns::server
