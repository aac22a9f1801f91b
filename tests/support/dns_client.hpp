// Test-side DNS client: builds queries and reads answers with ldns (an
// independent implementation, so tests do not grade localdns with its own
// parser), and talks over real UDP and TCP sockets with timeouts.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "packets.hpp"

namespace localdns::test {

using namespace std::chrono_literals;

struct QueryOptions {
  std::uint16_t id = 0x1234;
  bool rd = true;
  bool edns = false;
  std::uint16_t udp_size = 1232;
  bool do_bit = false;
};

Packet make_query(const std::string& name, const std::string& type, QueryOptions o = {});

// A decoded reply, read with ldns.
struct Reply {
  bool ok = false;  // ldns could parse it
  std::uint16_t id = 0;
  std::string rcode;  // "NOERROR", "NXDOMAIN", ...
  bool tc = false;
  bool aa = false;
  bool rd = false;
  bool has_opt = false;
  std::uint16_t edns_udp_size = 0;
  std::string qname;                 // as in the reply, letter case kept
  std::vector<std::string> answers;  // rdata text of each answer record
  std::vector<std::uint32_t> answer_ttls;
  std::size_t authority = 0;
  std::size_t size = 0;
};
Reply decode(const Packet& p);

struct Endpoint {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;
};

// `source`: the client's own address (a port of the kernel's choice), e.g.
// 127.0.0.2 for a second client on loopback; empty: the kernel's choice.
std::optional<Packet> udp_query(const Endpoint& ep, const Packet& q,
                                std::chrono::milliseconds timeout = 3000ms,
                                const std::string& source = {});
std::optional<Packet> tcp_query(const Endpoint& ep, const Packet& q,
                                std::chrono::milliseconds timeout = 3000ms,
                                const std::string& source = {});

// A blocking TCP connection for pipelining tests.
class TcpStream {
 public:
  explicit TcpStream(const Endpoint& ep, const std::string& source = {});
  ~TcpStream();
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;
  bool connected() const { return fd_ >= 0; }
  bool send_raw(const std::uint8_t* data, std::size_t len);
  bool send_framed(const Packet& q);
  std::optional<Packet> read_framed(std::chrono::milliseconds timeout = 3000ms);
  // True when the peer closed the connection within `timeout`.
  bool wait_closed(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
};

// A port free for both UDP and TCP on 127.0.0.1 right now.
std::uint16_t free_port();

}  // namespace localdns::test
