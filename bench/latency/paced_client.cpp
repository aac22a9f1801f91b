// A paced UDP load client for latency: sends queries on a fixed schedule (query
// i is due at start + i / rate, absolute CLOCK_MONOTONIC deadlines, so a late
// send does not shift the ones after it), round robin over many connected
// sockets, and matches each reply to its query by (socket, ID). Reports sent,
// received, lost (no reply within the timeout), the latency percentiles and how
// late the client itself sent against its schedule.
//
// One thread, sleeping until the next send is due (clock_nanosleep on an
// absolute deadline, timer slack 1 ns). Replies are timed by the kernel's
// arrival stamp (SO_TIMESTAMPNS, CLOCK_REALTIME, turned into CLOCK_MONOTONIC
// with the offset between the two clocks read at each pass), so the client
// need not wake for each reply and its own scheduling delay does not count as
// the server's latency; they are read with recvmmsg at the next pass. With -u
// it instead wakes on every reply (epoll_pwait2) and stamps it in user space
// after recvmmsg returns. Send times are read just before send(); how late
// each send was against its deadline is reported separately. Timestamps and
// latencies go into arrays sized for the whole run before it starts: nothing
// is printed or allocated per query.
//
//   paced_client -s ADDR -p PORT -d FILE -Q RATE -l SECONDS
//                [-c SOCKETS (64)] [-t TIMEOUT_S (1)] [-u]
//                [-g TICK_US (0): send on ticks of this length, all that are due]
//                [-b SPIN_US (0): poll instead of sleeping for waits this short]
//
// FILE is in dnsperf's format: one "name TYPE" per line (TYPE is a mnemonic
// such as A or AAAA, or TYPEn); the file is cycled. Queries have RD set and
// no EDNS, as dnsperf sends them by default. The last line of the output,
// "RESULT key=value ...", is for scripts (times in ms). Build: g++ -O2
// (bench/run.sh does; it needs no project build).
#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <netinet/in.h>
#include <string>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

std::int64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t real_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "paced_client: %s\n", what);
  std::exit(2);
}

int qtype_of(const std::string& t) {
  static const struct {
    const char* name;
    int code;
  } kTypes[] = {{"A", 1},   {"NS", 2},      {"CNAME", 5}, {"SOA", 6},    {"PTR", 12},
                {"MX", 15}, {"TXT", 16},    {"AAAA", 28}, {"SRV", 33},   {"NAPTR", 35},
                {"DS", 43}, {"DNSKEY", 48}, {"SVCB", 64}, {"HTTPS", 65}, {"ANY", 255}};
  for (const auto& k : kTypes)
    if (strcasecmp(t.c_str(), k.name) == 0) return k.code;
  if (t.size() > 4 && strncasecmp(t.c_str(), "TYPE", 4) == 0) {
    int v = std::atoi(t.c_str() + 4);
    if (v > 0 && v < 65536) return v;
  }
  return -1;
}

// A query with ID 0 and RD set; the ID is written per send.
bool make_query(const std::string& name, int qtype, std::vector<std::uint8_t>& out) {
  out.assign({0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0});
  std::size_t start = 0;
  while (start < name.size()) {
    auto dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    auto len = dot - start;
    if (len == 0 || len > 63) return false;
    out.push_back(static_cast<std::uint8_t>(len));
    out.insert(out.end(), name.begin() + static_cast<long>(start),
               name.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  out.push_back(0);
  if (out.size() - 12 > 255) return false;
  out.push_back(static_cast<std::uint8_t>(qtype >> 8));
  out.push_back(static_cast<std::uint8_t>(qtype));
  out.push_back(0);
  out.push_back(1);  // IN
  return true;
}

// Value at quantile q (0..1) of sorted v: the smallest value with at least
// q of the samples at or below it.
double at(const std::vector<std::int64_t>& v, double q) {
  if (v.empty()) return 0;
  auto i = static_cast<std::size_t>(q * static_cast<double>(v.size()));
  if (i >= v.size()) i = v.size() - 1;
  return static_cast<double>(v[i]) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const char* addr_s = "127.0.0.1";
  int port = 53, nsock = 64;
  bool user_stamps = false;
  double rate = 0, seconds = 0, timeout_s = 1.0, spin_us = 0, gran_us = 0;
  const char* file = nullptr;
  for (int c; (c = ::getopt(argc, argv, "s:p:d:Q:l:c:t:b:g:u")) != -1;) {
    switch (c) {
      case 's':
        addr_s = optarg;
        break;
      case 'p':
        port = std::atoi(optarg);
        break;
      case 'd':
        file = optarg;
        break;
      case 'Q':
        rate = std::atof(optarg);
        break;
      case 'l':
        seconds = std::atof(optarg);
        break;
      case 'c':
        nsock = std::atoi(optarg);
        break;
      case 't':
        timeout_s = std::atof(optarg);
        break;
      case 'b':
        spin_us = std::atof(optarg);
        break;
      case 'g':
        gran_us = std::atof(optarg);
        break;
      case 'u':
        user_stamps = true;
        break;
      default:
        std::fprintf(
            stderr,
            "usage: paced_client -s ADDR -p PORT -d FILE -Q RATE -l SECONDS "
            "[-c SOCKETS (64)] [-t TIMEOUT_S (1)] [-b SPIN_US (0)] [-g TICK_US (0)] [-u]\n");
        return 2;
    }
  }
  if (!file || rate <= 0 || seconds <= 0) die("-d FILE, -Q RATE and -l SECONDS are required");
  if (nsock < 1 || nsock > 1024) die("-c SOCKETS must be 1-1024");
  if (port < 1 || port > 65535) die("-p PORT must be 1-65535");
  if (timeout_s <= 0 || timeout_s > 60) die("-t TIMEOUT must be in (0, 60] seconds");
  if (spin_us < 0 || spin_us > 1e6) die("-b SPIN_US must be 0-1000000");
  if (gran_us < 0 || gran_us > 1e6) die("-g TICK_US must be 0-1000000");
  if (rate * seconds > 200e6) die("RATE x SECONDS over 200 million queries");

  std::vector<std::vector<std::uint8_t>> queries;
  {
    std::ifstream in(file);
    if (!in) die("cannot read the query file");
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      if (line.empty() || line[0] == '#') continue;
      auto sp = line.find_first_of(" \t");
      std::string name = line.substr(0, sp), type = "A";
      if (sp != std::string::npos) {
        auto t = line.find_first_not_of(" \t", sp);
        if (t != std::string::npos) type = line.substr(t, line.find_first_of(" \t", t) - t);
      }
      if (!name.empty() && name.back() == '.') name.pop_back();
      int qt = qtype_of(type);
      std::vector<std::uint8_t> q;
      if (qt < 0 || !make_query(name, qt, q)) {
        std::fprintf(stderr, "paced_client: %s:%d: not \"name TYPE\": %s\n", file, n, line.c_str());
        return 2;
      }
      queries.push_back(std::move(q));
    }
  }
  if (queries.empty()) die("the query file has no queries");

  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, addr_s, &server.sin_addr) != 1) die("-s must be an IPv4 address");

  int ep = ::epoll_create1(0);
  std::vector<int> fds(static_cast<std::size_t>(nsock));
  for (int s = 0; s < nsock; ++s) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    int buf = 1 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    int one = 1;
    if (!user_stamps && ::setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0)
      die("SO_TIMESTAMPNS");
    if (::connect(fd, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) die("connect");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<std::uint32_t>(s);
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    fds[static_cast<std::size_t>(s)] = fd;
  }
  ::prctl(PR_SET_TIMERSLACK, 1UL);  // wake at the deadline, not up to 50 us after

  const auto total = static_cast<std::size_t>(rate * seconds);
  const auto period_ns = 1e9 / rate;
  const auto timeout_ns = static_cast<std::int64_t>(timeout_s * 1e9);
  const auto spin_ns = static_cast<std::int64_t>(spin_us * 1e3);
  const auto gran_ns = static_cast<std::int64_t>(gran_us * 1e3);
  // Per query: when it was due, when it went out, its latency (-1: no reply).
  std::vector<std::int64_t> sent_at(total), lateness(total), latency(total, -1);
  // (socket, ID) -> query index + 1 while outstanding, 0 when free. Query i
  // goes out on socket i % SOCKETS with ID (i / SOCKETS) mod 65536, so an ID
  // comes back around only after 65,536 queries on that socket.
  std::vector<std::uint32_t> slot(static_cast<std::size_t>(nsock) * 65536, 0);
  const auto ns = static_cast<std::size_t>(nsock);
  auto slot_of = [&](std::size_t i) -> std::uint32_t& {
    return slot[(i % ns) * 65536 + (i / ns) % 65536];
  };
  std::size_t sent = 0, expired = 0, outstanding = 0, received = 0, lost = 0, errors = 0,
              send_fail = 0, unmatched = 0;

  constexpr int kBatch = 32;
  static std::uint8_t bufs[kBatch][512];
  alignas(cmsghdr) static char ctl[kBatch][CMSG_SPACE(sizeof(timespec))];
  std::int64_t real_offset = 0;
  std::size_t no_stamp = 0;
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  epoll_event events[64];
  std::vector<std::uint8_t> out;

  const std::int64_t t0 = now_ns() + 1'000'000;  // first send 1 ms from now
  auto due = [&](std::size_t i) {
    return t0 + static_cast<std::int64_t>(static_cast<double>(i) * period_ns);
  };
  for (;;) {
    std::int64_t now = now_ns();
    // Send everything due; a late sender catches up at once (open loop).
    while (sent < total && due(sent) <= now) {
      auto& sl = slot_of(sent);
      if (sl != 0) {  // its ID is wanted again before the timeout took it
        ++lost;
        --outstanding;
        sl = 0;
      }
      out = queries[sent % queries.size()];
      auto id = static_cast<std::uint16_t>((sent / ns) % 65536);
      out[0] = static_cast<std::uint8_t>(id >> 8);
      out[1] = static_cast<std::uint8_t>(id);
      now = now_ns();
      sent_at[sent] = now;
      lateness[sent] = now - due(sent);
      if (::send(fds[sent % ns], out.data(), out.size(), 0) == static_cast<ssize_t>(out.size())) {
        sl = static_cast<std::uint32_t>(sent + 1);
        ++outstanding;
      } else {
        ++send_fail;
      }
      ++sent;
    }
    // A query without a reply after the timeout is lost; a reply after that
    // finds its slot free and counts as unmatched.
    while (expired < sent && sent_at[expired] + timeout_ns <= now) {
      auto& sl = slot_of(expired);
      if (sl == expired + 1) {
        ++lost;
        --outstanding;
        sl = 0;
      }
      ++expired;
    }
    if (sent == total && outstanding == 0) break;

    // With a granularity the sender wakes on its ticks only and sends all
    // queries due by then: fewer wakeups (of the client and of the server) for
    // up to one tick of lateness.
    std::int64_t wake = INT64_MAX;
    if (sent < total)
      wake = gran_ns > 0 ? t0 + (due(sent) - t0 + gran_ns - 1) / gran_ns * gran_ns : due(sent);
    if (expired < sent) wake = std::min(wake, sent_at[expired] + timeout_ns);
    std::int64_t wait = std::max<std::int64_t>(wake - now_ns(), 0);
    if (wait <= spin_ns) wait = 0;  // poll: a sleep this short costs more than it saves
    timespec ts{static_cast<time_t>(wait / 1'000'000'000), static_cast<long>(wait % 1'000'000'000)};
    int n;
    if (user_stamps) {
      n = ::epoll_pwait2(ep, events, 64, &ts, nullptr);
    } else {
      // Replies carry the kernel's arrival stamp: no need to wake for them;
      // they are read at the next send (or expiry) and at least every 1 ms.
      if (sent == total) wake = std::min(wake, now_ns() + 1'000'000);
      if (wait > 0) {
        timespec abs{static_cast<time_t>(wake / 1'000'000'000),
                     static_cast<long>(wake % 1'000'000'000)};
        ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, nullptr);
      }
      timespec zero{0, 0};
      n = ::epoll_pwait2(ep, events, 64, &zero, nullptr);
      // CLOCK_REALTIME (the stamps' clock) minus CLOCK_MONOTONIC, taken now:
      // the replies read below arrived since the last pass.
      std::int64_t m0 = now_ns(), r = real_ns(), m1 = now_ns();
      real_offset = r - (m0 + m1) / 2;
    }
    for (int e = 0; e < n; ++e) {
      auto s = events[e].data.u32;
      for (int k = 0; k < kBatch; ++k) {
        iov[k] = {bufs[k], sizeof bufs[k]};
        msgs[k] = {};
        msgs[k].msg_hdr.msg_iov = &iov[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
        msgs[k].msg_hdr.msg_control = ctl[k];
        msgs[k].msg_hdr.msg_controllen = sizeof ctl[k];
      }
      int got = ::recvmmsg(fds[s], msgs, kBatch, MSG_DONTWAIT, nullptr);
      std::int64_t at_ns = now_ns();
      for (int k = 0; k < got; ++k) {
        auto id = static_cast<std::uint16_t>(bufs[k][0] << 8 | bufs[k][1]);
        auto& sl = slot[std::size_t{s} * 65536 + id];
        if (msgs[k].msg_len < 12 || !(bufs[k][2] & 0x80) || sl == 0) {
          ++unmatched;
          continue;
        }
        auto q = sl - 1;
        sl = 0;
        --outstanding;
        std::int64_t arrived = at_ns;
        if (!user_stamps) {
          arrived = -1;
          for (auto* c = CMSG_FIRSTHDR(&msgs[k].msg_hdr); c; c = CMSG_NXTHDR(&msgs[k].msg_hdr, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
              timespec t;
              std::memcpy(&t, CMSG_DATA(c), sizeof t);
              arrived = std::int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec - real_offset;
            }
          }
          if (arrived < 0) {
            ++no_stamp;
            arrived = at_ns;
          }
        }
        auto lat = arrived - sent_at[q];
        if (lat > timeout_ns) {  // stamped after the timeout: lost all the same
          ++lost;
          continue;
        }
        latency[q] = lat;
        ++received;
        if ((bufs[k][3] & 0x0f) != 0) ++errors;
      }
    }
  }

  std::vector<std::int64_t> lat;
  lat.reserve(received);
  for (auto v : latency)
    if (v >= 0) lat.push_back(v);
  std::sort(lat.begin(), lat.end());
  std::sort(lateness.begin(), lateness.end());
  double run_s = static_cast<double>(sent_at[total - 1] - t0) / 1e9;
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  double cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  double mean = 0;
  for (auto v : lat)
    mean += static_cast<double>(v);
  mean = lat.empty() ? 0 : mean / static_cast<double>(lat.size()) / 1e6;

  std::printf("paced_client: %zu queries at %.0f/s over %d sockets, timeout %.3f s\n", total, rate,
              nsock, timeout_s);
  std::printf(
      "  sent %zu (send errors %zu), received %zu, lost %zu, unmatched or late replies %zu, "
      "rcode != 0: %zu\n",
      sent, send_fail, received, lost, unmatched, errors);
  if (no_stamp)
    std::printf("  %zu replies without a kernel stamp (user-space stamp used)\n", no_stamp);
  std::printf("  latency ms: mean %.3f p50 %.3f p99 %.3f p99.9 %.3f max %.3f\n", mean, at(lat, 0.5),
              at(lat, 0.99), at(lat, 0.999),
              lat.empty() ? 0.0 : static_cast<double>(lat.back()) / 1e6);
  std::printf("  sender late ms: p50 %.3f p99 %.3f p99.9 %.3f max %.3f\n", at(lateness, 0.5),
              at(lateness, 0.99), at(lateness, 0.999), static_cast<double>(lateness.back()) / 1e6);
  std::printf("  run %.3f s, achieved %.0f/s, client CPU %.3f s\n", run_s,
              run_s > 0 ? static_cast<double>(total - 1) / run_s : 0.0, cpu_s);
  // One line for scripts.
  std::printf(
      "RESULT sent=%zu received=%zu lost=%zu unmatched=%zu p50=%.3f p99=%.3f p999=%.3f max=%.3f "
      "mean=%.3f sender_p99=%.3f sender_max=%.3f run_s=%.3f cpu_s=%.3f\n",
      sent, received, lost + send_fail, unmatched, at(lat, 0.5), at(lat, 0.99), at(lat, 0.999),
      lat.empty() ? 0.0 : static_cast<double>(lat.back()) / 1e6, mean, at(lateness, 0.99),
      static_cast<double>(lateness.back()) / 1e6, run_s, cpu_s);
  return 0;
}
