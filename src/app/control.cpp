#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <iostream>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <localdns/app/control.hpp>
#include <localdns/app/logging.hpp>
#include <localdns/config/loader.hpp>
#include <localdns/dns/name.hpp>

namespace localdns::app {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using Clock = std::chrono::steady_clock;

namespace {

std::string json_string(std::string_view s) {
  return "\"" + json_escape(s) + "\"";
}

std::string fixed(double v, int digits = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string type_name(std::uint16_t t) {
  auto i = metrics::type_index(t);
  if (i + 1 < metrics::kTypeNames.size()) return std::string(metrics::kTypeNames[i]);
  return "TYPE" + std::to_string(t);
}

// Upper bound (ms) of the bucket holding quantile q of all answered queries.
double quantile_ms(const std::vector<std::uint64_t>& buckets, double q) {
  std::uint64_t total = 0;
  for (auto b : buckets)
    total += b;
  if (total == 0) return 0;
  std::uint64_t want = static_cast<std::uint64_t>(q * static_cast<double>(total) + 0.5);
  if (want == 0) want = 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    seen += buckets[i];
    if (seen >= want) {
      return i < metrics::kDurationBuckets ? metrics::duration_bound_seconds(i) * 1000 : 1e9;
    }
  }
  return 1e9;
}

std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i])))
      ++i;
    std::size_t j = i;
    while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j])))
      ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

ControlServer::ControlServer(Runtime& server, node::NodeSetup* node, std::string path,
                             ReloadFn reload, HandoverFn handover, bool replace)
    : server_(server),
      node_(node),
      path_(std::move(path)),
      reload_(std::move(reload)),
      handover_(std::move(handover)),
      started_(Clock::now()),
      acceptor_(ctx_),
      timer_(ctx_),
      retry_(ctx_) {
  boost::system::error_code ec;
  if (!replace) {
    // A live localdns answers here: never take its socket away.
    local::socket probe(ctx_);
    probe.connect(local::endpoint(path_), ec);
    if (!ec) throw std::runtime_error(path_ + " is in use by another running localdns");
  }
  // After a handover: bound beside it, renamed over it once listening, so that
  // `path_` always answers, the previous instance until the rename.
  std::string bind_path = replace ? path_ + ".new." + std::to_string(::getpid()) : path_;
  ::unlink(bind_path.c_str());  // a stale socket from a crash
  acceptor_.open(local(), ec);
  if (!ec) acceptor_.bind(local::endpoint(bind_path), ec);
  if (ec) throw std::runtime_error("cannot create " + bind_path + ": " + ec.message());
  ::chmod(bind_path.c_str(), 0600);
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec && bind_path != path_ && ::rename(bind_path.c_str(), path_.c_str()) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
  if (ec) {
    if (bind_path != path_) ::unlink(bind_path.c_str());
    throw std::runtime_error("cannot listen on " + path_ + ": " + ec.message());
  }
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) inode_ = st.st_ino;
  accept();
  tick();
  thread_ = std::thread([this] { ctx_.run(); });
}

ControlServer::~ControlServer() {
  ctx_.stop();
  if (thread_.joinable()) thread_.join();
  boost::system::error_code ec;
  acceptor_.close(ec);
  conns_.clear();
  // A successor may have renamed its own socket over ours: leave that one.
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(path_.c_str());
}

void ControlServer::tick() {
  // Empty the workers' sample rings before they fill.
  for (auto* t : server_.top_trackers())
    t->drain();
  {
    std::lock_guard lock(mu_);
    samples_.emplace_back(Clock::now(), server_.stats().queries);
    while (samples_.size() > 11)
      samples_.pop_front();
  }
  timer_.expires_after(std::chrono::seconds(1));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) tick();
  });
}

struct ControlServer::Conn {
  explicit Conn(local::socket s) : sock(std::move(s)), deadline(sock.get_executor()) {}
  local::socket sock;
  asio::streambuf buf{kMaxCommandBytes};
  asio::steady_timer deadline;
  std::string answer;
};

void ControlServer::finish(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  auto conn = it->second;
  conns_.erase(it);
  boost::system::error_code ignored;
  conn->deadline.cancel();
  conn->sock.close(ignored);
}

void ControlServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, local::socket s) {
    if (!acceptor_.is_open() || ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and the like: free a descriptor or wait, never retry at once.
      if (!accept_failing_) spdlog::warn("control: accept failed: {}; backing off", ec.message());
      accept_failing_ = true;
      if ((ec == asio::error::no_descriptors || ec.value() == ENFILE) && !conns_.empty()) {
        finish(conns_.begin()->first);
        accept();
        return;
      }
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([this](boost::system::error_code e) {
        if (!e && acceptor_.is_open()) accept();
      });
      return;
    }
    accept_failing_ = false;
    while (conns_.size() >= kMaxConnections)
      finish(conns_.begin()->first);  // the oldest makes room
    auto id = next_conn_++;
    auto conn = std::make_shared<Conn>(std::move(s));
    conns_.emplace(id, conn);
    conn->deadline.expires_after(kCommandTime);
    conn->deadline.async_wait([this, id](boost::system::error_code e) {
      if (!e) finish(id);
    });
    // Commands are short; one at a time on this thread keeps it simple.
    asio::async_read_until(
        conn->sock, conn->buf, '\n', [this, conn, id](boost::system::error_code e, std::size_t n) {
          if (e == asio::error::not_found) {
            conn->answer =
                "error: command longer than " + std::to_string(kMaxCommandBytes) + " bytes\n";
          } else if (e) {
            finish(id);
            return;
          } else {
            std::string line(asio::buffers_begin(conn->buf.data()),
                             asio::buffers_begin(conn->buf.data()) + static_cast<long>(n));
            if (handover_ && words(line) == std::vector<std::string>{"handover", "1"}) {
              // The connection goes to the handover's thread; this one forgets it.
              conn->answer = handover_(::fcntl(conn->sock.native_handle(), F_DUPFD_CLOEXEC, 0));
              if (conn->answer.empty()) {
                finish(id);
                return;
              }
            } else {
              conn->answer = execute(line);
            }
          }
          asio::async_write(
              conn->sock, asio::buffer(conn->answer),
              [this, conn, id](boost::system::error_code, std::size_t) { finish(id); });
        });
    accept();
  });
}

std::string ControlServer::execute(const std::string& line) {
  auto w = words(line);
  bool json = !w.empty() && w.back() == "json";
  if (json) w.pop_back();
  if (w.empty()) return "error: empty command\n";
  const auto& cmd = w[0];
  if (cmd == "stats" && w.size() == 1) return stats(json);
  if (cmd == "top" && w.size() <= 3) {
    std::string kind = w.size() > 1 ? w[1] : "names";
    std::size_t n = 10;
    if (w.size() > 2) n = std::clamp<std::size_t>(std::strtoul(w[2].c_str(), nullptr, 10), 1, 1000);
    if (kind != "names" && kind != "nxdomain" && kind != "clients") {
      return "error: top takes names, nxdomain or clients\n";
    }
    return top(kind, n, json);
  }
  if (cmd == "flush" && w.size() <= 2) return flush(w.size() == 2 ? w[1] : "", json);
  if (cmd == "dump" && w.size() == 1) return dump(json);
  if (cmd == "handover") {
    return handover_ ? "error: handover: this localdns speaks version 1 ('handover 1')\n"
                     : "error: handover is not available on this socket\n";
  }
  if (cmd == "reload" && w.size() == 1) {
    return reload_ ? reload_() : "error: reload is not available on this socket\n";
  }
  return "error: unknown command '" + line.substr(0, line.find('\n')) +
         "' (stats, top KIND N, flush [NAME], dump, reload)\n";
}

std::string ControlServer::stats(bool json) {
  auto st = server_.stats();
  auto cs = server_.cache_stats();
  double qps = 0;
  {
    std::lock_guard lock(mu_);
    if (samples_.size() >= 2) {
      auto secs =
          std::chrono::duration<double>(samples_.back().first - samples_.front().first).count();
      if (secs > 0)
        qps = static_cast<double>(samples_.back().second - samples_.front().second) / secs;
    }
  }
  std::vector<std::uint64_t> buckets(metrics::kDurationBuckets + 1, 0);
  for (const auto* m : server_.query_metrics()) {
    for (std::size_t z = 0; z < m->zones(); ++z) {
      const auto& h = m->duration(z);
      for (std::size_t i = 0; i < buckets.size(); ++i)
        buckets[i] += h.buckets[i].get();
    }
  }
  double p50 = quantile_ms(buckets, 0.5), p99 = quantile_ms(buckets, 0.99);
  double hit_ratio =
      st.queries ? static_cast<double>(st.cache_hits) / static_cast<double>(st.queries) : 0;
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count();
  std::string node_state;
  if (node_) {
    node_state = node_->verify();
    if (node_state.empty()) node_state = "in place";
  }
  std::string out;
  if (json) {
    out = "{\"uptime_s\":" + std::to_string(uptime) + ",\"queries\":" + std::to_string(st.queries) +
          ",\"qps\":" + fixed(qps) + ",\"hit_ratio\":" + fixed(hit_ratio, 4) +
          ",\"latency_p50_ms\":" + fixed(p50, 3) + ",\"latency_p99_ms\":" + fixed(p99, 3) +
          ",\"servfail\":" + std::to_string(st.servfail) +
          ",\"cache\":{\"entries\":" + std::to_string(cs.entries) +
          ",\"bytes\":" + std::to_string(cs.bytes) + "},\"upstreams\":[";
  } else {
    out = "uptime      " + std::to_string(uptime) + " s\n";
    out += "queries     " + std::to_string(st.queries) + " (" + fixed(qps) +
           " per second, last 10 s)\n";
    out += "cache       " + fixed(hit_ratio * 100) + "% answered from cache, " +
           std::to_string(cs.entries) + " entries, " + std::to_string(cs.bytes) + " bytes\n";
    out += "latency     p50 <= " + fixed(p50, 2) + " ms, p99 <= " + fixed(p99, 2) +
           " ms (histogram bucket bounds; cache hits count as 0)\n";
    out += "servfail    " + std::to_string(st.servfail) + "\n";
    if (node_) out += "node setup  " + node_state + "\n";
    out += "upstreams\n";
  }
  bool first = true;
  const auto serving = server_.serving();
  const auto& groups = serving.groups;
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const auto& g = groups[gi];
    std::string zones;
    for (const auto& z : serving.config->forward[gi].zones)
      zones += (zones.empty() ? "" : ",") + z;
    for (const auto& h : g->health) {
      const auto& c = h->counters();
      auto req = c.requests.load(std::memory_order_relaxed);
      auto fail = c.failures.load(std::memory_order_relaxed);
      auto open = c.tcp_open.load(std::memory_order_relaxed);
      if (json) {
        out += std::string(first ? "" : ",") + "{\"to\":" + json_string(h->endpoint().to_string()) +
               ",\"zones\":" + json_string(zones) + ",\"up\":" + (h->is_down() ? "false" : "true") +
               ",\"requests\":" + std::to_string(req) + ",\"failures\":" + std::to_string(fail) +
               ",\"tcp_open\":" + std::to_string(open) + "}";
      } else {
        out += "  " + h->endpoint().to_string() + " (" + zones + ") " +
               (h->is_down() ? "DOWN" : "up") + ", " + std::to_string(req) + " requests, " +
               std::to_string(fail) + " failures, " + std::to_string(open) + " TCP connections\n";
      }
      first = false;
    }
  }
  if (json) {
    out += "]";
    if (node_) out += ",\"node_setup\":" + json_string(node_state);
    out += "}\n";
  }
  return out;
}

std::string ControlServer::top(const std::string& kind, std::size_t n, bool json) {
  auto k = kind == "names"      ? metrics::TopKind::Names
           : kind == "nxdomain" ? metrics::TopKind::NxDomain
                                : metrics::TopKind::Clients;
  std::map<std::string, std::uint64_t> merged;
  unsigned sample = 1;
  for (auto* t : server_.top_trackers()) {
    sample = t->sample();
    for (const auto& item : t->top(k, 100000))
      merged[item.key] += item.count;
  }
  std::vector<std::pair<std::string, std::uint64_t>> sorted(merged.begin(), merged.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (sorted.size() > n) sorted.resize(n);
  std::string out;
  if (json) {
    out = "{\"kind\":" + json_string(kind) + ",\"sampled_1_in\":" + std::to_string(sample) +
          ",\"top\":[";
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      out += std::string(i ? "," : "") + "{\"key\":" + json_string(sorted[i].first) +
             ",\"count\":" + std::to_string(sorted[i].second) + "}";
    }
    return out + "]}\n";
  }
  out = "# top " + kind + " (estimated counts: 1 in " + std::to_string(sample) +
        " queries sampled, bounded memory)\n";
  for (const auto& [key, count] : sorted)
    out += std::to_string(count) + "\t" + key + "\n";
  return out;
}

std::string ControlServer::flush(const std::string& name, bool json) {
  auto* cache = server_.cache();
  if (!cache) return json ? "{\"flushed\":0}\n" : "the cache is off\n";
  std::size_t n = 0;
  std::string shown;  // the name as the log shows it, escaped
  if (name.empty()) {
    n = cache->stats().entries;
    cache->clear();
  } else {
    auto wire = dns::name_from_text(name);
    if (!wire) return "error: '" + name + "' is not a domain name\n";
    shown = " for " + dns::name_to_text(*wire);
    n = cache->erase_name(
        dns::Bytes(reinterpret_cast<const std::uint8_t*>(wire->data()), wire->size()));
  }
  spdlog::info("control: flushed {} cache entries{}", n, shown);
  if (json) return "{\"flushed\":" + std::to_string(n) + "}\n";
  return "flushed " + std::to_string(n) + " entries" + (name.empty() ? "" : " for " + name) + "\n";
}

std::string ControlServer::dump(bool json) {
  auto* cache = server_.cache();
  if (!cache) return json ? "[]\n" : "the cache is off\n";
  std::string out = json ? "[" : "# name type rcode ttl_left_s bytes\n";
  bool first = true;
  cache->for_each([&](const cache::PacketCache::EntryInfo& e) {
    std::string rcode(metrics::kRcodeNames[metrics::rcode_index(e.rcode)]);
    if (json) {
      out += std::string(first ? "" : ",") + "{\"name\":" + json_string(e.name) +
             ",\"type\":" + json_string(type_name(e.qtype)) + ",\"rcode\":" + json_string(rcode) +
             ",\"ttl\":" + std::to_string(e.ttl_left) + ",\"bytes\":" + std::to_string(e.bytes) +
             "}";
    } else {
      out += e.name + " " + type_name(e.qtype) + " " + rcode + " " + std::to_string(e.ttl_left) +
             " " + std::to_string(e.bytes) + "\n";
    }
    first = false;
  });
  if (json) out += "]\n";
  return out;
}

std::expected<std::vector<std::string>, std::string> ctl_socket_candidates(
    const std::optional<std::string>& socket_flag, const std::optional<std::string>& config_path) {
  if (socket_flag) return std::vector<std::string>{*socket_flag};
  if (config_path) {
    auto c = config::load_config_file(*config_path);
    if (!c) return std::unexpected(c.error().front());
    if (c->control_socket.empty()) {
      return std::unexpected(*config_path + ": control_socket is off: no localdns ctl");
    }
    return std::vector<std::string>{c->control_socket};
  }
  std::vector<std::string> out{config::default_config().control_socket};
  if (out.front() != kRuntimeDirControlSocket) out.emplace_back(kRuntimeDirControlSocket);
  return out;
}

int run_ctl(const std::vector<std::string>& args) {
  std::optional<std::string> socket_flag, config_path;
  bool json = false;
  std::vector<std::string> cmd;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--socket" && i + 1 < args.size()) {
      socket_flag = args[++i];
    } else if (a.starts_with("--socket=")) {
      socket_flag = a.substr(9);
    } else if (a == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (a.starts_with("--config=")) {
      config_path = a.substr(9);
    } else if (a == "--json") {
      json = true;
    } else if (a == "--names" || a == "--nxdomain" || a == "--clients") {
      cmd.push_back(a.substr(2));
    } else if (a == "-n" && i + 1 < args.size()) {
      cmd.push_back(args[++i]);
    } else {
      cmd.push_back(a);
    }
  }
  if (cmd.empty()) {
    std::cerr << "usage: localdns ctl [--socket PATH | --config FILE] [--json] stats | top "
                 "[--names|--nxdomain|"
                 "--clients] [-n N] | flush [NAME] | dump | reload\n";
    return 2;
  }
  // "top -n 5" without a kind: names.
  if (cmd[0] == "top" && cmd.size() == 2 && std::isdigit(static_cast<unsigned char>(cmd[1][0]))) {
    cmd.insert(cmd.begin() + 1, "names");
  }
  std::string line;
  for (const auto& c : cmd)
    line += (line.empty() ? "" : " ") + c;
  if (json) line += " json";
  line += "\n";
  auto paths = ctl_socket_candidates(socket_flag, config_path);
  if (!paths) {
    std::cerr << "localdns ctl: " << paths.error() << "\n";
    return 2;
  }
  asio::io_context ctx;
  local::socket sock(ctx);
  boost::system::error_code ec;
  std::string tried;
  for (const auto& path : *paths) {
    sock = local::socket(ctx);
    sock.connect(local::endpoint(path), ec);
    if (!ec) break;
    tried += (tried.empty() ? "" : ", ") + path + ": " + ec.message();
  }
  if (ec) {
    std::cerr << "localdns ctl: cannot connect to " << tried
              << " (is localdns running? its control socket is set with --control-socket or "
                 "control_socket; root only by default)\n";
    return 1;
  }
  asio::write(sock, asio::buffer(line), ec);
  std::string answer;
  char buf[65536];
  while (true) {
    auto n = sock.read_some(asio::buffer(buf), ec);
    answer.append(buf, n);
    if (ec) break;
  }
  std::cout << answer;
  return answer.starts_with("error:") ? 1 : 0;
}

}  // namespace localdns::app
