#pragma once
// CRC-32C (Castagnoli), as PROXY protocol v2's PP2_TYPE_CRC32C TLV requires. Table-driven software
// version: headers are ~100 bytes once per connection, so SSE4.2 would not show.
#include <cstddef>
#include <cstdint>

namespace edge::upstream {

// crc32c(data) with the usual pre- and post-inversion; extend by passing the previous result.
uint32_t crc32c(const void* data, size_t len, uint32_t crc = 0);

}  // namespace edge::upstream
