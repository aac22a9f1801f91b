#include <algorithm>
#include <stdlib.h>  // arc4random

#include <localdns/dns/message.hpp>
#include <localdns/upstream/exchange.hpp>
#include <localdns/upstream/forwarder.hpp>

namespace localdns::upstream {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t kUdpReceiveSize = 4096;

bool retryable(dns::Rcode rc) {
  return rc == dns::Rcode::ServFail || rc == dns::Rcode::Refused || rc == dns::Rcode::NotImp;
}
}  // namespace

Exchange::Exchange(Forwarder& fwd, const Request& req, Completion done, InFlightTicket ticket)
    : fwd_(fwd),
      cfg_(fwd.group().config),
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

void Exchange::start() {
  unsigned attempts = pinned_server_ >= 0 ? 1 : cfg_.attempts;
  deadline_ = Clock::now() + cfg_.timeout * attempts;
  if (query_len_ == 0) {
    finish(Status::Failed);
    return;
  }
  next_attempt();
}

ServerHealth& Exchange::health() const {
  return fwd_.health(server_);
}

void Exchange::next_attempt() {
  if (finished_) return;
  unsigned budget = pinned_server_ >= 0 ? 1 : cfg_.attempts;
  if (fwd_.stopping() || attempts_used_ >= budget || Clock::now() >= deadline_) {
    if (!fallback_.empty()) {
      // An earlier server answered SERVFAIL/REFUSED: that answer beats silence.
      auto rv = dns::parse_response(fallback_);
      if (rv) {
        finish(Status::Ok, fallback_, &*rv);
        return;
      }
    }
    finish(last_failure_);
    return;
  }
  ++attempts_used_;
  ++gen_;
  server_ = pinned_server_ >= 0 ? pinned_server_ : fwd_.pick_server(tried_mask_);
  if (server_ < 0) {
    finish(Status::Failed);
    return;
  }
  if (server_ < 64) tried_mask_ |= std::uint64_t{1} << server_;
  reconnect_used_ = false;
  attempt_start_ = Clock::now();
  health().counters().requests.fetch_add(1, std::memory_order_relaxed);
  arm_timer();
  if (cfg_.transport == config::Transport::Tcp) {
    send_tcp();
  } else {
    send_udp();
  }
}

void Exchange::arm_timer() {
  auto left = std::chrono::duration_cast<Clock::duration>(deadline_ - Clock::now());
  timer_.expires_after(std::min<Clock::duration>(cfg_.timeout, std::max(left, Clock::duration{})));
  timer_.async_wait([self = shared_from_this(), gen = gen_](error_code ec) {
    if (!ec) self->on_timeout(gen);
  });
}

void Exchange::on_timeout(std::uint32_t gen) {
  if (finished_ || gen != gen_) return;
  last_failure_ = Status::Timeout;
  fail_attempt(true);
}

void Exchange::send_udp() {
  wire_ = Wire::Udp;
  const auto& ep = fwd_.group().config.servers[server_];
  asio::ip::udp::endpoint target(ep.address, ep.port);
  error_code ec;
  udp_.emplace(fwd_.context());
  // connect(): the kernel picks a random ephemeral source port and drops
  // datagrams from any other address or port (RFC 5452 4.1, 9.2).
  udp_->open(target.protocol(), ec);
  if (ec) {
    // Out of descriptors (EMFILE/ENFILE): our limit, not the server's fault.
    last_failure_ = Status::Failed;
    fail_attempt(false);
    return;
  }
  udp_->non_blocking(true, ec);
  if (!ec) udp_->connect(target, ec);
  id_ = static_cast<std::uint16_t>(arc4random());
  dns::write_u16(query_.data(), id_);
  if (!ec) udp_->send(asio::buffer(query_.data(), query_len_), 0, ec);
  if (ec) {
    last_failure_ = Status::Failed;
    fail_attempt(true);
    return;
  }
  udp_buf_.resize(kUdpReceiveSize);
  udp_->async_receive(asio::buffer(udp_buf_),
                      [self = shared_from_this(), gen = gen_](error_code e, std::size_t n) {
                        self->on_udp_receive(gen, e, n);
                      });
}

void Exchange::on_udp_receive(std::uint32_t gen, error_code ec, std::size_t n) {
  if (finished_ || gen != gen_ || wire_ != Wire::Udp) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    last_failure_ = Status::Failed;  // e.g. ICMP port unreachable
    fail_attempt(true);
    return;
  }
  dns::Bytes msg(udp_buf_.data(), n);
  auto rv = dns::parse_response(msg);
  if (!rv || !dns::response_matches(*rv, id_, asked_)) {
    // Not ours (spoofed, stale, garbled): keep waiting for the real answer.
    udp_->async_receive(asio::buffer(udp_buf_),
                        [self = shared_from_this(), gen](error_code e, std::size_t m) {
                          self->on_udp_receive(gen, e, m);
                        });
    return;
  }
  handle_answer(msg, *rv);
}

void Exchange::send_tcp() {
  wire_ = Wire::Tcp;
  auto sent =
      fwd_.pool(server_).send(shared_from_this(), dns::MutableBytes(query_.data(), query_len_));
  if (!sent) {
    // In connect backoff: the failure is already counted against the server.
    last_failure_ = Status::Failed;
    fail_attempt(false);
    return;
  }
  conn_ = sent->conn;
  id_ = sent->id;
}

void Exchange::on_tcp_answer(const TcpConnection* conn, dns::Bytes msg,
                             const dns::ResponseView* rv) {
  if (finished_ || wire_ != Wire::Tcp || conn_.lock().get() != conn) return;
  conn_.reset();
  if (!rv) {
    last_failure_ = Status::Failed;
    fail_attempt(true);
    return;
  }
  handle_answer(msg, *rv);
}

void Exchange::on_tcp_lost(const TcpConnection* conn) {
  if (finished_ || wire_ != Wire::Tcp) return;
  auto current = conn_.lock();
  if (current && current.get() != conn) return;
  conn_.reset();
  if (!reconnect_used_ && !fwd_.stopping()) {
    // Servers close idle or old connections at any time; one resend on a
    // fresh connection to the same server is not a failed attempt.
    reconnect_used_ = true;
    send_tcp();
    return;
  }
  last_failure_ = Status::Failed;
  fail_attempt(false);
}

void Exchange::handle_answer(dns::Bytes msg, const dns::ResponseView& rv) {
  health().record_success();
  health().counters().observe_answer(static_cast<unsigned>(rv.header.rcode()),
                                     Clock::now() - attempt_start_);
  if (rv.header.tc() && wire_ == Wire::Udp && cfg_.transport == config::Transport::PreferUdp) {
    cancel_attempt();
    attempt_start_ = Clock::now();
    health().counters().requests.fetch_add(1, std::memory_order_relaxed);
    send_tcp();  // same server, same timer: truncation is not a failure
    return;
  }
  unsigned budget = pinned_server_ >= 0 ? 1 : cfg_.attempts;
  if (retryable(rv.header.rcode()) && attempts_used_ < budget && cfg_.servers.size() > 1) {
    fallback_.assign(msg.begin(), msg.end());
    cancel_attempt();
    next_attempt();
    return;
  }
  finish(Status::Ok, msg, &rv);
}

void Exchange::fail_attempt(bool count_against_server) {
  if (finished_) return;
  if (count_against_server && server_ >= 0) health().record_failure();
  if (pinned_server_ >= 0 && server_ >= 0) {
    health().counters().healthcheck_failures.fetch_add(1, std::memory_order_relaxed);
  }
  cancel_attempt();
  next_attempt();
}

void Exchange::cancel_attempt() {
  ++gen_;
  if (udp_) {
    error_code ignored;
    udp_->close(ignored);
    udp_.reset();
  }
  if (auto c = conn_.lock()) c->cancel(id_);
  conn_.reset();
}

void Exchange::finish(Status status, dns::Bytes answer, const dns::ResponseView* rv) {
  if (finished_) return;
  finished_ = true;
  timer_.cancel();
  auto keep = shared_from_this();
  auto done = std::move(done_);
  Result r{status, answer, rv};
  // The answer may live in udp_buf_ or fallback_: release the attempt after the callback.
  if (done) done(r);
  cancel_attempt();
  ticket_.release();
}

}  // namespace localdns::upstream
