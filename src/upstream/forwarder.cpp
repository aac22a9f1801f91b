#include <localdns/dns/name.hpp>
#include <localdns/upstream/forwarder.hpp>

namespace localdns::upstream {

Forwarder::Forwarder(boost::asio::io_context& ctx, std::shared_ptr<GroupState> group,
                     const util::Clock& clock, util::Random& random)
    : ctx_(ctx),
      group_(std::move(group)),
      clock_(clock),
      random_(random),
      selector_(group_->settings.policy, random),
      probe_timer_(ctx) {
  const auto& s = group_->settings;
  for (std::size_t i = 0; i < s.servers.size(); ++i) {
    pools_.push_back(
        std::make_unique<TcpPool>(ctx_, s.tcp, s.timeout, *group_->health[i], clock_, random_));
  }
}

Forwarder::~Forwarder() {
  // Normally shutdown() ran on the worker while its listeners were alive.
  // If not, the clients' sockets may be gone already: end the exchanges
  // without running their completions.
  stopping_ = true;
  probe_timer_.cancel();
  std::vector<std::shared_ptr<Exchange>> live;
  for (auto* ex : live_)
    live.push_back(ex->shared_from_this());
  for (auto& ex : live)
    ex->detach();
  for (auto& p : pools_)
    p->close_all();
}

void Forwarder::resolve(const Request& req, Completion done) {
  if (stopping_) {
    done(Result{Status::Failed, {}, nullptr});
    return;
  }
  auto ticket = InFlightTicket::acquire(group_);
  if (!ticket) {
    done(Result{Status::Overloaded, {}, nullptr});
    return;
  }
  auto ex = std::make_shared<Exchange>(*this, req, std::move(done), std::move(ticket));
  ex->start();
}

int Forwarder::pick_server(std::uint64_t tried_mask) {
  const auto n = static_cast<unsigned>(pools_.size());
  std::uint64_t down = 0;
  for (unsigned i = 0; i < n && i < 64; ++i)
    if (group_->health[i]->is_down()) down |= server_bit(static_cast<int>(i));
  return selector_.pick(n, tried_mask, down);
}

void Forwarder::retire() {
  retired_ = true;
  probe_timer_.cancel();
}

void Forwarder::start_probing() {
  if (stopping_ || retired_) return;
  probe_timer_.expires_after(group_->settings.probe_interval);
  probe_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec && !stopping_ && !retired_) probe_tick();
  });
}

void Forwarder::probe_tick() {
  static const std::uint8_t kRoot[] = {0};
  for (std::size_t i = 0; i < pools_.size(); ++i) {
    // Servers marked down, and servers that never answered yet: readiness
    // waits for the default zone's upstream, whatever clients ask.
    const auto& h = *group_->health[i];
    if (!h.is_down() && h.counters().answered.load(std::memory_order_relaxed)) continue;
    Request probe;
    probe.question = {dns::Bytes(kRoot, 1), static_cast<std::uint16_t>(dns::Type::NS),
                      dns::kClassIN};
    probe.rd = false;
    probe.pinned_server = static_cast<int>(i);
    // A valid answer marks the server up inside the exchange; nothing else to do.
    resolve(probe, [](const Result&) {});
  }
  start_probing();
}

void Forwarder::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  probe_timer_.cancel();
  // Completions may start or end other exchanges: take references first.
  std::vector<std::shared_ptr<Exchange>> live;
  live.reserve(live_.size());
  for (auto* ex : live_)
    live.push_back(ex->shared_from_this());
  for (auto& ex : live)
    ex->abort();
  for (auto& p : pools_)
    p->close_all();
}

}  // namespace localdns::upstream
