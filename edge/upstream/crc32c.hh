#pragma once
// CRC-32C (Castagnoli), as PROXY protocol v2's PP2_TYPE_CRC32C TLV requires, computed by DPDK
// (rte_hash_crc) rather than a table of our own.
#include <cstddef>
#include <cstdint>

namespace edge::upstream {

// crc32c(data) with the usual pre- and post-inversion; extend by passing the previous result.
uint32_t crc32c(const void* data, size_t len, uint32_t crc = 0);

}  // namespace edge::upstream
