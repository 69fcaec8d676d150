#include "crc32c.hh"

#include <rte_hash_crc.h>

#include <algorithm>

namespace edge::upstream {

// DPDK's CRC-32C (SSE4.2 / ARMv8 CRC instructions when the CPU has them, tables otherwise).
// rte_hash_crc does no pre- or post-inversion and takes a 32-bit length.
uint32_t crc32c(const void* data, size_t len, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  while (len > 0) {
    const uint32_t n = static_cast<uint32_t>(std::min<size_t>(len, UINT32_MAX));
    crc = rte_hash_crc(p, n, crc);
    p += n;
    len -= n;
  }
  return ~crc;
}

}  // namespace edge::upstream
