// search_path.mode cname: F's round in the coalescer is held while the walk
// resolves the candidates (A and AAAA of each), then ended once for every
// waiter of F: with a CNAME to the target server::choose_search_target picks
// (built by dns::synthesize_cname, cached under F's key like any answer), or
// with F's own answer.
#include <algorithm>
#include <array>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/synth.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/search_prefetch.hpp>
#include <localdns/server/search_target.hpp>
#include <localdns/util/thread_scratch.hpp>

namespace localdns::server {

namespace {

// The synthesized answer, before it is cached and rendered for each waiter.
thread_local util::ThreadScratch<std::array<std::uint8_t, dns::kMaxMessageSize>> tl_cname;

TargetOutcome target_outcome(CandidateOutcome o) {
  switch (o) {
    case CandidateOutcome::Pending:
      return TargetOutcome::Pending;
    case CandidateOutcome::NxDomain:
      return TargetOutcome::NxDomain;
    case CandidateOutcome::NoData:
      return TargetOutcome::NoData;
    case CandidateOutcome::Records:
      return TargetOutcome::Records;
    case CandidateOutcome::ServFail:
      return TargetOutcome::ServFail;
    case CandidateOutcome::Timeout:
      return TargetOutcome::TimedOut;
  }
  return TargetOutcome::ServFail;
}

// Ends F's round with the message `msg` (an answer parse_response accepts).
bool finish_with(CandidateSet& set, dns::Bytes msg) {
  auto view = dns::parse_response(msg);
  if (!view) return false;
  set.f_answered = true;
  set.finish_f(upstream::Result{upstream::Status::Ok, msg, &*view});
  return true;
}

}  // namespace

void CandidateSet::answer_f_as_is() {
  if (!holds_f || f_answered) return;
  const auto& f = result(kF);
  if (f.answer && finish_with(*this, *f.answer)) return;
  // No answer of F's kept (it only held the round when NXDOMAIN came): a
  // failure, as the upstream's would have been.
  f_answered = true;
  finish_f(upstream::Result{upstream::Status::Failed, {}, nullptr});
}

bool CandidateSet::end_hold() {
  if (!holds_f || f_answered || hold_over) return false;
  hold_over = true;
  if (f_.outcome != CandidateOutcome::Pending) answer_f_as_is();
  return true;
}

void SearchPrefetch::f_done(const std::shared_ptr<CandidateSet>& set, const upstream::Result& r) {
  const bool sent = set->result(CandidateSet::kF).sent;
  set->result(CandidateSet::kF) = probe_result(r);
  set->result(CandidateSet::kF).sent = sent;
  if (set->result(CandidateSet::kF).outcome != CandidateOutcome::NxDomain || set->hold_over) {
    // No CNAME for a name that exists, or for a failure, or past the
    // hold's deadline: F as it came.
    set->f_answered = true;
    set->finish_f(r);
  }
  set->notify(CandidateSet::kF);
  release(set);
}

namespace {
// An NXDOMAIN without an SOA has no negative TTL and is not cached (RFC 2308
// 5): a CNAME past it may not be cached either.
std::uint32_t denial_ttl(std::uint32_t negative_ttl) {
  return negative_ttl == UINT32_MAX ? 0 : negative_ttl;
}
}  // namespace

void SearchPrefetch::decide(const std::shared_ptr<CandidateSet>& set) {
  const auto& f = set->result(CandidateSet::kF);
  if (f.outcome != CandidateOutcome::NxDomain) return;  // f_done answered it
  // A and AAAA of each candidate; probe type 0 is F's type.
  const bool f_is_a = set->qtype() == static_cast<std::uint16_t>(dns::Type::A);
  std::array<TargetCandidate, 64> cands;
  const std::size_t n = std::min(set->candidates().size(), cands.size());
  for (std::size_t c = 0; c < n; ++c) {
    const auto& same = set->result(static_cast<int>(c * 2));
    const auto& other = set->result(static_cast<int>(c * 2 + 1));
    auto& t = cands[c];
    t.a = target_outcome((f_is_a ? same : other).outcome);
    t.aaaa = target_outcome((f_is_a ? other : same).outcome);
    t.in_cluster = set->candidates()[c].in_cluster;
    for (const auto* r : {&same, &other})
      if (r->outcome == CandidateOutcome::NxDomain) {
        t.negative_ttl = std::min(t.negative_ttl, denial_ttl(r->negative_ttl));
      }
  }
  SearchInput in;
  in.candidates = std::span<const TargetCandidate>(cands.data(), n);
  in.qtype = set->qtype();
  in.single_label = set->single_label;
  in.f_negative_ttl = denial_ttl(f.negative_ttl);
  // Nor longer than F's own NXDOMAIN could be cached.
  const dns::Question fq{
      dns::Bytes(reinterpret_cast<const std::uint8_t*>(set->f_name().data()), set->f_name().size()),
      set->qtype(), dns::kClassIN};
  if (const auto* policy = handler_.policy_for(cache::Key::make(fq, set->do_bit(), set->cd()))) {
    in.f_negative_ttl = std::min(in.f_negative_ttl, policy->denial_max_ttl);
  }
  const auto choice = choose_search_target(in);
  if (choice.verdict == Verdict::Pending) return;
  if (choice.verdict == Verdict::AnswerF) return set->answer_f_as_is();
  // X's answer for the asked type, as it came (or as the cache rendered it,
  // its TTLs already aged).
  const auto& x = set->result(static_cast<int>(choice.index * 2));
  auto view = x.answer ? dns::parse_response(*x.answer) : std::nullopt;
  if (!view) return set->answer_f_as_is();
  // The answer every waiter's reply is rendered from (its ID, case, OPT):
  // F's question in lower case, RD set.
  dns::ReplyShape shape;
  shape.flags = dns::kFlagRD;
  std::copy(set->f_name().begin(), set->f_name().end(), shape.qname.begin());
  shape.qname_len = static_cast<std::uint8_t>(set->f_name().size());
  shape.qtype = set->qtype();
  shape.qclass = dns::kClassIN;
  shape.limit = dns::kMaxMessageSize;
  dns::CnameTarget target{*x.answer, *view, 0, choice.negative_ttl};
  auto& buf = tl_cname.get();
  auto made = dns::synthesize_cname(shape, target, dns::MutableBytes(buf.data(), buf.size()));
  const dns::Bytes msg(buf.data(), made ? *made : 0);
  auto answer = made ? dns::parse_response(msg) : std::nullopt;
  if (!answer) return set->answer_f_as_is();
  handler_.stats_.search_cname.inc();  // before any reply goes out
  set->f_answered = true;
  set->finish_f(upstream::Result{upstream::Status::Ok, msg, &*answer});
}

void QueryHandler::lead_held(int group, const FlightKey& flight, const cache::Key& key,
                             const upstream::Request& req, std::shared_ptr<CandidateSet> set) {
  stats_.forwarded.inc();
  auto* fwd = forwarders_[static_cast<std::size_t>(group)].get();
  set->finish_f = [this, flight, key, fwd](const upstream::Result& r) {
    store(key, r, fwd);  // first, so that later askers hit the cache
    complete(flight, key, r);
  };
  fwd->resolve(req, [this, set](const upstream::Result& r) {
    if (search_) {
      search_->f_done(set, r);
    } else {  // the search path was turned off meanwhile
      set->f_answered = true;
      set->finish_f(r);
    }
  });
}

}  // namespace localdns::server
