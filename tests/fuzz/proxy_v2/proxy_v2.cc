// Fuzz target: PROXY v2 encode -> parse round trip (edge/upstream/proxy_v2.* against the strict
// parser in pp2_parse.hh). The first byte picks the mode:
//   even: the rest describes a connection (families, addresses, ports, TLV strings, SSL flags);
//         encode_proxy_v2 must write exactly proxy_v2_size() bytes into a buffer of exactly that
//         size (ASan catches one byte more), fail cleanly into one byte less, and the parser must
//         give back every field: addresses (IPv4 next to IPv6 as IPv4-mapped), ports, ALPN,
//         authority, unique id, SSL flags/verify/version/CN/cipher, a valid CRC32C;
//   odd:  the rest is a header from the wire: the parser must not crash, and what it accepts is
//         within the input.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pp2_parse.hh"

namespace {

using namespace edge::upstream;

struct reader {
  const uint8_t* p;
  size_t n;
  uint8_t u8() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() << 8 | u8()); }
  std::string bytes(size_t max) {
    const size_t len = std::min<size_t>(u8() % (max + 1), n);
    std::string s(reinterpret_cast<const char*>(p), len);
    p += len;
    n -= len;
    return s;
  }
  l4::ip_addr addr() {
    l4::ip_addr a;
    a.v6 = u8() & 1;
    for (size_t i = 0; i < (a.v6 ? 16u : 4u); ++i) a.b[i] = u8();
    return a;
  }
};

void mapped(const l4::ip_addr& a, bool v6, uint8_t* out) {
  if (!v6) {
    std::memcpy(out, a.b.data(), 4);
  } else if (a.v6) {
    std::memcpy(out, a.b.data(), 16);
  } else {
    static constexpr uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    std::memcpy(out, prefix, 12);
    std::memcpy(out + 12, a.b.data(), 4);
  }
}

// An empty field is not written (no TLV); a present one comes back byte for byte.
void same(const std::optional<std::string>& got, const std::string& want) {
  if (want.empty() ? got.has_value() : (!got || *got != want)) std::abort();
}

void round_trip(reader r) {
  proxy_v2_info info;
  info.src = r.addr();
  info.dst = r.addr();
  info.src_port = r.u16();
  info.dst_port = r.u16();
  const uint8_t flags = r.u8();
  info.crc32c = flags & 1;
  info.ssl.present = flags & 2;
  info.ssl.client_cert = flags & 4;
  info.ssl.cert_verified = flags & 8;
  // Lengths up to the encoder's limits and a little beyond, so the refusals are reached too.
  const std::string uid = r.bytes(pp2_unique_id_max + 2), authority = r.bytes(255),
                    alpn = r.bytes(255), version = r.bytes(64), cipher = r.bytes(128),
                    cn = r.bytes(255);
  info.unique_id = {reinterpret_cast<const uint8_t*>(uid.data()), uid.size()};
  info.authority = authority;
  info.alpn = alpn;
  info.ssl.version = version;
  info.ssl.cipher = cipher;
  info.ssl.cert_cn = cn;

  const size_t want = proxy_v2_size(info);
  std::vector<uint8_t> buf(want);
  auto n = encode_proxy_v2(info, buf);
  if (uid.size() > pp2_unique_id_max) {
    if (n || n.error() != proxy_v2_error::unique_id_too_long) std::abort();
    return;
  }
  if (!n || *n != want) std::abort();
  std::vector<uint8_t> small(want - 1);
  auto m = encode_proxy_v2(info, small);
  if (m || m.error() != proxy_v2_error::buffer_too_small) std::abort();

  auto p = test::parse_proxy_v2(buf);
  if (!p || p->length != want) std::abort();
  const bool v6 = info.src.v6 || info.dst.v6;
  uint8_t src[16], dst[16];
  mapped(info.src, v6, src);
  mapped(info.dst, v6, dst);
  if (p->v6 != v6 || std::memcmp(p->src, src, v6 ? 16 : 4) != 0 ||
      std::memcmp(p->dst, dst, v6 ? 16 : 4) != 0)
    std::abort();
  if (p->src_port != info.src_port || p->dst_port != info.dst_port) std::abort();
  same(p->unique_id, uid);
  same(p->authority, authority);
  same(p->alpn, alpn);
  if (p->crc32c != info.crc32c || p->ssl != info.ssl.present) std::abort();
  if (info.ssl.present) {
    const uint8_t client = pp2_client_ssl | (info.ssl.client_cert ? pp2_client_cert_conn : 0);
    if (p->ssl_client != client) std::abort();
    if ((p->ssl_verify == 0) != (info.ssl.client_cert && info.ssl.cert_verified)) std::abort();
    same(p->ssl_version, version);
    same(p->ssl_cipher, cipher);
    same(p->ssl_cn, cn);
  }
  // One flipped bit in a header with a CRC must not pass the check (CRC32C detects every 1-bit
  // error): the header is refused, or (the CRC TLV's own type byte flipped) parses without a
  // CRC. The length field is left alone (that one can make a shorter header that parses).
  if (info.crc32c && want > 16) {
    const size_t at = 16 + (flags >> 4) * 7919 % (want - 16);
    buf[at] ^= static_cast<uint8_t>(1u << (flags & 7));
    auto q = test::parse_proxy_v2(buf);
    if (q && q->crc32c) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) {
    // A copy of exactly the input's size, so that ASan sees any read past it.
    std::vector<uint8_t> in(data + 1, data + size);
    auto p = test::parse_proxy_v2(in);
    if (p && (p->length > in.size() || p->length < 16)) std::abort();
    return 0;
  }
  round_trip(reader{data + 1, size - 1});
  return 0;
}
