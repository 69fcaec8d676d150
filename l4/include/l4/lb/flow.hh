#pragma once
// The 5-tuple of a flow as seen on the wire, and the hash that Maglev and the connection table
// use. The hash is a fixed function with a fixed seed (no per-process random seed) so every node
// with the same backend set maps the same flow to the same backend: ECMP can move a flow to
// another node and it still lands on its backend.
#include <array>
#include <cstdint>
#include <cstring>

#include "l4/ip_addr.hh"
#include "l4/packet.hh"

namespace l4::lb {

struct flow_key {
  std::array<uint8_t, 16> src{};  // IPv4 in the first 4 bytes, rest zero
  std::array<uint8_t, 16> dst{};
  uint16_t sport = 0, dport = 0;  // host order
  uint8_t proto = 0;
  uint8_t v6 = 0;
  uint16_t pad_ = 0;  // keeps the key 40 bytes with no indeterminate padding

  static flow_key of(const packet& p) {
    flow_key k;
    k.src = p.src.b;
    k.dst = p.dst.b;
    k.sport = p.sport;
    k.dport = p.dport;
    k.proto = p.proto;
    k.v6 = p.src.v6;
    return k;
  }
  flow_key reversed() const {
    flow_key k = *this;
    k.src = dst, k.dst = src;
    k.sport = dport, k.dport = sport;
    return k;
  }
  ip_addr src_addr() const { return addr(src); }
  ip_addr dst_addr() const { return addr(dst); }
  ip_addr addr(const std::array<uint8_t, 16>& a) const {
    ip_addr r;
    r.b = a;
    r.v6 = v6 != 0;
    return r;
  }
  friend bool operator==(const flow_key& a, const flow_key& b) {
    // Five word compares, inlined: memcmp() is a call on the hottest path of the table.
    uint64_t x[5], y[5];
    std::memcpy(x, &a, sizeof x);
    std::memcpy(y, &b, sizeof y);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
  }
};
static_assert(sizeof(flow_key) == 40);

// ip_addr equality as two word compares (its defaulted operator== is a memcmp call).
inline bool same_addr(const ip_addr& a, const ip_addr& b) {
  uint64_t x[2], y[2];
  std::memcpy(x, a.b.data(), 16);
  std::memcpy(y, b.b.data(), 16);
  return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0 && a.v6 == b.v6;
}

// murmur3's 64-bit finaliser over the key's five words: cheap, well mixed, no seed to agree on.
inline uint64_t flow_hash(const flow_key& k) {
  uint64_t w[5];
  std::memcpy(w, &k, sizeof(w));
  uint64_t h = 0x243f6a8885a308d3ULL;
  for (uint64_t x : w) {
    h ^= x;
    h *= 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace l4::lb
