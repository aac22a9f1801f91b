// Test-side decoding of whole messages with ldns (an independent decoder):
// every record of every section as text, the full extended RCODE and the
// Extended DNS Errors (RFC 8914) of the OPT. Header-only; links with ldns.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include <ldns/ldns.h>

#include "dns_client.hpp"

namespace localdns::test {

struct Record {
  int section = 0;  // 0 answer, 1 authority, 2 additional
  std::string owner;
  std::uint16_t type = 0;
  std::uint16_t rclass = 0;
  std::uint32_t ttl = 0;
  std::string rdata;  // presentation form, names lower-cased
  bool operator==(const Record&) const = default;
};

struct Ede {
  std::uint16_t code = 0;
  std::string text;
  bool operator==(const Ede&) const = default;
};

struct Message {
  std::vector<Record> records;  // answer, authority, additional; the OPT excluded
  unsigned rcode = 0;           // full 12-bit RCODE
  bool has_opt = false;
  std::vector<Ede> ede;
};

inline std::string lower_text(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// std::nullopt when ldns cannot read the message.
inline std::optional<Message> decode_message(const Packet& p) {
  ldns_pkt* pkt = nullptr;
  if (ldns_wire2pkt(&pkt, p.data(), p.size()) != LDNS_STATUS_OK) return std::nullopt;
  Message m;
  m.has_opt = ldns_pkt_edns(pkt);
  m.rcode = ldns_pkt_get_rcode(pkt) | (unsigned{ldns_pkt_edns_extended_rcode(pkt)} << 4);
  ldns_rr_list* lists[3] = {ldns_pkt_answer(pkt), ldns_pkt_authority(pkt),
                            ldns_pkt_additional(pkt)};
  for (int s = 0; s < 3; ++s) {
    for (std::size_t i = 0; lists[s] && i < ldns_rr_list_rr_count(lists[s]); ++i) {
      ldns_rr* rr = ldns_rr_list_rr(lists[s], i);
      Record r;
      r.section = s;
      char* o = ldns_rdf2str(ldns_rr_owner(rr));
      r.owner = lower_text(o);
      std::free(o);
      r.type = static_cast<std::uint16_t>(ldns_rr_get_type(rr));
      r.rclass = static_cast<std::uint16_t>(ldns_rr_get_class(rr));
      r.ttl = ldns_rr_ttl(rr);
      for (std::size_t k = 0; k < ldns_rr_rd_count(rr); ++k) {
        char* t = ldns_rdf2str(ldns_rr_rdf(rr, k));
        r.rdata += (k ? " " : "") + lower_text(t);
        std::free(t);
      }
      m.records.push_back(r);
    }
  }
  if (ldns_edns_option_list* opts = ldns_pkt_edns_get_option_list(pkt)) {
    for (std::size_t i = 0; i < ldns_edns_option_list_get_count(opts); ++i) {
      ldns_edns_option* o = ldns_edns_option_list_get_option(opts, i);
      if (ldns_edns_get_code(o) != 15 || ldns_edns_get_size(o) < 2) continue;
      const std::uint8_t* d = ldns_edns_get_data(o);
      Ede e;
      e.code = static_cast<std::uint16_t>((d[0] << 8) | d[1]);
      e.text.assign(reinterpret_cast<const char*>(d + 2), ldns_edns_get_size(o) - 2);
      m.ede.push_back(e);
    }
  }
  ldns_pkt_free(pkt);
  return m;
}

}  // namespace localdns::test
