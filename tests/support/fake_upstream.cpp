#include "fake_upstream.hpp"

#include <algorithm>
#include <array>
#include <fcntl.h>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "dns_client.hpp"
#include "packets.hpp"

namespace localdns::test {

namespace asio = boost::asio;
using boost::system::error_code;
using Bytes = std::vector<std::uint8_t>;

namespace {

// Returns the lower-case presentation name of the question, or "" if unreadable.
std::string question_name(const Bytes& q, std::size_t& end) {
  std::string name;
  std::size_t pos = 12;
  while (pos < q.size() && q[pos] != 0) {
    std::size_t len = q[pos];
    if (len > 63 || pos + 1 + len > q.size()) return "";
    for (std::size_t i = 1; i <= len; ++i)
      name.push_back(static_cast<char>(std::tolower(q[pos + i])));
    name.push_back('.');
    pos += 1 + len;
  }
  end = pos + 1 + 4;
  if (end > q.size()) return "";
  return name.empty() ? "." : name;
}

bool ends_with(const std::string& name, const std::string& suffix) {
  if (suffix == ".") return true;
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         (name.size() == suffix.size() || name[name.size() - suffix.size() - 1] == '.');
}

std::chrono::milliseconds delay_for(const Behaviour& b, const Bytes& q) {
  std::size_t qend = 0;
  const std::string name = question_name(q, qend);
  for (const auto& [suffix, d] : b.name_delays)
    if (ends_with(name, suffix)) return d;
  return b.delay;
}

Bytes make_answer(const Bytes& q, const Behaviour& b, bool udp,
                  std::array<std::uint8_t, 4> address = {192, 0, 2, 1}) {
  std::size_t qend = 0;
  std::string name = question_name(q, qend);
  if (name.empty()) return {};
  std::uint16_t qtype = static_cast<std::uint16_t>((q[qend - 4] << 8) | q[qend - 3]);
  bool edns = ((q[10] << 8) | q[11]) > 0;
  unsigned rcode = 0;
  if (b.mode == Behaviour::Mode::ServFail) rcode = 2;
  if (b.mode == Behaviour::Mode::Refused) rcode = 5;
  bool nx = name.rfind("nx", 0) == 0 ||
            std::any_of(b.nx_suffixes.begin(), b.nx_suffixes.end(),
                        [&](const std::string& sfx) { return ends_with(name, sfx); });
  if (rcode == 0 && nx) rcode = 3;
  auto r = ResponseBuilder::answering(q).flags(
      static_cast<std::uint8_t>(0x80 | (q[2] & 0x01) | 0x04),  // QR, AA, RD echoed
      static_cast<std::uint8_t>(0x80 | rcode));                // RA
  bool truncated = udp && b.truncate_udp;
  if (truncated) {
    r.tc();
  } else if (rcode == 0 && qtype == kTypeA) {
    r.answer(a_record(b.answer_ttl, address));
  } else if (rcode == 0 && qtype == kTypeTxt) {
    for (int i = 0; i < 12; ++i) {  // 12 x ~250 bytes: needs TCP without EDNS
      Rr txt{kTypeTxt, b.answer_ttl, {240}};
      for (int k = 0; k < 240; ++k)
        txt.rdata.push_back(static_cast<std::uint8_t>('a' + (i + k) % 26));
      r.answer(std::move(txt));
    }
  } else if (rcode == 3) {
    // SOA owned by the queried name's zone: fine for tests
    r.authority(soa_record(60, 5, {1, 7200, 1800, 86400}));
  }
  if (edns) r.opt();
  return r.build();
}

}  // namespace

struct FakeUpstream::Impl {
  explicit Impl(FakeUpstream& o) : owner(o), udp(ctx), acceptor(ctx) {
    auto loopback = asio::ip::make_address("127.0.0.1");
    for (int attempt = 0;; ++attempt) {
      try {
        auto port = free_port();
        udp.open(asio::ip::udp::v4());
        udp.bind({loopback, port});
        acceptor.open(asio::ip::tcp::v4());
        acceptor.set_option(asio::socket_base::reuse_address(true));
        acceptor.bind({loopback, port});
        acceptor.listen();
        break;
      } catch (const boost::system::system_error&) {
        error_code ignored;
        udp.close(ignored);
        acceptor.close(ignored);
        if (attempt == 10) throw;
      }
    }
    // Child processes of the tests (localdns itself) must not inherit these.
    ::fcntl(udp.native_handle(), F_SETFD, FD_CLOEXEC);
    ::fcntl(acceptor.native_handle(), F_SETFD, FD_CLOEXEC);
  }

  struct Session : std::enable_shared_from_this<Session> {
    Session(Impl& i, asio::ip::tcp::socket s) : impl(i), sock(std::move(s)) {}
    Impl& impl;
    asio::ip::tcp::socket sock;
    Bytes buf = Bytes(70000);
    std::size_t len = 0;
    unsigned seen = 0;
    unsigned number = 0;
    std::uint16_t remote_port = 0;
    std::vector<Bytes> held;
    Bytes previous;  // the last question read on this connection
    bool closed = false;

    ~Session() { impl.owner.tcp_closed(); }

    void read() {
      sock.async_read_some(asio::buffer(buf.data() + len, buf.size() - len),
                           [self = shared_from_this()](error_code ec, std::size_t n) {
                             if (ec || self->closed) return;
                             self->len += n;
                             self->frames();
                             if (!self->closed) self->read();
                           });
    }
    void frames() {
      std::size_t off = 0;
      while (len - off >= 2) {
        std::size_t flen = (buf[off] << 8) | buf[off + 1];
        if (len - off < 2 + flen) break;
        Bytes q(buf.begin() + static_cast<long>(off + 2),
                buf.begin() + static_cast<long>(off + 2 + flen));
        off += 2 + flen;
        auto b = impl.owner.behaviour();
        std::size_t qend = 0;
        impl.owner.count(question_name(q, qend), true, q.size() > 2 && (q[2] & 0x01));
        impl.owner.record(true, remote_port, q);
        ++seen;
        if (b.close_tcp_after && number == 1 && seen >= b.close_tcp_after) {
          closed = true;
          error_code ignored;
          sock.close(ignored);
          return;
        }
        if (b.reset_tcp_after && seen >= b.reset_tcp_after) {
          closed = true;
          error_code ignored;
          sock.set_option(asio::socket_base::linger(true, 0), ignored);  // RST, not FIN
          sock.close(ignored);
          return;
        }
        if (b.mode == Behaviour::Mode::Drop || b.drop_tcp) continue;
        if (!b.drop_prefix.empty() && question_name(q, qend).rfind(b.drop_prefix, 0) == 0) continue;
        Bytes r = make_answer(q, b, false);
        if (r.empty()) continue;
        if (b.tcp_stale_answer) {
          Bytes stale =
              previous.empty() ? Bytes{} : make_answer(previous, b, false, {198, 51, 100, 88});
          previous = q;
          if (!stale.empty()) {
            stale[0] = q[0];
            stale[1] = q[1];
            send(stale, {});
          }
        }
        if (b.reverse_tcp_batch) {
          held.push_back(std::move(r));
          if (held.size() >= b.reverse_tcp_batch) {
            for (auto it = held.rbegin(); it != held.rend(); ++it)
              send(*it, {});
            held.clear();
          }
          continue;
        }
        send(r, delay_for(b, q));
      }
      std::copy(buf.begin() + static_cast<long>(off), buf.begin() + static_cast<long>(len),
                buf.begin());
      len -= off;
    }
    void send(const Bytes& r, std::chrono::milliseconds delay) {
      auto framed = std::make_shared<Bytes>();
      put16(*framed, static_cast<unsigned>(r.size()));
      framed->insert(framed->end(), r.begin(), r.end());
      auto write = [self = shared_from_this(), framed] {
        if (self->closed) return;
        error_code ignored;
        asio::write(self->sock, asio::buffer(*framed), ignored);
      };
      if (delay.count() == 0) {
        write();
        return;
      }
      auto t = std::make_shared<asio::steady_timer>(impl.ctx, delay);
      t->async_wait([t, write](error_code) { write(); });
    }
  };

  void accept() {
    acceptor.async_accept([this](error_code ec, asio::ip::tcp::socket s) {
      if (ec) return;
      auto session = std::make_shared<Session>(*this, std::move(s));
      session->number = owner.tcp_opened();
      error_code ignored;
      session->remote_port = session->sock.remote_endpoint(ignored).port();
      if (owner.behaviour().tcp_no_read) {
        // Never read: once the small receive buffer is full the sender's
        // writes stop making progress. Kept until the upstream stops.
        session->sock.set_option(asio::socket_base::receive_buffer_size(4096), ignored);
        stalled.push_back(session);
      } else {
        session->read();
      }
      accept();
    });
  }

  void receive() {
    udp.async_receive_from(asio::buffer(ubuf), from, [this](error_code ec, std::size_t n) {
      if (ec) return;
      Bytes q(ubuf.begin(), ubuf.begin() + static_cast<long>(n));
      auto b = owner.behaviour();
      std::size_t qend = 0;
      owner.count(question_name(q, qend), false, q.size() > 2 && (q[2] & 0x01));
      owner.record(false, from.port(), q);
      bool dropped = !b.drop_prefix.empty() && question_name(q, qend).rfind(b.drop_prefix, 0) == 0;
      if (b.mode != Behaviour::Mode::Drop && !dropped) {
        Bytes r = make_answer(q, b, true);
        Bytes wrong_id, wrong_question;
        if (b.spoof_first && r.size() > 2) {
          // Other data, so that accepting it would show in the answer.
          wrong_id = make_answer(q, b, true, {198, 51, 100, 66});
          wrong_id[0] ^= 0x5a;
        }
        if (b.spoof_question && qend > 13) {
          // The right ID, but a question for another name (one letter changed).
          Bytes other = q;
          other[13] = other[13] == 'z' ? 'y' : 'z';
          wrong_question = make_answer(other, b, true, {198, 51, 100, 77});
        }
        auto to = from;
        auto reply = [this, r, to, wrong_id, wrong_question] {
          error_code ignored;
          if (!wrong_id.empty()) udp.send_to(asio::buffer(wrong_id), to, 0, ignored);
          if (!wrong_question.empty()) udp.send_to(asio::buffer(wrong_question), to, 0, ignored);
          udp.send_to(asio::buffer(r), to, 0, ignored);
        };
        if (!r.empty()) {
          const auto delay = delay_for(b, q);
          if (delay.count() == 0) {
            reply();
          } else {
            auto t = std::make_shared<asio::steady_timer>(ctx, delay);
            t->async_wait([t, reply](error_code) { reply(); });
          }
        }
      }
      receive();
    });
  }

  FakeUpstream& owner;
  asio::io_context ctx;
  asio::ip::udp::socket udp;
  asio::ip::tcp::acceptor acceptor;
  std::array<std::uint8_t, 65535> ubuf{};
  std::vector<std::shared_ptr<Session>> stalled;
  asio::ip::udp::endpoint from;
};

FakeUpstream::FakeUpstream() : impl_(std::make_unique<Impl>(*this)) {
  port_ = impl_->udp.local_endpoint().port();
  impl_->accept();
  impl_->receive();
  thread_ = std::thread([this] { impl_->ctx.run(); });
}

FakeUpstream::~FakeUpstream() {
  impl_->ctx.stop();
  thread_.join();
  impl_.reset();  // sessions report their close to this object's counters
}

void FakeUpstream::set(const Behaviour& b) {
  std::lock_guard lock(mu_);
  behaviour_ = b;
}

Behaviour FakeUpstream::behaviour() const {
  std::lock_guard lock(mu_);
  return behaviour_;
}

void FakeUpstream::count(const std::string& name, bool tcp, bool rd) {
  (tcp ? tcp_queries_ : udp_queries_)++;
  if (!rd) ++no_rd_;
  std::lock_guard lock(mu_);
  auto it = per_name_.find(name);
  if (it != per_name_.end()) {
    ++it->second;
  } else if (per_name_.size() < kMaxNames) {
    per_name_.emplace(name, 1);
  }
}

unsigned FakeUpstream::tcp_opened() {
  unsigned number = ++tcp_connections_;
  unsigned now = ++open_tcp_;
  unsigned prev = max_open_tcp_;
  while (now > prev && !max_open_tcp_.compare_exchange_weak(prev, now)) {
  }
  return number;
}

void FakeUpstream::record(bool tcp, std::uint16_t source_port, const std::vector<std::uint8_t>& q) {
  std::lock_guard lock(mu_);
  if (seen_.size() < 1000) seen_.push_back({std::chrono::steady_clock::now(), tcp, source_port, q});
}

std::vector<SeenQuery> FakeUpstream::seen_queries() const {
  std::lock_guard lock(mu_);
  return seen_;
}

std::string FakeUpstream::name_of(const SeenQuery& q) {
  std::size_t end = 0;
  return question_name(q.packet, end);
}

unsigned FakeUpstream::queries_for(const std::string& lower_name) const {
  std::lock_guard lock(mu_);
  auto it = per_name_.find(lower_name);
  return it == per_name_.end() ? 0 : it->second;
}

}  // namespace localdns::test
