#include <algorithm>

#include <localdns/dns/message.hpp>
#include <localdns/upstream/exchange.hpp>
#include <localdns/upstream/forwarder.hpp>
#include <localdns/upstream/selection.hpp>

namespace localdns::upstream {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr std::size_t kUdpReceiveSize = 4096;

bool retryable(dns::Rcode rc) {
  return rc == dns::Rcode::ServFail || rc == dns::Rcode::Refused || rc == dns::Rcode::NotImp;
}
}  // namespace

Exchange::Exchange(Forwarder& fwd, const Request& req, Completion done, InFlightTicket ticket)
    : fwd_(fwd),
      settings_(fwd.settings()),
      clock_(fwd.clock()),
      random_(fwd.random()),
      ticket_(std::move(ticket)),
      done_(std::move(done)),
      pinned_server_(req.pinned_server),
      timer_(fwd.context()) {
  dns::OutgoingQuery q{req.question, 0, req.rd, req.cd, req.do_bit};
  query_len_ = dns::build_query(q, query_);
  // The question as sent (lower case), for matching answers.
  asked_ = {dns::Bytes(query_.data() + dns::kHeaderSize, req.question.qname.size()),
            req.question.qtype, req.question.qclass};
}

unsigned Exchange::budget() const {
  return pinned_server_ >= 0 ? 1 : settings_.attempts;
}

Exchange::~Exchange() {
  if (!finished_) fwd_.untrack(this);
}

void Exchange::abort() {
  if (finished_) return;
  last_failure_ = Status::Failed;
  conclude();
}

void Exchange::detach() {
  if (finished_) return;
  done_ = nullptr;
  finish(Status::Failed);
}

void Exchange::start() {
  deadline_ = clock_.now() + settings_.timeout * budget();
  fwd_.track(this);
  if (query_len_ == 0 || fwd_.stopping()) {
    finish(Status::Failed);
    return;
  }
  attempts_.reserve(budget());
  next_attempt();
}

// Decides what comes next after any event: a new attempt, waiting (for the
// current attempt or late answers of earlier ones), or the end.
void Exchange::advance() {
  if (finished_) return;
  const auto now = clock_.now();
  if (now >= deadline_) {
    last_failure_ = Status::Timeout;
    conclude();
    return;
  }
  if (fwd_.stopping()) {
    conclude();  // no new attempt, no connection once the forwarder stops
    return;
  }
  if (current_ >= 0) {
    arm_timer();
    return;
  }
  if (attempts_.size() < budget()) {
    next_attempt();
    return;
  }
  bool any_open =
      std::any_of(attempts_.begin(), attempts_.end(), [](const auto& a) { return a->open; });
  if (!any_open) {
    conclude();
    return;
  }
  arm_timer();  // late answers are taken until the deadline
}

void Exchange::next_attempt() {
  int server = pinned_server_ >= 0 ? pinned_server_ : fwd_.pick_server(tried_mask_);
  if (server < 0) {
    finish(Status::Failed);
    return;
  }
  tried_mask_ |= server_bit(server);
  auto a = std::make_unique<Attempt>();
  a->server = server;
  a->sent = clock_.now();
  const std::size_t i = attempts_.size();
  attempts_.push_back(std::move(a));
  current_ = static_cast<int>(i);
  attempt_end_ = std::min(deadline_, attempts_[i]->sent + settings_.timeout);
  fwd_.health(server).counters().requests.fetch_add(1, std::memory_order_relaxed);
  arm_timer();
  if (settings_.transport == Transport::Tcp) {
    send_tcp(i);
  } else {
    send_udp(i);
  }
}

void Exchange::arm_timer() {
  if (finished_) return;
  auto when = current_ >= 0 ? std::min(attempt_end_, deadline_) : deadline_;
  timer_.expires_after(when - clock_.now());
  timer_.async_wait([self = shared_from_this(), gen = ++timer_gen_](error_code ec) {
    if (!ec) self->on_timer(gen);
  });
}

void Exchange::on_timer(std::uint32_t gen) {
  if (finished_ || gen != timer_gen_) return;
  const auto now = clock_.now();
  if (current_ >= 0 && now >= attempt_end_) {
    // This attempt's time is up: count it against its server, keep listening
    // for its answer, and move on. The last attempt ends at the deadline and
    // its timeout counts too: with one attempt (health probes) it is the only
    // one. advance() then ends the exchange.
    auto& a = *attempts_[static_cast<std::size_t>(current_)];
    current_ = -1;
    last_failure_ = Status::Timeout;
    if (a.open) {
      a.late = true;
      fwd_.health(a.server).record_failure();
      if (pinned_server_ >= 0) {
        fwd_.health(a.server).counters().healthcheck_failures.fetch_add(1,
                                                                        std::memory_order_relaxed);
      }
    }
  }
  advance();
}

void Exchange::send_udp(std::size_t i) {
  auto& a = *attempts_[i];
  a.wire = Wire::Udp;
  const auto& ep = settings_.servers[static_cast<std::size_t>(a.server)];
  asio::ip::udp::endpoint target(ep.address, ep.port);
  error_code ec;
  a.udp.emplace(fwd_.context());
  // connect(): the kernel picks a random ephemeral source port and drops
  // datagrams from any other address or port (RFC 5452 4.1, 9.2).
  a.udp->open(target.protocol(), ec);
  if (!ec) a.udp->non_blocking(true, ec);
  if (!ec) a.udp->connect(target, ec);
  a.id = static_cast<std::uint16_t>(random_.next());
  dns::write_u16(query_.data(), a.id);
  if (!ec) a.udp->send(asio::buffer(query_.data(), query_len_), 0, ec);
  if (ec) {
    if (is_local_error(ec)) {
      local_error(i);  // out of descriptors or buffers, a local firewall
    } else {
      attempt_failed(i, Blame::Server, Status::Failed);
    }
    return;
  }
  a.buf.resize(kUdpReceiveSize);
  a.udp->async_receive(asio::buffer(a.buf),
                       [self = shared_from_this(), i](error_code e, std::size_t n) {
                         self->on_udp_receive(i, e, n);
                       });
}

void Exchange::on_udp_receive(std::size_t i, error_code ec, std::size_t n) {
  if (finished_) return;
  auto& a = *attempts_[i];
  if (!a.open || a.wire != Wire::Udp || !a.udp) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    // e.g. ICMP port unreachable; a late attempt was counted at its timeout.
    attempt_failed(i, a.late ? Blame::NotServer : Blame::Server, Status::Failed);
    return;
  }
  dns::Bytes msg(a.buf.data(), n);
  auto rv = dns::parse_response(msg);
  if (!rv || !dns::response_matches(*rv, a.id, asked_)) {
    // Not ours (spoofed, stale, garbled): keep waiting for the real answer.
    a.udp->async_receive(asio::buffer(a.buf),
                         [self = shared_from_this(), i](error_code e, std::size_t m) {
                           self->on_udp_receive(i, e, m);
                         });
    return;
  }
  handle_answer(i, msg, *rv);
}

void Exchange::send_tcp(std::size_t i) {
  auto& a = *attempts_[i];
  a.wire = Wire::Tcp;
  if (fwd_.stopping()) {
    // The pools are closed: never open or use a connection now.
    attempt_failed(i, Blame::NotServer, Status::Failed);
    return;
  }
  auto sent =
      fwd_.pool(a.server).send(shared_from_this(), dns::MutableBytes(query_.data(), query_len_));
  if (!sent) {
    // In connect backoff (the failure is already counted where it happened),
    // or every connection to the server is full: not the server's failure.
    attempt_failed(i, Blame::NotServer, Status::Failed);
    return;
  }
  a.conn = sent->conn;
  a.id = sent->id;
}

Exchange::Attempt* Exchange::find_tcp(const TcpConnection* conn, std::uint16_t id,
                                      std::size_t& index) {
  for (std::size_t i = 0; i < attempts_.size(); ++i) {
    auto& a = *attempts_[i];
    if (a.open && a.wire == Wire::Tcp && a.id == id && a.conn.lock().get() == conn) {
      index = i;
      return &a;
    }
  }
  return nullptr;
}

void Exchange::on_tcp_answer(const TcpConnection* conn, std::uint16_t id, dns::Bytes msg,
                             const dns::ResponseView* rv) {
  if (finished_) return;
  std::size_t i = 0;
  auto* a = find_tcp(conn, id, i);
  if (!a) return;
  a->conn.reset();  // the connection no longer holds this query
  if (!rv) {
    attempt_failed(i, a->late ? Blame::NotServer : Blame::Server, Status::Failed);
    return;
  }
  handle_answer(i, msg, *rv);
}

void Exchange::on_tcp_lost(const TcpConnection* conn, std::uint16_t id) {
  if (finished_) return;
  std::size_t i = 0;
  auto* a = find_tcp(conn, id, i);
  if (!a) return;
  a->conn.reset();
  if (!a->reconnect_used && !fwd_.stopping() && clock_.now() < deadline_) {
    // Servers close idle or old connections at any time; one resend on a
    // fresh connection to the same server is not a failed attempt. It runs
    // under the same deadline.
    a->reconnect_used = true;
    send_tcp(i);
    return;
  }
  attempt_failed(i, Blame::NotServer, Status::Failed);
}

void Exchange::handle_answer(std::size_t i, dns::Bytes msg, const dns::ResponseView& rv) {
  auto& a = *attempts_[i];
  auto& h = fwd_.health(a.server);
  h.record_success();
  h.counters().observe_answer(static_cast<unsigned>(rv.header.rcode()), clock_.now() - a.sent);
  if (rv.header.tc() && a.wire == Wire::Udp && settings_.transport == Transport::PreferUdp) {
    // Same server, same attempt and deadline: truncation is not a failure.
    error_code ignored;
    a.udp->close(ignored);
    a.udp.reset();
    a.sent = clock_.now();
    h.counters().requests.fetch_add(1, std::memory_order_relaxed);
    send_tcp(i);
    return;
  }
  if (retryable(rv.header.rcode()) && settings_.servers.size() > 1 && pinned_server_ < 0) {
    // Keep it in case no other server does better, and try the next one.
    if (fallback_.empty()) fallback_.assign(msg.begin(), msg.end());
    close_attempt(a);
    if (current_ == static_cast<int>(i)) current_ = -1;
    advance();
    return;
  }
  finish(Status::Ok, msg, &rv);
}

void Exchange::local_error(std::size_t i) {
  auto& a = *attempts_[i];
  fwd_.health(a.server).counters().local_errors.fetch_add(1, std::memory_order_relaxed);
  attempt_failed(i, Blame::NotServer, Status::Failed);
}

void Exchange::attempt_failed(std::size_t i, Blame blame, Status status) {
  if (finished_) return;
  auto& a = *attempts_[i];
  if (!a.open) return;
  if (blame == Blame::Server) fwd_.health(a.server).record_failure();
  if (pinned_server_ >= 0 && !a.late) {
    fwd_.health(a.server).counters().healthcheck_failures.fetch_add(1, std::memory_order_relaxed);
  }
  if (!a.late) last_failure_ = status;
  close_attempt(a);
  if (current_ == static_cast<int>(i)) current_ = -1;
  advance();
}

void Exchange::close_attempt(Attempt& a) {
  a.open = false;
  if (a.udp) {
    error_code ignored;
    a.udp->close(ignored);
    a.udp.reset();
  }
  if (auto c = a.conn.lock()) c->cancel(a.id);
  a.conn.reset();
}

void Exchange::conclude() {
  if (finished_) return;
  if (!fallback_.empty()) {
    // An earlier server answered SERVFAIL/REFUSED: that answer beats silence.
    auto rv = dns::parse_response(fallback_);
    if (rv) {
      finish(Status::Ok, fallback_, &*rv);
      return;
    }
  }
  finish(last_failure_);
}

void Exchange::finish(Status status, dns::Bytes answer, const dns::ResponseView* rv) {
  if (finished_) return;
  finished_ = true;
  fwd_.untrack(this);
  ++timer_gen_;
  timer_.cancel();
  auto keep = shared_from_this();
  auto done = std::move(done_);
  Result r{status, answer, rv};
  // The answer may live in an attempt's buffer or in fallback_: close the
  // attempts after the callback.
  if (done) done(r);
  for (auto& a : attempts_)
    close_attempt(*a);
  ticket_.release();
}

}  // namespace localdns::upstream
