#include <algorithm>
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

Worker::Worker(unsigned index, Shared& shared)
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
  handler_.set_client_limits(settings.clients);
  for (const auto& ep : settings.listen) {
    endpoints_.push_back(ep);
    udp_.push_back(std::make_unique<server::UdpListener>(ctx_, ep, handler_));
    tcp_.push_back(std::make_unique<server::TcpListener>(ctx_, ep, settings.tcp_clients, handler_,
                                                         shared_.tcp_clients));
  }
}

Worker::~Worker() {
  // Listeners and sessions first, then upstreams; the io_context goes last and
  // destroys any handler that never ran without invoking it.
  closing_.clear();
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
    handler_.set_client_limits(gen->clients);  // buckets start full again
    reap();
    done();
  });
}

NewListeners Worker::bind(const std::vector<util::Endpoint>& endpoints) {
  NewListeners out;
  for (const auto& ep : endpoints) {
    out.udp.push_back(std::make_unique<server::UdpListener>(ctx_, ep, handler_));
    out.tcp.push_back(std::make_unique<server::TcpListener>(ctx_, ep, shared_.server.tcp_clients,
                                                            handler_, shared_.tcp_clients));
    out.endpoints.push_back(ep);
  }
  return out;
}

void Worker::change_listeners(NewListeners added, std::vector<util::Endpoint> removed,
                              std::chrono::milliseconds drain, std::chrono::milliseconds hold,
                              std::function<void()> closed) {
  asio::post(ctx_, [this, added = std::move(added), removed = std::move(removed), drain, hold,
                    closed = std::move(closed)]() mutable {
    for (std::size_t i = 0; i < added.endpoints.size(); ++i) {
      added.udp[i]->start();
      added.tcp[i]->start();
      endpoints_.push_back(added.endpoints[i]);
      udp_.push_back(std::move(added.udp[i]));
      tcp_.push_back(std::move(added.tcp[i]));
    }
    auto& c = closing_.emplace_back(ctx_);
    for (const auto& ep : removed) {
      auto at = std::find(endpoints_.begin(), endpoints_.end(), ep);
      if (at == endpoints_.end()) continue;
      auto i = static_cast<std::size_t>(at - endpoints_.begin());
      udp_[i]->pause();
      tcp_[i]->drain([] {});
      c.udp.push_back(std::move(udp_[i]));
      c.tcp.push_back(std::move(tcp_[i]));
      endpoints_.erase(at);
      udp_.erase(udp_.begin() + static_cast<std::ptrdiff_t>(i));
      tcp_.erase(tcp_.begin() + static_cast<std::ptrdiff_t>(i));
    }
    if (c.udp.empty()) {
      closing_.pop_back();
      closed();
      return;
    }
    auto it = std::prev(closing_.end());
    it->timer.expires_after(drain);
    it->timer.async_wait(
        [this, it, hold, closed = std::move(closed)](boost::system::error_code ec) {
          if (ec) return;  // the worker is going: its destructor closes them
          for (auto& l : it->udp)
            l->unbind();
          for (auto& l : it->tcp)
            l->stop(server::TcpListener::Sessions::close);
          it->tcp.clear();
          closed();
          it->timer.expires_after(hold);
          it->timer.async_wait([this, it](boost::system::error_code e) {
            if (!e) closing_.erase(it);
          });
        });
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
