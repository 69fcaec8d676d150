#include "l4/parse.hh"

#include <netinet/in.h>
#include <rte_arp.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "l4/checksum.hh"

namespace l4 {
namespace {

constexpr int max_ipv6_ext_headers = 4;

bool ipv4_source_ok(uint32_t be) {
  const uint32_t a = rte_be_to_cpu_32(be);
  const uint8_t first = a >> 24;
  return a != 0 && a != 0xffffffffu && first != 127 && (first & 0xf0) != 0xe0;
}

drop parse_transport(const uint8_t* data, uint16_t off, uint16_t end, const rte_mbuf* m,
                     packet& p) {
  const uint16_t avail = end - off;
  const uint8_t* l4h = data + off;
  switch (p.proto) {
    case IPPROTO_TCP: {
      if (avail < sizeof(rte_tcp_hdr)) return drop::tcp_truncated;
      auto* t = reinterpret_cast<const rte_tcp_hdr*>(l4h);
      const uint16_t hl = (t->data_off >> 4) * 4;
      if (hl < sizeof(rte_tcp_hdr) || hl > avail) return drop::tcp_truncated;
      if ((m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) != RTE_MBUF_F_RX_L4_CKSUM_GOOD &&
          !l4_checksum_ok(p, data, l4h, avail))
        return drop::tcp_bad_checksum;
      p.l4_len = hl;
      p.sport = rte_be_to_cpu_16(t->src_port);
      p.dport = rte_be_to_cpu_16(t->dst_port);
      p.tcp_flags = t->tcp_flags;
      return drop::none;
    }
    case IPPROTO_UDP: {
      if (avail < sizeof(rte_udp_hdr)) return drop::udp_truncated;
      auto* u = reinterpret_cast<const rte_udp_hdr*>(l4h);
      const uint16_t ulen = rte_be_to_cpu_16(u->dgram_len);
      if (ulen < sizeof(rte_udp_hdr) || ulen > avail) return drop::udp_truncated;
      // Bytes after the datagram inside the IP packet: forwarding would cut the frame to the UDP
      // length under an IP header that still counts them (found by fuzz_l4_forward).
      if (ulen != avail) return drop::udp_length_mismatch;
      if (u->dgram_cksum == 0) {
        if (p.l3 == l3_kind::ipv6) return drop::udp_bad_checksum;  // mandatory over IPv6
      } else if ((m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) != RTE_MBUF_F_RX_L4_CKSUM_GOOD &&
                 !l4_checksum_ok(p, data, l4h, ulen)) {
        return drop::udp_bad_checksum;
      }
      p.l4_len = sizeof(rte_udp_hdr);
      p.sport = rte_be_to_cpu_16(u->src_port);
      p.dport = rte_be_to_cpu_16(u->dst_port);
      p.payload_len = ulen - sizeof(rte_udp_hdr);
      return drop::none;
    }
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6: {
      if (avail < 8) return drop::icmp_truncated;
      if ((p.proto == IPPROTO_ICMP) != (p.l3 == l3_kind::ipv4)) return drop::proto_unsupported;
      if (!l4_checksum_ok(p, data, l4h, avail)) return drop::icmp_bad_checksum;
      p.l4_len = 8;
      p.sport = static_cast<uint16_t>(l4h[0] << 8 | l4h[1]);
      p.dport = static_cast<uint16_t>(l4h[4] << 8 | l4h[5]);
      return drop::none;
    }
    default:
      p.l4_len = 0;
      return drop::none;  // later stages decide (encapsulated traffic, or proto_unsupported)
  }
}

}  // namespace

drop parse(const rte_mbuf* m, packet& p) {
  p = packet{};
  if (m->nb_segs != 1) return drop::multi_segment;
  const auto* data = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint16_t len = rte_pktmbuf_data_len(m);
  if (len < sizeof(rte_ether_hdr)) return drop::frame_too_short;

  auto* eth = reinterpret_cast<const rte_ether_hdr*>(data);
  uint16_t type = rte_be_to_cpu_16(eth->ether_type);
  uint16_t off = sizeof(rte_ether_hdr);
  if (type == RTE_ETHER_TYPE_VLAN) {
    if (len < off + sizeof(rte_vlan_hdr)) return drop::frame_too_short;
    auto* vh = reinterpret_cast<const rte_vlan_hdr*>(data + off);
    p.has_vlan = true;
    p.vlan_tci = rte_be_to_cpu_16(vh->vlan_tci);
    type = rte_be_to_cpu_16(vh->eth_proto);
    off += sizeof(rte_vlan_hdr);
    if (type == RTE_ETHER_TYPE_VLAN || type == RTE_ETHER_TYPE_QINQ) return drop::vlan_qinq;
  } else if (type == RTE_ETHER_TYPE_QINQ) {
    return drop::vlan_qinq;
  }
  p.l2_len = off;

  switch (type) {
    case RTE_ETHER_TYPE_ARP: {
      if (len < off + sizeof(rte_arp_hdr)) return drop::arp_malformed;
      auto* a = reinterpret_cast<const rte_arp_hdr*>(data + off);
      if (a->arp_hardware != RTE_BE16(RTE_ARP_HRD_ETHER) ||
          a->arp_protocol != RTE_BE16(RTE_ETHER_TYPE_IPV4) || a->arp_hlen != 6 || a->arp_plen != 4)
        return drop::arp_malformed;
      p.l3 = l3_kind::arp;
      p.l3_len = sizeof(rte_arp_hdr);
      p.src = ip_addr::v4_from_be(a->arp_data.arp_sip);
      p.dst = ip_addr::v4_from_be(a->arp_data.arp_tip);
      return drop::none;
    }
    case RTE_ETHER_TYPE_IPV4: {
      if (len < off + sizeof(rte_ipv4_hdr)) return drop::ipv4_truncated;
      auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(data + off);
      if ((ip->version_ihl >> 4) != 4) return drop::ipv4_bad_version;
      const uint16_t ihl = (ip->version_ihl & 0xf) * 4;
      if (ihl < sizeof(rte_ipv4_hdr)) return drop::ipv4_bad_ihl;
      const uint16_t total = rte_be_to_cpu_16(ip->total_length);
      if (total < ihl || off + total > len) return drop::ipv4_truncated;
      if ((m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) != RTE_MBUF_F_RX_IP_CKSUM_GOOD &&
          rte_raw_cksum(ip, ihl) != 0xffff)
        return drop::ipv4_bad_checksum;
      if (ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))
        return drop::ipv4_fragment;
      if (ip->time_to_live == 0) return drop::ipv4_ttl_expired;
      if (!ipv4_source_ok(ip->src_addr)) return drop::ipv4_bad_source;
      p.l3 = l3_kind::ipv4;
      p.l3_len = ihl;
      p.proto = ip->next_proto_id;
      p.ttl = ip->time_to_live;
      p.src = ip_addr::v4_from_be(ip->src_addr);
      p.dst = ip_addr::v4_from_be(ip->dst_addr);
      const uint16_t l4off = off + ihl;
      const uint16_t end = off + total;
      const drop d = parse_transport(data, l4off, end, m, p);
      if (d == drop::none && p.proto != IPPROTO_UDP) p.payload_len = end - l4off - p.l4_len;
      return d;
    }
    case RTE_ETHER_TYPE_IPV6: {
      if (len < off + sizeof(rte_ipv6_hdr)) return drop::ipv6_truncated;
      auto* ip6 = reinterpret_cast<const rte_ipv6_hdr*>(data + off);
      if ((rte_be_to_cpu_32(ip6->vtc_flow) >> 28) != 6) return drop::ipv6_bad_version;
      const uint16_t plen = rte_be_to_cpu_16(ip6->payload_len);
      // 32 bits: a payload length near 65535 wrapped a 16-bit end below the L4 offset (issue 10).
      const uint32_t end32 = uint32_t{off} + sizeof(rte_ipv6_hdr) + plen;
      if (end32 > len) return drop::ipv6_truncated;
      const uint16_t end = static_cast<uint16_t>(end32);
      if (ip6->src_addr[0] == 0xff) return drop::ipv6_bad_source;
      static constexpr uint8_t loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
      if (std::memcmp(ip6->src_addr, loopback, 16) == 0) return drop::ipv6_bad_source;
      p.l3 = l3_kind::ipv6;
      p.ttl = ip6->hop_limits;
      p.src = ip_addr::v6_from(ip6->src_addr);
      p.dst = ip_addr::v6_from(ip6->dst_addr);
      uint8_t next = ip6->proto;
      uint16_t l4off = off + sizeof(rte_ipv6_hdr);
      for (int i = 0;; ++i) {
        if (next == IPPROTO_FRAGMENT) return drop::ipv6_fragment;
        if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS) break;
        if (i == max_ipv6_ext_headers || l4off + 8 > end) return drop::ipv6_ext_chain;
        const uint16_t ext_len = (data[l4off + 1] + 1) * 8;
        if (l4off + ext_len > end) return drop::ipv6_ext_chain;
        next = data[l4off];
        l4off += ext_len;
      }
      p.proto = next;
      p.l3_len = l4off - off;
      const drop d = parse_transport(data, l4off, end, m, p);
      if (d == drop::none && p.proto != IPPROTO_UDP) p.payload_len = end - l4off - p.l4_len;
      return d;
    }
    default:
      return drop::ethertype_unsupported;
  }
}

void parse_burst(std::span<rte_mbuf* const> pkts, std::span<packet> out, std::span<drop> verdict) {
  const size_t n = pkts.size();
  // Prefetch a few frames ahead: the headers are the first cache line of each.
  constexpr size_t ahead = 4;
  for (size_t i = 0; i < n && i < ahead; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
  for (size_t i = 0; i < n; ++i) {
    if (i + ahead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + ahead], void*));
    verdict[i] = parse(pkts[i], out[i]);
  }
}

}  // namespace l4
