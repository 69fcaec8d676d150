#pragma once
// A strict PROXY protocol v2 header parser (haproxy's doc/proxy-protocol.txt, section 2.2), for
// tests: the fuzz target checks encode -> parse round trips with it. Refuses anything the spec does
// not allow or edge never writes: a bad signature, version or command, an unknown family, a length
// that overruns the input, a TLV that overruns the header or its SSL TLV, a TLV type twice, and a
// CRC32C that does not match. Never reads outside `in`.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include "upstream/crc32c.hh"
#include "upstream/proxy_v2.hh"

namespace edge::upstream::test {

struct pp2_parsed {
  size_t length = 0;  // the whole header
  bool v6 = false;
  uint8_t src[16]{}, dst[16]{};  // 4 or 16 bytes used
  uint16_t src_port = 0, dst_port = 0;
  std::optional<std::string> alpn, authority, unique_id;
  bool crc32c = false;
  bool ssl = false;
  uint8_t ssl_client = 0;
  uint32_t ssl_verify = 0;
  std::optional<std::string> ssl_version, ssl_cn, ssl_cipher;
};

inline uint16_t pp2_be16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
inline uint32_t pp2_be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// Walks the TLVs in [p, end): calls f(type, value, len) for each; false on an overrun or a
// repeated type.
template <class F>
bool pp2_tlvs(const uint8_t* p, const uint8_t* end, F&& f) {
  bool seen[256] = {};
  while (p < end) {
    if (end - p < 3) return false;
    const uint8_t type = p[0];
    const size_t len = pp2_be16(p + 1);
    p += 3;
    if (static_cast<size_t>(end - p) < len || seen[type]) return false;
    seen[type] = true;
    if (!f(type, p, len)) return false;
    p += len;
  }
  return true;
}

inline std::optional<pp2_parsed> parse_proxy_v2(std::span<const uint8_t> in) {
  if (in.size() < 16 || std::memcmp(in.data(), pp2_signature, sizeof pp2_signature) != 0)
    return std::nullopt;
  if (in[12] != 0x21) return std::nullopt;  // version 2, PROXY
  pp2_parsed out;
  size_t addr_len;
  if (in[13] == 0x11) {
    addr_len = 12;
  } else if (in[13] == 0x21) {
    addr_len = 36;
    out.v6 = true;
  } else {
    return std::nullopt;
  }
  const size_t len = pp2_be16(in.data() + 14);
  if (len < addr_len || in.size() - 16 < len) return std::nullopt;
  out.length = 16 + len;
  const uint8_t* a = in.data() + 16;
  const size_t alen = out.v6 ? 16 : 4;
  std::memcpy(out.src, a, alen);
  std::memcpy(out.dst, a + alen, alen);
  out.src_port = pp2_be16(a + 2 * alen);
  out.dst_port = pp2_be16(a + 2 * alen + 2);
  const uint8_t* crc_at = nullptr;
  auto str = [](const uint8_t* v, size_t n) {
    return std::string(reinterpret_cast<const char*>(v), n);
  };
  const bool ok =
      pp2_tlvs(a + addr_len, in.data() + out.length, [&](uint8_t type, const uint8_t* v, size_t n) {
        switch (type) {
          case pp2_type_alpn:
            out.alpn = str(v, n);
            return true;
          case pp2_type_authority:
            out.authority = str(v, n);
            return true;
          case pp2_type_unique_id:
            out.unique_id = str(v, n);
            return n <= pp2_unique_id_max;
          case pp2_type_crc32c:
            if (n != 4) return false;
            crc_at = v;
            return true;
          case pp2_type_noop:
            return true;
          case pp2_type_ssl:
            if (n < 5) return false;
            out.ssl = true;
            out.ssl_client = v[0];
            out.ssl_verify = pp2_be32(v + 1);
            return pp2_tlvs(v + 5, v + n, [&](uint8_t sub, const uint8_t* sv, size_t sn) {
              switch (sub) {
                case pp2_subtype_ssl_version:
                  out.ssl_version = str(sv, sn);
                  return true;
                case pp2_subtype_ssl_cn:
                  out.ssl_cn = str(sv, sn);
                  return true;
                case pp2_subtype_ssl_cipher:
                  out.ssl_cipher = str(sv, sn);
                  return true;
                default:
                  return true;  // other sub-TLVs (key/sig algorithms) are allowed, ignored
              }
            });
          default:
            return true;  // unknown TLVs are skipped, as the spec says
        }
      });
  if (!ok) return std::nullopt;
  if (crc_at != nullptr) {
    // The CRC covers the whole header with the checksum field itself zeroed.
    std::string copy(reinterpret_cast<const char*>(in.data()), out.length);
    std::memset(copy.data() + (crc_at - in.data()), 0, 4);
    if (crc32c(copy.data(), copy.size()) != pp2_be32(crc_at)) return std::nullopt;
    out.crc32c = true;
  }
  return out;
}

}  // namespace edge::upstream::test
