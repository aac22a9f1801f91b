#include <memory>
#include <netinet/in.h>
#include <netlink/errno.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netlink.h>

#include <localdns/node/conntrack.hpp>

namespace localdns::node {

namespace {

bool matches(const RuleTargets& t, nfnl_ct* ct) {
  std::uint8_t proto = nfnl_ct_get_proto(ct);
  if (proto != IPPROTO_UDP && proto != IPPROTO_TCP) return false;
  nl_addr* dst = nfnl_ct_get_dst(ct, 0);
  if (dst == nullptr) return false;
  std::uint16_t port = nfnl_ct_get_dst_port(ct, 0);
  const auto* bytes = static_cast<const unsigned char*>(nl_addr_get_binary_addr(dst));
  unsigned len = nl_addr_get_len(dst);
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

}  // namespace

std::expected<ConntrackFlush, std::string> delete_conntrack_entries(const RuleTargets& t) {
  std::unique_ptr<nl_sock, void (*)(nl_sock*)> sock(nl_socket_alloc(), nl_socket_free);
  if (!sock) return std::unexpected("conntrack: out of memory");
  if (int err = nfnl_connect(sock.get()); err < 0) {
    return std::unexpected(std::string("conntrack: cannot open a netfilter netlink socket: ") +
                           nl_geterror(err));
  }
  nl_cache* raw = nullptr;
  if (int err = nfnl_ct_alloc_cache(sock.get(), &raw); err < 0) {
    if (err == -NLE_PERM) {
      return std::unexpected(
          "conntrack: permission denied reading the table (needs CAP_NET_ADMIN)");
    }
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_OPNOTSUPP) return ConntrackFlush{};  // no conntrack
    return std::unexpected(std::string("conntrack: cannot read the table: ") + nl_geterror(err));
  }
  std::unique_ptr<nl_cache, void (*)(nl_cache*)> cache(raw, nl_cache_free);
  ConntrackFlush result;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* ct = reinterpret_cast<nfnl_ct*>(o);
    if (!matches(t, ct)) continue;
    ++result.matched;
    int err = nfnl_ct_del(sock.get(), ct, 0);
    if (err == 0) {
      ++result.deleted;
    } else if (err != -NLE_OBJ_NOTFOUND) {
      return std::unexpected(std::string("conntrack: deleting an entry: ") + nl_geterror(err));
    }
  }
  return result;
}

}  // namespace localdns::node
