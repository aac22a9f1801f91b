// Label bytes (newlines, escapes, invalid UTF-8) in query names: how the
// query log, in text and in JSON, and `ctl top` and `ctl dump` print them.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

// Boost.JSON, compiled into this file: an independent parser to check that
// every JSON line localdns writes is valid.
#include <boost/json/src.hpp>
#include <catch2/catch.hpp>

#include <localdns/app/control.hpp>

#include "ask.hpp"
#include "endpoints.hpp"
#include "fake_upstream.hpp"
#include "instance.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

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
  wait_until(  // up to 10 s for it to listen
      within(10s),
      [&] {
        r = udp_query({"127.0.0.1", port}, make_query("ready.example", "A"), 100ms);
        return r.has_value();
      },
      100ms);
  auto evil = r ? udp_query({"127.0.0.1", port}, make_query(kEvilName, "A")) : std::nullopt;
  ::kill(pid, SIGTERM);
  int status = -1;
  wait_until(within(10s), [&] { return ::waitpid(pid, &status, WNOHANG) == pid; });
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
