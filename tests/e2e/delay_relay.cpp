// A DNS upstream with a fixed round-trip time, for the end-to-end tests where
// the kernel has no netem qdisc: receives UDP queries on LISTEN, holds each for
// DELAY_MS, sends it on to SERVER (Knot DNS) under an ID of its own and relays
// the answer back to the asker with the asker's ID. FIFO order: every query is
// held equally long. Bounded: at most kMaxHeld queries held and kMaxOpen
// awaiting SERVER's answer (the oldest is forgotten when the IDs wrap).
// Prints "ready" once both sockets are bound, then a line per query as it
// arrives, "q MS NAME TYPE", as it is sent on, "f MS NAME TYPE", and per
// answer as it is relayed, "a MS NAME TYPE RCODE" (MS: milliseconds since start, NAME in lower
// case, TYPE and RCODE as numbers); runs until SIGTERM.
//   delay_relay LISTEN_IP:PORT SERVER_IP:PORT DELAY_MS
#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMaxHeld = 4096;
constexpr std::size_t kMaxOpen = 65536;  // one slot per relay ID
constexpr std::size_t kMaxPacket = 65535;

struct Held {
  Clock::time_point due;
  sockaddr_in from{};
  std::vector<std::uint8_t> packet;
};

struct Open {
  bool used = false;
  std::uint16_t client_id = 0;
  sockaddr_in from{};
};

std::optional<sockaddr_in> parse_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  const long port = std::strtol(text.c_str() + colon + 1, nullptr, 10);
  if (port <= 0 || port > 65535) return std::nullopt;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &sa.sin_addr) != 1) return std::nullopt;
  return sa;
}

std::uint16_t get_id(const std::vector<std::uint8_t>& p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
void set_id(std::vector<std::uint8_t>& p, std::uint16_t id) {
  p[0] = static_cast<std::uint8_t>(id >> 8);
  p[1] = static_cast<std::uint8_t>(id & 0xff);
}

// The question's name (lower case, dot-terminated) and type; "?" when the
// question is not a plain uncompressed name.
std::pair<std::string, unsigned> question(const std::vector<std::uint8_t>& p) {
  std::string name;
  std::size_t at = 12;
  while (at < p.size() && p[at] != 0) {
    const std::size_t len = p[at];
    if (len > 63 || at + 1 + len >= p.size()) return {"?", 0};
    for (std::size_t i = 0; i < len; ++i) {
      name += static_cast<char>(std::tolower(p[at + 1 + i]));
    }
    name += '.';
    at += 1 + len;
  }
  if (at + 2 >= p.size()) return {"?", 0};
  if (name.empty()) name = ".";
  return {name, static_cast<unsigned>((p[at + 1] << 8) | p[at + 2])};
}

void trace(char what, Clock::time_point start, const std::vector<std::uint8_t>& p) {
  const auto ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  auto [name, type] = question(p);
  if (what != 'a') {
    std::printf("%c %.3f %s %u\n", what, ms, name.c_str(), type);
  } else {
    std::printf("a %.3f %s %u %u\n", ms, name.c_str(), type, p[3] & 0x0fu);
  }
}

int udp_socket() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::perror("socket");
    std::exit(1);
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: delay_relay LISTEN_IP:PORT SERVER_IP:PORT DELAY_MS\n");
    return 2;
  }
  auto listen = parse_endpoint(argv[1]);
  auto server = parse_endpoint(argv[2]);
  const long delay_ms = std::strtol(argv[3], nullptr, 10);
  if (!listen || !server || delay_ms < 0 || delay_ms > 60'000) {
    std::fprintf(stderr, "delay_relay: bad endpoint or delay (0 to 60000 ms)\n");
    return 2;
  }
  const auto delay = std::chrono::milliseconds(delay_ms);
  int front = udp_socket();
  int back = udp_socket();
  if (::bind(front, reinterpret_cast<const sockaddr*>(&*listen), sizeof *listen) != 0) {
    std::perror("bind");
    return 1;
  }
  if (::connect(back, reinterpret_cast<const sockaddr*>(&*server), sizeof *server) != 0) {
    std::perror("connect");
    return 1;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("ready\n");
  const auto start = Clock::now();

  std::deque<Held> held;
  std::vector<Open> open(kMaxOpen);
  std::uint16_t next_id = 0;
  std::vector<std::uint8_t> buf(kMaxPacket);
  for (;;) {
    int timeout = -1;
    if (!held.empty()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(held.front().due - Clock::now());
      timeout = static_cast<int>(std::max<long>(0, left.count()));
    }
    std::array<pollfd, 2> fds{{{front, POLLIN, 0}, {back, POLLIN, 0}}};
    if (::poll(fds.data(), fds.size(), timeout) < 0) continue;
    if (fds[0].revents & POLLIN) {
      sockaddr_in from{};
      socklen_t len = sizeof from;
      ssize_t n =
          ::recvfrom(front, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n >= 12 && held.size() < kMaxHeld) {
        held.push_back({Clock::now() + delay, from, {buf.begin(), buf.begin() + n}});
        trace('q', start, held.back().packet);
      }
    }
    if (fds[1].revents & POLLIN) {
      ssize_t n = ::recv(back, buf.data(), buf.size(), 0);
      if (n >= 12) {
        std::vector<std::uint8_t> answer(buf.begin(), buf.begin() + n);
        Open& slot = open[get_id(answer)];
        if (slot.used) {
          slot.used = false;
          set_id(answer, slot.client_id);
          ::sendto(front, answer.data(), answer.size(), 0,
                   reinterpret_cast<const sockaddr*>(&slot.from), sizeof slot.from);
          trace('a', start, answer);
        }
      }
    }
    const auto now = Clock::now();
    while (!held.empty() && held.front().due <= now) {
      Held& h = held.front();
      const std::uint16_t id = next_id++;
      open[id] = {true, get_id(h.packet), h.from};
      set_id(h.packet, id);
      ::send(back, h.packet.data(), h.packet.size(), 0);
      trace('f', start, h.packet);
      held.pop_front();
    }
  }
}
