#include "syn_cookie.hh"

#include <cstring>

namespace l4::tcp {
namespace {

constexpr std::array<uint16_t, 8> mss_table{536, 1200, 1300, 1360, 1400, 1440, 1460, 8960};

inline uint64_t rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

inline void sip_round(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
  v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);
  v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;
  v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;
  v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);
}

// The tuple, laid out for hashing.
size_t tuple_bytes(const four_tuple& t, uint8_t* out) {
  std::memcpy(out, t.remote.b.data(), 16);
  std::memcpy(out + 16, t.local.b.data(), 16);
  std::memcpy(out + 32, &t.remote_port, 2);
  std::memcpy(out + 34, &t.local_port, 2);
  return 36;
}

}  // namespace

uint64_t siphash24(const sip_key& key, const uint8_t* data, size_t len) {
  uint64_t k0, k1;
  std::memcpy(&k0, key.data(), 8);
  std::memcpy(&k1, key.data() + 8, 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  const size_t full = len & ~size_t{7};
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m;
    std::memcpy(&m, data + i, 8);
    v3 ^= m;
    sip_round(v0, v1, v2, v3);
    sip_round(v0, v1, v2, v3);
    v0 ^= m;
  }
  uint64_t b = static_cast<uint64_t>(len) << 56;
  for (size_t i = full; i < len; ++i) b |= static_cast<uint64_t>(data[i]) << (8 * (i - full));
  v3 ^= b;
  sip_round(v0, v1, v2, v3);
  sip_round(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) sip_round(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

sip_key derive_key(const sip_key& secret, const char* label, uint64_t n) {
  uint8_t buf[64] = {};
  size_t len = 0;
  while (label[len] != 0 && len < 40) {
    buf[len] = static_cast<uint8_t>(label[len]);
    ++len;
  }
  std::memcpy(buf + len, &n, 8), len += 8;
  sip_key k;
  for (uint8_t half = 0; half < 2; ++half) {
    buf[len] = half;
    const uint64_t v = siphash24(secret, buf, len + 1);
    std::memcpy(k.data() + 8 * half, &v, 8);
  }
  return k;
}

uint8_t syn_cookies::ts_bits(int8_t wscale, bool sack) {
  uint8_t bits = sack ? 0x20 : 0;
  if (wscale >= 0) bits |= static_cast<uint8_t>(0x10 | (wscale & 0x0f));
  return bits;
}

uint32_t syn_cookies::hash(const sip_key& key, const four_tuple& t, uint32_t client_isn,
                           uint32_t count, uint32_t mss_idx, uint8_t ts_bits) {
  uint8_t buf[48];
  size_t n = tuple_bytes(t, buf);
  std::memcpy(buf + n, &client_isn, 4), n += 4;
  std::memcpy(buf + n, &count, 4), n += 4;
  buf[n++] = static_cast<uint8_t>(mss_idx);
  buf[n++] = ts_bits;
  return static_cast<uint32_t>(siphash24(key, buf, n));
}

uint32_t syn_cookies::make(const four_tuple& t, uint32_t client_isn, uint16_t peer_mss,
                           uint8_t ts_bits, uint64_t now_s, uint16_t& mss_out) const {
  uint32_t idx = 0;
  for (uint32_t i = 0; i < mss_table.size(); ++i)
    if (mss_table[i] <= peer_mss) idx = i;
  mss_out = mss_table[idx];
  const uint32_t count = static_cast<uint32_t>(now_s / 64);
  const uint32_t h = hash(cur_, t, client_isn, count, idx, ts_bits) & 0x07ffffff;
  return idx << 29 | (count & 3) << 27 | h;
}

std::optional<cookie_options> syn_cookies::check(const four_tuple& t, uint32_t client_isn,
                                                 uint32_t cookie, uint8_t ts_bits,
                                                 uint64_t now_s) const {
  const uint32_t idx = cookie >> 29;
  const uint32_t low = (cookie >> 27) & 3;
  const uint32_t now_count = static_cast<uint32_t>(now_s / 64);
  // Valid for the current and the previous 64 s period: 64..128 s after the SYN-ACK.
  for (uint32_t age = 0; age < 2; ++age) {
    const uint32_t count = now_count - age;
    if ((count & 3) != low) continue;
    // The current key, then the previous one (a cookie made just before a rotation).
    const uint32_t want = cookie & 0x07ffffff;
    if ((hash(cur_, t, client_isn, count, idx, ts_bits) & 0x07ffffff) != want &&
        (hash(prev_, t, client_isn, count, idx, ts_bits) & 0x07ffffff) != want)
      return std::nullopt;
    cookie_options o;
    o.mss = mss_table[idx];
    if (ts_bits & 0x10)
      o.wscale = static_cast<int8_t>((ts_bits & 0x0f) > 14 ? 14 : (ts_bits & 0x0f));
    o.sack = (ts_bits & 0x20) != 0;
    return o;
  }
  return std::nullopt;
}

uint32_t syn_cookies::isn(const four_tuple& t, uint64_t now_us) const {
  uint8_t buf[40];
  const size_t n = tuple_bytes(t, buf);
  return static_cast<uint32_t>(siphash24(isn_key_, buf, n)) + static_cast<uint32_t>(now_us / 4);
}

}  // namespace l4::tcp
