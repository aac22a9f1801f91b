#include <fcntl.h>
#include <utility>

#include <boost/asio/post.hpp>

#include <localdns/app/worker.hpp>

namespace localdns::app {

namespace asio = boost::asio;

namespace {
server::HandlerOptions handler_options(const config::Config& c) {
  server::HandlerOptions o;
  o.query_log_sample = c.query_log_sample;
  o.top_sample = c.top_sample;
  return o;
}
}  // namespace

Worker::Worker(unsigned index, Shared& shared, FdPool* adopted, unsigned workers)
    : index_(index),
      shared_(shared),
      guard_(asio::make_work_guard(ctx_)),
      wiring_(shared.cache_wiring),
      handler_(*shared.router, forwarders_, wiring_, ctx_.get_executor(),
               handler_options(*shared.config)) {
  for (const auto& g : shared_.groups) {
    forwarders_.push_back(std::make_unique<upstream::Forwarder>(ctx_, g, util::Clock::real(),
                                                                util::Random::system()));
    groups_.push_back(g);
  }
  const auto& settings = shared_.server;
  for (const auto& ep : settings.listen) {
    auto where = ep.to_string();
    std::vector<UniqueFd> udp, tcp;
    if (adopted != nullptr) {
      udp = adopted->take(FdKind::udp, where, index_, workers);
      tcp = adopted->take(FdKind::tcp, where, index_, workers);
    }
    for (auto& fd : udp) {
      udp_.push_back(std::make_unique<server::UdpListener>(
          server::adopt_udp_socket(ctx_, ep, fd.release()), handler_));
      udp_where_.push_back(where);
    }
    if (udp.empty()) {
      udp_.push_back(std::make_unique<server::UdpListener>(ctx_, ep, handler_));
      udp_where_.push_back(where);
    }
    for (auto& fd : tcp) {
      tcp_.push_back(std::make_unique<server::TcpListener>(
          server::adopt_tcp_acceptor(ctx_, ep, fd.release()), settings.tcp_clients, handler_,
          shared_.tcp_clients));
      tcp_where_.push_back(where);
    }
    if (tcp.empty()) {
      tcp_.push_back(std::make_unique<server::TcpListener>(ctx_, ep, settings.tcp_clients, handler_,
                                                           shared_.tcp_clients));
      tcp_where_.push_back(where);
    }
  }
}

void Worker::export_listeners(std::function<void(std::vector<PassedFd>)> done) {
  asio::post(ctx_, [this, done = std::move(done)] {
    std::vector<PassedFd> out;
    auto add = [&](FdKind kind, int fd, const std::string& where) {
      if (fd < 0) return;
      int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (copy < 0) return;  // EMFILE: that one stays unpassed; the successor binds its own
      out.push_back({kind, static_cast<std::uint16_t>(index_), where, UniqueFd(copy)});
    };
    for (std::size_t i = 0; i < udp_.size(); ++i)
      add(FdKind::udp, udp_[i]->native_fd(), udp_where_[i]);
    for (std::size_t i = 0; i < tcp_.size(); ++i)
      add(FdKind::tcp, tcp_[i]->native_fd(), tcp_where_[i]);
    done(std::move(out));
  });
}

void Worker::hand_over(std::function<void()> done) {
  asio::post(ctx_, [this, done = std::move(done)] {
    for (auto& l : udp_)
      l->pause();
    if (tcp_.empty()) {
      done();
      return;
    }
    auto left = std::make_shared<std::pair<std::size_t, std::function<void()>>>(tcp_.size(), done);
    for (auto& l : tcp_) {
      l->release_when_idle([left] {
        if (--left->first == 0) left->second();
      });
    }
  });
}

Worker::~Worker() {
  // Listeners and sessions first, then upstreams; the io_context goes last and
  // destroys any handler that never ran without invoking it.
  tcp_.clear();
  udp_.clear();
  forwarders_.clear();
  retired_.clear();
}

void Worker::run() {
  for (auto& l : udp_)
    l->start();
  for (auto& l : tcp_)
    l->start();
  if (index_ == 0) {
    for (auto& f : forwarders_)
      f->start_probing();
  }
  ctx_.run();
}

void Worker::stop_listening() {
  asio::post(ctx_, [this] {
    for (auto& l : udp_)
      l->pause();
    for (auto& l : tcp_)
      l->stop(server::TcpListener::Sessions::keep);
  });
}

void Worker::fail_upstreams(std::function<void()> done) {
  asio::post(ctx_, [this, done = std::move(done)] {
    for (auto& f : forwarders_)
      f->shutdown();
    for (auto& f : retired_)
      f->shutdown();
    done();
  });
}

void Worker::drain_clients(std::function<void()> done) {
  asio::post(ctx_, [this, done = std::move(done)] {
    if (tcp_.empty()) {
      done();
      return;
    }
    struct Left {
      std::size_t listeners;
      std::function<void()> done;
    };
    auto left = std::make_shared<Left>(Left{tcp_.size(), done});
    for (auto& l : tcp_) {
      l->drain([left] {
        if (--left->listeners == 0) left->done();
      });
    }
  });
}

void Worker::apply(std::shared_ptr<const Generation> gen, std::function<void()> done) {
  asio::post(ctx_, [this, gen = std::move(gen), done = std::move(done)] {
    for (std::size_t i = 0; i < gen->groups.size() && i < groups_.size(); ++i) {
      if (gen->groups[i] == groups_[i]) continue;
      auto fresh = std::make_unique<upstream::Forwarder>(ctx_, gen->groups[i], util::Clock::real(),
                                                         util::Random::system());
      if (index_ == 0) fresh->start_probing();
      forwarders_[i]->retire();
      retired_.push_back(std::exchange(forwarders_[i], std::move(fresh)));
      groups_[i] = gen->groups[i];
    }
    wiring_.policies = gen->policies;
    handler_.set_query_log_sample(gen->query_log_sample);
    reap();
    done();
  });
}

// Destroys the retired forwarders that have nothing in flight; looks again
// later while some are left (each exchange ends within its group's timeouts).
void Worker::reap() {
  std::erase_if(retired_, [](const auto& f) { return f->idle(); });
  if (retired_.empty() || reaping_) return;
  reaping_ = true;
  reap_timer_.expires_after(std::chrono::milliseconds(500));
  reap_timer_.async_wait([this](boost::system::error_code ec) {
    reaping_ = false;
    if (!ec) reap();
  });
}

void Worker::stop() {
  guard_.reset();
  ctx_.stop();
}

}  // namespace localdns::app
