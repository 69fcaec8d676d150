#pragma once
// SYN cookies (RFC 4987) and initial sequence numbers (RFC 6528), keyed by the worker's secret
// with SipHash-2-4.
//
// Cookie layout (the ISN of our SYN-ACK): bits 31..29 MSS table index, 28..27 the low bits of a
// 64-second counter, 26..0 a SipHash of the 4-tuple, the client's ISN, the counter, the MSS index
// and the option bits. The peer's window scale and SACK-permitted do not fit; as Linux does, they
// travel in the low 6 bits of our timestamp value and come back in the ACK's TSecr, and are
// covered by the hash so a forged echo fails validation. Without timestamps they are not offered.
#include <array>
#include <cstdint>
#include <optional>

#include "l4/ip_addr.hh"

namespace l4::tcp {

using sip_key = std::array<uint8_t, 16>;

uint64_t siphash24(const sip_key& key, const uint8_t* data, size_t len);

// An independent key for one purpose (`label`, and `n`: the cookie key's epoch), derived from the
// boot secret with SipHash as a PRF: cookies, ISNs and the flow hash never share a key, and
// learning one of them says nothing of the others or of the secret.
sip_key derive_key(const sip_key& secret, const char* label, uint64_t n = 0);

struct four_tuple {
  ip_addr remote, local;
  uint16_t remote_port = 0, local_port = 0;
};

// What a cookie restores.
struct cookie_options {
  uint16_t mss = 536;
  int8_t wscale = -1;  // peer's shift; -1: none
  bool sack = false;
};

inline constexpr uint32_t cookie_ts_bits = 6;
inline constexpr uint32_t cookie_ts_mask = (1u << cookie_ts_bits) - 1;

// The cookie key rotates (engine: every cookie period, 64 s); a cookie validates under the current
// or the previous key, never an older one. The ISN key does not rotate (RFC 6528: ISNs of one
// tuple must keep increasing across incarnations).
class syn_cookies {
 public:
  syn_cookies(const sip_key& cookie_key, const sip_key& isn_key)
      : cur_(cookie_key), prev_(cookie_key), isn_key_(isn_key) {}

  // The previous key becomes `next`'s predecessor; cookies made two keys ago stop validating.
  void rotate(const sip_key& next) {
    prev_ = cur_;
    cur_ = next;
  }

  // Option bits carried in the timestamp (0 when the peer sent no timestamp).
  static uint8_t ts_bits(int8_t wscale, bool sack);
  // The cookie for a SYN; `peer_mss` is rounded down to the table, written back to `mss_out`.
  uint32_t make(const four_tuple& t, uint32_t client_isn, uint16_t peer_mss, uint8_t ts_bits,
                uint64_t now_s, uint16_t& mss_out) const;
  // Validates `cookie` (= ACK - 1) for the final ACK whose seq is client_isn + 1.
  std::optional<cookie_options> check(const four_tuple& t, uint32_t client_isn, uint32_t cookie,
                                      uint8_t ts_bits, uint64_t now_s) const;
  // RFC 6528 ISN: a keyed hash of the 4-tuple plus a 4 µs clock.
  uint32_t isn(const four_tuple& t, uint64_t now_us) const;

 private:
  static uint32_t hash(const sip_key& key, const four_tuple& t, uint32_t client_isn, uint32_t count,
                       uint32_t mss_idx, uint8_t ts_bits);
  sip_key cur_, prev_, isn_key_;
};

}  // namespace l4::tcp
