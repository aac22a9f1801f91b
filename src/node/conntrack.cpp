#include <memory>
#include <netinet/in.h>
#include <netlink/errno.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netlink.h>
#include <vector>

#include <localdns/node/conntrack.hpp>

namespace localdns::node {

namespace {

bool is_local(const RuleTargets& t, nl_addr* addr, std::uint16_t port) {
  if (addr == nullptr) return false;
  const auto* bytes = static_cast<const unsigned char*>(nl_addr_get_binary_addr(addr));
  unsigned len = nl_addr_get_len(addr);
  for (const auto& l : t.locals) {
    if (port != l.port && (t.health_port == 0 || port != t.health_port)) continue;
    if (l.address.is_v4() && len == 4) {
      auto b = l.address.to_v4().to_bytes();
      if (std::equal(b.begin(), b.end(), bytes)) return true;
    } else if (l.address.is_v6() && len == 16) {
      auto b = l.address.to_v6().to_bytes();
      if (std::equal(b.begin(), b.end(), bytes)) return true;
    }
  }
  return false;
}

// Queries to a local address, and answers from one that were tracked on
// their own (after their query's entry was gone).
bool matches(const RuleTargets& t, nfnl_ct* ct) {
  std::uint8_t proto = nfnl_ct_get_proto(ct);
  if (proto != IPPROTO_UDP && proto != IPPROTO_TCP) return false;
  return is_local(t, nfnl_ct_get_dst(ct, 0), nfnl_ct_get_dst_port(ct, 0)) ||
         is_local(t, nfnl_ct_get_src(ct, 0), nfnl_ct_get_src_port(ct, 0));
}

struct DumpContext {
  const RuleTargets* targets;
  std::vector<nfnl_ct*> matches;  // references held until deleted
};

int on_entry(nl_msg* msg, void* arg) {
  auto* ctx = static_cast<DumpContext*>(arg);
  nfnl_ct* ct = nullptr;
  if (nfnlmsg_ct_parse(nlmsg_hdr(msg), &ct) < 0 || ct == nullptr) return NL_OK;
  if (matches(*ctx->targets, ct)) {
    ctx->matches.push_back(ct);
  } else {
    nfnl_ct_put(ct);
  }
  return NL_OK;
}

// One dump, streamed (no copy of the whole table), then one delete per match.
std::expected<ConntrackFlush, std::string> flush_once(const RuleTargets& t) {
  using SockPtr = std::unique_ptr<nl_sock, void (*)(nl_sock*)>;
  auto open = [](SockPtr& s) -> std::expected<void, std::string> {
    if (!s) return std::unexpected("conntrack: out of memory");
    if (int err = nfnl_connect(s.get()); err < 0) {
      return std::unexpected(std::string("conntrack: cannot open a netfilter netlink socket: ") +
                             nl_geterror(err));
    }
    return {};
  };
  SockPtr dump(nl_socket_alloc(), nl_socket_free);
  if (auto r = open(dump); !r) return std::unexpected(r.error());
  DumpContext ctx{&t, {}};
  struct Release {
    DumpContext& c;
    ~Release() {
      for (auto* ct : c.matches)
        nfnl_ct_put(ct);
    }
  } release{ctx};
  nl_socket_modify_cb(dump.get(), NL_CB_VALID, NL_CB_CUSTOM, on_entry, &ctx);
  int err = nfnl_ct_dump_request(dump.get());
  if (err >= 0) err = nl_recvmsgs_default(dump.get());
  if (err < 0) {
    if (err == -NLE_PERM) {
      return std::unexpected(
          "conntrack: permission denied reading the table (needs CAP_NET_ADMIN)");
    }
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_OPNOTSUPP) return ConntrackFlush{};  // no conntrack
    if (err != -NLE_DUMP_INTR) {
      return std::unexpected(std::string("conntrack: cannot read the table: ") + nl_geterror(err));
    }
    // Interrupted by changes to the table: delete what was seen; the caller repeats.
  }
  ConntrackFlush result;
  SockPtr del(nl_socket_alloc(), nl_socket_free);
  if (auto r = open(del); !r) return std::unexpected(r.error());
  for (auto* ct : ctx.matches) {
    ++result.matched;
    int e = nfnl_ct_del(del.get(), ct, 0);
    if (e == 0) {
      ++result.deleted;
    } else if (e != -NLE_OBJ_NOTFOUND) {
      return std::unexpected(std::string("conntrack: deleting an entry: ") + nl_geterror(e));
    }
  }
  return result;
}

}  // namespace

std::expected<ConntrackFlush, std::string> delete_conntrack_entries(const RuleTargets& t) {
  // A dump that races with changes to the table may miss entries: repeat
  // while a pass still finds some (bounded).
  ConntrackFlush total;
  for (int pass = 0; pass < 3; ++pass) {
    auto r = flush_once(t);
    if (!r) return std::unexpected(r.error());
    total.matched += r->matched;
    total.deleted += r->deleted;
    if (r->matched == 0) break;
  }
  return total;
}

}  // namespace localdns::node
