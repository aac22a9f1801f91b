// Passing listening sockets between two localdns (app/fd_passing.hpp), over a
// real socketpair: the descriptors arrive and work, and every malformed or
// oversized frame is refused with every received descriptor closed.
#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/fd_passing.hpp>

using namespace localdns::app;
using namespace std::chrono_literals;

namespace {

struct Pair {
  UniqueFd a, b;
  Pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
};

// A UDP socket bound to a free loopback port; its port.
UniqueFd udp_socket(std::uint16_t& port) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
  socklen_t len = sizeof sin;
  REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) == 0);
  port = ntohs(sin.sin_port);
  return fd;
}

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

// Open descriptors of this process.
int open_fds() {
  int n = 0;
  for (int fd = 0; fd < 4096; ++fd)
    n += is_open(fd) ? 1 : 0;
  return n;
}

// Sends raw bytes with `count` descriptors (of a pipe) attached.
void send_raw(int sock, const std::vector<std::uint8_t>& bytes, int count) {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  std::vector<int> fds(static_cast<std::size_t>(count), p[0]);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  iovec iov{const_cast<std::uint8_t*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (count > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    auto* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  REQUIRE(::sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  ::close(p[0]);
  ::close(p[1]);
}

std::vector<std::uint8_t> header(const char* magic, std::uint8_t version, std::uint16_t count,
                                 std::uint32_t length, std::uint8_t following = 0) {
  std::vector<std::uint8_t> h(magic, magic + 4);
  h.push_back(version);
  h.push_back(following);
  h.push_back(static_cast<std::uint8_t>(count >> 8));
  h.push_back(static_cast<std::uint8_t>(count));
  for (int i = 0; i < 4; ++i)
    h.push_back(static_cast<std::uint8_t>(length >> (24 - 8 * i)));
  return h;
}

}  // namespace

TEST_CASE("fd passing: the sockets and their descriptions arrive, and work", "[unit][handover]") {
  Pair p;
  std::uint16_t port1 = 0, port2 = 0;
  std::vector<PassedFd> out;
  out.push_back({FdKind::udp, 0, "127.0.0.1:" + std::to_string(1), udp_socket(port1)});
  out.push_back({FdKind::tcp, 7, "[::1]:53", udp_socket(port2)});
  out.push_back({FdKind::health, 0, "127.0.0.1:8080", udp_socket(port2)});
  REQUIRE(send_fds(p.a.get(), out, 1s).has_value());
  auto got = receive_fds(p.b.get(), 1s);
  REQUIRE(got.has_value());
  REQUIRE(got->size() == 3);
  CHECK((*got)[0].kind == FdKind::udp);
  CHECK((*got)[0].endpoint == "127.0.0.1:1");
  CHECK((*got)[1].kind == FdKind::tcp);
  CHECK((*got)[1].worker == 7);
  CHECK((*got)[1].endpoint == "[::1]:53");
  CHECK((*got)[2].kind == FdKind::health);
  // A new descriptor of the same socket: bound to the same port, close-on-exec.
  int fd = (*got)[0].fd.get();
  CHECK(fd != out[0].fd.get());
  CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  sockaddr_in sin{};
  socklen_t len = sizeof sin;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) == 0);
  CHECK(ntohs(sin.sin_port) == port1);
  // A datagram to the port is read through the received descriptor.
  UniqueFd client(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  REQUIRE(::sendto(client.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&sin), len) == 1);
  char c = 0;
  REQUIRE(::recv(fd, &c, 1, 0) == 1);
  CHECK(c == 'x');
}

TEST_CASE("fd passing: an empty set is a valid frame", "[unit][handover]") {
  Pair p;
  REQUIRE(send_fds(p.a.get(), {}, 1s).has_value());
  auto got = receive_fds(p.b.get(), 1s);
  REQUIRE(got.has_value());
  CHECK(got->empty());
}

TEST_CASE("fd passing: 600 descriptors go in three frames and all arrive", "[unit][handover]") {
  // 600 sent plus 600 received: above a default soft limit of 1024.
  rlimit lim{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
  rlimit raised = lim;
  raised.rlim_cur = std::min<rlim_t>(lim.rlim_max, 4096);
  REQUIRE(raised.rlim_cur >= 1400);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &raised) == 0);
  {
    Pair p;
    std::uint16_t port = 0;
    auto one = udp_socket(port);
    std::vector<PassedFd> many;
    for (std::size_t i = 0; i < 600; ++i) {
      many.push_back({i % 2 == 0 ? FdKind::udp : FdKind::tcp, static_cast<std::uint16_t>(i),
                      "127.0.0.1:" + std::to_string(i), UniqueFd(::dup(one.get()))});
      REQUIRE(many.back().fd);
    }
    int before = open_fds();
    REQUIRE(send_fds(p.a.get(), many, 2s).has_value());
    auto got = receive_fds(p.b.get(), 2s);
    REQUIRE(got.has_value());
    REQUIRE(got->size() == 600);
    bool all = true;
    for (std::size_t i = 0; i < 600; ++i) {
      const auto& f = (*got)[i];
      sockaddr_in sin{};
      socklen_t len = sizeof sin;
      all = all && f.worker == i && f.endpoint == "127.0.0.1:" + std::to_string(i) &&
            f.kind == (i % 2 == 0 ? FdKind::udp : FdKind::tcp) &&
            ::getsockname(f.fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) == 0 &&
            ntohs(sin.sin_port) == port;
    }
    CHECK(all);
    CHECK(open_fds() == before + 600);
    got->clear();
    CHECK(open_fds() == before);
  }
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &lim) == 0);
}

TEST_CASE("fd passing: more than 4000 descriptors, or 250 in a frame, are refused",
          "[unit][handover]") {
  Pair p;
  std::vector<PassedFd> many(kMaxPassedFds + 1);  // refused before any descriptor is looked at
  auto sent = send_fds(p.a.get(), many, 1s);
  REQUIRE_FALSE(sent.has_value());
  CHECK(sent.error().find("more than the 4000") != std::string::npos);
  // A frame that announces more is refused by the receiver, too.
  send_raw(p.a.get(), header("LDNH", 1, 251, 251 * 4), 1);
  int before = open_fds();
  auto got = receive_fds(p.b.get(), 1s);
  REQUIRE_FALSE(got.has_value());
  CHECK(got.error().find("more than 250") != std::string::npos);
  CHECK(open_fds() == before);
}

TEST_CASE("fd passing: a frame announcing too many followers, or a lost one, is refused",
          "[unit][handover]") {
  {
    Pair p;
    send_raw(p.a.get(), header("LDNH", 1, 0, 0, 16), 0);
    auto got = receive_fds(p.b.get(), 1s);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error().find("16 more frames, more than 15") != std::string::npos);
  }
  {
    // The first frame's descriptor is closed when the second does not come.
    Pair p;
    auto first = header("LDNH", 1, 1, 4 + 3, 1);
    for (std::uint8_t b : {std::uint8_t{1}, std::uint8_t{0}, std::uint8_t{0}, std::uint8_t{3}})
      first.push_back(b);
    for (char c : std::string("a:1"))
      first.push_back(static_cast<std::uint8_t>(c));
    int before = open_fds();
    send_raw(p.a.get(), first, 1);
    auto got = receive_fds(p.b.get(), 300ms);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error() == "timed out");
    CHECK(open_fds() == before);
  }
}

TEST_CASE("fd passing: a wrong magic or version is refused and the descriptors closed",
          "[unit][handover]") {
  Pair p;
  int before = open_fds();
  SECTION("magic") {
    send_raw(p.a.get(), header("HTTP", 1, 0, 0), 2);
    auto got = receive_fds(p.b.get(), 1s);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error().find("magic") != std::string::npos);
  }
  SECTION("version") {
    send_raw(p.a.get(), header("LDNH", 9, 0, 0), 2);
    auto got = receive_fds(p.b.get(), 1s);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error().find("version 9") != std::string::npos);
  }
  CHECK(open_fds() == before);
}

TEST_CASE("fd passing: a truncated frame times out or fails, closing what came",
          "[unit][handover]") {
  Pair p;
  int before = open_fds();
  SECTION("cut in the header, then the peer closes") {
    auto h = header("LDNH", 1, 1, 16);
    h.resize(6);
    send_raw(p.a.get(), h, 1);
    p.a.reset();
    --before;  // that one
    auto got = receive_fds(p.b.get(), 1s);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error().find("closed the connection after 6 of 12") != std::string::npos);
  }
  SECTION("descriptions promised, never sent") {
    send_raw(p.a.get(), header("LDNH", 1, 1, 16), 1);
    auto t0 = std::chrono::steady_clock::now();
    auto got = receive_fds(p.b.get(), 200ms);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error() == "timed out");
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  }
  SECTION("fewer descriptors than announced") {
    auto frame = header("LDNH", 1, 2, 2 * 5);
    for (int i = 0; i < 2; ++i) {
      std::vector<std::uint8_t> d{1, 0, 0, 1, 'x'};
      frame.insert(frame.end(), d.begin(), d.end());
    }
    send_raw(p.a.get(), frame, 1);
    auto got = receive_fds(p.b.get(), 1s);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error().find("announces 2 descriptors but 1 came") != std::string::npos);
  }
  SECTION("a description longer than the frame") {
    auto frame = header("LDNH", 1, 1, 5);
    std::vector<std::uint8_t> d{1, 0, 0, 40, 'x'};
    frame.insert(frame.end(), d.begin(), d.end());
    send_raw(p.a.get(), frame, 1);
    auto got = receive_fds(p.b.get(), 1s);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error().find("cut short") != std::string::npos);
  }
  CHECK(open_fds() == before);
}

TEST_CASE("fd passing: the pool hands each worker its share, and the rest close",
          "[unit][handover]") {
  std::uint16_t port = 0;
  auto one = udp_socket(port);
  std::vector<PassedFd> fds;
  for (std::uint16_t w = 0; w < 4; ++w)
    fds.push_back({FdKind::udp, w, "a", UniqueFd(::dup(one.get()))});
  fds.push_back({FdKind::tcp, 0, "gone", UniqueFd(::dup(one.get()))});
  int leftover = fds.back().fd.get();
  {
    FdPool pool(std::move(fds));
    // Three new workers for four passed sockets: none is left unread.
    CHECK(pool.take(FdKind::udp, "a", 0, 3).size() == 2);
    CHECK(pool.take(FdKind::udp, "a", 1, 3).size() == 1);
    CHECK(pool.take(FdKind::udp, "a", 2, 3).size() == 1);
    CHECK(pool.take(FdKind::udp, "a", 0, 3).empty());  // taken already
    CHECK(pool.take(FdKind::tcp, "a", 0, 3).empty());
    CHECK(pool.taken() == 4);
    REQUIRE(pool.left() == std::vector<std::string>{"tcp gone"});
    CHECK(is_open(leftover));
  }
  CHECK_FALSE(is_open(leftover));
}
