#pragma once
// PROXY protocol v2 header encoder (haproxy's doc/proxy-protocol.txt, section 2.2): PROXY command,
// TCP over IPv4 or IPv6, and the TLVs an L7 gateway behind edge wants: unique id, authority (SNI),
// ALPN, SSL with version / cipher / client certificate CN, and a CRC32C over the whole header.
// Encodes into caller memory: no allocation, usable on the worker.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include "common/expected.hh"

#include "l4/ip_addr.hh"

namespace edge::upstream {

// Protocol constants, named as in the spec.
inline constexpr uint8_t pp2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                              0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
inline constexpr uint8_t pp2_type_alpn = 0x01;
inline constexpr uint8_t pp2_type_authority = 0x02;
inline constexpr uint8_t pp2_type_crc32c = 0x03;
inline constexpr uint8_t pp2_type_noop = 0x04;
inline constexpr uint8_t pp2_type_unique_id = 0x05;
inline constexpr uint8_t pp2_type_ssl = 0x20;
inline constexpr uint8_t pp2_subtype_ssl_version = 0x21;
inline constexpr uint8_t pp2_subtype_ssl_cn = 0x22;
inline constexpr uint8_t pp2_subtype_ssl_cipher = 0x23;
inline constexpr uint8_t pp2_client_ssl = 0x01;
inline constexpr uint8_t pp2_client_cert_conn = 0x02;
inline constexpr uint8_t pp2_client_cert_sess = 0x04;
inline constexpr size_t pp2_unique_id_max = 128;  // spec: at most 128 bytes
// 16 fixed + 36 IPv6 addresses + TLVs; the largest header edge will write with a 255-byte SNI,
// 255-byte ALPN, 128-byte id and SSL strings of 64/128/255 bytes fits well below this.
inline constexpr size_t pp2_max_header = 1536;

struct proxy_v2_ssl {
  bool present = false;        // the client connection used TLS
  bool client_cert = false;    // a client certificate was presented on this connection
  bool cert_verified = false;  // ... and verified (verify field 0)
  std::string_view version;    // "TLSv1.3"
  std::string_view cipher;     // "TLS_AES_128_GCM_SHA256"
  std::string_view cert_cn;    // client certificate subject CN, empty if none
};

struct proxy_v2_info {
  l4::ip_addr src;        // the client
  l4::ip_addr dst;        // the VIP it connected to
  uint16_t src_port = 0;  // host order
  uint16_t dst_port = 0;
  std::span<const uint8_t> unique_id;  // empty: no TLV
  std::string_view authority;          // SNI; empty: no TLV
  std::string_view alpn;               // negotiated protocol; empty: no TLV
  proxy_v2_ssl ssl;
  bool crc32c = true;
};

enum class proxy_v2_error : uint8_t {
  buffer_too_small,
  unique_id_too_long,  // > 128 bytes
  field_too_long,      // a TLV value over 65535 bytes or a header over 65535+16
};
const char* to_string(proxy_v2_error e);

// Writes the header to out and returns its length. A v4 address next to a v6 one is written as
// IPv4-mapped IPv6 (the spec wants one family for both).
common::expected<size_t, proxy_v2_error> encode_proxy_v2(const proxy_v2_info& info,
                                                         std::span<uint8_t> out);

// The exact length encode_proxy_v2 will produce.
size_t proxy_v2_size(const proxy_v2_info& info);

}  // namespace edge::upstream
