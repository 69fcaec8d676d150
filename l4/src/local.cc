#include "l4/local.hh"

#include <netinet/in.h>
#include <rte_arp.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_tcp.h>

#include <algorithm>

#include <cstring>

#include "l4/checksum.hh"
#include "l4/neighbor_frame.hh"

namespace l4 {
namespace {

constexpr uint8_t icmp6_echo_request = 128;
constexpr uint8_t icmp6_echo_reply = 129;
constexpr uint32_t na_flag_solicited = 0x40000000;
constexpr uint32_t na_flag_override = 0x20000000;

void swap_macs(uint8_t* frame, const rte_ether_addr& own) {
  auto* eth = reinterpret_cast<rte_ether_hdr*>(frame);
  eth->dst_addr = eth->src_addr;
  eth->src_addr = own;
}

local_verdict arp_input(rte_mbuf* m, const packet& p, const local_addrs& local) {
  auto* a = rte_pktmbuf_mtod_offset(m, rte_arp_hdr*, p.l2_len);
  if (a->arp_opcode != RTE_BE16(RTE_ARP_OP_REQUEST))
    return {local_action::dropped, drop::arp_not_request};
  if (!local.has(p.dst)) return {local_action::dropped, drop::arp_not_local};
  auto& d = a->arp_data;
  a->arp_opcode = RTE_BE16(RTE_ARP_OP_REPLY);
  d.arp_tha = d.arp_sha;
  const uint32_t sip = d.arp_sip;
  d.arp_sip = d.arp_tip;
  d.arp_tip = sip;
  d.arp_sha = local.mac;
  swap_macs(rte_pktmbuf_mtod(m, uint8_t*), local.mac);
  return {local_action::reply};
}

void swap_ip(uint8_t* l3, bool v6) {
  if (v6) {
    auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(l3);
    uint8_t tmp[16];
    std::memcpy(tmp, ip6->src_addr, 16);
    std::memcpy(ip6->src_addr, ip6->dst_addr, 16);
    std::memcpy(ip6->dst_addr, tmp, 16);
    ip6->hop_limits = 64;
  } else {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
    const uint32_t src = ip->src_addr;
    ip->src_addr = ip->dst_addr;
    ip->dst_addr = src;
    ip->time_to_live = 64;
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
  }
}

local_verdict icmp4_input(rte_mbuf* m, const packet& p, const local_addrs& local) {
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  auto* icmp = reinterpret_cast<rte_icmp_hdr*>(frame + p.l4_off());
  if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0)
    return {local_action::dropped, drop::icmp_unhandled};
  icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
  icmp->icmp_cksum = csum_update16(icmp->icmp_cksum, RTE_BE16(RTE_IP_ICMP_ECHO_REQUEST << 8),
                                   RTE_BE16(RTE_IP_ICMP_ECHO_REPLY << 8));
  swap_ip(frame + p.l2_len, false);
  swap_macs(frame, local.mac);
  return {local_action::reply};
}

// Neighbour solicitation → solicited advertisement carrying our MAC (RFC 4861 §7.2.4).
local_verdict ns_input(rte_mbuf* m, const packet& p, const local_addrs& local) {
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* icmp = frame + p.l4_off();
  const uint16_t icmp_len = p.l4_len + p.payload_len;
  if (p.ttl != 255 || icmp[1] != 0 || icmp_len < 24)
    return {local_action::dropped, drop::nd_malformed};
  const ip_addr target = ip_addr::v6_from(icmp + 8);
  if (!local.has(target)) return {local_action::dropped, drop::nd_not_local};

  auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(frame + p.l2_len);
  const bool from_unspecified = p.src == ip_addr{.b = {}, .v6 = true};
  // Reply to the soliciting node, or to all-nodes when it has no address yet (DAD).
  static constexpr uint8_t all_nodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  std::memcpy(ip6->dst_addr, from_unspecified ? all_nodes : p.src.b.data(), 16);
  std::memcpy(ip6->src_addr, target.b.data(), 16);
  ip6->hop_limits = 255;
  ip6->proto = IPPROTO_ICMPV6;  // drop any extension headers the NS carried
  // Rewrite the ICMPv6 body right after the fixed IPv6 header.
  uint8_t* na = frame + p.l2_len + sizeof(rte_ipv6_hdr);
  std::memmove(na + 8, target.b.data(), 16);
  na[0] = nd_neighbor_advert;
  na[1] = 0;
  const uint32_t flags =
      rte_cpu_to_be_32(na_flag_override | (from_unspecified ? 0 : na_flag_solicited));
  std::memcpy(na + 4, &flags, 4);
  na[24] = nd_opt_target_lladdr;
  na[25] = 1;  // 8 bytes
  std::memcpy(na + 26, local.mac.addr_bytes, 6);
  const uint16_t na_len = 32;
  ip6->payload_len = rte_cpu_to_be_16(na_len);
  na[2] = na[3] = 0;
  packet q = p;
  q.src = target;
  q.dst = ip_addr::v6_from(ip6->dst_addr);
  q.proto = IPPROTO_ICMPV6;
  const uint16_t ck = l4_checksum(q, na, na_len);
  std::memcpy(na + 2, &ck, 2);

  auto* eth = reinterpret_cast<rte_ether_hdr*>(frame);
  if (from_unspecified) {
    rte_ether_addr mc{{0x33, 0x33, 0, 0, 0, 1}};
    eth->dst_addr = mc;
    eth->src_addr = local.mac;
  } else {
    swap_macs(frame, local.mac);
  }
  const uint16_t total = p.l2_len + sizeof(rte_ipv6_hdr) + na_len;
  rte_pktmbuf_trim(m, rte_pktmbuf_pkt_len(m) - total);
  return {local_action::reply};
}

local_verdict icmp6_input(rte_mbuf* m, const packet& p, const local_addrs& local) {
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  const uint8_t type = p.sport >> 8;
  if (type == nd_neighbor_solicit) return ns_input(m, p, local);
  if (!local.has(p.dst)) return {local_action::dropped, drop::not_local};
  if (type != icmp6_echo_request) return {local_action::dropped, drop::nd_unhandled};
  uint8_t* icmp = frame + p.l4_off();
  icmp[0] = icmp6_echo_reply;
  uint16_t ck;
  std::memcpy(&ck, icmp + 2, 2);
  // Addresses swap (checksum-neutral); only the type byte changes.
  ck = csum_update16(ck, RTE_BE16(icmp6_echo_request << 8), RTE_BE16(icmp6_echo_reply << 8));
  std::memcpy(icmp + 2, &ck, 2);
  swap_ip(frame + p.l2_len, true);
  swap_macs(frame, local.mac);
  return {local_action::reply};
}

}  // namespace

local_verdict local_input(rte_mbuf* m, const packet& p, const local_addrs& local) {
  switch (p.l3) {
    case l3_kind::arp:
      return arp_input(m, p, local);
    case l3_kind::ipv4:
      if (!local.has(p.dst)) return {local_action::dropped, drop::not_local};
      if (p.proto == IPPROTO_ICMP) return icmp4_input(m, p, local);
      return {local_action::deliver};
    case l3_kind::ipv6:
      if (p.proto == IPPROTO_ICMPV6) {
        const uint8_t type = p.sport >> 8;
        if (type == nd_neighbor_solicit || type == icmp6_echo_request)
          return icmp6_input(m, p, local);
        if (!local.has(p.dst)) return {local_action::dropped, drop::not_local};
        return {local_action::dropped, drop::nd_unhandled};
      }
      if (!local.has(p.dst)) return {local_action::dropped, drop::not_local};
      return {local_action::deliver};
    default:
      return {local_action::dropped, drop::ethertype_unsupported};
  }
}

local_verdict closed_port_reset(rte_mbuf* m, const packet& p, const rte_ether_addr& own_mac) {
  if (p.proto != IPPROTO_TCP || (p.tcp_flags & RTE_TCP_RST_FLAG) ||
      (p.l3 != l3_kind::ipv4 && p.l3 != l3_kind::ipv6))
    return {local_action::dropped, drop::no_service};
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  const auto* in = reinterpret_cast<const rte_tcp_hdr*>(frame + p.l4_off());
  const uint32_t seg_seq = rte_be_to_cpu_32(in->sent_seq);
  const uint32_t seg_ack = rte_be_to_cpu_32(in->recv_ack);
  const uint32_t seg_len = p.payload_len + ((p.tcp_flags & RTE_TCP_SYN_FLAG) ? 1 : 0) +
                           ((p.tcp_flags & RTE_TCP_FIN_FLAG) ? 1 : 0);
  const bool had_ack = p.tcp_flags & RTE_TCP_ACK_FLAG;
  const uint16_t sport = p.dport, dport = p.sport;
  const bool v6 = p.l3 == l3_kind::ipv6;
  const uint16_t l3_len = v6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
  // The parsed headers are at least as long as the ones written here: the reply fits in place.
  uint8_t* l3 = frame + p.l2_len;
  if (v6) {
    auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(l3);
    ip6->vtc_flow = RTE_BE32(6u << 28);
    ip6->payload_len = RTE_BE16(sizeof(rte_tcp_hdr));
    ip6->proto = IPPROTO_TCP;
    ip6->hop_limits = 64;
    std::memcpy(ip6->src_addr, p.dst.b.data(), 16);
    std::memcpy(ip6->dst_addr, p.src.b.data(), 16);
  } else {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
    ip->version_ihl = 0x45;
    ip->type_of_service = 0;
    ip->total_length = RTE_BE16(sizeof(rte_ipv4_hdr) + sizeof(rte_tcp_hdr));
    ip->packet_id = 0;
    ip->fragment_offset = RTE_BE16(RTE_IPV4_HDR_DF_FLAG);
    ip->time_to_live = 64;
    ip->next_proto_id = IPPROTO_TCP;
    ip->src_addr = p.dst.v4_be();
    ip->dst_addr = p.src.v4_be();
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
  }
  auto* tcp = reinterpret_cast<rte_tcp_hdr*>(l3 + l3_len);
  tcp->src_port = rte_cpu_to_be_16(sport);
  tcp->dst_port = rte_cpu_to_be_16(dport);
  tcp->sent_seq = rte_cpu_to_be_32(had_ack ? seg_ack : 0);
  tcp->recv_ack = rte_cpu_to_be_32(had_ack ? 0 : seg_seq + seg_len);
  tcp->data_off = 5 << 4;
  tcp->tcp_flags = had_ack ? RTE_TCP_RST_FLAG : (RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG);
  tcp->rx_win = 0;
  tcp->cksum = 0;
  tcp->tcp_urp = 0;
  packet q = p;
  q.src = p.dst;
  q.dst = p.src;
  q.proto = IPPROTO_TCP;
  tcp->cksum = l4_checksum(q, tcp, sizeof(rte_tcp_hdr));
  swap_macs(frame, own_mac);
  const uint32_t total = p.l2_len + l3_len + sizeof(rte_tcp_hdr);
  rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_pkt_len(m) - total));
  return {local_action::reply};
}

bool reply_limiter::allow(uint64_t now) {
  if (last_ == 0) last_ = now;
  if (now > last_ && rate_ != 0 && hz_ != 0) {
    // At most a second of refill counts (the bucket is full by then), so elapsed * rate is at
    // most hz * rate: ~1e10 * 1e6 even for a fast TSC and a generous rate, well below 2^64.
    const uint64_t elapsed = std::min<uint64_t>(now - last_, hz_);
    const uint64_t add = elapsed * rate_ / hz_;
    if (add > 0) {
      tokens_ = static_cast<uint32_t>(std::min<uint64_t>(burst_, tokens_ + add));
      last_ = elapsed == hz_ ? now : last_ + add * hz_ / rate_;
    }
  }
  if (tokens_ == 0) return false;
  --tokens_;
  return true;
}

bool build_announcement(rte_mbuf* m, const rte_ether_addr& mac, const ip_addr& addr) {
  if (!addr.v6) return build_arp_request(m, mac, addr, addr);
  static constexpr uint8_t all_nodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  nd_frame nd;
  nd.type = nd_neighbor_advert;
  nd.flags = na_flag_override;
  nd.src = nd.target = addr;
  nd.dst = ip_addr::v6_from(all_nodes);
  nd.dst_mac = rte_ether_addr{{0x33, 0x33, 0, 0, 0, 1}};
  nd.lladdr_option = nd_opt_target_lladdr;
  return build_nd(m, mac, nd);
}

}  // namespace l4
