#pragma once
// A small builder for test frames: Ethernet [+VLAN] + IPv4/IPv6 + TCP/UDP/ICMP with correct
// lengths and checksums, and knobs to break each of them. Produces bytes or an mbuf.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace edge_test {

inline uint32_t sum16(const uint8_t* p, size_t n, uint32_t s = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) s += (p[i] << 8) | p[i + 1];
  if (n & 1) s += p[n - 1] << 8;
  return s;
}
inline uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

struct packet_builder {
  uint8_t src_mac[6] = {0x02, 0, 0, 0, 0, 0x02};
  uint8_t dst_mac[6] = {0x02, 0, 0, 0, 0, 0x01};
  int vlan = -1;
  bool v6 = false;
  uint8_t src[16] = {}, dst[16] = {};
  uint8_t proto = IPPROTO_UDP;
  uint8_t ttl = 64;
  uint16_t sport = 1234, dport = 80;
  uint8_t tcp_flags = 0x02;  // SYN
  uint32_t seq = 1000, ack = 0;
  uint16_t window = 65535;
  std::vector<uint8_t> tcp_options;
  uint8_t icmp_type = 8, icmp_code = 0;
  uint16_t icmp_id = 1, icmp_seq = 1;
  std::vector<uint8_t> payload;
  // Corruptions.
  bool bad_ip_checksum = false, bad_l4_checksum = false, zero_udp_checksum = false;
  int ip_total_len_delta = 0;

  packet_builder& from(const char* s) { return addr(s, src); }
  packet_builder& to(const char* s) { return addr(s, dst); }
  packet_builder& addr(const char* s, uint8_t* out) {
    v6 = std::strchr(s, ':') != nullptr;
    inet_pton(v6 ? AF_INET6 : AF_INET, s, out);
    return *this;
  }

  std::vector<uint8_t> l4_bytes() const {
    std::vector<uint8_t> l4;
    if (proto == IPPROTO_TCP) {
      const size_t optlen = (tcp_options.size() + 3) & ~size_t{3};
      l4.resize(20 + optlen);
      put16(&l4[0], sport);
      put16(&l4[2], dport);
      put32(&l4[4], seq);
      put32(&l4[8], ack);
      l4[12] = static_cast<uint8_t>(((20 + optlen) / 4) << 4);
      l4[13] = tcp_flags;
      put16(&l4[14], window);
      std::copy(tcp_options.begin(), tcp_options.end(), l4.begin() + 20);
    } else if (proto == IPPROTO_UDP) {
      l4.resize(8);
      put16(&l4[0], sport);
      put16(&l4[2], dport);
      put16(&l4[4], static_cast<uint16_t>(8 + payload.size()));
    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
      l4.resize(8);
      l4[0] = icmp_type;
      l4[1] = icmp_code;
      put16(&l4[4], icmp_id);
      put16(&l4[6], icmp_seq);
    }
    l4.insert(l4.end(), payload.begin(), payload.end());
    return l4;
  }

  uint16_t checksum_offset() const {
    return proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : 2;
  }

  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> f(dst_mac, dst_mac + 6);
    f.insert(f.end(), src_mac, src_mac + 6);
    if (vlan >= 0) {
      f.push_back(0x81), f.push_back(0x00);
      f.push_back(static_cast<uint8_t>(vlan >> 8)), f.push_back(static_cast<uint8_t>(vlan));
    }
    f.push_back(v6 ? 0x86 : 0x08), f.push_back(v6 ? 0xdd : 0x00);
    auto l4 = l4_bytes();
    const size_t l3off = f.size();
    if (!v6) {
      f.resize(l3off + 20);
      uint8_t* ip = &f[l3off];
      ip[0] = 0x45;
      put16(ip + 2, static_cast<uint16_t>(20 + l4.size() + ip_total_len_delta));
      ip[8] = ttl;
      ip[9] = proto;
      std::memcpy(ip + 12, src, 4);
      std::memcpy(ip + 16, dst, 4);
      uint16_t ck = fold(sum16(ip, 20));
      if (bad_ip_checksum) ck ^= 0x5a5a;
      put16(ip + 10, ck);
    } else {
      f.resize(l3off + 40);
      uint8_t* ip = &f[l3off];
      ip[0] = 0x60;
      put16(ip + 4, static_cast<uint16_t>(l4.size() + ip_total_len_delta));
      ip[6] = proto;
      ip[7] = ttl;
      std::memcpy(ip + 8, src, 16);
      std::memcpy(ip + 24, dst, 16);
    }
    if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP ||
        proto == IPPROTO_ICMPV6) {
      uint32_t s = 0;
      if (proto != IPPROTO_ICMP) {
        const size_t alen = v6 ? 16 : 4;
        s = sum16(src, alen, s);
        s = sum16(dst, alen, s);
        s += proto;
        s += static_cast<uint32_t>(l4.size());
      }
      s = sum16(l4.data(), l4.size(), s);
      uint16_t ck = fold(s);
      if (proto == IPPROTO_UDP && ck == 0) ck = 0xffff;
      if (zero_udp_checksum) ck = 0;
      if (bad_l4_checksum) ck ^= 0x1111;
      put16(&l4[checksum_offset()], ck);
    }
    f.insert(f.end(), l4.begin(), l4.end());
    return f;
  }

  static void put16(uint8_t* p, uint16_t v) { p[0] = v >> 8, p[1] = v & 0xff; }
  static void put32(uint8_t* p, uint32_t v) {
    put16(p, static_cast<uint16_t>(v >> 16));
    put16(p + 2, static_cast<uint16_t>(v));
  }
};

// Copies `frame` into a fresh mbuf from `mp` (nullptr on failure).
inline rte_mbuf* to_mbuf(rte_mempool* mp, const std::vector<uint8_t>& frame) {
  rte_mbuf* m = rte_pktmbuf_alloc(mp);
  if (m == nullptr) return nullptr;
  char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size()));
  if (p == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  std::memcpy(p, frame.data(), frame.size());
  return m;
}

inline std::vector<uint8_t> from_mbuf(const rte_mbuf* m) {
  const auto* p = rte_pktmbuf_mtod(m, const uint8_t*);
  return {p, p + rte_pktmbuf_data_len(m)};
}

}  // namespace edge_test
