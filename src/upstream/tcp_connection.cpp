#include <algorithm>
#include <cerrno>
#include <cstring>

#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <localdns/dns/message.hpp>
#include <localdns/upstream/tcp_connection.hpp>

namespace localdns::upstream {

namespace asio = boost::asio;
using boost::system::error_code;
using Duration = util::SteadyClock::duration;

namespace {
constexpr std::size_t kReadBufferSize = 2 + dns::kMaxMessageSize + 4096;
constexpr auto kMinBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::seconds(5);
}  // namespace

bool is_local_error(const error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  switch (ec.value()) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EPERM:  // a local netfilter rule dropped the packet
    case EACCES:
    case EAGAIN:  // our socket buffer is full (EWOULDBLOCK is the same value)
    case EADDRNOTAVAIL:
    case EADDRINUSE:
      return true;
    default:
      return false;
  }
}

TcpConnection::TcpConnection(asio::io_context& ctx, TcpPool& pool)
    : sock_(ctx),
      timer_(ctx),
      write_timer_(ctx),
      pool_(&pool),
      clock_(pool.clock()),
      random_(pool.random()),
      born_(clock_.now()),
      last_active_(born_) {}

TcpConnection::~TcpConnection() = default;

void TcpConnection::connect(const asio::ip::tcp::endpoint& ep, util::Duration timeout) {
  timer_.expires_after(timeout);
  timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec && self->state_ == State::Connecting) self->fail(CloseCause::ConnectFailed);
  });
  sock_.async_connect(ep, [self = shared_from_this()](error_code ec) { self->on_connect(ec); });
}

void TcpConnection::on_connect(error_code ec) {
  if (state_ != State::Connecting) return;
  if (ec) {
    fail(is_local_error(ec) ? CloseCause::LocalError : CloseCause::ConnectFailed);
    return;
  }
  state_ = State::Open;
  timer_.cancel();
  sock_.set_option(asio::ip::tcp::no_delay(true), ec);
  if (pool_) pool_->on_connected();
  rbuf_.resize(kReadBufferSize);
  start_read();
  start_write();
  if (pending_.empty()) arm_idle_timer();
}

bool TcpConnection::past_limits() const {
  const auto& cfg = pool_->settings();
  if (cfg.max_queries != 0 && queries_ >= cfg.max_queries) return true;
  return cfg.max_age.count() != 0 && clock_.now() - born_ >= cfg.max_age;
}

bool TcpConnection::usable() const {
  return state_ != State::Closed && pool_ && pending_.size() < kMaxPendingPerConnection &&
         outbox_.size() < kMaxQueuedBytes && !past_limits();
}

std::optional<std::uint16_t> TcpConnection::send(std::shared_ptr<PendingQuery> q,
                                                 dns::MutableBytes query) {
  if (!usable()) return std::nullopt;
  auto id = static_cast<std::uint16_t>(random_.next());
  while (pending_.contains(id))
    ++id;  // bounded: pending_ < kMaxPendingPerConnection
  dns::write_u16(query.data(), id);
  pending_.emplace(id, std::move(q));
  std::uint8_t len[2];
  dns::write_u16(len, static_cast<std::uint16_t>(query.size()));
  outbox_.insert(outbox_.end(), len, len + 2);
  outbox_.insert(outbox_.end(), query.begin(), query.end());
  ++queries_;
  last_active_ = clock_.now();
  if (state_ == State::Open) start_write();
  return id;
}

void TcpConnection::cancel(std::uint16_t id) {
  if (pending_.erase(id) == 0) return;
  maybe_retire();
  // Every query timed out: the connection is idle from now on.
  if (pending_.empty()) arm_idle_timer();
}

void TcpConnection::start_write() {
  if (write_in_flight_ || state_ != State::Open) return;
  if (written_ == writing_.size()) {
    if (outbox_.empty()) return;
    writing_.clear();
    written_ = 0;
    writing_.swap(outbox_);
  }
  write_in_flight_ = true;
  if (!write_timer_armed_) {
    write_progress_ = clock_.now();
    arm_write_timer();
  }
  sock_.async_write_some(
      asio::buffer(writing_.data() + written_, writing_.size() - written_),
      [self = shared_from_this()](error_code ec, std::size_t n) { self->on_write(ec, n); });
}

void TcpConnection::on_write(error_code ec, std::size_t n) {
  write_in_flight_ = false;
  if (state_ != State::Open) return;
  if (ec) {
    fail(is_local_error(ec) ? CloseCause::LocalError : CloseCause::Closed);
    return;
  }
  written_ += n;
  write_progress_ = clock_.now();
  start_write();
}

void TcpConnection::arm_write_timer() {
  if (!pool_) return;
  auto stall = pool_->timeout();
  write_timer_armed_ = true;
  write_timer_.expires_after(write_progress_ + stall - clock_.now());
  write_timer_.async_wait([self = shared_from_this(), stall](error_code ec) {
    self->write_timer_armed_ = false;
    if (ec || self->state_ != State::Open || !self->write_in_flight_) return;
    if (self->clock_.now() - self->write_progress_ >= stall) {
      // The server stopped reading: give the connection up; its queries are
      // resent on a fresh one.
      spdlog::debug("upstream TCP connection: no write progress for {} ms, closing",
                    std::chrono::duration_cast<std::chrono::milliseconds>(stall).count());
      self->fail(CloseCause::Closed);
      return;
    }
    self->arm_write_timer();
  });
}

void TcpConnection::start_read() {
  sock_.async_read_some(
      asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_),
      [self = shared_from_this()](error_code ec, std::size_t n) { self->on_read(ec, n); });
}

void TcpConnection::on_read(error_code ec, std::size_t n) {
  if (state_ != State::Open) return;
  if (ec) {
    fail(CloseCause::Closed);  // EOF or reset; pending exchanges retry elsewhere
    return;
  }
  rlen_ += n;
  last_active_ = clock_.now();
  auto self = shared_from_this();  // exchanges may drop the pool's reference
  if (!process_frames()) {
    fail(CloseCause::Closed);
    return;
  }
  if (state_ != State::Open) return;
  maybe_retire();
  if (state_ != State::Open) return;
  start_read();
}

bool TcpConnection::process_frames() {
  std::size_t off = 0;
  while (rlen_ - off >= 2) {
    std::size_t len = dns::read_u16(&rbuf_[off]);
    if (len < dns::kHeaderSize) return false;  // cannot be a DNS message: stream is broken
    if (rlen_ - off < 2 + len) break;
    dns::Bytes msg(&rbuf_[off + 2], len);
    off += 2 + len;
    const std::uint16_t id = dns::read_u16(msg.data());
    auto it = pending_.find(id);
    if (it == pending_.end()) continue;  // answer to a cancelled (finished) query
    auto rv = dns::parse_response(msg);
    if (rv && !dns::response_matches(*rv, id, it->second->question())) {
      // Most likely a late answer to a cancelled query whose ID was given
      // again: not this query's answer, and no fault of the server. The query
      // keeps waiting for its own, as over UDP.
      continue;
    }
    auto q = std::move(it->second);
    pending_.erase(it);
    q->on_tcp_answer(this, id, msg, rv ? &*rv : nullptr);
    if (state_ != State::Open) return true;
  }
  if (off > 0) {
    std::memmove(rbuf_.data(), rbuf_.data() + off, rlen_ - off);
    rlen_ -= off;
  }
  if (pending_.empty()) arm_idle_timer();
  return true;
}

void TcpConnection::arm_idle_timer() {
  auto idle = pool_ ? pool_->settings().idle_timeout : util::Duration(0);
  if (idle.count() == 0 || state_ != State::Open) return;
  timer_.expires_after(idle);
  timer_.async_wait([self = shared_from_this(), idle](error_code ec) {
    if (ec || self->state_ != State::Open || !self->pending_.empty()) return;
    if (self->clock_.now() - self->last_active_ >= idle) {
      self->close();
    } else {
      self->arm_idle_timer();
    }
  });
}

void TcpConnection::maybe_retire() {
  if (state_ == State::Open && pending_.empty() && pool_ && past_limits()) close();
}

void TcpConnection::close() {
  if (state_ == State::Closed) return;
  fail(CloseCause::Closed);
}

void TcpConnection::fail(CloseCause cause) {
  if (state_ == State::Closed) return;
  auto self = shared_from_this();
  const bool was_open = state_ == State::Open;
  state_ = State::Closed;
  error_code ignored;
  timer_.cancel();
  write_timer_.cancel();
  sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  sock_.close(ignored);
  auto lost = std::move(pending_);
  pending_.clear();
  if (pool_) {
    TcpPool* pool = pool_;
    pool_ = nullptr;
    pool->on_closed(this, CloseInfo{cause, was_open});
  }
  for (auto& [id, q] : lost)
    q->on_tcp_lost(this, id);
}

TcpPool::TcpPool(asio::io_context& ctx, const TcpPoolSettings& tcp, util::Duration timeout,
                 ServerHealth& health, const util::Clock& clock, util::Random& random)
    : ctx_(ctx),
      tcp_(tcp),
      timeout_(timeout),
      health_(health),
      clock_(clock),
      random_(random),
      endpoint_(health.endpoint().address, health.endpoint().port) {}

TcpPool::~TcpPool() {
  close_all();
}

std::optional<TcpPool::Sent> TcpPool::send(std::shared_ptr<PendingQuery> q,
                                           dns::MutableBytes query) {
  TcpConnection* best = nullptr;
  std::shared_ptr<TcpConnection> best_ptr;
  for (auto& c : conns_) {
    if (c->usable() && (!best || c->pending() < best->pending())) {
      best = c.get();
      best_ptr = c;
    }
  }
  // Every open connection counts against the cap, full ones too: an upstream
  // that stops reading must not get a new connection per query. Only those
  // retiring by age or query count (they close once drained) are replaced.
  // With all full and the cap reached, the query is not sent.
  std::size_t counted = static_cast<std::size_t>(
      std::count_if(conns_.begin(), conns_.end(), [](const auto& c) { return !c->retiring(); }));
  bool want_new = (!best || best->pending() > 0) && counted < tcp_.connections;
  if (want_new && !closed_ && clock_.now() >= next_connect_) {
    auto conn = std::make_shared<TcpConnection>(ctx_, *this);
    conns_.push_back(conn);
    conn->connect(endpoint_, timeout_);
    best_ptr = std::move(conn);
  }
  if (!best_ptr) return std::nullopt;
  auto id = best_ptr->send(std::move(q), query);
  if (!id) return std::nullopt;
  return Sent{std::move(best_ptr), *id};
}

void TcpPool::on_connected() {
  backoff_ = {};
  health_.counters().tcp_connects.fetch_add(1, std::memory_order_relaxed);
  health_.counters().tcp_open.fetch_add(1, std::memory_order_relaxed);
}

void TcpPool::on_closed(TcpConnection* conn, CloseInfo info) {
  if (info.was_open) health_.counters().tcp_open.fetch_sub(1, std::memory_order_relaxed);
  if (info.cause == CloseCause::LocalError) {
    // Not the server's fault: counted apart, and only a short pause before
    // the next connect so that a lack of descriptors does not spin.
    health_.counters().local_errors.fetch_add(1, std::memory_order_relaxed);
    backoff_ = {};
    next_connect_ = clock_.now() + kMinBackoff;
  } else if (info.cause == CloseCause::ConnectFailed) {
    health_.record_failure();
    backoff_ = std::clamp<Duration>(backoff_ * 2, kMinBackoff, kMaxBackoff);
    next_connect_ = clock_.now() + backoff_;
    spdlog::debug("upstream {}: TCP connect failed, next attempt in {} ms",
                  health_.endpoint().to_string(),
                  std::chrono::duration_cast<std::chrono::milliseconds>(backoff_).count());
  }
  std::erase_if(conns_, [conn](const auto& c) { return c.get() == conn; });
}

void TcpPool::close_all() {
  closed_ = true;
  auto conns = std::move(conns_);
  conns_.clear();
  for (auto& c : conns)
    c->close();
}

}  // namespace localdns::upstream
