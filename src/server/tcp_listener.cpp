#include <algorithm>
#include <cstring>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <system_error>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <localdns/server/tcp_listener.hpp>

namespace localdns::server {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// Connections accepted past max_connections while another worker makes room;
// past this many more, newcomers are refused.
constexpr unsigned kEvictionSlack = 64;

struct Exemptions {
  std::mutex mu;
  std::vector<asio::ip::tcp::endpoint> from;
  std::atomic<unsigned> count{0};
};

Exemptions& exemptions() {
  static Exemptions e;
  return e;
}

}  // namespace

bool TcpClientBudget::add_source(const std::string& source, unsigned limit) {
  std::lock_guard lock(mu_);
  auto it = per_source_.try_emplace(source, 0).first;
  if (it->second >= limit) return false;
  ++it->second;
  return true;
}

void TcpClientBudget::remove_source(const std::string& source) {
  std::lock_guard lock(mu_);
  if (auto it = per_source_.find(source); it != per_source_.end() && --it->second == 0) {
    per_source_.erase(it);
  }
}

void TcpClientBudget::enlist(TcpListener* l) {
  std::lock_guard lock(mu_);
  listeners_.push_back(l);
}

void TcpClientBudget::delist(TcpListener* l) {
  std::lock_guard lock(mu_);
  std::erase(listeners_, l);
}

bool TcpClientBudget::evict_elsewhere(const TcpListener* except) {
  std::lock_guard lock(mu_);
  TcpListener* best = nullptr;
  unsigned most = 0;
  for (auto* l : listeners_) {
    if (l != except && l->session_count() > most) {
      best = l;
      most = l->session_count();
    }
  }
  if (best == nullptr) return false;
  best->post_evict();
  return true;
}

ProbeExemption::ProbeExemption(const asio::ip::tcp::endpoint& from) : from_(from) {
  auto& e = exemptions();
  std::lock_guard lock(e.mu);
  e.from.push_back(from);
  e.count.fetch_add(1, std::memory_order_release);
}

ProbeExemption::~ProbeExemption() {
  auto& e = exemptions();
  std::lock_guard lock(e.mu);
  if (auto it = std::find(e.from.begin(), e.from.end(), from_); it != e.from.end()) {
    e.from.erase(it);
    e.count.fetch_sub(1, std::memory_order_release);
  }
}

bool ProbeExemption::covers(const asio::ip::tcp::endpoint& peer) {
  auto& e = exemptions();
  if (e.count.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard lock(e.mu);
  return std::find(e.from.begin(), e.from.end(), peer) != e.from.end();
}

TcpSession::TcpSession(asio::ip::tcp::socket sock, TcpListener& owner)
    : sock_(std::move(sock)),
      timer_(sock_.get_executor()),
      owner_(&owner),
      rbuf_(2 + kMaxQuerySize),
      last_active_(Clock::now()),
      last_progress_(last_active_) {
  boost::system::error_code ec;
  auto local = sock_.local_endpoint(ec);
  v6_ = !ec && local.address().is_v6();
  auto remote = sock_.remote_endpoint(ec);
  if (!ec) {
    peer_ = remote.address().to_string();
    addr_ = ClientAddress::of(remote.address());
  }
}

TcpSession::~TcpSession() = default;

void TcpSession::start() {
  error_code ignored;
  sock_.set_option(asio::ip::tcp::no_delay(true), ignored);
  arm_timer();
  read();
}

void TcpSession::arm_timer() {
  const auto& cfg = owner_->limits();
  auto now = Clock::now();
  // The exact idle deadline when it is near; otherwise a check every half
  // write_timeout, so stalled writes are noticed within 1.5 x write_timeout.
  auto check = now + cfg.write_timeout / 2;
  auto next = last_active_ + cfg.idle_timeout;
  if (next <= now || next > check) next = check;
  timer_.expires_at(next);
  timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec && !self->closed_) self->on_timer();
  });
}

void TcpSession::on_timer() {
  const auto& cfg = owner_->limits();
  auto now = Clock::now();
  if (queued_ > 0 && now - last_progress_ >= cfg.write_timeout) {
    spdlog::debug("tcp client {}: {} bytes of answers not taken for {} ms: closing", peer_, queued_,
                  cfg.write_timeout.count());
    close();
    return;
  }
  if (pending_ == 0 && queued_ == 0 && now - last_active_ >= cfg.idle_timeout) {
    close();  // RFC 7766 6.2.3: servers close idle connections
    return;
  }
  arm_timer();
}

bool TcpSession::room() const {
  const auto& cfg = owner_->limits();
  if (queued_ >= cfg.max_queued_bytes) return false;
  return queued_ <= kUncharged ||
         owner_->budget().queued_bytes.load(std::memory_order_relaxed) < cfg.max_queued_bytes_total;
}

void TcpSession::set_queued(std::size_t q) {
  if (queued_ == 0 && q > 0) last_progress_ = Clock::now();
  queued_ = q;
  std::size_t want = q > kUncharged ? q - kUncharged : 0;
  if (want != charged_) {
    auto& total = owner_->budget().queued_bytes;
    if (want > charged_) {
      total.fetch_add(want - charged_, std::memory_order_relaxed);
    } else {
      total.fetch_sub(charged_ - want, std::memory_order_relaxed);
    }
    charged_ = want;
  }
}

void TcpSession::read() {
  if (reading_ || closed_ || peer_done_ || pending_ >= owner_->limits().max_pipelined ||
      rlen_ == rbuf_.size() || !room()) {
    return;  // resumed when an answer is sent or written
  }
  reading_ = true;
  sock_.async_read_some(
      asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_),
      [self = shared_from_this()](error_code ec, std::size_t n) { self->on_read(ec, n); });
}

void TcpSession::on_read(error_code ec, std::size_t n) {
  reading_ = false;
  if (closed_ || peer_done_) return;
  if (ec) {
    if (ec == asio::error::eof && (pending_ > 0 || queued_ > 0)) {
      peer_done_ = true;  // answer what was asked, then close
      return;
    }
    close();
    return;
  }
  rlen_ += n;
  process_frames();
  read();
  release_if_idle();
}

void TcpSession::process_frames() {
  if (in_process_ || closed_) return;
  in_process_ = true;
  auto self = shared_from_this();
  std::size_t off = 0;
  auto& handler = owner_->handler();
  while (!closed_ && rlen_ - off >= 2 && pending_ < owner_->limits().max_pipelined && room()) {
    std::size_t len = dns::read_u16(&rbuf_[off]);
    if (len == 0 || len > kMaxQuerySize) {
      spdlog::debug("tcp client sent a length prefix of {}: closing", len);
      close();
      break;
    }
    if (rlen_ - off < 2 + len) break;
    ++pending_;
    auto outcome = handler.handle(dns::Bytes(&rbuf_[off + 2], len), Transport::Tcp,
                                  TcpClient{weak_from_this(), v6_, addr_}, owner_->scratch());
    off += 2 + len;
    if (outcome.action == Action::Async) continue;
    --pending_;
    if (outcome.action == Action::Reply) queue(dns::Bytes(owner_->scratch().data(), outcome.len));
  }
  if (!closed_ && off > 0) {
    last_active_ = Clock::now();  // complete queries: the idle time starts again
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

bool TcpSession::overfull(std::size_t add) {
  const auto& cfg = owner_->limits();
  // One largest framed message past either cap.
  constexpr std::size_t kSlack = 2 + dns::kMaxMessageSize;
  bool over = queued_ + add > cfg.max_queued_bytes + kSlack ||
              (queued_ + add > kUncharged &&
               owner_->budget().queued_bytes.load(std::memory_order_relaxed) + add >
                   cfg.max_queued_bytes_total + kSlack);
  if (!over) return false;
  // A client that reads keeps room in its socket's send buffer, and the queue
  // goes out soon: only one whose socket takes nothing more is cut off.
  pollfd p{sock_.native_handle(), POLLOUT, 0};
  int n = ::poll(&p, 1, 0);
  return n == 0 || (n == 1 && (p.revents & POLLOUT) == 0);
}

void TcpSession::queue(dns::Bytes reply) {
  // Reading pauses at the caps, but answers owed for queries read before
  // still arrive (up to max_pipelined of them, each up to 64 KiB).
  if (!exempt_ && overfull(2 + reply.size())) {
    spdlog::debug("tcp client {}: {} bytes of answers queued and its socket takes no more: closing",
                  peer_, queued_);
    close();
    return;
  }
  std::uint8_t len[2];
  dns::write_u16(len, static_cast<std::uint16_t>(reply.size()));
  outbox_.insert(outbox_.end(), len, len + 2);
  outbox_.insert(outbox_.end(), reply.begin(), reply.end());
  set_queued(queued_ + 2 + reply.size());
  write();
}

void TcpSession::write() {
  if (writing_now_ || closed_) return;
  if (outbox_.empty()) {
    if (peer_done_ && pending_ == 0) {
      close();
    } else {
      release_if_idle();
    }
    return;
  }
  writing_now_ = true;
  writing_.swap(outbox_);
  written_ = 0;
  sock_.async_write_some(
      asio::buffer(writing_),
      [self = shared_from_this()](error_code ec, std::size_t n) { self->on_written(ec, n); });
}

void TcpSession::on_written(error_code ec, std::size_t n) {
  if (closed_) return;
  if (ec) {
    close();
    return;
  }
  written_ += n;
  last_progress_ = Clock::now();
  set_queued(queued_ - n);
  if (written_ < writing_.size()) {
    sock_.async_write_some(
        asio::buffer(writing_.data() + written_, writing_.size() - written_),
        [self = shared_from_this()](error_code e, std::size_t m) { self->on_written(e, m); });
  } else {
    writing_now_ = false;
    writing_.clear();
    if (queued_ == 0) last_active_ = last_progress_;  // every answer delivered
    write();
  }
  if (!in_process_ && !closed_) {
    process_frames();  // frames held back while the queue was full
    read();
  }
}

void TcpSession::close_when_flushed() {
  if (closed_) return;
  peer_done_ = true;
  if (!writing_now_ && outbox_.empty() && pending_ == 0) close();
}

void TcpSession::release_when_idle() {
  release_ = true;
  release_if_idle();
}

void TcpSession::release_if_idle() {
  if (!release_ || closed_ || in_process_ || pending_ > 0 || queued_ > 0 || writing_now_ ||
      !outbox_.empty() || rlen_ > 0) {
    return;
  }
  int unread = 0;
  if (::ioctl(sock_.native_handle(), FIONREAD, &unread) == 0 && unread > 0) return;
  close();
}

void TcpSession::close() {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();
  error_code ignored;
  timer_.cancel();
  set_queued(0);  // gives its share of the process-wide total back
  sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  sock_.close(ignored);
  owner_->on_session_closed(this);
}

asio::ip::tcp::acceptor open_tcp_acceptor(asio::io_context& ctx, const util::Endpoint& ep) {
  asio::ip::tcp::acceptor acceptor(ctx);
  asio::ip::tcp::endpoint local(ep.address, ep.port);
  error_code ec;
  acceptor.open(local.protocol(), ec);
  int one = 1;
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec &&
      ::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
  if (!ec && ep.address.is_v6()) acceptor.set_option(asio::ip::v6_only(true), ec);
  if (!ec) acceptor.bind(local, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::system_error(ec.value(), std::generic_category(),
                            "cannot listen on tcp " + ep.to_string());
  }
  return acceptor;
}

asio::ip::tcp::acceptor adopt_tcp_acceptor(asio::io_context& ctx, const util::Endpoint& ep,
                                           int fd) {
  auto fail = [&](int err, const std::string& why) {
    ::close(fd);
    throw std::system_error(err, std::generic_category(),
                            "cannot take over tcp " + ep.to_string() + ": " + why);
  };
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) fail(errno, "not a socket");
  len = sizeof listening;
  if (type != SOCK_STREAM || ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
      listening == 0) {
    fail(EINVAL, "not a listening TCP socket");
  }
  auto bound = util::bound_endpoint(fd);
  if (!bound) fail(errno, "getsockname");
  if (*bound != ep) fail(EINVAL, "it is bound to " + bound->to_string());
  asio::ip::tcp::endpoint want(ep.address, ep.port);
  asio::ip::tcp::acceptor acceptor(ctx);
  error_code ec;
  acceptor.assign(want.protocol(), fd, ec);
  if (ec) fail(ec.value(), ec.message());
  return acceptor;
}

TcpListener::TcpListener(asio::io_context& ctx, const util::Endpoint& ep,
                         const TcpClientLimits& limits, QueryHandler& handler,
                         TcpClientBudget& budget)
    : TcpListener(open_tcp_acceptor(ctx, ep), limits, handler, budget) {}

TcpListener::TcpListener(asio::ip::tcp::acceptor acceptor, const TcpClientLimits& limits,
                         QueryHandler& handler, TcpClientBudget& budget)
    : acceptor_(std::move(acceptor)),
      limits_(limits),
      handler_(handler),
      budget_(budget),
      retry_(acceptor_.get_executor()),
      scratch_(std::make_unique_for_overwrite<std::uint8_t[]>(dns::kMaxMessageSize)) {
  budget_.enlist(this);
}

TcpListener::~TcpListener() {
  budget_.delist(this);
  stop(Sessions::close);
}

void TcpListener::start() {
  accept();
}

void TcpListener::accept() {
  acceptor_.async_accept([this](error_code ec, asio::ip::tcp::socket sock) {
    // The error first: an aborted accept may outlive the listener.
    if (ec == asio::error::operation_aborted || stopped_) return;
    if (ec) {
      // Out of descriptors (EMFILE, ENFILE) it fails again at once while the
      // connection waits in the backlog: a pause, and one line per streak.
      if (streak_.fail(FailureStreak::Clock::now())) {
        spdlog::warn("tcp accept failed: {} ({} times in a row); retrying every {} ms",
                     ec.message(), streak_.count(), kAcceptRetry.count());
      }
      retry_.expires_after(kAcceptRetry);
      retry_.async_wait([this](error_code e) {
        if (!e && !stopped_) accept();
      });
      return;
    }
    if (streak_.failing()) [[unlikely]] {
      spdlog::info("tcp accepting again after {} failed accepts", streak_.end());
    }
    admit(std::move(sock));
    accept();
  });
}

void TcpListener::admit(asio::ip::tcp::socket sock) {
  error_code ec;
  auto peer = sock.remote_endpoint(ec);
  if (ec) return;  // already gone
  auto session = std::make_shared<TcpSession>(std::move(sock), *this);
  if (ProbeExemption::covers(peer)) {
    session->set_exempt();  // this process's health probe: never capped, never evicted
  } else {
    const auto& source = session->peer_address();
    if (!budget_.add_source(source, limits_.max_connections_per_source)) {
      spdlog::debug("tcp client {} holds {} connections already: refused", source,
                    limits_.max_connections_per_source);
      return;  // the socket closes with the session
    }
    session->set_counted();
    unsigned open = budget_.connections.fetch_add(1, std::memory_order_relaxed) + 1;
    if (open > limits_.max_connections) {
      // Make room rather than refuse: the idlest connection goes.
      bool room = open <= limits_.max_connections + kEvictionSlack &&
                  (evict_idlest() || budget_.evict_elsewhere(this));
      if (!room) {
        budget_.connections.fetch_sub(1, std::memory_order_relaxed);
        budget_.remove_source(source);
        return;
      }
    }
  }
  sessions_.emplace(session.get(), session);
  session_count_.fetch_add(1, std::memory_order_relaxed);
  session->start();
}

bool TcpListener::evict_idlest() {
  TcpSession* victim = nullptr;
  for (const auto& [ptr, s] : sessions_) {
    if (!s->counted()) continue;
    // Idle ones (nothing asked or owed) first, then the longest since its last query.
    if (victim == nullptr || (!s->busy() && victim->busy()) ||
        (s->busy() == victim->busy() && s->last_active() < victim->last_active())) {
      victim = ptr;
    }
  }
  if (victim == nullptr) return false;
  spdlog::debug("tcp clients at the cap of {}: closing the idlest connection, from {}",
                limits_.max_connections, victim->peer_address());
  victim->close();
  return true;
}

void TcpListener::post_evict() {
  asio::post(acceptor_.get_executor(), [this] {
    if (!stopped_) evict_idlest();
  });
}

void TcpListener::on_session_closed(TcpSession* s) {
  auto it = sessions_.find(s);
  if (it == sessions_.end()) return;
  if (s->counted()) {
    budget_.connections.fetch_sub(1, std::memory_order_relaxed);
    budget_.remove_source(s->peer_address());
  }
  session_count_.fetch_sub(1, std::memory_order_relaxed);
  sessions_.erase(it);
  if (drained_ && sessions_.empty()) std::exchange(drained_, nullptr)();
}

void TcpListener::drain(std::function<void()> done) {
  close_sessions(std::move(done), &TcpSession::close_when_flushed);
}

void TcpListener::release_when_idle(std::function<void()> done) {
  close_sessions(std::move(done), &TcpSession::release_when_idle);
}

void TcpListener::close_sessions(std::function<void()> done, void (TcpSession::*how)()) {
  stop(Sessions::keep);
  if (sessions_.empty()) {
    done();
    return;
  }
  drained_ = std::move(done);
  std::vector<std::shared_ptr<TcpSession>> sessions;
  for (auto& [ptr, s] : sessions_)
    sessions.push_back(s);
  for (auto& s : sessions)
    ((*s).*how)();  // may close and erase at once
}

void TcpListener::stop(Sessions sessions) {
  drained_ = nullptr;
  stopped_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  retry_.cancel();
  if (sessions == Sessions::close) {
    std::vector<std::shared_ptr<TcpSession>> all;
    all.reserve(sessions_.size());
    for (const auto& [ptr, s] : sessions_)
      all.push_back(s);
    for (auto& s : all)
      s->close();
  }
}

}  // namespace localdns::server
