#include "dns_client.hpp"

#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <random>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

#include <ldns/ldns.h>

namespace localdns::test {

Packet make_query(const std::string& name, const std::string& type, QueryOptions o) {
  ldns_rdf* owner = ldns_dname_new_frm_str(name.c_str());
  if (!owner) throw std::runtime_error("bad name " + name);
  ldns_pkt* pkt = ldns_pkt_query_new(owner, ldns_get_rr_type_by_name(type.c_str()),
                                     LDNS_RR_CLASS_IN, o.rd ? LDNS_RD : 0);
  ldns_pkt_set_id(pkt, o.id);
  if (o.edns) {
    ldns_pkt_set_edns_udp_size(pkt, o.udp_size);
    ldns_pkt_set_edns_do(pkt, o.do_bit);
  }
  std::uint8_t* wire = nullptr;
  std::size_t len = 0;
  if (ldns_pkt2wire(&wire, pkt, &len) != LDNS_STATUS_OK) throw std::runtime_error("pkt2wire");
  Packet out(wire, wire + len);
  free(wire);
  ldns_pkt_free(pkt);
  // ldns lowercases nothing, but make sure the name keeps the caller's case.
  return out;
}

Reply decode(const Packet& p) {
  Reply r;
  r.size = p.size();
  ldns_pkt* pkt = nullptr;
  if (ldns_wire2pkt(&pkt, p.data(), p.size()) != LDNS_STATUS_OK) return r;
  r.ok = true;
  r.id = ldns_pkt_id(pkt);
  const ldns_lookup_table* lt = ldns_lookup_by_id(ldns_rcodes, ldns_pkt_get_rcode(pkt));
  r.rcode = lt ? lt->name : std::to_string(ldns_pkt_get_rcode(pkt));
  r.tc = ldns_pkt_tc(pkt);
  r.aa = ldns_pkt_aa(pkt);
  r.rd = ldns_pkt_rd(pkt);
  r.has_opt = ldns_pkt_edns(pkt);
  r.edns_udp_size = ldns_pkt_edns_udp_size(pkt);
  ldns_rr_list* q = ldns_pkt_question(pkt);
  if (q && ldns_rr_list_rr_count(q) > 0) {
    char* s = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(q, 0)));
    r.qname = s;
    free(s);
  }
  ldns_rr_list* an = ldns_pkt_answer(pkt);
  for (std::size_t i = 0; an && i < ldns_rr_list_rr_count(an); ++i) {
    ldns_rr* rr = ldns_rr_list_rr(an, i);
    std::string text;
    for (std::size_t k = 0; k < ldns_rr_rd_count(rr); ++k) {
      char* s = ldns_rdf2str(ldns_rr_rdf(rr, k));
      text += (k ? " " : "") + std::string(s);
      free(s);
    }
    r.answers.push_back(text);
    r.answer_ttls.push_back(ldns_rr_ttl(rr));
  }
  r.authority = ldns_rr_list_rr_count(ldns_pkt_authority(pkt));
  ldns_pkt_free(pkt);
  return r;
}

namespace {

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const { return ss.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&ss); }
};

SockAddr make_addr(const Endpoint& ep) {
  SockAddr a;
  if (ep.address.find(':') != std::string::npos) {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&a.ss);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(ep.port);
    inet_pton(AF_INET6, ep.address.c_str(), &sa->sin6_addr);
    a.len = sizeof(sockaddr_in6);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in*>(&a.ss);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(ep.port);
    inet_pton(AF_INET, ep.address.c_str(), &sa->sin_addr);
    a.len = sizeof(sockaddr_in);
  }
  return a;
}

// Binds `fd` to `source` (any port) when it is set; false when that fails.
bool bind_source(int fd, const std::string& source) {
  if (source.empty()) return true;
  auto sa = make_addr(Endpoint{source, 0});
  return ::bind(fd, sa.get(), sa.len) == 0;
}

bool wait_fd(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd pfd{fd, events, 0};
  return ::poll(&pfd, 1, static_cast<int>(timeout.count())) == 1;
}

}  // namespace

std::optional<Packet> udp_query(const Endpoint& ep, const Packet& q,
                                std::chrono::milliseconds timeout, const std::string& source) {
  auto sa = make_addr(ep);
  int fd = ::socket(sa.family(), SOCK_DGRAM, 0);
  std::optional<Packet> out;
  if (bind_source(fd, source) && ::connect(fd, sa.get(), sa.len) == 0 &&
      ::send(fd, q.data(), q.size(), 0) == static_cast<ssize_t>(q.size())) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !wait_fd(fd, POLLIN, left)) break;
      Packet buf(65535);
      ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n < 0) break;
      buf.resize(static_cast<std::size_t>(n));
      // Skip stray datagrams that do not carry our ID.
      if (buf.size() >= 2 && q.size() >= 2 && buf[0] == q[0] && buf[1] == q[1]) {
        out = std::move(buf);
        break;
      }
    }
  }
  ::close(fd);
  return out;
}

TcpStream::TcpStream(const Endpoint& ep, const std::string& source) {
  auto sa = make_addr(ep);
  fd_ = ::socket(sa.family(), SOCK_STREAM, 0);
  if (!bind_source(fd_, source) || ::connect(fd_, sa.get(), sa.len) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

TcpStream::~TcpStream() {
  if (fd_ >= 0) ::close(fd_);
}

bool TcpStream::send_raw(const std::uint8_t* data, std::size_t len) {
  while (len > 0) {
    ssize_t n = ::send(fd_, data, len, MSG_NOSIGNAL);
    if (n <= 0) return false;
    data += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

bool TcpStream::send_framed(const Packet& q) {
  Packet f = framed(q);
  return send_raw(f.data(), f.size());
}

std::optional<Packet> TcpStream::read_framed(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto read_exact = [&](std::uint8_t* dst, std::size_t len) {
    while (len > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !wait_fd(fd_, POLLIN, left)) return false;
      ssize_t n = ::recv(fd_, dst, len, 0);
      if (n <= 0) return false;
      dst += n;
      len -= static_cast<std::size_t>(n);
    }
    return true;
  };
  std::uint8_t hdr[2];
  if (!read_exact(hdr, 2)) return std::nullopt;
  Packet p((std::size_t{hdr[0]} << 8) | hdr[1]);
  if (!read_exact(p.data(), p.size())) return std::nullopt;
  return p;
}

bool TcpStream::wait_closed(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !wait_fd(fd_, POLLIN, left)) return false;
    std::uint8_t buf[512];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return true;
  }
}

std::optional<Packet> tcp_query(const Endpoint& ep, const Packet& q,
                                std::chrono::milliseconds timeout, const std::string& source) {
  TcpStream s(ep, source);
  if (!s.connected() || !s.send_framed(q)) return std::nullopt;
  return s.read_framed(timeout);
}

std::uint16_t free_port() {
  // Below the ephemeral range (32768+), so that client sockets of tests running
  // in parallel cannot take the port between this check and the server's bind.
  static thread_local std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < 1000; ++i) {
    auto port = static_cast<std::uint16_t>(20000 + rng() % 12000);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    int u = ::socket(AF_INET, SOCK_DGRAM, 0);
    int t = ::socket(AF_INET, SOCK_STREAM, 0);
    bool ok = ::bind(u, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
              ::bind(t, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    ::close(t);
    ::close(u);
    if (ok) return port;
  }
  throw std::runtime_error("no free port");
}

}  // namespace localdns::test
