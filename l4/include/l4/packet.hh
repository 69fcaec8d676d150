#pragma once
// What the parse stage learns about a received frame. One `packet` per mbuf of a burst, filled
// by l4::parse and read by every later stage; offsets are from the start of the frame.
#include <cstdint>

#include "l4/ip_addr.hh"

namespace l4 {

enum class l3_kind : uint8_t { none, arp, ipv4, ipv6 };

struct packet {
  uint16_t l2_len = 0;       // Ethernet + VLAN tag
  uint16_t l3_len = 0;       // IP header incl. IPv4 options / IPv6 extension headers
  uint16_t l4_len = 0;       // TCP header incl. options, UDP 8, ICMP 8
  uint16_t payload_len = 0;  // transport payload bytes (frame padding excluded)
  uint16_t vlan_tci = 0;
  bool has_vlan = false;
  l3_kind l3 = l3_kind::none;
  uint8_t proto = 0;      // IPPROTO_TCP/UDP/ICMP/ICMPV6 or other
  uint8_t tcp_flags = 0;  // RTE_TCP_*_FLAG bits
  uint8_t ttl = 0;        // TTL / hop limit
  ip_addr src, dst;
  uint16_t sport = 0, dport = 0;  // host order; ICMP: type<<8|code in sport, echo id in dport

  uint16_t l4_off() const { return l2_len + l3_len; }
  uint16_t payload_off() const { return l2_len + l3_len + l4_len; }
};

}  // namespace l4
