#pragma once
// Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4).
#include <cstdint>

namespace l4::tcp {

inline bool seq_lt(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) < 0;
}
inline bool seq_leq(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) <= 0;
}
inline bool seq_gt(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) > 0;
}
inline bool seq_geq(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) >= 0;
}
inline uint32_t seq_max(uint32_t a, uint32_t b) {
  return seq_gt(a, b) ? a : b;
}
inline uint32_t seq_min(uint32_t a, uint32_t b) {
  return seq_lt(a, b) ? a : b;
}

// A half-open range [start, end) of sequence space.
struct seq_range {
  uint32_t start = 0, end = 0;
  uint32_t len() const { return end - start; }
};

}  // namespace l4::tcp
