// The echo ceiling (echo_server.cpp) driven by io_uring instead of
// poll + recvmmsg/sendmmsg, to see whether io_uring raises the kernel's limit
// for a UDP DNS server on this machine. Same reply: every datagram is answered
// with its own bytes (at most 512), QR set. bench/echo/compare.sh measures the
// two side by side.
//   uring_echo PORT [--no-defer]
//
// Choices:
// - One multishot recvmsg (io_uring_prep_recvmsg_multishot): armed once, it
//   posts one completion per datagram until it runs out of buffers or the
//   completion queue overflows; then it is armed again.
// - Receive buffers come from a provided buffer ring (kernel picks one per
//   datagram). liburing 2.3 has no io_uring_setup_buf_ring (2.4 added it), so
//   the ring memory is mmap'ed here and registered with
//   io_uring_register_buf_ring. Each buffer holds the io_uring_recvmsg_out
//   header, the peer address and the payload; the reply is sent straight from
//   it (no copy) and the buffer goes back to the ring when the send completes.
// - Replies are sendmsg SQEs; all replies for the completions of one pass are
//   queued and submitted together with the wait for the next completions, so
//   a pass is one io_uring_enter (io_uring_submit_and_wait).
// - IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (kernel 6.1+; liburing 2.3 has
//   the flags): completions are run only when this thread enters the kernel
//   to wait, not by interrupting it. Falls back to COOP_TASKRUN, then to no
//   flags, if the kernel refuses. --no-defer starts at COOP_TASKRUN.
#include <arpa/inet.h>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <liburing.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

constexpr unsigned kBuffers = 1024;  // provided buffers (power of two)
constexpr unsigned kBufSize = 1024;  // recvmsg_out + peer address + payload
constexpr unsigned kPayload = 512;   // as echo_server: longer datagrams are cut
constexpr int kGroup = 0;            // buffer group id
constexpr std::uint64_t kRecvTag = ~0ull;

io_uring ring;
io_uring_buf_ring* bufring;
unsigned char* bufs;        // kBuffers * kBufSize
msghdr recv_hdr;            // template for the multishot receive: name length only
msghdr send_hdr[kBuffers];  // one per buffer: a reply in flight owns it
iovec send_iov[kBuffers];

unsigned char* buffer(unsigned bid) {
  return bufs + static_cast<std::size_t>(bid) * kBufSize;
}

void give_back(unsigned bid) {
  io_uring_buf_ring_add(bufring, buffer(bid), kBufSize, static_cast<unsigned short>(bid),
                        io_uring_buf_ring_mask(kBuffers), 0);
  io_uring_buf_ring_advance(bufring, 1);
}

io_uring_sqe* sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring);
  if (s == nullptr) {  // SQ full (only with more completions than SQ entries)
    io_uring_submit(&ring);
    s = io_uring_get_sqe(&ring);
  }
  return s;
}

void arm_recv(int fd) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recvmsg_multishot(s, fd, &recv_hdr, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = kGroup;
  io_uring_sqe_set_data64(s, kRecvTag);
}

bool setup_ring(bool defer) {
  unsigned const tries[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN, 0};
  for (unsigned i = defer ? 0 : 1; i < 3; ++i) {
    io_uring_params p{};
    // CQ larger than SQ: a burst of datagrams must not overflow it (an
    // overflow ends the multishot receive).
    p.flags = tries[i] | IORING_SETUP_CQSIZE;
    p.cq_entries = 4 * kBuffers;
    if (io_uring_queue_init_params(kBuffers, &ring, &p) == 0) {
      std::fprintf(stderr, "uring_echo: setup flags 0x%x\n", p.flags);
      return true;
    }
  }
  return false;
}

bool setup_buffers() {
  std::size_t ring_bytes = kBuffers * sizeof(io_uring_buf);
  void* mem = ::mmap(nullptr, ring_bytes + kBuffers * kBufSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return false;
  bufring = static_cast<io_uring_buf_ring*>(mem);  // page aligned, as the kernel needs
  bufs = static_cast<unsigned char*>(mem) + ring_bytes;
  io_uring_buf_ring_init(bufring);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(bufring);
  reg.ring_entries = kBuffers;
  reg.bgid = kGroup;
  if (int e = io_uring_register_buf_ring(&ring, &reg, 0); e != 0) {
    std::fprintf(stderr, "register_buf_ring: %s\n", std::strerror(-e));
    return false;
  }
  for (unsigned b = 0; b < kBuffers; ++b)
    give_back(b);
  return true;
}

// A received datagram in buffer bid: queue its reply, or return the buffer.
void on_datagram(int fd, unsigned bid, int len) {
  unsigned char* buf = buffer(bid);
  auto* out = io_uring_recvmsg_validate(buf, len, &recv_hdr);
  if (out == nullptr || out->namelen > sizeof(sockaddr_in)) {
    give_back(bid);
    return;
  }
  auto* payload = static_cast<unsigned char*>(io_uring_recvmsg_payload(out, &recv_hdr));
  unsigned n = io_uring_recvmsg_payload_length(out, len, &recv_hdr);
  if (n > kPayload) n = kPayload;
  if (n > 2) payload[2] |= 0x80;  // QR
  send_iov[bid] = {payload, n};
  msghdr& h = send_hdr[bid];
  h = {};
  h.msg_name = io_uring_recvmsg_name(out);
  h.msg_namelen = out->namelen;
  h.msg_iov = &send_iov[bid];
  h.msg_iovlen = 1;
  io_uring_sqe* s = sqe();
  io_uring_prep_sendmsg(s, fd, &h, 0);
  io_uring_sqe_set_data64(s, bid);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || (argc == 3 && std::strcmp(argv[2], "--no-defer") != 0)) {
    std::fprintf(stderr, "usage: uring_echo PORT [--no-defer]\n");
    return 2;
  }
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  int size = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("bind");
    return 1;
  }
  if (!setup_ring(argc == 2)) {
    std::fprintf(stderr, "io_uring_queue_init_params failed\n");
    return 1;
  }
  if (!setup_buffers()) return 1;
  // The buffer must have room for the header and address besides the payload.
  static_assert(sizeof(io_uring_recvmsg_out) + sizeof(sockaddr_in) + kPayload <= kBufSize);
  recv_hdr.msg_namelen = sizeof(sockaddr_in);
  arm_recv(fd);
  for (;;) {
    int e = io_uring_submit_and_wait(&ring, 1);
    if (e < 0 && e != -EINTR) {
      std::fprintf(stderr, "submit_and_wait: %s\n", std::strerror(-e));
      return 1;
    }
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    bool rearm = false;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      if (cqe->user_data != kRecvTag) {  // a reply went out: its buffer is free
        give_back(static_cast<unsigned>(cqe->user_data));
        continue;
      }
      if (!(cqe->flags & IORING_CQE_F_MORE)) rearm = true;  // e.g. -ENOBUFS
      if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
        on_datagram(fd, cqe->flags >> IORING_CQE_BUFFER_SHIFT, cqe->res);
      }
    }
    io_uring_cq_advance(&ring, seen);
    if (rearm) arm_recv(fd);
  }
}
