#include <algorithm>
#include <utility>

#include <boost/asio/post.hpp>

#include <localdns/app/worker.hpp>

namespace localdns::app {

namespace asio = boost::asio;

namespace {
server::HandlerOptions handler_options(const Shared& s) {
  server::HandlerOptions o;
  o.query_log_sample = s.config->query_log_sample;
  o.top_sample = s.config->top_sample;
  o.zone_labels = s.zone_labels;
  return o;
}
}  // namespace

Worker::Worker(unsigned index, Shared& shared)
    : index_(index),
      shared_(shared),
      guard_(asio::make_work_guard(ctx_)),
      wiring_(shared.cache_wiring),
      router_(shared.router),
      handler_(*router_, forwarders_, wiring_, ctx_.get_executor(), handler_options(shared)) {
  for (const auto& g : shared_.groups) {
    forwarders_.push_back(std::make_unique<upstream::Forwarder>(ctx_, g, util::Clock::real(),
                                                                util::Random::system()));
    groups_.push_back(g);
  }
  const auto& settings = shared_.server;
  for (const auto& ep : settings.listen) {
    udp_.push_back(std::make_unique<server::UdpListener>(ctx_, ep, handler_));
    tcp_.push_back(std::make_unique<server::TcpListener>(ctx_, ep, settings.tcp_clients, handler_,
                                                         shared_.tcp_clients));
  }
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
    // A kept group's forwarder follows its GroupState to its new index.
    std::vector<std::unique_ptr<upstream::Forwarder>> next;
    for (const auto& g : gen->groups) {
      auto at = std::find(groups_.begin(), groups_.end(), g);
      if (at != groups_.end()) {
        auto& old = forwarders_[static_cast<std::size_t>(at - groups_.begin())];
        if (old) {
          next.push_back(std::move(old));
          continue;
        }
      }
      next.push_back(std::make_unique<upstream::Forwarder>(ctx_, g, util::Clock::real(),
                                                           util::Random::system()));
      if (index_ == 0) next.back()->start_probing();
    }
    for (auto& f : forwarders_) {
      if (!f) continue;
      f->retire();
      retired_.push_back(std::move(f));
    }
    // The same vector object: the handler holds it by reference.
    forwarders_ = std::move(next);
    groups_ = gen->groups;
    router_ = gen->router;
    handler_.set_router(*router_);
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
