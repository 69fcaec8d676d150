#include "l4/lb/owner.hh"

#include <netinet/in.h>

#include <cstring>

#include "l4/lb/lb_config.hh"

namespace l4::lb {
namespace {

uint64_t fmix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

bool is_error(uint8_t proto, uint8_t type) {
  if (proto == IPPROTO_ICMP) return type == 3 || type == 11 || type == 12;  // unreach, time, param
  if (proto == IPPROTO_ICMPV6) return type >= 1 && type <= 4;  // unreach, too big, time, param
  return false;
}

uint16_t by_hash(const ip_addr& a, const ip_addr& b, uint16_t pa, uint16_t pb, uint8_t proto,
                 uint16_t workers) {
  const bool ports = proto == IPPROTO_TCP || proto == IPPROTO_UDP;
  return owner_of_hash(owner_hash(a, b, ports ? pa : 0, ports ? pb : 0, proto), workers);
}

}  // namespace

uint32_t owner_hash(const ip_addr& a, const ip_addr& b, uint16_t pa, uint16_t pb, uint8_t proto) {
  uint64_t x[2], y[2];
  std::memcpy(x, a.b.data(), 16);
  std::memcpy(y, b.b.data(), 16);
  // Sums are symmetric and, unlike XOR, do not map every a == b pair to one value.
  uint64_t h = fmix(x[0] + y[0] + 0x243f6a8885a308d3ULL);
  h = fmix(h ^ (x[1] + y[1]));
  h = fmix(h ^ ((static_cast<uint64_t>(pa) + pb) << 8 | proto));
  return static_cast<uint32_t>(h >> 32);
}

uint16_t flow_owner(const lb_config* cfg, const rte_mbuf* m, const packet& p, uint16_t workers,
                    uint16_t self) {
  if (workers <= 1) return 0;
  if (p.l3 != l3_kind::ipv4 && p.l3 != l3_kind::ipv6) return self;
  const bool snat_split = cfg != nullptr && cfg->spec().workers == workers;
  if ((p.proto == IPPROTO_ICMP || p.proto == IPPROTO_ICMPV6) && is_error(p.proto, p.sport >> 8)) {
    // The quoted packet: its IP header and the first 4 bytes of its transport header.
    const auto* f = rte_pktmbuf_mtod(m, const uint8_t*);
    const uint32_t end = static_cast<uint32_t>(p.payload_off()) + p.payload_len;
    if (end > rte_pktmbuf_data_len(m)) return self;
    const uint8_t* in = f + p.payload_off();
    const uint32_t avail = p.payload_len;
    ip_addr src, dst;
    uint8_t proto;
    uint32_t l3;
    if (p.l3 == l3_kind::ipv4) {
      if (avail < 20 || (in[0] >> 4) != 4) return self;
      l3 = (in[0] & 0xfu) * 4;
      if (l3 < 20) return self;
      proto = in[9];
      uint32_t s4, d4;
      std::memcpy(&s4, in + 12, 4);
      std::memcpy(&d4, in + 16, 4);
      src = ip_addr::v4_from_be(s4);
      dst = ip_addr::v4_from_be(d4);
    } else {
      if (avail < 40 || (in[0] >> 4) != 6) return self;
      l3 = 40;
      proto = in[6];
      src = ip_addr::v6_from(in + 8);
      dst = ip_addr::v6_from(in + 24);
    }
    uint16_t sport = 0, dport = 0;
    if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
      if (avail < l3 + 4) return self;  // no ports quoted: the flow is unknown
      sport = static_cast<uint16_t>(in[l3] << 8 | in[l3 + 1]);
      dport = static_cast<uint16_t>(in[l3 + 2] << 8 | in[l3 + 3]);
      if (snat_split && cfg->is_snat(src)) return cfg->snat_port_owner(sport);
    }
    return by_hash(src, dst, sport, dport, proto, workers);
  }
  if (snat_split && (p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP) && cfg->is_snat(p.dst))
    return cfg->snat_port_owner(p.dport);
  return by_hash(p.src, p.dst, p.sport, p.dport, p.proto, workers);
}

}  // namespace l4::lb
