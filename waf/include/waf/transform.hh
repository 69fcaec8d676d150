#pragma once
// Transformations applied to a field before matching. They run in place over a caller-owned buffer
// of `cap` bytes (no allocation on the data path); all but utf8_to_unicode, hex_encode, sha1 (the
// 20-byte binary digest) and length shrink or keep the length, and those stop at cap
// (utf8_to_unicode uses tmp, cap bytes, as its source copy).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "waf/rule.hh"

namespace waf {

// %XX decoding only ('+' and %uXXXX stay), in place: ModSecurity v3's decoding of REQUEST_URI and
// REQUEST_FILENAME. Returns the new length.
size_t uri_decode(char* buf, size_t len);

// In place over buf[0, len); returns the new length.
size_t apply_transform(transform t, char* buf, size_t len, size_t cap, char* tmp);
size_t apply_transforms(std::span<const transform> ts, char* buf, size_t len, size_t cap,
                        char* tmp);

// Streaming variant for body and raw payload: url_decode carries an incomplete escape
// ("%u00") to the next segment, compress_whitespace carries "last byte was a space".
inline constexpr size_t max_stream_transforms = 8;
inline constexpr size_t max_stream_carry = 5;  // "%uXX" plus one
struct stream_transform_state {
  std::array<std::array<char, max_stream_carry>, max_stream_transforms> carry{};
  std::array<uint8_t, max_stream_transforms> carry_len{};
  bool last_space = false;
  void reset() { *this = stream_transform_state{}; }
};
// Transforms in[0, n) into out, which must hold n + ts.size() * max_stream_carry bytes; with
// final = true the carried bytes are flushed. Returns the output length. Only streamable
// transforms.
size_t stream_transform(std::span<const transform> ts, stream_transform_state& st, const char* in,
                        size_t n, char* out, bool final);

}  // namespace waf
