#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <system_error>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <localdns/server/udp_listener.hpp>

namespace localdns::server {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr int kMaxBatchesPerWakeup = 8;  // then yield to TCP and timers
constexpr std::size_t kReplySlot = dns::kEdnsUdpSize;
constexpr int kReceiveBuffer = 4 << 20;
}  // namespace

asio::ip::udp::socket open_udp_socket(asio::io_context& ctx, const util::Endpoint& ep) {
  asio::ip::udp::endpoint local(ep.address, ep.port);
  asio::ip::udp::socket sock(ctx);
  error_code ec;
  sock.open(local.protocol(), ec);
  int one = 1;
  if (!ec && ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
  if (!ec && ep.address.is_v6()) sock.set_option(asio::ip::v6_only(true), ec);
  if (!ec) {
    // Bursts (a rollout starting hundreds of pods) must not overflow the
    // default ~200 KiB buffer. FORCE needs CAP_NET_ADMIN; else take what we may.
    int size = kReceiveBuffer;
    if (::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
      ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
  }
  if (!ec) sock.bind(local, ec);
  if (!ec) sock.non_blocking(true, ec);
  if (ec) {
    throw std::system_error(ec.value(), std::generic_category(),
                            "cannot listen on udp " + ep.to_string());
  }
  return sock;
}

asio::ip::udp::socket adopt_udp_socket(asio::io_context& ctx, const util::Endpoint& ep, int fd) {
  auto fail = [&](int err, const std::string& why) {
    ::close(fd);
    throw std::system_error(err, std::generic_category(),
                            "cannot take over udp " + ep.to_string() + ": " + why);
  };
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) fail(errno, "not a socket");
  if (type != SOCK_DGRAM) fail(EINVAL, "not a UDP socket");
  auto bound = util::bound_endpoint(fd);
  if (!bound) fail(errno, "getsockname");
  if (*bound != ep) fail(EINVAL, "it is bound to " + bound->to_string());
  asio::ip::udp::endpoint want(ep.address, ep.port);
  asio::ip::udp::socket sock(ctx);
  error_code ec;
  sock.assign(want.protocol(), fd, ec);
  if (!ec) sock.non_blocking(true, ec);
  if (ec) fail(ec.value(), ec.message());
  return sock;
}

UdpListener::UdpListener(asio::io_context& ctx, const util::Endpoint& ep, QueryHandler& handler)
    : UdpListener(open_udp_socket(ctx, ep), handler) {}

UdpListener::UdpListener(asio::ip::udp::socket sock, QueryHandler& handler)
    : sock_(std::move(sock)),
      handler_(handler),
      retry_(sock_.get_executor()),
      in_(std::make_unique_for_overwrite<std::uint8_t[]>(kBatch * kMaxQuerySize)),
      out_(std::make_unique_for_overwrite<std::uint8_t[]>(kBatch * kReplySlot)) {
  for (std::size_t i = 0; i < kBatch; ++i) {
    in_iov_[i] = {&in_[i * kMaxQuerySize], kMaxQuerySize};
    in_msgs_[i].msg_hdr.msg_iov = &in_iov_[i];
    in_msgs_[i].msg_hdr.msg_iovlen = 1;
    in_msgs_[i].msg_hdr.msg_name = &addrs_[i];
  }
}

UdpListener::~UdpListener() {
  if (held_ >= 0) ::close(held_);
}

void UdpListener::start() {
  wait();
}

void UdpListener::pause() {
  stopped_ = true;
  retry_.cancel();
  error_code ignored;
  sock_.cancel(ignored);
}

void UdpListener::close() {
  stopped_ = true;
  retry_.cancel();
  error_code ignored;
  sock_.close(ignored);
}

void UdpListener::unbind() {
  stopped_ = true;
  retry_.cancel();
  if (!sock_.is_open()) return;
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;  // stays bound (paused) until destruction
  error_code ec;
  int fd = sock_.release(ec);
  if (ec) {
    ::close(null);
    return;
  }
  // Atomically: the socket's last reference goes, the number stays taken.
  if (::dup3(null, fd, O_CLOEXEC) < 0) {
    ::close(fd);
  } else {
    held_ = fd;
  }
  ::close(null);
}

// A one-byte MSG_PEEK receive rather than async_wait: Asio tries a receive
// first and, when the socket is empty, queues the operation on the socket's
// standing edge-triggered registration, where async_wait re-arms it with an
// epoll_ctl on every wakeup. The peeked datagram stays queued for drain().
void UdpListener::wait() {
  sock_.async_receive(
      asio::buffer(&peek_, 1), asio::socket_base::message_peek, [this](error_code ec, std::size_t) {
        // The error first: an aborted receive may outlive the listener.
        if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor || stopped_) {
          return;
        }
        if (!ec) [[likely]] {
          succeeded();
          drain();
          wait();
          return;
        }
        // The socket's pending error, which this receive consumed (serving
        // goes on), or one that it reports every time (Asio's first try of
        // the next receive fails at once): retried, then paced.
        if (drain()) {
          succeeded();
          wait();
          return;
        }
        failed(ec);
      });
}

void UdpListener::failed(const error_code& ec) {
  if (++failures_ <= kRetriesBeforeBackoff) {
    wait();
    return;
  }
  backoff_ =
      backoff_ == std::chrono::milliseconds(0) ? kMinBackoff : std::min(backoff_ * 2, kMaxBackoff);
  if (streak_.fail(FailureStreak::Clock::now())) {
    spdlog::warn(
        "udp {}: receive failing: {} ({} times in a row); retrying with pauses of up to {} ms",
        where(), ec.message(), failures_, kMaxBackoff.count());
  }
  retry_.expires_after(backoff_);
  retry_.async_wait([this](error_code e) {
    if (!e && !stopped_) wait();  // `e` first: a listener destroyed meanwhile cancels it
  });
}

std::string UdpListener::where() const {
  error_code ec;
  auto local = sock_.local_endpoint(ec);
  return ec ? std::string("socket") : util::Endpoint{local.address(), local.port()}.to_string();
}

void UdpListener::recovered() {
  const auto paced = streak_.end();
  if (paced != 0)
    spdlog::info("udp {}: receiving again after {} failed receives", where(), failures_);
  failures_ = 0;
  backoff_ = std::chrono::milliseconds(0);
}

bool UdpListener::drain() {
  const int fd = sock_.native_handle();
  bool received = false;
  for (int round = 0; round < kMaxBatchesPerWakeup; ++round) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      in_msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      in_msgs_[i].msg_hdr.msg_flags = 0;
    }
    int n = ::recvmmsg(fd, in_msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) return received;  // EAGAIN, or an error the next wakeup will see again
    received = true;
    unsigned replies = 0;
    for (int i = 0; i < n; ++i) {
      auto& hdr = in_msgs_[i].msg_hdr;
      if (hdr.msg_flags & MSG_TRUNC) continue;  // oversized datagram: not a sane query
      UdpClient client{fd, addrs_[i], hdr.msg_namelen};
      dns::MutableBytes slot(&out_[replies * kReplySlot], kReplySlot);
      auto outcome = handler_.handle(dns::Bytes(&in_[i * kMaxQuerySize], in_msgs_[i].msg_len),
                                     Transport::Udp, client, slot);
      if (outcome.action != Action::Reply || outcome.len == 0) continue;
      out_iov_[replies] = {slot.data(), outcome.len};
      auto& out = out_msgs_[replies].msg_hdr;
      out = {};
      out.msg_iov = &out_iov_[replies];
      out.msg_iovlen = 1;
      out.msg_name = &addrs_[i];
      out.msg_namelen = hdr.msg_namelen;
      ++replies;
    }
    unsigned sent = 0;
    while (sent < replies) {
      int m = ::sendmmsg(fd, &out_msgs_[sent], replies - sent, MSG_DONTWAIT);
      if (m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;  // drop like lost datagrams
      sent += m > 0 ? static_cast<unsigned>(m) : 1u;  // skip a reply the kernel refused
    }
    if (static_cast<std::size_t>(n) < kBatch) return true;
  }
  return true;
}

}  // namespace localdns::server
