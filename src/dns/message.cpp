#include <algorithm>
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

}  // namespace

namespace detail {
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
  bool walked = for_each_rr(msg, rv.header, *qend, [&](const RrView& rr) {
    if (rr.type == static_cast<std::uint16_t>(Type::OPT)) {
      if (rr.section != Section::Additional || rv.opt) {
        ok = false;
        return false;
      }
      rv.opt = rr;
      rv.edns = edns_from_opt(rr);
    }
    rv.end = rr.end();
    return true;
  });
  if (!walked || !ok) return std::nullopt;
  return rv;
}

bool response_matches(const ResponseView& rv, std::uint16_t id, const Question& asked) {
  return rv.header.id == id && rv.header.opcode() == 0 && rv.question.qtype == asked.qtype &&
         rv.question.qclass == asked.qclass && names_equal(rv.question.qname, asked.qname);
}

std::size_t copy_without_opt(Bytes msg, const ResponseView& rv, std::uint8_t* out) {
  std::size_t end = std::min(rv.end, msg.size());
  if (!rv.opt) {
    std::memcpy(out, msg.data(), end);
    return end;
  }
  // Records in the additional section before the OPT stay; the OPT and what
  // follows it go.
  unsigned before = 0;
  for_each_rr(msg, rv.header, rv.question_end, [&](const RrView& rr) {
    if (rr.offset >= rv.opt->offset) return false;
    ++before;
    return true;
  });
  unsigned kept_additional = before - rv.header.ancount - rv.header.nscount;
  std::memcpy(out, msg.data(), rv.opt->offset);
  write_u16(out + 10, static_cast<std::uint16_t>(kept_additional));
  return rv.opt->offset;
}

}  // namespace localdns::dns
