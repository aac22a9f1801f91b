#include <algorithm>
#include <array>
#include <cstring>

#include <localdns/dns/name.hpp>
#include <localdns/dns/synth.hpp>
#include <localdns/util/thread_scratch.hpp>

namespace localdns::dns {
namespace {

// Label offsets remembered as compression targets; names past them are
// written out in full, which is always correct.
constexpr std::size_t kMaxTargets = 64;
constexpr std::size_t kMaxPointer = 0x3FFF;

// RFC 3597 4: only the record data names of the RFC 1035 types may be
// compressed (NS, MD, MF, CNAME, SOA, MB, MG, MR, PTR, MINFO, MX).
bool compressible_rdata(std::uint16_t type) {
  switch (type) {
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
    case 7:
    case 8:
    case 9:
    case 12:
    case 14:
    case 15:
      return true;
    default:
      return false;
  }
}

// A message being written, with the offsets of the labels written so far
// (every one of them readable as a name suffix) for compression.
class Writer {
 public:
  explicit Writer(MutableBytes buf) : buf_(buf) {}

  std::size_t size() const { return pos_; }
  std::uint8_t* at(std::size_t off) { return buf_.data() + off; }
  bool ok() const { return ok_; }

  bool put(const std::uint8_t* src, std::size_t n) {
    if (!ok_ || buf_.size() - pos_ < n) return ok_ = false;
    std::memcpy(buf_.data() + pos_, src, n);
    pos_ += n;
    return true;
  }
  bool u16(std::uint16_t v) {
    std::uint8_t b[2];
    write_u16(b, v);
    return put(b, 2);
  }
  bool u32(std::uint32_t v) {
    std::uint8_t b[4];
    write_u32(b, v);
    return put(b, 4);
  }

  // Writes the uncompressed name `name`, as a pointer to the longest suffix
  // of it already written when `compress`.
  bool name(Bytes name, bool compress) {
    std::size_t s = 0;
    while (name[s] != 0) {
      if (compress) {
        for (std::size_t i = 0; i < targets_n_; ++i) {
          if (!suffix_at(targets_[i], name.subspan(s))) continue;
          labels(name.first(s));
          return u16(static_cast<std::uint16_t>(0xC000 | targets_[i]));
        }
      }
      s += 1 + std::size_t{name[s]};
    }
    labels(name.first(s));
    const std::uint8_t root = 0;
    return put(&root, 1);
  }

 private:
  // Writes labels (no root), remembering where each starts.
  void labels(Bytes l) {
    for (std::size_t i = 0; i < l.size(); i += 1 + std::size_t{l[i]}) {
      if (targets_n_ < kMaxTargets && pos_ + i <= kMaxPointer) targets_[targets_n_++] = pos_ + i;
    }
    put(l.data(), l.size());
  }

  // Whether the name written at `off` (labels and at most pointers we wrote)
  // equals the uncompressed `name`, ignoring letter case.
  bool suffix_at(std::size_t off, Bytes name) const {
    std::size_t i = 0;
    while (true) {
      std::uint8_t len = buf_[off];
      if ((len & 0xC0) == 0xC0) {
        off = (std::size_t{len & 0x3Fu} << 8) | buf_[off + 1];
        continue;
      }
      if (len != name[i]) return false;
      if (len == 0) return true;
      for (std::size_t k = 1; k <= len; ++k)
        if (lower(buf_[off + k]) != lower(name[i + k])) return false;
      off += 1 + len;
      i += 1 + len;
    }
  }

  MutableBytes buf_;
  std::size_t pos_ = 0;
  bool ok_ = true;
  std::array<std::size_t, kMaxTargets> targets_{};
  std::size_t targets_n_ = 0;
};

// The name at `pos` of `msg` (already validated by parse_response), expanded.
std::optional<Bytes> expand(Bytes msg, std::size_t pos, std::array<std::uint8_t, kMaxNameSize>& out,
                            std::size_t* end) {
  std::size_t n = 0;
  auto e = walk_name(msg, pos, [&](std::size_t b, std::size_t f) {
    if ((msg[b] & 0xC0) == 0xC0) return;
    std::memcpy(out.data() + n, msg.data() + b, f - b);  // walk_name bounds the total
    n += f - b;
  });
  if (!e) return std::nullopt;
  if (end) *end = *e;
  return Bytes(out.data(), n);
}

std::uint32_t aged(std::uint32_t ttl, std::uint32_t elapsed) {
  if (ttl & 0x8000'0000u) ttl = 0;  // RFC 2181 8
  return ttl > elapsed ? ttl - elapsed : 0;
}

// Copies record `rr` of `msg` with TTL `ttl`; names expanded, then compressed
// where allowed. Returns the offset of its TTL field.
std::optional<std::size_t> copy_record(Writer& w, Bytes msg, const RrView& rr, std::uint32_t ttl) {
  std::array<std::uint8_t, kMaxNameSize> name{};
  auto owner = expand(msg, rr.offset, name, nullptr);
  if (!owner || !w.name(*owner, true) || !w.u16(rr.type) || !w.u16(rr.rclass)) return std::nullopt;
  const std::size_t ttl_at = w.size();
  w.u32(ttl);
  const std::size_t rdlength_at = w.size();
  if (!w.u16(0)) return std::nullopt;
  const std::size_t rdata_at = w.size();
  if (detail::rdata_layout(rr.type) == nullptr) {
    w.put(msg.data() + rr.rdata_offset, rr.rdlength);
  } else {
    const bool compress = compressible_rdata(rr.type);
    std::size_t copied = rr.rdata_offset;
    bool ok = rdata_names(msg, rr, [&](std::size_t pos) -> std::optional<std::size_t> {
      std::size_t end = 0;
      if (!w.put(msg.data() + copied, pos - copied)) return std::nullopt;
      auto n = expand(msg, pos, name, &end);
      if (!n || !w.name(*n, compress)) return std::nullopt;
      copied = end;
      return end;
    });
    if (!ok || !w.put(msg.data() + copied, rr.end() - copied)) return std::nullopt;
  }
  if (!w.ok() || w.size() - rdata_at > 0xFFFF) return std::nullopt;
  write_u16(w.at(rdlength_at), static_cast<std::uint16_t>(w.size() - rdata_at));
  return ttl_at;
}

struct SynthScratch {
  std::array<std::uint8_t, kMaxMessageSize> wire;
  std::array<std::uint16_t, kMaxRecords> ttl_offsets;
};
thread_local util::ThreadScratch<SynthScratch> tl_synth;

}  // namespace

std::expected<std::size_t, SynthError> synthesize_cname(const ReplyShape& shape,
                                                        const CnameTarget& target,
                                                        MutableBytes out) {
  if (shape.do_bit || (shape.flags & kFlagCD)) return std::unexpected(SynthError::Dnssec);
  const bool address = shape.qtype == static_cast<std::uint16_t>(Type::A) ||
                       shape.qtype == static_cast<std::uint16_t>(Type::AAAA);
  if (!address || shape.qclass != kClassIN) return std::unexpected(SynthError::NotAddress);
  const ResponseView& rv = target.view;
  const Bytes msg = target.msg;
  if (rv.question.qtype != shape.qtype || rv.question.qclass != kClassIN)
    return std::unexpected(SynthError::TargetMismatch);
  if (rv.rcode() != 0 || (rv.header.flags & kFlagTC))
    return std::unexpected(SynthError::TargetFailed);

  // One walk finds X's answer records, whether one has the asked type, the
  // last SOA of its authority section, and the smallest TTL among them.
  std::uint32_t answer_min = UINT32_MAX;
  bool positive = false;
  std::optional<RrView> soa;
  for_each_rr(msg, rv.header, rv.question_end, [&](const RrView& rr) {
    if (rr.section == Section::Additional) return false;
    if (rr.section == Section::Answer) {
      answer_min = std::min(answer_min, aged(rr.ttl, target.elapsed));
      positive = positive || rr.type == shape.qtype;
    } else if (rr.type == static_cast<std::uint16_t>(Type::SOA) && rr.rdlength >= 22) {
      soa = rr;
    }
    return true;
  });
  std::uint32_t ttl = std::min(answer_min, target.negative_ttl);
  if (!positive) {
    if (!soa) return std::unexpected(SynthError::NoSoa);
    const std::uint32_t minimum = read_u32(msg.data() + soa->end() - 4);
    ttl = std::min({ttl, aged(soa->ttl, target.elapsed), aged(minimum, target.elapsed)});
  }

  SynthScratch& scratch = tl_synth.get();
  Writer w(scratch.wire);
  std::size_t n_ttls = 0;
  Header h;
  h.flags = kFlagQR | kFlagRA;
  h.qdcount = 1;
  h.ancount = static_cast<std::uint16_t>(rv.header.ancount + 1);
  h.nscount = positive ? 0 : 1;
  std::array<std::uint8_t, kHeaderSize> hb{};
  h.write(hb.data());
  w.put(hb.data(), hb.size());
  w.name(shape.question().qname, false);
  w.u16(shape.qtype);
  w.u16(shape.qclass);
  // F CNAME X: the owner is the question (a pointer to it), X lower case as
  // it was asked upstream.
  w.name(shape.question().qname, true);
  w.u16(static_cast<std::uint16_t>(Type::CNAME));
  w.u16(kClassIN);
  scratch.ttl_offsets[n_ttls++] = static_cast<std::uint16_t>(w.size());
  w.u32(ttl);
  const std::size_t rdlength_at = w.size();
  w.u16(0);
  const std::size_t rdata_at = w.size();
  std::array<std::uint8_t, kMaxNameSize> x{};
  lowercase_name(rv.question.qname, x.data());
  w.name(Bytes(x.data(), rv.question.qname.size()), true);
  if (!w.ok()) return std::unexpected(SynthError::NoRoom);
  write_u16(w.at(rdlength_at), static_cast<std::uint16_t>(w.size() - rdata_at));

  bool ok = true;
  for_each_rr(msg, rv.header, rv.question_end, [&](const RrView& rr) {
    const bool wanted = rr.section == Section::Answer ||
                        (rr.section == Section::Authority && !positive && rr.offset == soa->offset);
    if (rr.section == Section::Additional) return false;
    if (!wanted) return true;
    auto at = copy_record(w, msg, rr, ttl);
    if (!at || n_ttls == scratch.ttl_offsets.size()) return ok = false;
    scratch.ttl_offsets[n_ttls++] = static_cast<std::uint16_t>(*at);
    return true;
  });
  if (!ok || !w.ok()) return std::unexpected(SynthError::NoRoom);

  AnswerParts parts;
  parts.wire = Bytes(scratch.wire.data(), w.size());
  parts.flags = h.flags;
  parts.rcode = 0;
  parts.arcount = 0;
  parts.qname_len = shape.qname_len;
  parts.ttl_offsets = std::span<const std::uint16_t>(scratch.ttl_offsets.data(), n_ttls);
  std::size_t n = render_reply(parts, shape, std::nullopt, 0, out);
  if (n == 0) return std::unexpected(SynthError::NoRoom);
  return n;
}

}  // namespace localdns::dns
