#include <algorithm>
#include <array>
#include <cstring>

#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>

namespace localdns::dns {
namespace {

Edns edns_from_opt(const RrView& rr) {
  Edns e;
  e.present = true;
  e.udp_size = rr.rclass;  // OPT's CLASS field carries the UDP payload size
  e.version = static_cast<std::uint8_t>(rr.ttl >> 16);
  e.do_bit = (rr.ttl & kEdnsFlagDO) != 0;
  e.ext_rcode = static_cast<std::uint8_t>(rr.ttl >> 24);
  return e;
}

// Reads the single question at offset 12; qname must be uncompressed.
std::optional<std::size_t> read_question(Bytes msg, Question& q) {
  auto len = uncompressed_name_length(msg, kHeaderSize);
  if (!len) return std::nullopt;
  std::size_t pos = kHeaderSize + *len;
  if (pos + 4 > msg.size()) return std::nullopt;
  q.qname = msg.subspan(kHeaderSize, *len);
  q.qtype = read_u16(&msg[pos]);
  q.qclass = read_u16(&msg[pos + 2]);
  return pos + 4;
}

// Marks the TTL fields of the records walked so far, so that names reading
// them can be found. One bit per message byte, on the stack: no allocation.
class TtlBytes {
 public:
  explicit TtlBytes(std::size_t size) : words_((size + 63) / 64) {
    std::fill_n(bits_.begin(), words_, 0);
  }
  void mark(std::size_t ttl_offset) {
    for (std::size_t i = ttl_offset; i < ttl_offset + 4; ++i)
      bits_[i / 64] |= std::uint64_t{1} << (i % 64);
  }
  bool any(std::size_t begin, std::size_t end) const {
    for (std::size_t i = begin; i < end; ++i)
      if (bits_[i / 64] & (std::uint64_t{1} << (i % 64))) return true;
    return false;
  }

 private:
  std::array<std::uint64_t, (kMaxMessageSize + 64) / 64> bits_;
  std::size_t words_;
};

constexpr std::int8_t N = detail::kName;
constexpr std::int8_t S = detail::kCharString;
constexpr std::int8_t R = detail::kRest;
struct Layout {
  std::uint16_t type;
  std::array<std::int8_t, 6> fields;  // then kEnd
};
// RFC 1035 3.3 (NS, MD, MF, CNAME, SOA, MB, MG, MR, PTR, MINFO, MX), RFC 3597 4
// (RP, AFSDB, RT, SIG, PX, NXT, NAPTR, SRV), KX, DNAME, RRSIG, NSEC.
constexpr Layout kLayouts[] = {
    {2, {N}},
    {3, {N}},
    {4, {N}},
    {5, {N}},
    {6, {N, N, 20}},
    {7, {N}},
    {8, {N}},
    {9, {N}},
    {12, {N}},
    {14, {N, N}},
    {15, {2, N}},
    {17, {N, N}},
    {18, {2, N}},
    {21, {2, N}},
    {24, {18, N, R}},
    {26, {2, N, N}},
    {30, {N, R}},
    {33, {6, N}},
    {35, {4, S, S, S, N}},
    {36, {2, N}},
    {39, {N}},
    {46, {18, N, R}},
    {47, {N, R}},
};

// Appends the name at `pos` (already validated) without compression.
std::optional<std::size_t> expand_name(Bytes msg, std::size_t pos, std::uint8_t*& p,
                                       const std::uint8_t* limit) {
  bool fits = true;
  auto end = walk_name(msg, pos, [&](std::size_t b, std::size_t e) {
    if ((msg[b] & 0xC0) == 0xC0) return;  // a pointer: its target follows
    if (static_cast<std::size_t>(limit - p) < e - b) {
      fits = false;
      return;
    }
    if (fits) {
      std::memcpy(p, &msg[b], e - b);
      p += e - b;
    }
  });
  if (!end || !fits) return std::nullopt;
  return end;
}

bool put(std::uint8_t*& p, const std::uint8_t* limit, const std::uint8_t* src, std::size_t n) {
  if (static_cast<std::size_t>(limit - p) < n) return false;
  std::memcpy(p, src, n);
  p += n;
  return true;
}

bool valid_utf8(const std::uint8_t* s, std::size_t n) {
  for (std::size_t i = 0; i < n;) {
    std::uint8_t c = s[i];
    std::size_t len = c < 0x80                   ? 1
                      : (c >= 0xC2 && c <= 0xDF) ? 2
                      : (c >= 0xE0 && c <= 0xEF) ? 3
                      : (c >= 0xF0 && c <= 0xF4) ? 4
                                                 : 0;
    if (len == 0 || i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((s[i + k] & 0xC0) != 0x80) return false;
    if (len == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0)))
      return false;  // overlong, or a surrogate
    if (len == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90)))
      return false;  // overlong, or past U+10FFFF
    i += len;
  }
  return true;
}

// Longest prefix of at most `room` bytes of a valid UTF-8 text that ends on a
// character boundary.
std::size_t utf8_prefix(const std::uint8_t* s, std::size_t n, std::size_t room) {
  if (n <= room) return n;
  std::size_t cut = room;
  while (cut > 0 && (s[cut] & 0xC0) == 0x80)
    --cut;
  return cut;
}

// Writes an EDE option with at most `room` bytes in all; returns its end, or
// `p` when not even the INFO-CODE fits.
std::uint8_t* put_ede(std::uint8_t* p, std::size_t room, std::uint16_t code,
                      const std::uint8_t* text, std::size_t text_len) {
  if (room < 6) return p;
  std::size_t n = utf8_prefix(text, text_len, room - 6);
  write_u16(p, kOptionEde);
  write_u16(p + 2, static_cast<std::uint16_t>(2 + n));
  write_u16(p + 4, code);
  if (n != 0) std::memcpy(p + 6, text, n);
  return p + 6 + n;
}

// RFC 2181 8: a TTL with the top bit set counts as 0.
std::uint32_t ttl_value(std::uint32_t ttl) {
  return (ttl & 0x8000'0000u) ? 0 : ttl;
}

// What parse_response records of one record other than the OPT.
void note_record(Bytes msg, const RrView& rr, ResponseView& rv) {
  if (!rv.opt) {
    if (rv.kept_records < kViewTtlOffsets) {
      rv.ttl_offsets[rv.kept_records] = static_cast<std::uint16_t>(rr.type_offset + 4);
    }
    ++rv.kept_records;
    if (rr.section == Section::Additional) ++rv.kept_additional;
    if (rr.ttl & 0x8000'0000u) rv.ttl_top_bit = true;
  }
  if (rr.section == Section::Answer) {
    rv.min_answer_ttl = std::min(rv.min_answer_ttl, ttl_value(rr.ttl));
  } else if (rr.section == Section::Authority && rr.type == static_cast<std::uint16_t>(Type::SOA) &&
             rr.rdlength >= 22) {
    const std::uint32_t minimum = read_u32(&msg[rr.end() - 4]);
    rv.negative_ttl = std::min(ttl_value(rr.ttl), minimum);  // RFC 2308 5
  }
}

}  // namespace

namespace detail {
const std::int8_t* rdata_layout(std::uint16_t type) {
  for (const auto& l : kLayouts)
    if (l.type == type) return l.fields.data();
  return nullptr;
}

std::optional<RrView> read_rr(Bytes msg, std::size_t pos, Section section) {
  auto name_end = skip_name(msg, pos);
  if (!name_end || *name_end + 10 > msg.size()) return std::nullopt;
  RrView rr;
  rr.section = section;
  rr.offset = pos;
  rr.type_offset = *name_end;
  const std::uint8_t* p = &msg[*name_end];
  rr.type = read_u16(p);
  rr.rclass = read_u16(p + 2);
  rr.ttl = read_u32(p + 4);
  rr.rdlength = read_u16(p + 8);
  rr.rdata_offset = *name_end + 10;
  if (rr.end() > msg.size()) return std::nullopt;
  return rr;
}
}  // namespace detail

std::uint16_t QueryView::udp_reply_limit() const {
  if (!edns.present) return kClassicUdpSize;
  return std::clamp<std::uint16_t>(edns.udp_size, kClassicUdpSize, kEdnsUdpSize);
}

QueryView parse_query(Bytes msg) {
  QueryView v;
  if (msg.size() < kHeaderSize) return v;  // Drop
  v.header = Header::read(msg.data());
  if (v.header.qr()) return v;  // a response sent to us: never answer (loops)
  if (v.header.opcode() != 0) {
    v.status = QueryStatus::NotImp;
    return v;
  }
  v.status = QueryStatus::FormErr;
  if (v.header.qdcount != 1) return v;
  auto qend = read_question(msg, v.question);
  if (!qend) return v;
  v.question_valid = true;
  // Queries carry no answers; authority (e.g. IXFR) and additional are walked
  // to find the OPT record and to reject trailing garbage inside the counts.
  bool ok = true;
  int opt_count = 0;
  bool walked = for_each_rr(msg, v.header, *qend, [&](const RrView& rr) {
    if (rr.type == static_cast<std::uint16_t>(Type::OPT)) {
      if (rr.section != Section::Additional || msg[rr.offset] != 0 || ++opt_count > 1) {
        ok = false;  // RFC 6891 6.1.1: one OPT, owner ".", additional section
        return false;
      }
      v.edns = edns_from_opt(rr);
    }
    return true;
  });
  if (!walked || !ok) {
    v.edns = {};
    return v;
  }
  if (v.edns.present && v.edns.version != 0) {
    v.status = QueryStatus::BadVers;
    return v;
  }
  v.status = QueryStatus::Ok;
  return v;
}

std::optional<ResponseView> parse_response(Bytes msg) {
  if (msg.size() < kHeaderSize) return std::nullopt;
  ResponseView rv;
  rv.header = Header::read(msg.data());
  if (!rv.header.qr() || rv.header.qdcount != 1) return std::nullopt;
  auto qend = read_question(msg, rv.question);
  if (!qend) return std::nullopt;
  rv.question_end = *qend;
  bool ok = true;
  rv.end = *qend;
  TtlBytes ttls(msg.size());
  // Every name's walk: for validity and, for records kept for clients (those
  // before the OPT), whether it reads TTL bytes.
  auto check_name = [&](std::size_t pos) {
    return walk_name(msg, pos, [&](std::size_t b, std::size_t e) {
      if (!rv.opt && !rv.names_read_ttls && ttls.any(b, e)) rv.names_read_ttls = true;
    });
  };
  bool walked = for_each_rr(msg, rv.header, *qend, [&](const RrView& rr) {
    if (rr.type == static_cast<std::uint16_t>(Type::OPT)) {
      if (rr.section != Section::Additional || rv.opt) {
        ok = false;
        return false;
      }
      rv.opt = rr;
      rv.edns = edns_from_opt(rr);
    } else {
      check_name(rr.offset);
      ttls.mark(rr.type_offset + 4);
      if (!rdata_names(msg, rr, check_name)) {
        ok = false;
        return false;
      }
      note_record(msg, rr, rv);
    }
    rv.end = rr.end();
    return true;
  });
  if (!walked || !ok) return std::nullopt;
  rv.kept_end = rv.opt ? rv.opt->offset : rv.end;
  return rv;
}

std::size_t copy_expanded(Bytes msg, const ResponseView& rv, MutableBytes out) {
  std::uint8_t* p = out.data();
  const std::uint8_t* limit = out.data() + out.size();
  if (!put(p, limit, msg.data(), rv.question_end)) return 0;
  unsigned kept = 0;
  bool ok = true;
  for_each_rr(msg, rv.header, rv.question_end, [&](const RrView& rr) {
    if (rv.opt && rr.offset >= rv.opt->offset) return false;
    ok = expand_name(msg, rr.offset, p, limit) && put(p, limit, &msg[rr.type_offset], 8) &&
         static_cast<std::size_t>(limit - p) >= 2;
    if (!ok) return false;
    std::uint8_t* rdlength = p;
    p += 2;
    std::uint8_t* rdata = p;
    if (detail::rdata_layout(rr.type) == nullptr) {
      ok = put(p, limit, msg.data() + rr.rdata_offset, rr.rdlength);
    } else {
      std::size_t copied = rr.rdata_offset;  // record data before `copied` is written
      ok = rdata_names(msg, rr, [&](std::size_t pos) -> std::optional<std::size_t> {
        if (!put(p, limit, msg.data() + copied, pos - copied)) return std::nullopt;
        auto end = expand_name(msg, pos, p, limit);
        if (end) copied = *end;
        return end;
      });
      ok = ok && put(p, limit, msg.data() + copied, rr.end() - copied);
    }
    if (!ok || p - rdata > 0xFFFF) return ok = false;
    write_u16(rdlength, static_cast<std::uint16_t>(p - rdata));
    ++kept;
    return true;
  });
  if (!ok) return 0;
  Header h = rv.header;
  h.arcount = static_cast<std::uint16_t>(kept - h.ancount - h.nscount);
  h.write(out.data());
  return static_cast<std::size_t>(p - out.data());
}

std::size_t copy_ede(Bytes msg, const RrView& opt, std::uint8_t* out) {
  std::uint8_t* p = out;
  std::size_t pos = opt.rdata_offset;
  const std::size_t end = opt.end();
  while (pos + 4 <= end) {
    std::uint16_t code = read_u16(&msg[pos]);
    std::size_t len = read_u16(&msg[pos + 2]);
    pos += 4;
    if (pos + len > end) break;  // malformed: keep what was read
    if (code == kOptionEde && len >= 2) {
      const std::uint8_t* text = msg.data() + pos + 2;
      std::size_t text_len = len - 2;
      if (!valid_utf8(text, text_len)) text_len = 0;
      std::uint8_t* next = put_ede(p, kMaxEdeBytes - static_cast<std::size_t>(p - out),
                                   read_u16(&msg[pos]), text, text_len);
      if (next == p) break;
      p = next;
    }
    pos += len;
  }
  return static_cast<std::size_t>(p - out);
}

std::uint8_t* write_ede(std::uint8_t* p, std::uint16_t code, std::string_view text) {
  const auto* t = reinterpret_cast<const std::uint8_t*>(text.data());
  return put_ede(p, kMaxEdeBytes, code, t, valid_utf8(t, text.size()) ? text.size() : 0);
}

bool response_matches(const ResponseView& rv, std::uint16_t id, const Question& asked) {
  return rv.header.id == id && rv.header.opcode() == 0 && rv.question.qtype == asked.qtype &&
         rv.question.qclass == asked.qclass && names_equal(rv.question.qname, asked.qname);
}

}  // namespace localdns::dns
