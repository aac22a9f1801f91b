// Metrics, health, readiness and the control socket against a running
// localdns, with Knot DNS and the fault-injecting upstream.
#include <arpa/inet.h>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/app/control.hpp>
#include <localdns/app/health.hpp>
#include <localdns/app/metrics.hpp>

#include "ask.hpp"
#include "fake_upstream.hpp"
#include "http_get.hpp"
#include "instance.hpp"
#include "knot_server.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

namespace {

config::Endpoint loopback(std::uint16_t port) {
  return {boost::asio::ip::make_address("127.0.0.1"), port};
}

std::string temp_socket() {
  return "/tmp/localdns-ctl-test-" + std::to_string(::getpid()) + "-" +
         std::to_string(free_port()) + ".sock";
}

}  // namespace

TEST_CASE("metrics move by exactly the queries sent", "[integration][metrics]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  Instance ld({group({"cluster.local"}, {knot.address()}, Transport::Tcp)});
  auto port = free_port();
  app::MetricsEndpoint metrics(ld.server(), nullptr, loopback(port));
  app::HealthEndpoint health(ld.server(), nullptr, loopback(free_port()));

  const std::vector<std::string> names = {
      "api.default.svc.cluster.local", "kube-dns.kube-system.svc.cluster.local",
      "dual.default.svc.cluster.local", "missing.default.svc.cluster.local"};
  for (int round = 0; round < 2; ++round) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      bool tcp = round == 1 && i == 0;  // one query over TCP
      ask(ld.endpoint(), names[i], "A", tcp);
    }
  }
  ask(ld.endpoint(), "api.default.svc.cluster.local", "AAAA");  // NODATA, a miss
  // The health check's own queries are not counted.
  REQUIRE(health.respond("/health").status == 200);

  auto [status, text] = http_get(port, "/metrics");
  REQUIRE(status == 200);
  INFO(text.substr(0, 3000));
  const std::string zone = "zone=\"cluster.local.\"";
  CHECK(metric_sum(text, "coredns_dns_requests_total") == 9);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {zone, "type=\"A\""}) == 8);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"type=\"AAAA\""}) == 1);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"proto=\"tcp\""}) == 1);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"family=\"1\""}) == 9);
  CHECK(metric_sum(text, "coredns_dns_responses_total", {"rcode=\"NOERROR\""}) == 7);
  CHECK(metric_sum(text, "coredns_dns_responses_total", {"rcode=\"NXDOMAIN\""}) == 2);
  CHECK(metric_sum(text, "coredns_dns_request_duration_seconds_count", {zone}) == 9);
  CHECK(metric_sum(text, "coredns_dns_response_size_bytes_count", {"proto=\"udp\""}) == 8);
  CHECK(metric_sum(text, "coredns_cache_hits_total") == 4);
  CHECK(metric_sum(text, "coredns_cache_misses_total") == 5);
  const std::string to = "to=\"" + knot.address() + "\"";
  CHECK(metric_sum(text, "coredns_forward_requests_total", {to}) == 5);
  CHECK(metric_sum(text, "coredns_forward_responses_total", {to, "rcode=\"NOERROR\""}) == 4);
  CHECK(metric_sum(text, "coredns_forward_responses_total", {to, "rcode=\"NXDOMAIN\""}) == 1);
  CHECK(metric_sum(text, "coredns_forward_request_duration_seconds_count", {to}) == 5);
  CHECK(metric_sum(text, "localdns_upstream_tcp_connects_total", {to}) >= 1);
  CHECK(metric_sum(text, "localdns_upstream_tcp_connections", {to}) >= 1);
  CHECK(metric_sum(text, "localdns_build_info", {"version=\"" LOCALDNS_VERSION "\""}) == 1);
  CHECK(text.find("# TYPE coredns_dns_request_duration_seconds histogram") != std::string::npos);
  CHECK(http_get(port, "/other").first == 404);
}

TEST_CASE("readiness waits for an upstream answer but health does not", "[integration][health]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  auto g = group({"."}, {up.address()}, Transport::Udp);
  g.timeout = std::chrono::milliseconds(200);
  g.attempts = 1;
  Instance ld({g});
  auto port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr, loopback(port));

  auto [s1, b1] = http_get(port, "/ready");
  CHECK(s1 == 503);
  CHECK(b1 == "no upstream of zone . has answered yet\n");
  CHECK(http_get(port, "/health").first == 200);  // the data path works without an upstream

  CHECK(ask(ld.endpoint(), "dropped.example").rcode == "SERVFAIL");
  CHECK(http_get(port, "/ready").first == 503);

  up.set({});
  CHECK(ask(ld.endpoint(), "answered.example").rcode == "NOERROR");
  auto [s2, b2] = http_get(port, "/ready");
  CHECK(s2 == 200);
  CHECK(b2 == "OK\n");
  CHECK(http_get(port, "/health").first == 200);

  ld.stop();
  auto [s3, b3] = http_get(port, "/health");
  CHECK(s3 == 503);
  CHECK(http_get(port, "/ready").first == 503);
}

TEST_CASE("ctl top ranks a planted heavy hitter first", "[integration][ctl]") {
  FakeUpstream up;
  config::Config c;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  c.top_sample = 4;
  Instance ld(c);
  auto path = temp_socket();
  app::ControlServer ctl(ld.server(), nullptr, path);
  // 3,000 names asked once each; one name asked 600 times among them.
  for (int i = 0; i < 3000; ++i) {
    ask(ld.endpoint(), "name" + std::to_string(i) + ".example");
    if (i % 5 == 0) ask(ld.endpoint(), "heavy.example");
  }
  for (int i = 0; i < 160; ++i)
    ask(ld.endpoint(), "nxwhat.example.com.team1.svc.cluster.local");

  auto top = ctl.execute("top names 3\n");
  INFO(top);
  auto first = top.substr(top.find('\n') + 1);
  first = first.substr(0, first.find('\n'));
  CHECK(first.ends_with("\theavy.example."));
  // Estimated from a 1-in-4 sample of 600: sd about 42.
  long count = std::stol(first.substr(0, first.find('\t')));
  CHECK(count > 400);
  CHECK(count < 800);

  auto nx = ctl.execute("top nxdomain 1 json");
  INFO(nx);
  CHECK(nx.find("\"key\":\"nxwhat.example.com [search team1.svc.cluster.local]\"") !=
        std::string::npos);
  auto clients = ctl.execute("top clients 1");
  CHECK(clients.find("\t127.0.0.1\n") != std::string::npos);

  auto stats = ctl.execute("stats json");
  INFO(stats);
  CHECK(stats.find("\"queries\":3760") != std::string::npos);
  CHECK(stats.find("\"to\":\"" + up.address() + "\"") != std::string::npos);
}

TEST_CASE("ctl flushes one name or the whole cache, and dumps entries", "[integration][ctl]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  Instance ld({group({"cluster.local"}, {knot.address()}, Transport::Tcp)});
  auto path = temp_socket();
  app::ControlServer ctl(ld.server(), nullptr, path);
  const std::string keep = "api.default.svc.cluster.local", drop = "dual.default.svc.cluster.local";
  ask(ld.endpoint(), keep);
  ask(ld.endpoint(), drop);
  ask(ld.endpoint(), drop, "AAAA");
  auto dump = ctl.execute("dump");
  INFO(dump);
  CHECK(dump.find(keep + ". A NOERROR 30 ") != std::string::npos);
  CHECK(dump.find(drop + ". AAAA NOERROR ") != std::string::npos);

  CHECK(ctl.execute("flush DUAL.default.svc.cluster.local") ==
        "flushed 2 entries for DUAL.default.svc.cluster.local\n");
  dump = ctl.execute("dump");
  CHECK(dump.find(drop) == std::string::npos);
  CHECK(dump.find(keep) != std::string::npos);
  auto hits = ld.server().stats().cache_hits;
  ask(ld.endpoint(), drop);
  CHECK(ld.server().stats().cache_hits == hits);  // asked upstream again

  CHECK(ctl.execute("flush json") == "{\"flushed\":2}\n");  // keep and drop A
  CHECK(ld.server().cache_stats().entries == 0);
  CHECK(ctl.execute("flush bad..name").starts_with("error:"));
  CHECK(ctl.execute("frobnicate").starts_with("error: unknown command"));

  // The command-line client, over the socket.
  std::string cmd = std::string(LOCALDNS_BINARY) + " ctl --socket " + path + " stats";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p))
    out += buf;
  CHECK(::pclose(p) == 0);
  CHECK(out.find("queries     4") != std::string::npos);
}

TEST_CASE("a second control server never takes a live socket", "[integration][ctl]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto path = temp_socket();
  app::ControlServer first(ld.server(), nullptr, path);
  CHECK_THROWS_WITH(app::ControlServer(ld.server(), nullptr, path),
                    Catch::Contains("in use by another running localdns"));
  CHECK(first.execute("stats").find("queries") != std::string::npos);
}

// ---- Label bytes in logs and `ctl` output, and the metrics zone label ----

#include <fcntl.h>
#include <fstream>
#include <signal.h>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

// Boost.JSON, compiled into this file: an independent parser to check that
// every JSON line localdns writes is valid.
#include <boost/json/src.hpp>

#include <localdns/config/loader.hpp>

namespace {

// A label holding a newline, a forged log line, ESC, an invalid UTF-8 byte, a
// space and a quote, in the test client's \DDD notation (ldns reads it).
const std::string kEvilName = "a\\010[info]\\032forged\\027[31m\\255\\\"x.example";
// How localdns must print it: master-file escapes, printable ASCII only.
const std::string kEvilText = "a\\010[info]\\032forged\\027[31m\\255\\\"x.example.";

// The JSON string body for `s` (backslash and quote escaped).
std::string json_body(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

// Every string value in a JSON document.
void strings_of(const boost::json::value& v, std::vector<std::string>& out) {
  if (v.is_string()) out.emplace_back(v.as_string());
  if (v.is_array()) {
    for (const auto& x : v.as_array())
      strings_of(x, out);
  }
  if (v.is_object()) {
    for (const auto& kv : v.as_object())
      strings_of(kv.value(), out);
  }
}

bool parses_as_json(const std::string& text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  return !ec;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    out.push_back(line);
  return out;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

// Runs the binary with `args`, its stdout and stderr in a file; asks the evil
// name once, then stops it with SIGTERM and returns everything it printed.
std::string log_of_one_evil_query(std::vector<std::string> args, std::uint16_t port) {
  std::string log =
      "/tmp/localdns-log-test-" + std::to_string(::getpid()) + "-" + std::to_string(port) + ".log";
  int fd = ::open(log.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
  REQUIRE(fd >= 0);
  args.insert(args.begin(), LOCALDNS_BINARY);
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();  // everything is built before: no malloc in the child
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fd);
  std::optional<Packet> r;
  for (int i = 0; i < 100 && !r; ++i) {  // up to 10 s for it to listen
    r = udp_query({"127.0.0.1", port}, make_query("ready.example", "A"), 100ms);
    if (!r) std::this_thread::sleep_for(100ms);
  }
  auto evil = r ? udp_query({"127.0.0.1", port}, make_query(kEvilName, "A")) : std::nullopt;
  ::kill(pid, SIGTERM);
  int status = -1;
  for (int i = 0; i < 1000 && ::waitpid(pid, &status, WNOHANG) != pid; ++i)
    std::this_thread::sleep_for(10ms);
  if (!WIFEXITED(status)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(log.c_str());
  INFO(text.str());
  REQUIRE(r);
  REQUIRE(evil);
  CHECK(decode(*evil).rcode == "NOERROR");
  CHECK(WIFEXITED(status));
  return text.str();
}

}  // namespace

TEST_CASE("a query name cannot forge or break a log line", "[integration][logging]") {
  FakeUpstream up;
  for (std::string format : {"json", "text"}) {
    DYNAMIC_SECTION("--log-format " << format) {
      auto port = free_port();
      auto log = log_of_one_evil_query(
          {"--listen", "127.0.0.1:" + std::to_string(port), "--forward", ".=udp://" + up.address(),
           "--threads", "1", "--query-log", "1", "--log-format", format, "--metrics", "off",
           "--health", "off", "--control", "off"},
          port);
      INFO(log);
      // One line for the evil query, holding the escaped name; nothing raw.
      CHECK(count_of(log, "forged") == 1);
      CHECK(log.find('\x1b') == std::string::npos);
      CHECK(log.find('\xff') == std::string::npos);
      std::size_t query_lines = 0;
      for (const auto& line : lines_of(log)) {
        if (format == "json") {
          INFO(line);
          CHECK(parses_as_json(line));
        }
        if (line.find("query client=") == std::string::npos) continue;
        ++query_lines;
        if (line.find("forged") == std::string::npos) continue;
        // JSON doubles each backslash of the name's own escapes.
        std::string shown = format == "json" ? json_body(kEvilText) : kEvilText;
        CHECK(line.find("name=" + shown + " type=1 rcode=NOERROR") != std::string::npos);
      }
      CHECK(query_lines >= 2);  // ready.example (perhaps more than once) and the evil name
    }
  }
}

TEST_CASE("ctl top and dump print label bytes escaped", "[integration][ctl]") {
  FakeUpstream up;  // answers any name; NXDOMAIN for names starting with "nx"
  config::Config c;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  c.top_sample = 1;
  Instance ld(c);
  auto path = temp_socket();
  app::ControlServer ctl(ld.server(), nullptr, path);
  for (int i = 0; i < 3; ++i) {
    CHECK(ask(ld.endpoint(), kEvilName).rcode == "NOERROR");
    CHECK(ask(ld.endpoint(), "nx" + kEvilName).rcode == "NXDOMAIN");
  }
  ask(ld.endpoint(), "plain.example");

  auto top = ctl.execute("top names 10");
  INFO(top);
  auto top_lines = lines_of(top);
  CHECK(top_lines.size() == 4);  // the header, three names: one line each
  CHECK(top.find("\t" + kEvilText + "\n") != std::string::npos);
  CHECK(top.find("\tnx" + kEvilText + "\n") != std::string::npos);
  CHECK(top.find("\tplain.example.\n") != std::string::npos);
  auto nx = ctl.execute("top nxdomain 10");
  INFO(nx);
  CHECK(lines_of(nx).size() == 2);
  CHECK(nx.find("\tnx" + kEvilText.substr(0, kEvilText.size() - 1) + "\n") != std::string::npos);

  auto dump = ctl.execute("dump");
  INFO(dump);
  CHECK(lines_of(dump).size() == 4);  // the header, three entries
  CHECK(dump.find("\n" + kEvilText + " A NOERROR ") != std::string::npos);
  CHECK(dump.find("\nnx" + kEvilText + " A NXDOMAIN ") != std::string::npos);

  for (const char* cmd : {"top names 10 json", "top nxdomain 10 json", "dump json"}) {
    auto out = ctl.execute(cmd);
    INFO(cmd << ": " << out);
    CHECK(lines_of(out).size() == 1);
    REQUIRE(parses_as_json(out));
    std::vector<std::string> strings;
    strings_of(boost::json::parse(out), strings);
    INFO(strings.size() << " strings");
    const std::string nx_key = "nx" + kEvilText.substr(0, kEvilText.size() - 1);
    bool evil = std::find(strings.begin(), strings.end(), kEvilText) != strings.end();
    bool nx_evil = std::find(strings.begin(), strings.end(), "nx" + kEvilText) != strings.end() ||
                   std::find(strings.begin(), strings.end(), nx_key) != strings.end();
    CHECK(nx_evil);
    if (std::string(cmd) != "top nxdomain 10 json") CHECK(evil);
  }
  // A name as dump shows it is a name flush takes.
  CHECK(ctl.execute("flush " + kEvilText).starts_with("flushed 1 entries"));
  CHECK(ctl.execute("dump").find(kEvilText + " A NOERROR") == std::string::npos);
}

TEST_CASE("the zone label is the zone's name with one trailing dot", "[integration][metrics]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  FakeUpstream up;
  // Through the loader, as the binary reads it.
  auto c = config::load_config_text(
      "forward:\n"
      "  - zones: [cluster.local]\n"
      "    servers: [\"" +
          knot.address() +
          "\"]\n"
          "    transport: tcp\n"
          "  - zones: [.]\n"
          "    servers: [\"" +
          up.address() +
          "\"]\n"
          "    transport: udp\n",
      "zones.yaml");
  REQUIRE(c.has_value());
  Instance ld(*c);
  auto port = free_port();
  app::MetricsEndpoint metrics(ld.server(), nullptr, loopback(port));
  ask(ld.endpoint(), "api.default.svc.cluster.local");
  ask(ld.endpoint(), "www.example");
  ask(ld.endpoint(), "www.example");
  auto [status, text] = http_get(port, "/metrics");
  REQUIRE(status == 200);
  INFO(text.substr(0, 3000));
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"zone=\"cluster.local.\""}) == 1);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"zone=\".\""}) == 2);
  CHECK(metric_sum(text, "coredns_dns_responses_total", {"zone=\".\""}) == 2);
  CHECK(text.find("..\"") == std::string::npos);  // no label ends in two dots
}

namespace {

// A raw client connection (TCP to 127.0.0.1:port, or a Unix socket path).
int connect_tcp(std::uint16_t port, const char* source = "127.0.0.1") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in src{}, dst{};
  src.sin_family = dst.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &src.sin_addr);
  ::inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
  dst.sin_port = htons(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Everything the peer sends until it closes or `timeout` passes; `closed` tells which.
std::string read_all(int fd, std::chrono::milliseconds timeout, bool* closed = nullptr) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (closed) *closed = false;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) != 1) continue;
    char b[4096];
    auto n = ::recv(fd, b, sizeof b, 0);
    if (n <= 0) {
      if (closed) *closed = true;
      break;
    }
    out.append(b, static_cast<std::size_t>(n));
  }
  return out;
}

// A localdns process with /health on its own port, for resource limits
// (RLIMIT_NOFILE) and CPU time measured from /proc.
struct Process {
  pid_t pid = -1;
  std::uint16_t dns_port = free_port();
  std::uint16_t health_port = free_port();
  explicit Process(const std::string& upstream) {
    std::string listen = "127.0.0.1:" + std::to_string(dns_port);
    std::string health = "127.0.0.1:" + std::to_string(health_port);
    std::string fwd = ".=udp://" + upstream;
    pid = ::fork();
    if (pid == 0) {
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execl(LOCALDNS_BINARY, LOCALDNS_BINARY, "--listen", listen.c_str(), "--forward",
              fwd.c_str(), "--threads", "1", "--metrics", "off", "--health", health.c_str(),
              "--control", "off", static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Process() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  // /health status, or 0 when no answer came within the HTTP client's 5 s.
  unsigned health() const {
    try {
      return http_get(health_port, "/health").first;
    } catch (const std::exception&) {
      return 0;
    }
  }
  bool wait_healthy(std::chrono::milliseconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (health() == 200) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  std::size_t open_fds() const {
    std::size_t n = 0;
    for ([[maybe_unused]] auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
      ++n;
    return n;
  }
  // Sets the soft limit only: the hard one stays, so it can be raised again.
  void limit_fds(rlim_t n) const {
    rlimit r{};
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, nullptr, &r) == 0);
    r.rlim_cur = std::min(n, r.rlim_max);
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &r, nullptr) == 0);
  }
  double cpu_seconds() const {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), {});
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::string field;
    unsigned long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stoul(field);
      if (i == 15) stime = std::stoul(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
};

}  // namespace

TEST_CASE("out of descriptors, the HTTP endpoint backs off instead of spinning",
          "[integration][health][limits]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer runtimes in the spawned localdns open descriptors of their
  // own (pipes to probe memory) and report false errors when there are none
  // left; the plain build runs this test.
  WARN("not run in a sanitizer build");
  return;
#endif
  FakeUpstream up;
  Process ld(up.address());
  REQUIRE(ld.wait_healthy(5000ms));
  ld.limit_fds(ld.open_fds() + 4);
  // Idle DNS connections take the last descriptors; then an HTTP client waits.
  std::vector<int> hog;
  for (int i = 0; i < 12; ++i)
    hog.push_back(connect_tcp(ld.dns_port, "127.0.0.2"));
  std::this_thread::sleep_for(300ms);
  int waiting = connect_tcp(ld.health_port);
  REQUIRE(waiting >= 0);
  std::this_thread::sleep_for(300ms);
  double cpu0 = ld.cpu_seconds();
  std::this_thread::sleep_for(2000ms);
  double cpu = ld.cpu_seconds() - cpu0;
  WARN("CPU time while out of descriptors: " << cpu << " s in 2 s");
  CHECK(cpu < 0.4);
  for (int fd : hog)
    if (fd >= 0) ::close(fd);
  ::close(waiting);
  ld.limit_fds(1024);
  CHECK(ld.wait_healthy(5000ms));  // recovers once descriptors are back
}

TEST_CASE("idle HTTP connections do not keep /health from answering",
          "[integration][health][limits]") {
  FakeUpstream up;
  Process ld(up.address());
  REQUIRE(ld.wait_healthy(5000ms));
  // Room for the connection cap and the probes, not for every idle client.
  ld.limit_fds(ld.open_fds() + app::HttpServer::kMaxConnections + 8);
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i)
    idle.push_back(connect_tcp(ld.health_port));
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  auto status = ld.health();
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  WARN("/health behind 100 idle connections: " << status << " in " << took.count() << " ms");
  CHECK(status == 200);
  CHECK(took < 1500ms);
  for (int fd : idle)
    if (fd >= 0) ::close(fd);
}

TEST_CASE("an oversized HTTP request gets an error and is closed", "[integration][health]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr, loopback(port));
  int fd = connect_tcp(port);
  REQUIRE(fd >= 0);
  std::string req =
      "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  bool closed = false;
  auto answer = read_all(fd, 3000ms, &closed);
  ::close(fd);
  CHECK_THAT(answer, Catch::StartsWith("HTTP/1.1 431"));
  CHECK(closed);
  CHECK(http_get(port, "/health").first == 200);
}

TEST_CASE("/health answers from refreshed state, at most about a second old",
          "[integration][health]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr, loopback(port));
  // A burst of requests is answered without a probe each: every TCP probe
  // leaves its connection to the DNS port in TIME_WAIT, so count those.
  auto probes_seen = [&] {
    std::ifstream f("/proc/net/tcp");
    std::string line;
    std::getline(f, line);
    char port_hex[8];
    std::snprintf(port_hex, sizeof port_hex, ":%04X", ld.endpoint().port);
    unsigned n = 0;
    while (std::getline(f, line)) {
      std::istringstream in(line);
      std::string slot, local, remote, state;
      in >> slot >> local >> remote >> state;
      if (remote.ends_with(port_hex) && state == "06") ++n;
    }
    return n;
  };
  auto seen0 = probes_seen();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i)
    REQUIRE(http_get(port, "/health").first == 200);
  auto burst =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  auto probes = probes_seen() - seen0;
  WARN("100 requests in " << burst.count() << " ms ran " << probes << " TCP probes");
  // One pass per refresh period (and one at start), not one per request.
  CHECK(probes <= burst / app::HealthEndpoint::kRefreshEvery + 2);
  // The state keeps being refreshed: a dead refresher would leave it as old as the wait.
  std::this_thread::sleep_for(1500ms);
  CHECK(health.health_age() < 1100ms);
  ld.stop();
  CHECK(http_get(port, "/health").first == 503);  // stopping shows at once
}

TEST_CASE("/health stays 200 while the node check is slow; /ready says it is stale",
          "[integration][health]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  // A node check that turns slow (an iptables-save behind a repair holding its
  // lock), until released.
  std::mutex m;
  std::condition_variable cv;
  bool slow = false, released = false;
  auto node_check = [&]() -> std::string {
    std::unique_lock lock(m);
    if (slow) cv.wait_for(lock, 6000ms, [&] { return released; });
    return "";
  };
  auto port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr, loopback(port), node_check);
  {
    std::lock_guard lock(m);
    slow = true;
  }
  unsigned asked = 0, healthy = 0;
  bool ready_stale = false;
  std::string last_health, last_ready;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < 4000ms) {
    auto [hs, hb] = http_get(port, "/health");
    ++asked;
    if (hs == 200) ++healthy;
    last_health = hb;
    auto [rs, rb] = http_get(port, "/ready");
    if (rs == 503 && rb.find("node setup") != std::string::npos) ready_stale = true;
    last_ready = rb;
    std::this_thread::sleep_for(100ms);
  }
  auto health_age = health.health_age();
  auto node_age = health.node_age();
  {
    std::lock_guard lock(m);
    released = true;
  }
  cv.notify_all();
  INFO("/health: " << last_health << "/ready: " << last_ready);
  WARN("node check blocked for 4 s: /health 200 "
       << healthy << " of " << asked << " times; health state " << health_age.count()
       << " ms old, node state " << node_age.count() << " ms old");
  CHECK(healthy == asked);
  CHECK(health_age < 1100ms);
  CHECK(ready_stale);
  CHECK(node_age > app::HealthEndpoint::kMaxAge);
}

TEST_CASE("the control socket caps command size and connection time", "[integration][ctl]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto path = temp_socket();
  app::ControlServer ctl(ld.server(), nullptr, path);

  int big = connect_unix(path);
  REQUIRE(big >= 0);
  std::string line(app::ControlServer::kMaxCommandBytes + 100, 'x');
  ::send(big, line.data(), line.size(), MSG_NOSIGNAL);
  bool closed = false;
  auto answer = read_all(big, 3000ms, &closed);
  ::close(big);
  CHECK_THAT(answer, Catch::StartsWith("error: command longer than 4096 bytes"));
  CHECK(closed);

  // Idle connections past the cap do not lock out a command; each is closed in time.
  std::vector<int> idle;
  for (std::size_t i = 0; i < app::ControlServer::kMaxConnections + 4; ++i)
    idle.push_back(connect_unix(path));
  int cmd = connect_unix(path);
  REQUIRE(cmd >= 0);
  std::string stats = "stats\n";
  ::send(cmd, stats.data(), stats.size(), MSG_NOSIGNAL);
  CHECK(read_all(cmd, 3000ms).find("queries") != std::string::npos);
  ::close(cmd);
  auto t0 = std::chrono::steady_clock::now();
  read_all(idle.back(), app::ControlServer::kCommandTime + 3000ms, &closed);
  CHECK(closed);
  CHECK(std::chrono::steady_clock::now() - t0 <= app::ControlServer::kCommandTime + 2000ms);
  for (int fd : idle)
    if (fd >= 0) ::close(fd);
}
