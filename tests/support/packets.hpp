// DNS messages written byte by byte for tests and benchmarks: upstream answers
// (header, question, answer/authority/additional records, an OPT) and TCP's
// length framing. Independent of localdns's own builders, so that a test does
// not feed localdns what localdns itself produced; header-only, needs neither
// Catch2 nor ldns (the benchmarks include it too).
//
// Thread-safety: plain values; a ResponseBuilder belongs to the thread using it.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace localdns::test {

using Packet = std::vector<std::uint8_t>;

inline constexpr std::uint16_t kTypeA = 1;
inline constexpr std::uint16_t kTypeSoa = 6;
inline constexpr std::uint16_t kTypeMx = 15;
inline constexpr std::uint16_t kTypeTxt = 16;
inline constexpr std::uint16_t kTypeOpt = 41;

inline void put16(Packet& p, unsigned v) {
  p.push_back(static_cast<std::uint8_t>(v >> 8));
  p.push_back(static_cast<std::uint8_t>(v));
}
inline void put32(Packet& p, std::uint32_t v) {
  put16(p, v >> 16);
  put16(p, v & 0xffff);
}

// `name` ("foo.example", "foo.example.", "." or "") in wire form, letter case kept.
inline Packet wire_name(std::string_view name) {
  Packet out;
  while (!name.empty() && name != ".") {
    auto dot = name.find('.');
    auto label = name.substr(0, dot);
    if (label.empty() || label.size() > 63) throw std::invalid_argument("bad test name");
    out.push_back(static_cast<std::uint8_t>(label.size()));
    out.insert(out.end(), label.begin(), label.end());
    name = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  }
  out.push_back(0);
  return out;
}

// One resource record; the owner is by default a pointer to the question name.
struct Rr {
  std::uint16_t type = kTypeA;
  std::uint32_t ttl = 0;
  Packet rdata;
  Packet owner = {0xC0, 0x0C};
  std::uint16_t rclass = 1;
};

inline Rr a_record(std::uint32_t ttl, std::array<std::uint8_t, 4> address) {
  return {kTypeA, ttl, Packet(address.begin(), address.end())};
}

// A SOA with root MNAME and RNAME, `serial_to_expire` and `minimum`.
inline Rr soa_record(std::uint32_t ttl, std::uint32_t minimum,
                     std::array<std::uint32_t, 4> serial_to_expire = {1, 2, 3, 4}) {
  Rr r{kTypeSoa, ttl, {0, 0}};
  for (std::uint32_t v : serial_to_expire)
    put32(r.rdata, v);
  put32(r.rdata, minimum);
  return r;
}

// The OPT pseudo-record (RFC 6891): UDP size, extended RCODE bits, DO, options.
struct Opt {
  std::uint16_t udp_size = 1232;
  std::uint8_t ext_rcode = 0;
  bool do_bit = false;
  Packet options = {};  // option code, length, data; as they go on the wire
};

inline void append_opt(Packet& p, const Opt& o) {
  p.push_back(0);  // root owner
  put16(p, kTypeOpt);
  put16(p, o.udp_size);
  p.push_back(o.ext_rcode);
  p.push_back(0);  // version
  put16(p, o.do_bit ? 0x8000 : 0);
  put16(p, static_cast<unsigned>(o.options.size()));
  p.insert(p.end(), o.options.begin(), o.options.end());
}

// An Extended DNS Error option (RFC 8914) for Opt::options.
inline Packet ede_option(std::uint16_t code, std::string_view text) {
  Packet o;
  put16(o, 15);
  put16(o, static_cast<unsigned>(text.size() + 2));
  put16(o, code);
  o.insert(o.end(), text.begin(), text.end());
  return o;
}

// A response, written in section order whatever the order of the calls:
// header, the one question, answers, authority, additional records, then the
// OPT if any. Flags default to QR RD RA, RCODE NOERROR.
class ResponseBuilder {
 public:
  ResponseBuilder(std::uint16_t id, std::string_view qname, std::uint16_t qtype = kTypeA)
      : id_(id) {
    question_ = wire_name(qname);
    put16(question_, qtype);
    put16(question_, 1);
  }

  // Answers `query`: its ID and its question (as the query wrote it), not its
  // flags, counts or other sections.
  static ResponseBuilder answering(const Packet& query) {
    if (query.size() < 12) throw std::invalid_argument("query shorter than a header");
    std::size_t pos = 12;
    while (pos < query.size() && query[pos] != 0)
      pos += 1u + query[pos];
    std::size_t end = pos + 1 + 4;
    if (end > query.size()) throw std::invalid_argument("query without a whole question");
    ResponseBuilder b;
    b.id_ = static_cast<std::uint16_t>((query[0] << 8) | query[1]);
    b.question_.assign(query.begin() + 12, query.begin() + static_cast<long>(end));
    return b;
  }

  // The third and fourth header bytes as they are; flags() overrides qr..rcode.
  ResponseBuilder& flags(std::uint8_t hi, std::uint8_t lo) {
    hi_ = hi;
    lo_ = lo;
    return *this;
  }
  ResponseBuilder& aa(bool on = true) { return bit(hi_, 0x04, on); }
  ResponseBuilder& tc(bool on = true) { return bit(hi_, 0x02, on); }
  ResponseBuilder& rd(bool on = true) { return bit(hi_, 0x01, on); }
  ResponseBuilder& rcode(unsigned rcode) {
    lo_ = static_cast<std::uint8_t>((lo_ & 0xf0) | (rcode & 0x0f));
    return *this;
  }
  ResponseBuilder& answer(Rr r) { return add(answers_, std::move(r)); }
  ResponseBuilder& authority(Rr r) { return add(authority_, std::move(r)); }
  ResponseBuilder& additional(Rr r) { return add(additional_, std::move(r)); }
  ResponseBuilder& opt(Opt o = {}) {
    opt_ = std::move(o);
    has_opt_ = true;
    return *this;
  }

  Packet build() const {
    Packet p;
    put16(p, id_);
    p.push_back(hi_);
    p.push_back(lo_);
    put16(p, 1);
    put16(p, static_cast<unsigned>(answers_.size()));
    put16(p, static_cast<unsigned>(authority_.size()));
    put16(p, static_cast<unsigned>(additional_.size() + (has_opt_ ? 1 : 0)));
    p.insert(p.end(), question_.begin(), question_.end());
    for (const auto* section : {&answers_, &authority_, &additional_}) {
      for (const Rr& r : *section) {
        p.insert(p.end(), r.owner.begin(), r.owner.end());
        put16(p, r.type);
        put16(p, r.rclass);
        put32(p, r.ttl);
        put16(p, static_cast<unsigned>(r.rdata.size()));
        p.insert(p.end(), r.rdata.begin(), r.rdata.end());
      }
    }
    if (has_opt_) append_opt(p, opt_);
    return p;
  }

 private:
  ResponseBuilder() = default;
  ResponseBuilder& bit(std::uint8_t& byte, std::uint8_t mask, bool on) {
    byte = static_cast<std::uint8_t>(on ? (byte | mask) : (byte & ~mask));
    return *this;
  }
  ResponseBuilder& add(std::vector<Rr>& section, Rr r) {
    section.push_back(std::move(r));
    return *this;
  }

  std::uint16_t id_ = 0;
  std::uint8_t hi_ = 0x81;  // QR RD
  std::uint8_t lo_ = 0x80;  // RA
  Packet question_;
  std::vector<Rr> answers_, authority_, additional_;
  Opt opt_;
  bool has_opt_ = false;
};

// TCP's two-byte length prefix (RFC 1035 4.2.2) and `message`, after `out`.
inline void append_framed(Packet& out, const Packet& message) {
  put16(out, static_cast<unsigned>(message.size()));
  out.insert(out.end(), message.begin(), message.end());
}
inline Packet framed(const Packet& message) {
  Packet out;
  append_framed(out, message);
  return out;
}

}  // namespace localdns::test
