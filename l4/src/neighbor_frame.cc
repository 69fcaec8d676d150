#include "l4/neighbor_frame.hh"

#include <netinet/in.h>
#include <rte_arp.h>
#include <rte_ip.h>

#include <cstring>

#include "l4/checksum.hh"
#include "l4/packet.hh"

namespace l4 {

bool build_arp_request(rte_mbuf* m, const rte_ether_addr& mac, const ip_addr& sip,
                       const ip_addr& tip) {
  rte_pktmbuf_reset(m);
  constexpr uint16_t len = sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr);
  auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, len));
  if (f == nullptr) return false;
  std::memset(f, 0, len);  // the target hardware address stays zero
  auto* eth = reinterpret_cast<rte_ether_hdr*>(f);
  std::memset(&eth->dst_addr, 0xff, 6);
  eth->src_addr = mac;
  eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_ARP);
  auto* a = reinterpret_cast<rte_arp_hdr*>(eth + 1);
  a->arp_hardware = RTE_BE16(RTE_ARP_HRD_ETHER);
  a->arp_protocol = RTE_BE16(RTE_ETHER_TYPE_IPV4);
  a->arp_hlen = 6;
  a->arp_plen = 4;
  a->arp_opcode = RTE_BE16(RTE_ARP_OP_REQUEST);
  a->arp_data.arp_sha = mac;
  a->arp_data.arp_sip = sip.v4_be();
  a->arp_data.arp_tip = tip.v4_be();
  return true;
}

bool build_nd(rte_mbuf* m, const rte_ether_addr& mac, const nd_frame& nd) {
  rte_pktmbuf_reset(m);
  constexpr uint16_t icmp_len = 32;
  constexpr uint16_t len = sizeof(rte_ether_hdr) + sizeof(rte_ipv6_hdr) + icmp_len;
  auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, len));
  if (f == nullptr) return false;
  std::memset(f, 0, len);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(f);
  eth->dst_addr = nd.dst_mac;
  eth->src_addr = mac;
  eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV6);
  auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(eth + 1);
  ip6->vtc_flow = RTE_BE32(6u << 28);
  ip6->payload_len = RTE_BE16(icmp_len);
  ip6->proto = IPPROTO_ICMPV6;
  ip6->hop_limits = 255;  // RFC 4861: receivers drop neighbour messages with any other
  std::memcpy(ip6->src_addr, nd.src.b.data(), 16);
  std::memcpy(ip6->dst_addr, nd.dst.b.data(), 16);
  auto* icmp = reinterpret_cast<uint8_t*>(ip6 + 1);
  icmp[0] = nd.type;
  const uint32_t flags = rte_cpu_to_be_32(nd.flags);
  std::memcpy(icmp + 4, &flags, 4);
  std::memcpy(icmp + 8, nd.target.b.data(), 16);
  icmp[24] = nd.lladdr_option;
  icmp[25] = 1;  // 8 bytes
  std::memcpy(icmp + 26, mac.addr_bytes, 6);
  packet q;
  q.l3 = l3_kind::ipv6;
  q.proto = IPPROTO_ICMPV6;
  q.src = nd.src;
  q.dst = nd.dst;
  const uint16_t ck = l4_checksum(q, icmp, icmp_len);
  std::memcpy(icmp + 2, &ck, 2);
  return true;
}

}  // namespace l4
