#pragma once
// Internet checksums: full verification/computation over a transport segment with the IPv4 or
// IPv6 pseudo-header, and RFC 1624 incremental updates for header rewrites (NAT).
#include <netinet/in.h>
#include <rte_ip.h>

#include <cstdint>
#include <cstring>

#include "l4/packet.hh"

namespace l4 {

// One's-complement sum of the pseudo-header for `p` with transport length `l4_bytes`.
inline uint32_t pseudo_header_sum(const packet& p, uint16_t l4_bytes) {
  uint32_t sum = 0;
  if (p.l3 == l3_kind::ipv6) {
    sum = __rte_raw_cksum(p.src.b.data(), 16, 0);
    sum = __rte_raw_cksum(p.dst.b.data(), 16, sum);
    const uint32_t len_be = rte_cpu_to_be_32(l4_bytes);
    const uint32_t nh_be = rte_cpu_to_be_32(p.proto);
    sum = __rte_raw_cksum(&len_be, 4, sum);
    sum = __rte_raw_cksum(&nh_be, 4, sum);
  } else {
    sum = __rte_raw_cksum(p.src.b.data(), 4, 0);
    sum = __rte_raw_cksum(p.dst.b.data(), 4, sum);
    const uint16_t tail[2] = {rte_cpu_to_be_16(p.proto), rte_cpu_to_be_16(l4_bytes)};
    sum = __rte_raw_cksum(tail, 4, sum);
  }
  return sum;
}

// Checksum field value for a transport segment (the field itself must be zero in `l4h`).
// ICMPv4 has no pseudo-header.
inline uint16_t l4_checksum(const packet& p, const void* l4h, uint16_t l4_bytes) {
  uint32_t sum = p.proto == IPPROTO_ICMP ? 0 : pseudo_header_sum(p, l4_bytes);
  sum = __rte_raw_cksum(l4h, l4_bytes, sum);
  uint16_t folded = __rte_raw_cksum_reduce(sum);
  folded = static_cast<uint16_t>(~folded);
  if (folded == 0 && p.proto == IPPROTO_UDP) folded = 0xffff;
  return folded;
}

// True when the segment (checksum field included) sums to all ones.
inline bool l4_checksum_ok(const packet& p, const uint8_t* /*frame*/, const void* l4h,
                           uint16_t l4_bytes) {
  uint32_t sum = p.proto == IPPROTO_ICMP ? 0 : pseudo_header_sum(p, l4_bytes);
  sum = __rte_raw_cksum(l4h, l4_bytes, sum);
  return __rte_raw_cksum_reduce(sum) == 0xffff;
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for a 16-bit field change m -> m'.
inline uint16_t csum_update16(uint16_t csum, uint16_t old_be, uint16_t new_be) {
  uint32_t s = static_cast<uint16_t>(~csum) + static_cast<uint16_t>(~old_be) + new_be;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

// Same, for a change of `len` bytes (even) such as an address.
inline uint16_t csum_update(uint16_t csum, const void* old_bytes, const void* new_bytes,
                            size_t len) {
  uint32_t s = static_cast<uint16_t>(~csum);
  const auto* o = static_cast<const uint8_t*>(old_bytes);
  const auto* n = static_cast<const uint8_t*>(new_bytes);
  for (size_t i = 0; i + 1 < len; i += 2) {
    uint16_t ov, nv;
    std::memcpy(&ov, o + i, 2);
    std::memcpy(&nv, n + i, 2);
    s += static_cast<uint16_t>(~ov) + nv;
  }
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

}  // namespace l4
