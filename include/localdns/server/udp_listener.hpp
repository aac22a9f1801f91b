// A UDP listening socket of one worker. SO_REUSEPORT lets every worker bind
// the same address, so the kernel spreads clients over workers. Reads and
// writes in batches (recvmmsg/sendmmsg) once Asio reports the socket readable.
// A receive that fails again and again without a datagram in between (an
// error the socket reports every time) is retried at once a few times, then
// after a pause that doubles from kMinBackoff to kMaxBackoff until a receive
// succeeds, so that it cannot spin the worker; logged once per
// FailureStreak::kInterval. Lives on one worker's io_context; not thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <sys/socket.h>

#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/server/failure_streak.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/util/endpoint.hpp>

namespace localdns::server {

// Opens and binds a socket with SO_REUSEPORT; throws std::system_error naming
// the address on failure.
boost::asio::ip::udp::socket open_udp_socket(boost::asio::io_context& ctx,
                                             const util::Endpoint& ep);
// Takes over `fd`, a UDP socket bound to `ep` that another process passed
// (upgrade handover): checks that it is one and assigns it; closes it and
// throws std::system_error naming the address otherwise.
boost::asio::ip::udp::socket adopt_udp_socket(boost::asio::io_context& ctx,
                                              const util::Endpoint& ep, int fd);

class UdpListener {
 public:
  static constexpr std::size_t kBatch = 32;
  static constexpr std::size_t kMaxQuerySize = 4096;
  // Failed wakeups in a row (an error, no datagram) retried at once; then
  // the pause before each next one.
  static constexpr unsigned kRetriesBeforeBackoff = 3;
  static constexpr std::chrono::milliseconds kMinBackoff{1};
  static constexpr std::chrono::milliseconds kMaxBackoff{100};

  UdpListener(boost::asio::io_context& ctx, const util::Endpoint& ep, QueryHandler& handler);
  ~UdpListener();
  UdpListener(const UdpListener&) = delete;
  UdpListener& operator=(const UdpListener&) = delete;
  // On a socket already bound (open_udp_socket or adopt_udp_socket).
  UdpListener(boost::asio::ip::udp::socket sock, QueryHandler& handler);
  // The socket, for a handover to dup(); -1 once closed.
  int native_fd() { return sock_.is_open() ? sock_.native_handle() : -1; }
  void start();
  // Stops reading but keeps the socket, so answers in flight still go out.
  void pause();
  void close();
  // Closes the socket (its address is free at once, a datagram to it is
  // refused) but keeps the descriptor's number taken, by /dev/null, until
  // destruction: a reply still owed to a client of this socket (UdpClient
  // holds the raw descriptor) fails then instead of reaching a socket that
  // reused the number. For a listen address a reload removes.
  void unbind();

 private:
  void wait();
  // Reads and answers what is queued; true when it received a datagram.
  bool drain();
  // A wakeup that failed with `ec` and received nothing.
  void failed(const boost::system::error_code& ec);
  void succeeded() {
    if (failures_ != 0) [[unlikely]]
      recovered();
  }
  void recovered();
  std::string where() const;  // the bound address, for the log

  boost::asio::ip::udp::socket sock_;
  QueryHandler& handler_;
  bool stopped_ = false;
  int held_ = -1;          // after unbind(): the descriptor number, on /dev/null
  std::uint8_t peek_ = 0;  // wait()'s one-byte peek
  // Failed wakeups in a row; those past the retries, for the log; the pause
  // before the next receive.
  unsigned failures_ = 0;
  FailureStreak streak_;
  std::chrono::milliseconds backoff_{0};
  boost::asio::steady_timer retry_;
  // Batch buffers, allocated once and not cleared: the kernel backs a page
  // only once a datagram or reply is written to it, so an idle listener holds
  // a few pages, not the whole batch.
  std::unique_ptr<std::uint8_t[]> in_;
  std::unique_ptr<std::uint8_t[]> out_;
  std::array<mmsghdr, kBatch> in_msgs_{};
  std::array<iovec, kBatch> in_iov_{};
  std::array<sockaddr_storage, kBatch> addrs_{};
  std::array<mmsghdr, kBatch> out_msgs_{};
  std::array<iovec, kBatch> out_iov_{};
};

}  // namespace localdns::server
