// PROXY v2 encoder: byte layout pinned against hand-written headers, CRC32C against values from an
// independent bitwise implementation, and round trips through a decoder written for the test.
#include "proxy_v2.hh"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "crc32c.hh"
#include "test_util.hh"

namespace edge::upstream {
namespace {

using test::addr;

struct decoded {
  uint8_t ver_cmd = 0, fam = 0;
  std::vector<uint8_t> src, dst;
  uint16_t src_port = 0, dst_port = 0;
  std::map<uint8_t, std::string> tlvs;
  std::map<uint8_t, std::string> ssl_sub;
  uint8_t ssl_client = 0;
  uint32_t ssl_verify = 0;
  bool crc_ok = false;
};

uint16_t be16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
uint32_t be32(const uint8_t* p) {
  return uint32_t{be16(p)} << 16 | be16(p + 2);
}

// A strict decoder: nullopt on any malformation.
std::optional<decoded> decode(std::vector<uint8_t> h) {
  if (h.size() < 16 || std::memcmp(h.data(), pp2_signature, 12) != 0) return std::nullopt;
  decoded d;
  d.ver_cmd = h[12];
  d.fam = h[13];
  size_t len = be16(&h[14]);
  if (h.size() != 16 + len) return std::nullopt;
  size_t alen = d.fam == 0x11 ? 12 : d.fam == 0x21 ? 36 : 0;
  if (alen == 0 || len < alen) return std::nullopt;
  size_t al = alen == 12 ? 4 : 16;
  d.src.assign(&h[16], &h[16] + al);
  d.dst.assign(&h[16 + al], &h[16 + 2 * al]);
  d.src_port = be16(&h[16 + 2 * al]);
  d.dst_port = be16(&h[18 + 2 * al]);
  size_t p = 16 + alen;
  size_t crc_at = 0;
  while (p < h.size()) {
    if (h.size() - p < 3) return std::nullopt;
    uint8_t t = h[p];
    size_t l = be16(&h[p + 1]);
    if (h.size() - p - 3 < l || d.tlvs.count(t)) return std::nullopt;
    d.tlvs[t] = std::string(reinterpret_cast<char*>(&h[p + 3]), l);
    if (t == pp2_type_crc32c) {
      if (l != 4) return std::nullopt;
      crc_at = p + 3;
    }
    if (t == pp2_type_ssl) {
      if (l < 5) return std::nullopt;
      d.ssl_client = h[p + 3];
      d.ssl_verify = be32(&h[p + 4]);
      size_t q = p + 8, end = p + 3 + l;
      while (q < end) {
        if (end - q < 3) return std::nullopt;
        size_t sl = be16(&h[q + 1]);
        if (end - q - 3 < sl) return std::nullopt;
        d.ssl_sub[h[q]] = std::string(reinterpret_cast<char*>(&h[q + 3]), sl);
        q += 3 + sl;
      }
    }
    p += 3 + l;
  }
  if (crc_at) {
    uint32_t want = be32(&h[crc_at]);
    std::memset(&h[crc_at], 0, 4);
    d.crc_ok = crc32c(h.data(), h.size()) == want;
  }
  return d;
}

std::vector<uint8_t> encode(const proxy_v2_info& info) {
  std::vector<uint8_t> out(pp2_max_header);
  auto n = encode_proxy_v2(info, out);
  EXPECT_TRUE(n.has_value());
  out.resize(n.value_or(0));
  EXPECT_EQ(out.size(), proxy_v2_size(info));
  return out;
}

const std::vector<uint8_t> sig(pp2_signature, pp2_signature + 12);

std::vector<uint8_t> cat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(crc32c, check_value) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C catalogue check value
  EXPECT_EQ(crc32c("", 0), 0u);
  // Incremental use gives the same result as one pass.
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
}

TEST(proxy_v2, ipv4_without_tlvs_byte_exact) {
  proxy_v2_info i;
  i.src = addr("192.0.2.1");
  i.dst = addr("198.51.100.2");
  i.src_port = 50000;
  i.dst_port = 443;
  i.crc32c = false;
  EXPECT_EQ(encode(i), cat(sig, {0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 1, 198, 51, 100, 2, 0xc3, 0x50,
                                 0x01, 0xbb}));
}

TEST(proxy_v2, ipv4_crc32c_known_value) {
  proxy_v2_info i;
  i.src = addr("192.0.2.1");
  i.dst = addr("198.51.100.2");
  i.src_port = 50000;
  i.dst_port = 443;
  // CRC from a bitwise CRC-32C over the header with the value zeroed (python, not this code).
  EXPECT_EQ(encode(i),
            cat(sig, {0x21, 0x11, 0x00, 0x13, 192,  0,    2,    1,    198,  51,   100, 2,
                      0xc3, 0x50, 0x01, 0xbb, 0x03, 0x00, 0x04, 0xa8, 0xf4, 0x07, 0xb1}));
}

TEST(proxy_v2, ipv6_layout) {
  proxy_v2_info i;
  i.src = addr("2001:db8::1");
  i.dst = addr("2001:db8::2");
  i.src_port = 1;
  i.dst_port = 2;
  i.crc32c = false;
  auto h = encode(i);
  ASSERT_EQ(h.size(), 16u + 36);
  EXPECT_EQ(h[13], 0x21);
  EXPECT_EQ(be16(&h[14]), 36);
  EXPECT_EQ(std::vector<uint8_t>(h.begin() + 16, h.begin() + 32),
            std::vector<uint8_t>(i.src.b.begin(), i.src.b.end()));
  EXPECT_EQ(std::vector<uint8_t>(h.begin() + 32, h.begin() + 48),
            std::vector<uint8_t>(i.dst.b.begin(), i.dst.b.end()));
  EXPECT_EQ(be16(&h[48]), 1);
  EXPECT_EQ(be16(&h[50]), 2);
}

TEST(proxy_v2, mixed_families_use_v4_mapped_v6) {
  proxy_v2_info i;
  i.src = addr("192.0.2.7");
  i.dst = addr("2001:db8::2");
  auto d = decode(encode(i));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->fam, 0x21);
  EXPECT_EQ(d->src, (std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7}));
  EXPECT_TRUE(d->crc_ok);
}

TEST(proxy_v2, all_tlvs_round_trip) {
  const uint8_t id[] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04};
  proxy_v2_info i;
  i.src = addr("2001:db8::10");
  i.dst = addr("2001:db8::20");
  i.src_port = 40000;
  i.dst_port = 8443;
  i.unique_id = id;
  i.authority = "api.example.com";
  i.alpn = "h2";
  i.ssl.present = true;
  i.ssl.client_cert = true;
  i.ssl.cert_verified = true;
  i.ssl.version = "TLSv1.3";
  i.ssl.cipher = "TLS_AES_128_GCM_SHA256";
  i.ssl.cert_cn = "client-7";
  auto h = encode(i);
  auto d = decode(h);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->ver_cmd, 0x21);
  EXPECT_EQ(d->src_port, 40000);
  EXPECT_EQ(d->dst_port, 8443);
  EXPECT_EQ(d->tlvs[pp2_type_authority], "api.example.com");
  EXPECT_EQ(d->tlvs[pp2_type_alpn], "h2");
  EXPECT_EQ(d->tlvs[pp2_type_unique_id], std::string(reinterpret_cast<const char*>(id), sizeof id));
  EXPECT_EQ(d->ssl_client, pp2_client_ssl | pp2_client_cert_conn);
  EXPECT_EQ(d->ssl_verify, 0u);
  EXPECT_EQ(d->ssl_sub[pp2_subtype_ssl_version], "TLSv1.3");
  EXPECT_EQ(d->ssl_sub[pp2_subtype_ssl_cipher], "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(d->ssl_sub[pp2_subtype_ssl_cn], "client-7");
  EXPECT_TRUE(d->crc_ok);
  // Any flipped bit is caught by the CRC.
  for (size_t k : {size_t{0}, size_t{20}, h.size() / 2, h.size() - 9}) {
    auto bad = h;
    bad[k] ^= 0x10;
    auto db = decode(bad);
    EXPECT_TRUE(!db || !db->crc_ok) << "byte " << k;
  }
}

TEST(proxy_v2, ssl_without_client_cert_is_not_verified) {
  proxy_v2_info i;
  i.src = addr("10.0.0.1");
  i.dst = addr("10.0.0.2");
  i.ssl.present = true;
  i.ssl.version = "TLSv1.2";
  auto d = decode(encode(i));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->ssl_client, pp2_client_ssl);
  EXPECT_NE(d->ssl_verify, 0u);
  EXPECT_EQ(d->ssl_sub.count(pp2_subtype_ssl_cn), 0u);  // empty fields are left out
  EXPECT_EQ(d->tlvs.count(pp2_type_authority), 0u);
}

TEST(proxy_v2, errors_are_named) {
  proxy_v2_info i;
  i.src = addr("10.0.0.1");
  i.dst = addr("10.0.0.2");
  uint8_t small[20];
  auto r = encode_proxy_v2(i, small);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), proxy_v2_error::buffer_too_small);
  std::vector<uint8_t> id(129, 1);
  i.unique_id = id;
  std::vector<uint8_t> out(pp2_max_header);
  r = encode_proxy_v2(i, out);
  ASSERT_FALSE(r);
  EXPECT_STREQ(to_string(r.error()), "proxy_v2_unique_id_too_long");
  id.resize(128);
  i.unique_id = id;
  EXPECT_TRUE(encode_proxy_v2(i, out));
  std::string huge(2000, 'a');
  i.authority = huge;
  r = encode_proxy_v2(i, out);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), proxy_v2_error::field_too_long);
}

TEST(proxy_v2, largest_fields_fit_max_header) {
  std::string sni(255, 's'), alpn(255, 'a'), ver(64, 'v'), cipher(128, 'c'), cn(255, 'n');
  std::vector<uint8_t> id(128, 7);
  proxy_v2_info i;
  i.src = addr("2001:db8::1");
  i.dst = addr("2001:db8::2");
  i.unique_id = id;
  i.authority = sni;
  i.alpn = alpn;
  i.ssl = {true, true, false, ver, cipher, cn};
  EXPECT_LE(proxy_v2_size(i), pp2_max_header);
  auto d = decode(encode(i));
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->crc_ok);
  EXPECT_EQ(d->ssl_sub[pp2_subtype_ssl_cn], cn);
}

}  // namespace
}  // namespace edge::upstream
