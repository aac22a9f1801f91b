#include <algorithm>
#include <array>

#include <localdns/dns/name.hpp>
#include <localdns/server/search_path.hpp>

namespace localdns::server {

namespace {

// A wire name without its root byte: the labels only.
std::string labels_of(const std::string& wire) {
  return wire.empty() ? wire : wire.substr(0, wire.size() - 1);
}

// Whether the labels `name` (no root byte) end with the labels `suffix` at a
// label boundary; `starts` holds the offset of each label of `name`.
bool ends_with_labels(std::string_view name, std::span<const std::size_t> starts,
                      std::string_view suffix) {
  if (suffix.empty() || suffix.size() > name.size()) return false;
  const std::size_t at = name.size() - suffix.size();
  if (std::find(starts.begin(), starts.end(), at) == starts.end()) return false;
  return name.substr(at) == suffix;
}

constexpr std::string_view kSvc = "\3svc";
constexpr std::string_view kInAddr = "\7in-addr\4arpa";
constexpr std::string_view kIp6 = "\3ip6\4arpa";

}  // namespace

SearchPath::SearchPath(const SearchPathSettings& settings) : settings_(settings) {
  if (auto w = dns::name_from_text(settings.cluster_domain)) cluster_ = *w;
  // A host domain under the cluster domain is none of the node's: every name
  // outside the cluster is then shorter than F or not F-shaped, so a held
  // F (cname) never waits on a walk that waits on it.
  for (const auto& h : settings.host_search) {
    auto w = dns::name_from_text(h);
    if (!w || w->size() <= 1) continue;
    const bool under = w->size() >= cluster_.size() &&
                       std::string_view(*w).substr(w->size() - cluster_.size()) == cluster_;
    if (!under) host_.push_back(*w);
  }
}

std::optional<Expansion> SearchPath::match(dns::Bytes qname, std::uint16_t qtype) const {
  if (qtype != static_cast<std::uint16_t>(dns::Type::A) &&
      qtype != static_cast<std::uint16_t>(dns::Type::AAAA)) {
    return std::nullopt;
  }
  if (cluster_.size() <= 1 || qname.empty() || qname.size() > dns::kMaxNameSize) {
    return std::nullopt;
  }
  std::array<char, dns::kMaxNameSize> buf;
  dns::lowercase_name(qname, reinterpret_cast<std::uint8_t*>(buf.data()));
  const std::string_view name(buf.data(), qname.size());
  // Each label's offset; the root byte ends the walk.
  std::array<std::size_t, 128> starts;
  std::size_t labels = 0;
  for (std::size_t pos = 0;;) {
    if (pos >= name.size()) return std::nullopt;
    auto len = static_cast<std::uint8_t>(name[pos]);
    if (len == 0) {
      if (pos + 1 != name.size()) return std::nullopt;
      break;
    }
    if (len > dns::kMaxLabelSize || labels == starts.size()) return std::nullopt;
    starts[labels++] = pos;
    pos += 1 + len;
  }
  // ... <ns> svc <cluster domain>, with N at least one label.
  const std::string suffix = std::string(kSvc) + cluster_;
  if (suffix.size() >= name.size()) return std::nullopt;
  const std::size_t at = name.size() - suffix.size();
  if (name.substr(at) != suffix) return std::nullopt;
  const auto* boundary = std::find(starts.begin(), starts.begin() + labels, at);
  if (boundary == starts.begin() + labels) return std::nullopt;
  const auto before = static_cast<std::size_t>(boundary - starts.begin());  // N's labels + ns
  if (before < 2) return std::nullopt;
  Expansion f;
  f.n_labels = before - 1;
  f.n_len = starts[before - 1];
  f.ns_len = at - f.n_len;
  if (f.n_labels - 1 >= settings_.ndots) return std::nullopt;  // dots in N
  for (std::size_t i = 0; i < before; ++i)
    if (name[starts[i] + 1] == '_') return std::nullopt;
  const std::string_view n = name.substr(0, f.n_len);
  std::span<const std::size_t> n_starts(starts.data(), f.n_labels);
  if (ends_with_labels(n, n_starts, kInAddr) || ends_with_labels(n, n_starts, kIp6)) {
    return std::nullopt;
  }
  for (const auto& h : host_)
    if (ends_with_labels(n, n_starts, labels_of(h))) return std::nullopt;
  return f;
}

std::vector<SearchCandidate> SearchPath::candidates(dns::Bytes qname, const Expansion& f) const {
  std::vector<SearchCandidate> out;
  if (f.n_len == 0 || f.n_len > qname.size()) return out;
  std::string n(f.n_len, '\0');
  dns::lowercase_name(qname.first(f.n_len), reinterpret_cast<std::uint8_t*>(n.data()));
  auto add = [&](std::string name) {
    if (name.size() > dns::kMaxNameSize) return;
    for (const auto& c : out)
      if (c.name == name) return;
    const bool in_cluster =
        name.size() >= cluster_.size() &&
        std::string_view(name).substr(name.size() - cluster_.size()) == cluster_;
    out.push_back({std::move(name), in_cluster});
  };
  add(n + std::string(kSvc) + cluster_);
  add(n + cluster_);
  for (const auto& h : host_)
    add(n + h);
  add(n + std::string(1, '\0'));
  return out;
}

CandidateOutcome outcome_of(dns::Bytes msg, const dns::ResponseView& v) {
  switch (v.rcode()) {
    case static_cast<std::uint16_t>(dns::Rcode::NXDomain):
      return CandidateOutcome::NxDomain;
    case static_cast<std::uint16_t>(dns::Rcode::NoError):
      break;
    default:
      return CandidateOutcome::ServFail;
  }
  // The answer section (parse_response checked every record's bounds).
  std::size_t pos = v.question_end;
  for (std::uint16_t i = 0; i < v.header.ancount; ++i) {
    auto end = dns::skip_name(msg, pos);
    if (!end || *end + 10 > msg.size()) break;
    if (dns::read_u16(msg.data() + *end) == v.question.qtype) return CandidateOutcome::Records;
    pos = *end + 10 + dns::read_u16(msg.data() + *end + 8);
  }
  return CandidateOutcome::NoData;
}

std::size_t releasable(std::span<const SearchCandidate> candidates, CandidateOutcome f,
                       std::span<const CandidateOutcome> outcomes) {
  std::size_t i = 0;
  while (i < candidates.size() && candidates[i].in_cluster)
    ++i;
  if (f != CandidateOutcome::NxDomain) return i;
  for (std::size_t j = 0; j < i; ++j)
    if (j >= outcomes.size() || outcomes[j] != CandidateOutcome::NxDomain) return i;
  while (i < candidates.size()) {
    ++i;  // every name before this one is NXDOMAIN: it may go
    if (i - 1 >= outcomes.size() || outcomes[i - 1] != CandidateOutcome::NxDomain) break;
  }
  return i;
}

}  // namespace localdns::server
