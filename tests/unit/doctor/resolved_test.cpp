// systemd-resolved next to localdns: the stub listener found in /proc/net/udp
// text, and what check 4 says for each arrangement of resolv.conf files.
#include <arpa/inet.h>
#include <fstream>
#include <netinet/in.h>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/doctor/resolved.hpp>

using namespace localdns::doctor;

namespace {

// /proc/net/udp of a host running systemd-resolved (stub 127.0.0.53, proxy
// stub 127.0.0.54, LLMNR on 5355) and chronyd, little-endian as on x86.
constexpr const char* kProcNetUdp =
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode ref pointer drops            \n"
    "  335: 00000000:14EB 00000000:0000 07 00000000:00000000 00:00000000 00000000   991        0 "
    "20296 2 0000000000000000 0         \n"
    " 1107: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   991        0 "
    "20301 2 0000000000000000 0         \n"
    " 1116: 3600007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   991        0 "
    "20303 2 0000000000000000 0         \n"
    " 2860: 0100007F:0143 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 "
    "19012 2 0000000000000000 0         \n";

const std::string kStubResolv =
    "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n"
    "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.net\n";

bool has_line(const Check& c, const std::string& part) {
  for (const auto& l : c.evidence)
    if (l.find(part) != std::string::npos) return true;
  return false;
}
bool has_remedy(const Check& c, const std::string& part) {
  for (const auto& l : c.remedies)
    if (l.find(part) != std::string::npos) return true;
  return false;
}
bool fact(const Check& c, const std::string& key) {
  return std::get<bool>(c.facts.at(key));
}

}  // namespace

TEST_CASE("udp_bound reads the kernel's /proc/net/udp addresses", "[doctor][resolved]") {
  if (htonl(1) != 1) {  // the table above is little-endian
    CHECK(udp_bound(kProcNetUdp, "127.0.0.53", 53));
    CHECK(udp_bound(kProcNetUdp, "127.0.0.54", 53));
    CHECK(udp_bound(kProcNetUdp, "0.0.0.0", 5355));
    CHECK(udp_bound(kProcNetUdp, "127.0.0.1", 323));
  }
  CHECK_FALSE(udp_bound(kProcNetUdp, "127.0.0.53", 5353));
  CHECK_FALSE(udp_bound(kProcNetUdp, "169.254.20.10", 53));
  CHECK_FALSE(udp_bound("", "127.0.0.53", 53));
  CHECK_FALSE(udp_bound("garbage\n 1: zz:0035 x\n", "127.0.0.53", 53));
  CHECK_FALSE(udp_bound(kProcNetUdp, "not an address", 53));
}

TEST_CASE("udp_bound finds a socket this test binds, in the real /proc/net/udp",
          "[doctor][resolved]") {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(0x7f000035);  // 127.0.0.53
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // 127.0.0.53 taken: resolved runs here
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  char ip[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  std::ifstream f("/proc/net/udp");
  std::stringstream s;
  s << f.rdbuf();
  CHECK(udp_bound(s.str(), ip, ntohs(a.sin_port)));
  ::close(fd);
  std::ifstream g("/proc/net/udp");
  std::stringstream t;
  t << g.rdbuf();
  CHECK_FALSE(udp_bound(t.str(), ip, ntohs(a.sin_port)));
}

TEST_CASE("doctor: the stub answers the host's lookups instead of localdns", "[doctor][resolved]") {
  ResolvedView v{true, kStubResolv, "../run/systemd/resolve/stub-resolv.conf",
                 "nameserver 192.0.2.1\nnameserver 192.0.2.2\n"};
  Check c;
  add_resolved(c, v, {"169.254.20.10"}, {"192.0.2.1:53"});
  CHECK(c.status == Status::warn);
  CHECK(fact(c, "resolved_stub"));
  CHECK(fact(c, "resolved_stub_used"));
  CHECK_FALSE(fact(c, "resolved_to_localdns"));
  CHECK(has_line(c, "systemd-resolved's stub listener is on 127.0.0.53:53 (/proc/net/udp)"));
  CHECK(has_line(c, "systemd-resolved forwards to 192.0.2.1, 192.0.2.2"));
  CHECK(has_line(c,
                 "(a link to ../run/systemd/resolve/stub-resolv.conf) names 127.0.0.53: host "
                 "lookups go through systemd-resolved to 192.0.2.1, 192.0.2.2, not through "
                 "localdns"));
  CHECK(has_remedy(c, "DNSStubListener=no"));
  CHECK(has_remedy(c, "`nameserver 169.254.20.10`"));
  CHECK(has_remedy(c, "DNS=169.254.20.10 and Domains=~."));
}

TEST_CASE("doctor: resolved forwarding to localdns is fine, a loop back is not",
          "[doctor][resolved]") {
  ResolvedView v{true, kStubResolv, "", "nameserver 169.254.20.10\n"};
  Check ok;
  add_resolved(ok, v, {"169.254.20.10"}, {"192.0.2.1:53"});
  CHECK(ok.status == Status::ok);
  CHECK(fact(ok, "resolved_to_localdns"));
  CHECK(has_line(ok, "/etc/resolv.conf -> systemd-resolved's stub -> localdns (169.254.20.10)"));
  Check loop;
  add_resolved(loop, v, {"169.254.20.10"}, {"127.0.0.53:53"});
  CHECK(loop.status == Status::fail);
  CHECK(has_line(loop, "a loop: systemd-resolved forwards to localdns (169.254.20.10)"));
  CHECK(has_remedy(loop, "/etc/localdns/upstream.conf"));
}

TEST_CASE("doctor: the stub off, or unused, or dead", "[doctor][resolved]") {
  // DNSStubListener=no and /etc/resolv.conf at localdns: nothing to say.
  Check off;
  add_resolved(off, {false, "nameserver 169.254.20.10\n", "", "nameserver 192.0.2.1\n"},
               {"169.254.20.10"}, {"192.0.2.1:53"});
  CHECK(off.status == Status::ok);
  CHECK(off.evidence.empty());
  CHECK_FALSE(fact(off, "resolved_stub"));
  // The stub still listens but the host uses localdns: ok, with a note.
  Check unused;
  add_resolved(unused, {true, "nameserver 169.254.20.10\n", "", "nameserver 192.0.2.1\n"},
               {"169.254.20.10"}, {"192.0.2.1:53"});
  CHECK(unused.status == Status::ok);
  CHECK(has_line(unused, "bypass localdns; DNSStubListener=no"));
  // resolv.conf names the stub, which does not listen.
  Check dead;
  add_resolved(dead, {false, kStubResolv, "", std::nullopt}, {"169.254.20.10"}, {});
  CHECK(dead.status == Status::warn);
  CHECK(has_line(dead, "names 127.0.0.53, but nothing listens there"));
  // No localdns on this host: the stub is reported, nothing is wrong.
  Check none;
  add_resolved(none, {true, kStubResolv, "", "nameserver 192.0.2.1\n"}, {}, {});
  CHECK(none.status == Status::ok);
  CHECK(has_line(none, "stub listener is on 127.0.0.53:53"));
  CHECK(none.remedies.empty());
}
