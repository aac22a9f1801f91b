#include <algorithm>
#include <cstring>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/util/thread_scratch.hpp>

namespace localdns::dns {
namespace {

constexpr std::uint16_t kEchoedQueryFlags = kFlagRD | kFlagCD;
// An EDE option localdns adds to a rendered reply: INFO-CODE only.
constexpr std::size_t kOwnEdeSize = 6;

// Writes an OPT RR: root owner, our payload size, extended RCODE high bits,
// version 0, DO echoed (RFC 3225 3), `options` as its data.
std::uint8_t* write_opt(std::uint8_t* p, std::uint8_t ext_rcode_high, bool do_bit,
                        Bytes options = {}) {
  *p++ = 0;
  write_u16(p, static_cast<std::uint16_t>(Type::OPT));
  write_u16(p + 2, kEdnsUdpSize);
  std::uint32_t ttl = (std::uint32_t{ext_rcode_high} << 24) | (do_bit ? kEdnsFlagDO : 0u);
  write_u32(p + 4, ttl);
  write_u16(p + 8, static_cast<std::uint16_t>(options.size()));
  if (!options.empty()) std::memcpy(p + 10, options.data(), options.size());
  return p + 10 + options.size();
}

std::uint8_t* write_question(std::uint8_t* p, Bytes qname, std::uint16_t qtype,
                             std::uint16_t qclass) {
  std::memcpy(p, qname.data(), qname.size());
  p += qname.size();
  write_u16(p, qtype);
  write_u16(p + 2, qclass);
  return p + 4;
}

struct ErrorParts {
  std::uint16_t id;
  std::uint16_t query_flags;
  const Question* question;  // null: no question section
  bool edns;
  bool do_bit;
  std::uint16_t ext_rcode;  // full 12-bit RCODE
  Bytes options = {};       // EDNS options, for EDNS clients only
};

std::size_t write_error(const ErrorParts& e, MutableBytes out) {
  std::size_t need = kHeaderSize + (e.question ? e.question->qname.size() + 4 : 0) +
                     (e.edns ? kOptRecordSize + e.options.size() : 0);
  if (out.size() < need) return 0;
  Header h;
  h.id = e.id;
  h.flags =
      static_cast<std::uint16_t>(kFlagQR | kFlagRA | (e.query_flags & kOpcodeMask) |
                                 (e.query_flags & kEchoedQueryFlags) | (e.ext_rcode & kRcodeMask));
  h.qdcount = e.question ? 1 : 0;
  h.arcount = e.edns ? 1 : 0;
  h.write(out.data());
  std::uint8_t* p = out.data() + kHeaderSize;
  if (e.question) p = write_question(p, e.question->qname, e.question->qtype, e.question->qclass);
  if (e.edns) p = write_opt(p, static_cast<std::uint8_t>(e.ext_rcode >> 4), e.do_bit, e.options);
  return static_cast<std::size_t>(p - out.data());
}

}  // namespace

ReplyShape make_reply_shape(const QueryView& q, std::size_t limit) {
  ReplyShape s;
  s.id = q.header.id;
  s.flags = q.header.flags;
  s.qname_len = static_cast<std::uint8_t>(q.question.qname.size());
  std::memcpy(s.qname.data(), q.question.qname.data(), q.question.qname.size());
  s.qtype = q.question.qtype;
  s.qclass = q.question.qclass;
  s.edns = q.edns.present;
  s.do_bit = q.edns.do_bit;
  s.limit = static_cast<std::uint16_t>(std::min<std::size_t>(limit, kMaxMessageSize));
  return s;
}

std::size_t build_error_reply(const QueryView& q, Rcode rcode, MutableBytes out) {
  std::uint16_t ext = static_cast<std::uint16_t>(rcode);
  if (q.status == QueryStatus::BadVers) ext = kExtRcodeBadVers;
  ErrorParts e{q.header.id,    q.header.flags, q.question_valid ? &q.question : nullptr,
               q.edns.present, q.edns.do_bit,  ext};
  return write_error(e, out);
}

std::size_t build_error_reply(const ReplyShape& shape, Rcode rcode, MutableBytes out) {
  Question question = shape.question();
  ErrorParts e{shape.id,   shape.flags,  &question,
               shape.edns, shape.do_bit, static_cast<std::uint16_t>(rcode)};
  return write_error(e, out);
}

std::size_t build_error_reply(const ReplyShape& shape, Rcode rcode, const ExtendedError& ede,
                              MutableBytes out) {
  std::array<std::uint8_t, kMaxEdeBytes> opt{};
  std::size_t n = static_cast<std::size_t>(write_ede(opt.data(), ede.code, ede.text) - opt.data());
  Question question = shape.question();
  ErrorParts e{shape.id,
               shape.flags,
               &question,
               shape.edns,
               shape.do_bit,
               static_cast<std::uint16_t>(rcode),
               Bytes(opt.data(), n)};
  std::size_t size = kHeaderSize + question.qname.size() + 4 + kOptRecordSize + n;
  if (size > shape.limit) e.options = {};  // the error itself matters more
  return write_error(e, out);
}

std::size_t build_query(const OutgoingQuery& q, MutableBytes out) {
  std::size_t need = kHeaderSize + q.question.qname.size() + 4 + kOptRecordSize;
  if (out.size() < need) return 0;
  Header h;
  h.id = q.id;
  h.flags = static_cast<std::uint16_t>((q.rd ? kFlagRD : 0) | (q.cd ? kFlagCD : 0));
  h.qdcount = 1;
  h.arcount = 1;
  h.write(out.data());
  std::uint8_t* p = out.data() + kHeaderSize;
  lowercase_name(q.question.qname, p);
  p += q.question.qname.size();
  write_u16(p, q.question.qtype);
  write_u16(p + 2, q.question.qclass);
  p = write_opt(p + 4, 0, q.do_bit);
  return static_cast<std::size_t>(p - out.data());
}

namespace {

// The TTL offsets of the first `count` records of `wire` after its question.
std::span<const std::uint16_t> find_ttls(Bytes wire, std::size_t question_end, std::size_t count,
                                         std::span<std::uint16_t> out) {
  std::size_t n = 0;
  for_each_rr(wire, Header::read(wire.data()), question_end, [&](const RrView& rr) {
    if (n == count || n == out.size()) return false;
    out[n++] = static_cast<std::uint16_t>(rr.type_offset + 4);
    return true;
  });
  return out.first(n);
}

thread_local util::ThreadScratch<AnswerScratch> tl_scratch;

}  // namespace

std::optional<AnswerParts> answer_parts(Bytes msg, const ResponseView& rv, AnswerScratch& scratch,
                                        std::size_t max_wire) {
  // Records are kept verbatim up to the OPT, which each reply replaces by its
  // own (or drops); compression pointers stay valid because everything kept
  // keeps its offset. Records after the OPT and bytes after the last record
  // are dropped: moving them could break compression pointers into the OPT
  // or each other (servers put the OPT last). When a name reads TTL bytes,
  // which replies rewrite, the records are copied with names expanded.
  AnswerParts a;
  a.flags = rv.header.flags;
  a.rcode = rv.rcode();
  a.qname_len = rv.question.qname.size();
  if (rv.names_read_ttls) {
    std::size_t len = copy_expanded(
        msg, rv, MutableBytes(scratch.wire).first(std::min(max_wire, scratch.wire.size())));
    if (len == 0) return std::nullopt;
    a.wire = Bytes(scratch.wire.data(), len);
    a.arcount = read_u16(scratch.wire.data() + 10);
    a.ttl_offsets = find_ttls(a.wire, rv.question_end, rv.kept_records, scratch.ttl_offsets);
  } else {
    a.wire = msg.first(std::min(rv.kept_end, msg.size()));
    a.arcount = rv.kept_additional;
    a.ttl_offsets = rv.kept_records <= kViewTtlOffsets
                        ? std::span<const std::uint16_t>(rv.ttl_offsets.data(), rv.kept_records)
                        : find_ttls(a.wire, rv.question_end, rv.kept_records, scratch.ttl_offsets);
  }
  if (rv.opt) a.ede = Bytes(scratch.ede.data(), copy_ede(msg, *rv.opt, scratch.ede.data()));
  return a;
}

std::size_t render_reply(const AnswerParts& answer, const ReplyShape& shape,
                         std::optional<TtlAging> aging, std::uint16_t own_ede, MutableBytes out) {
  if (shape.qname_len != answer.qname_len || answer.wire.size() < kHeaderSize + shape.qname_len) {
    return 0;
  }
  const std::uint16_t rcode = answer.rcode;
  // An extended RCODE (BADVERS, BADCOOKIE, ...) needs an OPT to be expressed
  // (RFC 6891 6.1.3); its low 4 bits alone would read as another RCODE.
  if (rcode > kRcodeMask && !shape.edns) return build_error_reply(shape, Rcode::ServFail, out);
  const std::size_t size = answer.wire.size() + (shape.edns ? kOptRecordSize : 0);
  if (size > shape.limit) {
    // TC=1 and no records; its OPT keeps the extended RCODE bits.
    std::size_t n = build_truncated_reply(shape, answer.flags, out);
    if (n != 0 && shape.edns) out[n - kOptRecordSize + 5] = static_cast<std::uint8_t>(rcode >> 4);
    return n;
  }
  if (size > out.size()) return 0;
  // The EDE options, the answer's and then our own, go first when space is short.
  std::size_t ede = 0;
  if (shape.edns) {
    ede = answer.ede.size() + (own_ede != 0 ? kOwnEdeSize : 0);
    if (size + ede > shape.limit || size + ede > out.size()) ede = 0;
  }
  std::uint8_t* p = out.data();
  std::memcpy(p, answer.wire.data(), answer.wire.size());
  if (aging) {
    const std::uint32_t elapsed = aging->elapsed;
    const std::uint32_t cap = aging->cap;
    for (const std::uint16_t off : answer.ttl_offsets) {
      std::uint32_t ttl = read_u32(p + off);
      if (ttl & 0x8000'0000u) ttl = 0;          // RFC 2181 8
      ttl = ttl > elapsed ? ttl - elapsed : 0;  // never negative, never wraps
      write_u32(p + off, std::min(ttl, cap));
    }
  } else {
    for (const std::uint16_t off : answer.ttl_offsets)
      if (p[off] & 0x80) write_u32(p + off, 0);  // RFC 2181 8
  }
  // Only ID, flags and ARCOUNT differ from the stored header.
  std::uint8_t* const header = p;
  std::uint16_t arcount = answer.arcount;
  p += answer.wire.size();
  if (shape.edns) {
    p = write_opt(p, static_cast<std::uint8_t>(rcode >> 4), shape.do_bit,
                  ede != 0 ? answer.ede : Bytes{});
    if (ede != 0 && own_ede != 0) {
      p = write_ede(p, own_ede);
      write_u16(p - ede - 2, static_cast<std::uint16_t>(ede));  // the OPT's RDLENGTH
    }
    arcount = static_cast<std::uint16_t>(arcount + 1);
  }
  write_u16(header, shape.id);
  write_u16(header + 2, reply_flags(answer.flags, shape));
  write_u16(header + 10, arcount);
  std::memcpy(out.data() + kHeaderSize, shape.qname.data(), shape.qname_len);
  return static_cast<std::size_t>(p - out.data());
}

std::size_t build_client_reply(Bytes answer, const ResponseView& rv, const ReplyShape& shape,
                               MutableBytes out) {
  auto parts = answer_parts(answer, rv, tl_scratch.get(), out.size());
  if (!parts) return 0;
  return render_reply(*parts, shape, std::nullopt, 0, out);
}

std::size_t build_truncated_reply(const ReplyShape& shape, std::uint16_t answer_flags,
                                  MutableBytes out) {
  // RFC 2181 9 / RFC 7766 5: signal truncation, the client retries over TCP.
  Question q = shape.question();
  ErrorParts e{shape.id, shape.flags, &q, shape.edns, shape.do_bit, 0};
  std::size_t n = write_error(e, out);
  if (n == 0) return 0;
  write_u16(out.data() + 2, static_cast<std::uint16_t>(reply_flags(answer_flags, shape) | kFlagTC));
  return n;
}

std::uint8_t* write_opt_record(std::uint8_t* p, bool do_bit, std::uint16_t options_len) {
  std::uint8_t* end = write_opt(p, 0, do_bit);
  write_u16(end - 2, options_len);
  return end;
}

}  // namespace localdns::dns
