#include "l4/lb/forward.hh"

#include <netinet/in.h>
#include <rte_ip.h>
#include <rte_prefetch.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <algorithm>
#include <cstring>

#include "l4/checksum.hh"

namespace l4::lb {
namespace {

constexpr uint16_t eth_len = 14;
constexpr uint8_t icmp4_unreach = 3, icmp4_time_exceeded = 11, icmp4_frag_needed = 4;
constexpr uint8_t icmp6_unreach = 1, icmp6_too_big = 2, icmp6_time_exceeded = 3;

lb_verdict dropped(lb_worker& w, drop d) {
  w.drops.add(d);
  return {lb_action::drop, 0, d};
}

bool is_icmp_error(const packet& p) {
  const uint8_t type = static_cast<uint8_t>(p.sport >> 8);
  if (p.proto == IPPROTO_ICMP) return type == icmp4_unreach || type == icmp4_time_exceeded;
  if (p.proto == IPPROTO_ICMPV6)
    return type == icmp6_unreach || type == icmp6_too_big || type == icmp6_time_exceeded;
  return false;
}

uint16_t ip_total(const packet& p) {
  return p.l3_len + p.l4_len + p.payload_len;
}

// Writes the Ethernet header for `dst` on port `role`, or turns `m` into an ARP request/NS for
// the unresolved next hop. The frame must start with `l2_len` bytes of L2 header.
lb_verdict emit(const lb_config& cfg, lb_worker& w, rte_mbuf* m, port_role role, const ip_addr& dst,
                uint16_t l2_len, uint64_t now) {
  const port_spec& ps = cfg.port(role);
  const auto& gw = dst.v6 ? ps.gw_v6 : ps.gw_v4;
  const ip_addr next = gw ? *gw : dst;
  neighbor_table& nt = w.neighbors(role);
  rte_ether_addr mac;
  if (!nt.lookup(next, mac, now)) {
    w.drops.add(drop::lb_neighbor_unresolved);
    if (nt.request_due(next, now) &&
        build_neighbor_request(m, ps.mac, dst.v6 ? ps.addr_v6 : ps.addr_v4, next)) {
      w.counters.neighbor_requests.add();
      return {lb_action::tx, ps.port_id, drop::lb_neighbor_unresolved};
    }
    return {lb_action::drop, 0, drop::lb_neighbor_unresolved};
  }
  if (l2_len > eth_len) rte_pktmbuf_adj(m, l2_len - eth_len);  // output is untagged
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  eth->dst_addr = mac;
  eth->src_addr = ps.mac;
  eth->ether_type = dst.v6 ? RTE_BE16(RTE_ETHER_TYPE_IPV6) : RTE_BE16(RTE_ETHER_TYPE_IPV4);
  return {lb_action::tx, ps.port_id, drop::none};
}

uint8_t* l4_csum_field(uint8_t* l4h, uint8_t proto) {
  return l4h + (proto == IPPROTO_TCP ? 16 : 6);
}

// Rewrites addresses and ports of a TCP/UDP packet starting at `l3`, updating the IPv4 header and
// transport checksums incrementally (RFC 1624). With `dec_ttl` the TTL/hop limit drops by one.
void rewrite(uint8_t* l3, uint8_t* l4h, bool v6, uint8_t proto, const std::array<uint8_t, 16>& src,
             uint16_t sport, const std::array<uint8_t, 16>& dst, uint16_t dport, bool dec_ttl,
             bool have_l4_csum) {
  const size_t alen = v6 ? 16 : 4;
  uint8_t* s = l3 + (v6 ? 8 : 12);
  uint8_t* d = l3 + (v6 ? 24 : 16);
  if (have_l4_csum) {
    uint8_t* ckp = l4_csum_field(l4h, proto);
    uint16_t ck;
    std::memcpy(&ck, ckp, 2);
    // A zero UDP checksum over IPv4 means "none": leave it so.
    if (!(proto == IPPROTO_UDP && ck == 0)) {
      ck = csum_update(ck, s, src.data(), alen);
      ck = csum_update(ck, d, dst.data(), alen);
      uint16_t old_p, new_p = rte_cpu_to_be_16(sport);
      std::memcpy(&old_p, l4h, 2);
      ck = csum_update16(ck, old_p, new_p);
      std::memcpy(&old_p, l4h + 2, 2);
      new_p = rte_cpu_to_be_16(dport);
      ck = csum_update16(ck, old_p, new_p);
      if (proto == IPPROTO_UDP && ck == 0) ck = 0xffff;
      std::memcpy(ckp, &ck, 2);
    }
  }
  const uint16_t sp = rte_cpu_to_be_16(sport), dp = rte_cpu_to_be_16(dport);
  std::memcpy(l4h, &sp, 2);
  std::memcpy(l4h + 2, &dp, 2);
  if (!v6) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
    uint16_t ck = ip->hdr_checksum;
    ck = csum_update(ck, s, src.data(), 4);
    ck = csum_update(ck, d, dst.data(), 4);
    if (dec_ttl) {
      uint16_t old_w, new_w;
      std::memcpy(&old_w, &ip->time_to_live, 2);  // TTL and protocol share a 16-bit word
      --ip->time_to_live;
      std::memcpy(&new_w, &ip->time_to_live, 2);
      ck = csum_update16(ck, old_w, new_w);
    }
    ip->hdr_checksum = ck;
  } else if (dec_ttl) {
    --reinterpret_cast<rte_ipv6_hdr*>(l3)->hop_limits;
  }
  std::memcpy(s, src.data(), alen);
  std::memcpy(d, dst.data(), alen);
}

// Lowers the MSS option of a SYN to `max_mss`. Returns true if it changed.
bool clamp_mss(uint8_t* tcp, uint16_t tcp_len, uint16_t max_mss) {
  uint8_t* o = tcp + 20;
  uint8_t* end = tcp + tcp_len;
  while (o < end) {
    if (o[0] == 0) break;
    if (o[0] == 1) {
      ++o;
      continue;
    }
    if (o + 1 >= end || o[1] < 2 || o + o[1] > end) break;
    if (o[0] == 2 && o[1] == 4) {
      uint16_t old_be;
      std::memcpy(&old_be, o + 2, 2);
      if (rte_be_to_cpu_16(old_be) <= max_mss) return false;
      const uint16_t new_be = rte_cpu_to_be_16(max_mss);
      std::memcpy(o + 2, &new_be, 2);
      uint16_t ck;
      std::memcpy(&ck, tcp + 16, 2);
      ck = csum_update16(ck, old_be, new_be);
      std::memcpy(tcp + 16, &ck, 2);
      return true;
    }
    o += o[1];
  }
  return false;
}

// Replaces the packet by an ICMP frag-needed (IPv4) / packet-too-big (IPv6) to its source,
// quoting as much of it as the minimum MTU allows, and sends it to the client side.
lb_verdict packet_too_big(const lb_config& cfg, lb_worker& w, rte_mbuf* m, const packet& p,
                          uint16_t mtu, uint64_t now) {
  const bool v6 = p.l3 == l3_kind::ipv6;
  const uint16_t hdr = v6 ? 40 + 8 : 20 + 8;
  const uint16_t quote = std::min<uint16_t>(ip_total(p), v6 ? 1280 - hdr : 576 - hdr);
  rte_pktmbuf_trim(m, rte_pktmbuf_data_len(m) - (p.l2_len + quote));
  const int delta = eth_len + hdr - p.l2_len;
  if (rte_pktmbuf_prepend(m, static_cast<uint16_t>(delta)) == nullptr)
    return dropped(w, drop::lb_no_headroom);
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* l3 = f + eth_len;
  uint8_t* icmp = l3 + (v6 ? 40 : 20);
  std::memset(l3, 0, hdr);
  packet q;  // describes the ICMP packet for the checksum helpers
  q.src = p.dst;
  q.dst = p.src;
  q.l3 = p.l3;
  if (!v6) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
    ip->version_ihl = 0x45;
    ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(hdr + quote));
    ip->time_to_live = 64;
    ip->next_proto_id = IPPROTO_ICMP;
    ip->src_addr = p.dst.v4_be();
    ip->dst_addr = p.src.v4_be();
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    icmp[0] = icmp4_unreach;
    icmp[1] = icmp4_frag_needed;
    const uint16_t mtu_be = rte_cpu_to_be_16(mtu);
    std::memcpy(icmp + 6, &mtu_be, 2);
    q.proto = IPPROTO_ICMP;
  } else {
    auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(l3);
    ip6->vtc_flow = RTE_BE32(6u << 28);
    ip6->payload_len = rte_cpu_to_be_16(static_cast<uint16_t>(8 + quote));
    ip6->proto = IPPROTO_ICMPV6;
    ip6->hop_limits = 64;
    std::memcpy(ip6->src_addr, p.dst.b.data(), 16);
    std::memcpy(ip6->dst_addr, p.src.b.data(), 16);
    icmp[0] = icmp6_too_big;
    const uint32_t mtu_be = rte_cpu_to_be_32(mtu);
    std::memcpy(icmp + 4, &mtu_be, 4);
    q.proto = IPPROTO_ICMPV6;
  }
  const uint16_t ck = l4_checksum(q, icmp, static_cast<uint16_t>(8 + quote));
  std::memcpy(icmp + 2, &ck, 2);
  w.drops.add(drop::lb_packet_too_big);
  w.counters.ptb_sent.add();
  lb_verdict v = emit(cfg, w, m, port_role::wan, p.src, eth_len, now);
  if (v.action == lb_action::tx && v.reason == drop::none) v.reason = drop::lb_packet_too_big;
  return v;
}

// IPIP or GUE (variant 1) to `backend`; the inner packet is left as received.
lb_verdict encapsulate(const lb_config& cfg, lb_worker& w, rte_mbuf* m, const packet& p,
                       fwd_mode mode, uint16_t gue_port, const ip_addr& backend, uint64_t h,
                       uint64_t now) {
  const bool v6 = p.l3 == l3_kind::ipv6;
  const bool gue = mode == fwd_mode::gue;
  const uint16_t outer = (v6 ? 40 : 20) + (gue ? 8 : 0);
  const uint16_t inner_len = ip_total(p);
  const uint16_t mtu = cfg.port(port_role::lan).mtu;
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  if (p.proto == IPPROTO_TCP && (p.tcp_flags & RTE_TCP_SYN_FLAG)) {
    const int max_mss = mtu - outer - p.l3_len - 20;
    if (max_mss > 0 && clamp_mss(f + p.l4_off(), p.l4_len, static_cast<uint16_t>(max_mss)))
      w.counters.mss_clamped.add();
  }
  if (inner_len + outer > mtu) {
    if (!v6) {
      const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(f + p.l2_len);
      if (!(ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_DF_FLAG)))
        return dropped(w, drop::lb_too_big_no_df);
    }
    return packet_too_big(cfg, w, m, p, static_cast<uint16_t>(mtu - outer), now);
  }
  const int delta = eth_len + outer - p.l2_len;
  if (delta > 0 && rte_pktmbuf_prepend(m, static_cast<uint16_t>(delta)) == nullptr)
    return dropped(w, drop::lb_no_headroom);
  f = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* l3 = f + eth_len;
  const port_spec& lan = cfg.port(port_role::lan);
  uint8_t* udp = l3 + (v6 ? 40 : 20);
  if (!v6) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
    ip->version_ihl = 0x45;
    ip->type_of_service = 0;
    ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(outer + inner_len));
    ip->packet_id = 0;
    ip->fragment_offset = RTE_BE16(RTE_IPV4_HDR_DF_FLAG);
    ip->time_to_live = 64;
    ip->next_proto_id = gue ? IPPROTO_UDP : IPPROTO_IPIP;
    ip->src_addr = lan.addr_v4.v4_be();
    ip->dst_addr = backend.v4_be();
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
  } else {
    auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(l3);
    // The flow label carries the flow's hash so ECMP between us and the backend keeps order.
    ip6->vtc_flow = rte_cpu_to_be_32(6u << 28 | static_cast<uint32_t>(h & 0xfffff));
    ip6->payload_len = rte_cpu_to_be_16(static_cast<uint16_t>(outer - 40 + inner_len));
    ip6->proto = gue ? IPPROTO_UDP : IPPROTO_IPV6;
    ip6->hop_limits = 64;
    std::memcpy(ip6->src_addr, lan.addr_v6.b.data(), 16);
    std::memcpy(ip6->dst_addr, backend.b.data(), 16);
  }
  if (gue) {
    auto* u = reinterpret_cast<rte_udp_hdr*>(udp);
    // Source port from the flow hash: entropy for the backend's RSS, stable per flow.
    u->src_port = rte_cpu_to_be_16(static_cast<uint16_t>(0xc000 | (h & 0x3fff)));
    u->dst_port = rte_cpu_to_be_16(gue_port);
    u->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(8 + inner_len));
    u->dgram_cksum = 0;  // allowed over IPv4; IPv6 requires a real one
    if (v6) u->dgram_cksum = rte_ipv6_udptcp_cksum(reinterpret_cast<rte_ipv6_hdr*>(l3), u);
    w.counters.encap_gue.add();
  } else {
    w.counters.encap_ipip.add();
  }
  return emit(cfg, w, m, port_role::lan, backend, eth_len, now);
}

constexpr uint8_t tcp_opt_client_addr = 254;

// Inserts the client-address option into a SYN (before NAT): moves the headers `len` bytes to
// the front, writes the option after the existing ones, fixes lengths and recomputes checksums.
bool add_client_option(const lb_config& cfg, lb_worker& w, rte_mbuf* m, const packet& p) {
  const bool v6 = p.l3 == l3_kind::ipv6;
  const uint16_t len = v6 ? 20 : 8;
  if (p.l4_len + len > 60 || ip_total(p) + len > cfg.port(port_role::lan).mtu) {
    w.counters.client_option_no_room.add();
    return false;
  }
  const uint16_t hdrs = p.payload_off();
  auto* old_f = rte_pktmbuf_mtod(m, uint8_t*);
  auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, len));
  if (f == nullptr) {
    w.counters.client_option_no_room.add();
    return false;
  }
  std::memmove(f, old_f, hdrs);
  uint8_t* o = f + hdrs;
  o[0] = tcp_opt_client_addr;
  o[1] = static_cast<uint8_t>(len);
  const uint16_t port_be = rte_cpu_to_be_16(p.sport);
  std::memcpy(o + 2, &port_be, 2);
  std::memcpy(o + 4, p.src.b.data(), v6 ? 16 : 4);
  uint8_t* l3 = f + p.l2_len;
  uint8_t* tcp = f + p.l4_off();
  tcp[12] = static_cast<uint8_t>(((p.l4_len + len) / 4) << 4 | (tcp[12] & 0x0f));
  const auto seg = static_cast<uint16_t>(ip_total(p) - p.l3_len + len);
  if (!v6) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
    ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(ip_total(p) + len));
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
  } else {
    auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(l3);
    ip6->payload_len = rte_cpu_to_be_16(static_cast<uint16_t>(ip_total(p) - 40 + len));
  }
  std::memset(tcp + 16, 0, 2);
  const uint16_t ck = l4_checksum(p, tcp, seg);
  std::memcpy(tcp + 16, &ck, 2);
  w.counters.client_option_added.add();
  return true;
}

// Picks a free SNAT source port in this worker's range for the reply key backend -> snat.
bool pick_snat_port(const lb_config& cfg, lb_worker& w, flow_key& rk, uint64_t now) {
  const auto [lo, hi] = cfg.snat_range(w.index());
  const uint32_t span = hi - lo + 1u;
  for (int tries = 0; tries < 16; ++tries) {
    rk.dport = static_cast<uint16_t>(lo + (w.port_cursor++ % span));
    if (w.conns().find(rk, flow_hash(rk), now) == nullptr) return true;
  }
  return false;
}

lb_verdict to_service(const lb_config& cfg, lb_worker& w, rte_mbuf* m, const packet& p,
                      const service& svc, const flow_key& key, uint64_t h, uint64_t now) {
  conn_table& ct = w.conns();
  conn_entry* e = ct.find(key, h, now);
  // A new SYN on the tuple of a flow that is closing (the client reused its port): a new flow,
  // placed by the current Maglev table, not glued to the old flow's (maybe drained) backend.
  if (e != nullptr && e->state == conn_state::tcp_closing && p.proto == IPPROTO_TCP &&
      (p.tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == RTE_TCP_SYN_FLAG) {
    ct.erase(*e);
    e = nullptr;
    w.counters.conn_reused.add();
  }
  if (e == nullptr) {
    const uint16_t bi = svc.maglev->lookup(h);
    if (bi == maglev_table::npos) return dropped(w, drop::lb_no_backend);
    const backend_spec& b = svc.spec.backends[bi];
    const conn_state st =
        p.proto == IPPROTO_UDP ? conn_state::udp
        : (p.tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == RTE_TCP_SYN_FLAG
            ? conn_state::tcp_syn
            : conn_state::tcp_established;  // mid-flow after a node change
    if (svc.spec.mode == fwd_mode::fnat) {
      if (p.ttl <= 1) return dropped(w, drop::lb_ttl_expired);
      const auto& pool = p.dst.v6 ? cfg.spec().snat_v6 : cfg.spec().snat_v4;
      if (pool.empty()) return dropped(w, drop::lb_no_snat_address);
      const ip_addr& snat = pool[(h >> 32) % pool.size()];
      const uint16_t bport = b.port ? b.port : svc.spec.port;
      flow_key rk;
      rk.src = b.addr.b;
      rk.dst = snat.b;
      rk.sport = bport;
      rk.proto = p.proto;
      rk.v6 = key.v6;
      if (!pick_snat_port(cfg, w, rk, now)) return dropped(w, drop::lb_snat_ports_exhausted);
      e = ct.insert(key, h, st, now);
      if (e == nullptr) return dropped(w, drop::lb_conn_table_full);
      conn_entry* r = ct.insert(rk, flow_hash(rk), st, now);
      if (r == nullptr) {
        ct.erase(*e);
        return dropped(w, drop::lb_conn_table_full);
      }
      e->kind = conn_kind::nat_forward;
      e->from_addr = snat.b;
      e->from_port = rk.dport;
      e->to_addr = b.addr.b;
      e->to_port = bport;
      r->kind = conn_kind::nat_reply;
      r->from_addr = p.dst.b;
      r->from_port = p.dport;
      r->to_addr = p.src.b;
      r->to_port = p.sport;
      ct.link(*e, *r);
    } else {
      e = ct.insert(key, h, st, now);
      if (e == nullptr) return dropped(w, drop::lb_conn_table_full);
      e->kind = conn_kind::encap;
      e->to_addr = b.addr.b;
    }
    e->service = cfg.index_of(&svc);
    w.counters.conn_miss.add();
  } else {
    w.counters.conn_hit.add();
  }
  ct.touch(*e, p.tcp_flags, true, now);
  const ip_addr to = key.addr(e->to_addr);
  if (e->kind == conn_kind::encap) {
    // A flow that began under an encap mode keeps being encapsulated after a reload.
    const fwd_mode mode = svc.spec.mode == fwd_mode::fnat ? fwd_mode::ipip : svc.spec.mode;
    return encapsulate(cfg, w, m, p, mode, svc.spec.gue_port, to, h, now);
  }
  if (p.ttl <= 1) return dropped(w, drop::lb_ttl_expired);
  if (svc.spec.client_addr_option && p.proto == IPPROTO_TCP &&
      (p.tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == RTE_TCP_SYN_FLAG)
    add_client_option(cfg, w, m, p);
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  rewrite(f + p.l2_len, f + p.l4_off(), key.v6, p.proto, e->from_addr, e->from_port, e->to_addr,
          e->to_port, true, true);
  w.counters.nat_forward.add();
  return emit(cfg, w, m, port_role::lan, to, p.l2_len, now);
}

lb_verdict from_backend(const lb_config& cfg, lb_worker& w, rte_mbuf* m, const packet& p,
                        const flow_key& key, uint64_t h, uint64_t now) {
  conn_entry* e = w.conns().find(key, h, now);
  if (e == nullptr || e->kind != conn_kind::nat_reply)
    return dropped(w, drop::lb_no_conn_for_reply);
  if (p.ttl <= 1) return dropped(w, drop::lb_ttl_expired);
  w.conns().touch(*e, p.tcp_flags, false, now);
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  rewrite(f + p.l2_len, f + p.l4_off(), key.v6, p.proto, e->from_addr, e->from_port, e->to_addr,
          e->to_port, true, true);
  w.counters.nat_reply.add();
  return emit(cfg, w, m, port_role::wan, key.addr(e->to_addr), p.l2_len, now);
}

// An ICMP error about one of our flows: the quoted packet is what we (or the backend, with
// direct return) sent, so the flow's key is the quoted tuple reversed.
lb_verdict icmp_error(const lb_config& cfg, lb_worker& w, rte_mbuf* m, const packet& p,
                      bool to_snat, uint64_t now) {
  if (!is_icmp_error(p)) return dropped(w, drop::lb_icmp_unhandled);
  const bool v6 = p.l3 == l3_kind::ipv6;
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* in = f + p.payload_off();
  const uint8_t* end = f + p.l2_len + ip_total(p);
  uint16_t in_l3;
  uint8_t in_proto;
  flow_key k;  // the flow as our table knows it: quoted destination -> quoted source
  k.v6 = v6;
  if (!v6) {
    if (in + 20 > end || (in[0] >> 4) != 4) return dropped(w, drop::lb_icmp_inner_bad);
    in_l3 = (in[0] & 0xf) * 4;
    in_proto = in[9];
    std::memcpy(k.dst.data(), in + 12, 4);
    std::memcpy(k.src.data(), in + 16, 4);
  } else {
    if (in + 40 > end || (in[0] >> 4) != 6) return dropped(w, drop::lb_icmp_inner_bad);
    in_l3 = 40;
    in_proto = in[6];
    std::memcpy(k.dst.data(), in + 8, 16);
    std::memcpy(k.src.data(), in + 24, 16);
  }
  if ((in_proto != IPPROTO_TCP && in_proto != IPPROTO_UDP) || in_l3 < 20 || in + in_l3 + 4 > end)
    return dropped(w, drop::lb_icmp_inner_bad);
  uint8_t* in_l4 = in + in_l3;
  k.proto = in_proto;
  k.dport = static_cast<uint16_t>(in_l4[0] << 8 | in_l4[1]);
  k.sport = static_cast<uint16_t>(in_l4[2] << 8 | in_l4[3]);
  const uint64_t h = flow_hash(k);
  conn_entry* e = w.conns().find(k, h, now);

  if (!to_snat && (e == nullptr || e->kind == conn_kind::encap)) {
    // Direct return: the backend sent the quoted packet from the VIP; hand it the error.
    const service* svc = cfg.find(k.dst_addr(), k.dport, k.proto);
    ip_addr backend;
    if (e != nullptr) {
      backend = k.addr(e->to_addr);
    } else if (svc != nullptr && svc->spec.mode != fwd_mode::fnat) {
      const uint16_t bi = svc->maglev->lookup(h);
      if (bi == maglev_table::npos) return dropped(w, drop::lb_no_backend);
      backend = svc->spec.backends[bi].addr;
    } else {
      return dropped(w, drop::lb_icmp_no_flow);
    }
    const fwd_mode mode =
        svc != nullptr && svc->spec.mode == fwd_mode::gue ? fwd_mode::gue : fwd_mode::ipip;
    w.counters.icmp_routed.add();
    return encapsulate(cfg, w, m, p, mode, svc != nullptr ? svc->spec.gue_port : 6080, backend, h,
                       now);
  }
  if (e == nullptr || e->kind != (to_snat ? conn_kind::nat_reply : conn_kind::nat_forward))
    return dropped(w, drop::lb_icmp_no_flow);
  if (p.ttl <= 1) return dropped(w, drop::lb_ttl_expired);
  // Full NAT: the entry's translation maps the flow's direction; the quoted packet travels the
  // other way, so its source becomes the entry's destination and vice versa.
  uint8_t* l3 = f + p.l2_len;
  const size_t alen = v6 ? 16 : 4;
  // Inner transport checksum: incremental, when the quote reaches it.
  const bool in_ck = in_l4 + (in_proto == IPPROTO_TCP ? 18 : 8) <= end;
  // rewrite() also updates the quoted IPv4 header checksum.
  rewrite(in, in_l4, v6, in_proto, e->to_addr, e->to_port, e->from_addr, e->from_port, false,
          in_ck);
  std::memcpy(l3 + (v6 ? 8 : 12), e->from_addr.data(), alen);
  std::memcpy(l3 + (v6 ? 24 : 16), e->to_addr.data(), alen);
  if (!v6) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
    --ip->time_to_live;
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
  } else {
    --reinterpret_cast<rte_ipv6_hdr*>(l3)->hop_limits;
  }
  packet q = p;
  q.src = k.addr(e->from_addr);
  q.dst = k.addr(e->to_addr);
  uint8_t* icmp = f + p.l4_off();
  const auto icmp_len = static_cast<uint16_t>(end - icmp);
  std::memset(icmp + 2, 0, 2);
  const uint16_t ck = l4_checksum(q, icmp, icmp_len);
  std::memcpy(icmp + 2, &ck, 2);
  w.counters.icmp_routed.add();
  return emit(cfg, w, m, to_snat ? port_role::wan : port_role::lan, q.dst, p.l2_len, now);
}

bool is_vip(const lb_config& cfg, const ip_addr& a) {
  for (const auto& s : cfg.services())
    if (s.spec.vip == a) return true;
  return false;
}

}  // namespace

common::result<std::unique_ptr<lb_worker>> lb_worker::create(const worker_spec& spec) {
  if (spec.hz == 0) return common::fail("lb worker: hz must be positive");
  auto ct = conn_table::create(spec.conn_capacity, conn_timeouts::defaults(spec.hz));
  if (!ct) return common::unexpected(ct.error());
  std::unique_ptr<lb_worker> w(new lb_worker());
  w->conns_ = std::move(*ct);
  w->neigh_[static_cast<size_t>(port_role::wan)] = spec.wan_neighbors;
  w->neigh_[static_cast<size_t>(port_role::lan)] = spec.lan_neighbors;
  for (auto& n : w->neigh_) {
    if (n) continue;
    auto t = neighbor_table::create(spec.neighbor_capacity, spec.hz);  // one request per second
    if (!t) return common::unexpected(t.error());
    n = std::move(*t);
  }
  w->index_ = spec.index;
  return w;
}

common::result<shared_neighbors> shared_neighbors::create(uint32_t capacity, uint64_t hz,
                                                          uint64_t max_age) {
  shared_neighbors s;
  auto wan = neighbor_table::create(capacity, hz, max_age);  // one request per second
  if (!wan) return common::unexpected(wan.error());
  auto lan = neighbor_table::create(capacity, hz, max_age);
  if (!lan) return common::unexpected(lan.error());
  s.wan = std::move(*wan);
  s.lan = std::move(*lan);
  return s;
}

bool lb_worker::add_static_neighbors(const lb_config& cfg) {
  bool ok = true;
  for (port_role r : {port_role::wan, port_role::lan})
    for (const auto& [addr, mac] : cfg.port(r).static_neighbors)
      ok = neighbors(r).add_static(addr, mac) && ok;
  return ok;
}

bool is_lb_packet(const lb_config& cfg, const packet& p) {
  if (p.l3 != l3_kind::ipv4 && p.l3 != l3_kind::ipv6) return false;
  if (cfg.is_snat(p.dst)) return true;
  if (p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP)
    return cfg.find(p.dst, p.dport, p.proto) != nullptr;
  return is_icmp_error(p) && is_vip(cfg, p.dst);
}

bool is_lb_packet(const lb_config& cfg, const packet& p, const service* svc) {
  if (p.l3 != l3_kind::ipv4 && p.l3 != l3_kind::ipv6) return false;
  if (cfg.is_snat(p.dst)) return true;
  if (p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP) return svc != nullptr;
  return is_icmp_error(p) && is_vip(cfg, p.dst);
}

// `key`/`h`: flow_key::of(p) and its hash, computed by the caller (ignored for ICMP). `svc`: the
// caller's lookup of p's service when `resolved`; otherwise looked up here.
static lb_verdict forward_prepared(const lb_config& cfg, lb_worker& w, rte_mbuf* m, const packet& p,
                                   const flow_key& key, uint64_t h, uint64_t now,
                                   const service* svc = nullptr, bool resolved = false) {
  if (p.l3 != l3_kind::ipv4 && p.l3 != l3_kind::ipv6) return dropped(w, drop::lb_not_for_lb);
  // Drop Ethernet padding so lengths (and an encapsulation) cover the IP packet exactly.
  const uint32_t frame = p.l2_len + ip_total(p);
  if (rte_pktmbuf_data_len(m) > frame)
    rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_data_len(m) - frame));
  const bool icmp = p.proto == IPPROTO_ICMP || p.proto == IPPROTO_ICMPV6;
  if (cfg.is_snat(p.dst)) {
    if (icmp) return icmp_error(cfg, w, m, p, true, now);
    if (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP)
      return dropped(w, drop::lb_proto_unsupported);
    return from_backend(cfg, w, m, p, key, h, now);
  }
  if (icmp) return icmp_error(cfg, w, m, p, false, now);
  if (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP)
    return dropped(w, drop::lb_proto_unsupported);
  if (!resolved) svc = cfg.find(p.dst, p.dport, p.proto);
  if (svc == nullptr) return dropped(w, drop::lb_not_for_lb);
  return to_service(cfg, w, m, p, *svc, key, h, now);
}

lb_verdict forward_one(const lb_config& cfg, lb_worker& w, rte_mbuf* m, const packet& p,
                       uint64_t now) {
  const flow_key key = flow_key::of(p);
  return forward_prepared(cfg, w, m, p, key, flow_hash(key), now);
}

namespace {

// Software-pipelined so the connection table's cache misses overlap: hash every packet and
// prefetch its buckets; then, `ahead` packets before processing one, prefetch the slots whose
// tags match (the tags have arrived by then).
void forward_pipelined(const lb_config& cfg, lb_worker& w, std::span<rte_mbuf* const> pkts,
                       std::span<const packet> parsed, const service* const* services,
                       std::span<lb_verdict> out, uint64_t now) {
  constexpr size_t chunk = 32, ahead = 6;
  flow_key keys[chunk];
  uint64_t hashes[chunk];
  conn_table& ct = w.conns();
  for (size_t base = 0; base < pkts.size(); base += chunk) {
    const size_t k = std::min(chunk, pkts.size() - base);
    for (size_t i = 0; i < k; ++i) {
      keys[i] = flow_key::of(parsed[base + i]);
      hashes[i] = flow_hash(keys[i]);
      ct.prefetch_buckets(hashes[i]);
    }
    for (size_t i = 0; i < k && i < ahead; ++i) ct.prefetch_slots(hashes[i]);
    for (size_t i = 0; i < k; ++i) {
      if (i + ahead < k) ct.prefetch_slots(hashes[i + ahead]);
      const size_t at = base + i;
      out[at] = services != nullptr
                    ? forward_prepared(cfg, w, pkts[at], parsed[at], keys[i], hashes[i], now,
                                       services[at], true)
                    : forward_prepared(cfg, w, pkts[at], parsed[at], keys[i], hashes[i], now);
    }
  }
}

}  // namespace

void forward_burst(const lb_config& cfg, lb_worker& w, std::span<rte_mbuf* const> pkts,
                   std::span<const packet> parsed, std::span<lb_verdict> out, uint64_t now) {
  forward_pipelined(cfg, w, pkts, parsed, nullptr, out, now);
}

void forward_burst(const lb_config& cfg, lb_worker& w, std::span<rte_mbuf* const> pkts,
                   std::span<const packet> parsed, std::span<const service* const> services,
                   std::span<lb_verdict> out, uint64_t now) {
  forward_pipelined(cfg, w, pkts, parsed, services.data(), out, now);
}

}  // namespace l4::lb
