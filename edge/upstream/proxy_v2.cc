#include "proxy_v2.hh"

#include <cstring>

#include "crc32c.hh"

namespace edge::upstream {
namespace {

bool mixed_or_v6(const proxy_v2_info& i) {
  return i.src.v6 || i.dst.v6;
}

size_t tlv_size(size_t value_len) {
  return value_len ? 3 + value_len : 0;
}

size_t ssl_value_size(const proxy_v2_ssl& s) {
  return 1 + 4 + tlv_size(s.version.size()) + tlv_size(s.cipher.size()) +
         tlv_size(s.cert_cn.size());
}

struct writer {
  uint8_t* p;
  void u8(uint8_t v) { *p++ = v; }
  void u16(uint16_t v) {
    *p++ = static_cast<uint8_t>(v >> 8);
    *p++ = static_cast<uint8_t>(v);
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    u16(static_cast<uint16_t>(v));
  }
  void bytes(const void* d, size_t n) {
    if (n) std::memcpy(p, d, n);
    p += n;
  }
  void tlv(uint8_t type, const void* d, size_t n) {
    if (!n) return;
    u8(type);
    u16(static_cast<uint16_t>(n));
    bytes(d, n);
  }
  void addr16(const l4::ip_addr& a) {
    if (a.v6) {
      bytes(a.b.data(), 16);
    } else {  // ::ffff:a.b.c.d
      static constexpr uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      bytes(mapped, 12);
      bytes(a.b.data(), 4);
    }
  }
};

}  // namespace

const char* to_string(proxy_v2_error e) {
  switch (e) {
    case proxy_v2_error::buffer_too_small:
      return "proxy_v2_buffer_too_small";
    case proxy_v2_error::unique_id_too_long:
      return "proxy_v2_unique_id_too_long";
    case proxy_v2_error::field_too_long:
      return "proxy_v2_field_too_long";
  }
  return "proxy_v2_unknown";
}

size_t proxy_v2_size(const proxy_v2_info& i) {
  size_t n = 16 + (mixed_or_v6(i) ? 36 : 12);
  n += tlv_size(i.unique_id.size()) + tlv_size(i.authority.size()) + tlv_size(i.alpn.size());
  if (i.ssl.present) n += 3 + ssl_value_size(i.ssl);
  if (i.crc32c) n += 3 + 4;
  return n;
}

common::expected<size_t, proxy_v2_error> encode_proxy_v2(const proxy_v2_info& i,
                                                         std::span<uint8_t> out) {
  if (i.unique_id.size() > pp2_unique_id_max)
    return common::unexpected(proxy_v2_error::unique_id_too_long);
  for (size_t len : {i.authority.size(), i.alpn.size(), i.ssl.version.size(), i.ssl.cipher.size(),
                     i.ssl.cert_cn.size()})
    if (len > 1024) return common::unexpected(proxy_v2_error::field_too_long);
  const size_t total = proxy_v2_size(i);
  if (total - 16 > 0xffff) return common::unexpected(proxy_v2_error::field_too_long);
  if (out.size() < total) return common::unexpected(proxy_v2_error::buffer_too_small);

  writer w{out.data()};
  w.bytes(pp2_signature, sizeof pp2_signature);
  w.u8(0x21);  // version 2, command PROXY
  const bool v6 = mixed_or_v6(i);
  w.u8(v6 ? 0x21 : 0x11);  // AF_INET6 or AF_INET, STREAM
  w.u16(static_cast<uint16_t>(total - 16));
  if (v6) {
    w.addr16(i.src);
    w.addr16(i.dst);
  } else {
    w.bytes(i.src.b.data(), 4);
    w.bytes(i.dst.b.data(), 4);
  }
  w.u16(i.src_port);
  w.u16(i.dst_port);
  w.tlv(pp2_type_alpn, i.alpn.data(), i.alpn.size());
  w.tlv(pp2_type_authority, i.authority.data(), i.authority.size());
  w.tlv(pp2_type_unique_id, i.unique_id.data(), i.unique_id.size());
  if (i.ssl.present) {
    w.u8(pp2_type_ssl);
    w.u16(static_cast<uint16_t>(ssl_value_size(i.ssl)));
    uint8_t client = pp2_client_ssl;
    if (i.ssl.client_cert) client |= pp2_client_cert_conn;
    w.u8(client);
    // verify: 0 when a certificate was presented and verified, non-zero otherwise (spec 2.2.5).
    w.u32(i.ssl.client_cert && i.ssl.cert_verified ? 0 : 1);
    w.tlv(pp2_subtype_ssl_version, i.ssl.version.data(), i.ssl.version.size());
    w.tlv(pp2_subtype_ssl_cn, i.ssl.cert_cn.data(), i.ssl.cert_cn.size());
    w.tlv(pp2_subtype_ssl_cipher, i.ssl.cipher.data(), i.ssl.cipher.size());
  }
  if (i.crc32c) {
    // Last, so the zeroed field is easy to find; the CRC covers the whole header including it.
    w.u8(pp2_type_crc32c);
    w.u16(4);
    uint8_t* crc_at = w.p;
    w.u32(0);
    uint32_t crc = crc32c(out.data(), total);
    writer{crc_at}.u32(crc);  // network byte order, as haproxy writes and checks it
  }
  return total;
}

}  // namespace edge::upstream
