#include <algorithm>
#include <fcntl.h>
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

Worker::Worker(unsigned index, Shared& shared, FdPool* adopted, unsigned workers)
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
  clients_ = settings.clients;
  handler_.set_client_limits(clients_);
  search_path_ = settings.search_path;
  handler_.set_search_path(search_path_, &shared_.search_budget);
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
    // Only a change of clients.* builds a new limiter (its buckets start
    // full): an unrelated reload gives no client a fresh burst.
    if (gen->clients != clients_) {
      clients_ = gen->clients;
      handler_.set_client_limits(clients_);
    }
    // Likewise search_path.*: a new one starts with fresh per-client buckets.
    if (gen->search_path != search_path_) {
      search_path_ = gen->search_path;
      handler_.set_search_path(search_path_, &shared_.search_budget);
    }
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
      auto where = added.endpoints[i].to_string();
      udp_.push_back(std::move(added.udp[i]));
      udp_where_.push_back(where);
      tcp_.push_back(std::move(added.tcp[i]));
      tcp_where_.push_back(std::move(where));
    }
    auto& c = closing_.emplace_back(ctx_);
    for (const auto& ep : removed) {
      auto where = ep.to_string();
      // Every listener on `ep` (several after a handover to fewer workers).
      for (std::size_t i = udp_.size(); i-- > 0;) {
        if (udp_where_[i] != where) continue;
        udp_[i]->pause();
        c.udp.push_back(std::move(udp_[i]));
        udp_.erase(udp_.begin() + static_cast<std::ptrdiff_t>(i));
        udp_where_.erase(udp_where_.begin() + static_cast<std::ptrdiff_t>(i));
      }
      for (std::size_t i = tcp_.size(); i-- > 0;) {
        if (tcp_where_[i] != where) continue;
        tcp_[i]->drain([] {});
        c.tcp.push_back(std::move(tcp_[i]));
        tcp_.erase(tcp_.begin() + static_cast<std::ptrdiff_t>(i));
        tcp_where_.erase(tcp_where_.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if (c.udp.empty() && c.tcp.empty()) {
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
