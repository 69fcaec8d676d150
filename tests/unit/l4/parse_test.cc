// Table-driven parse cases through l4::parse on real mbufs: {description, frame, expected verdict}.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <functional>

#include "l4/parse.hh"
#include "packet_builder.hh"
#include "test_eal.hh"

using edge_test::packet_builder;

namespace {

struct parse_case {
  const char* description;
  std::function<std::vector<uint8_t>()> frame;
  l4::drop expected;
};

packet_builder udp4() {
  packet_builder b;
  b.from("10.0.0.2").to("10.0.0.1");
  b.proto = IPPROTO_UDP;
  b.payload = {'h', 'i'};
  return b;
}
packet_builder tcp4() {
  packet_builder b = udp4();
  b.proto = IPPROTO_TCP;
  b.tcp_options = {2, 4, 0x05, 0xb4};  // MSS 1460
  return b;
}
packet_builder tcp6() {
  packet_builder b;
  b.from("fd00::2").to("fd00::1");
  b.proto = IPPROTO_TCP;
  return b;
}
std::vector<uint8_t> ipv6_with_ext(uint8_t ext_type, int count) {
  // Builds a UDP/IPv6 frame, then inserts `count` 8-byte extension headers of `ext_type`.
  packet_builder b;
  b.from("fd00::2").to("fd00::1");
  auto f = b.bytes();
  const size_t ip = 14;
  const uint8_t upper = f[ip + 6];
  std::vector<uint8_t> exts;
  for (int i = 0; i < count; ++i) {
    exts.push_back(i + 1 < count ? ext_type : upper);
    exts.insert(exts.end(), {0, 0, 0, 0, 0, 0, 0});
  }
  f[ip + 6] = ext_type;
  const uint16_t plen = static_cast<uint16_t>(((f[ip + 4] << 8) | f[ip + 5]) + exts.size());
  f[ip + 4] = plen >> 8, f[ip + 5] = plen & 0xff;
  f.insert(f.begin() + ip + 40, exts.begin(), exts.end());
  return f;
}

const parse_case cases[] = {
    {"UDP over IPv4", [] { return udp4().bytes(); }, l4::drop::none},
    {"TCP SYN with MSS over IPv4", [] { return tcp4().bytes(); }, l4::drop::none},
    {"TCP over IPv6", [] { return tcp6().bytes(); }, l4::drop::none},
    {"ICMP echo over IPv4",
     [] {
       auto b = udp4();
       b.proto = IPPROTO_ICMP;
       return b.bytes();
     },
     l4::drop::none},
    {"ICMPv6 echo",
     [] {
       auto b = tcp6();
       b.proto = IPPROTO_ICMPV6;
       b.icmp_type = 128;
       return b.bytes();
     },
     l4::drop::none},
    {"802.1Q tagged UDP",
     [] {
       auto b = udp4();
       b.vlan = 100;
       return b.bytes();
     },
     l4::drop::none},
    {"ethernet padding after a short IPv4 packet is ignored",
     [] {
       auto f = udp4().bytes();
       f.resize(f.size() + 12, 0);
       return f;
     },
     l4::drop::none},
    {"frame shorter than Ethernet", [] { return std::vector<uint8_t>(10, 0); },
     l4::drop::frame_too_short},
    {"QinQ",
     [] {
       auto f = udp4().bytes();
       f[12] = 0x88, f[13] = 0xa8;
       return f;
     },
     l4::drop::vlan_qinq},
    {"unknown ethertype",
     [] {
       auto f = udp4().bytes();
       f[12] = 0x88, f[13] = 0xcc;  // LLDP
       return f;
     },
     l4::drop::ethertype_unsupported},
    {"IPv4 header truncated",
     [] {
       auto f = udp4().bytes();
       f.resize(14 + 12);
       return f;
     },
     l4::drop::ipv4_truncated},
    {"IPv4 total length beyond frame",
     [] {
       auto b = udp4();
       b.ip_total_len_delta = 40;
       return b.bytes();
     },
     l4::drop::ipv4_truncated},
    {"IPv4 bad version",
     [] {
       auto f = udp4().bytes();
       f[14] = 0x55;
       return f;
     },
     l4::drop::ipv4_bad_version},
    {"IPv4 IHL below 5",
     [] {
       auto f = udp4().bytes();
       f[14] = 0x44;
       return f;
     },
     l4::drop::ipv4_bad_ihl},
    {"IPv4 bad header checksum",
     [] {
       auto b = udp4();
       b.bad_ip_checksum = true;
       return b.bytes();
     },
     l4::drop::ipv4_bad_checksum},
    {"IPv4 TTL zero",
     [] {
       auto b = udp4();
       b.ttl = 0;
       return b.bytes();
     },
     l4::drop::ipv4_ttl_expired},
    {"IPv4 source broadcast",
     [] {
       auto b = udp4();
       b.from("255.255.255.255");
       return b.bytes();
     },
     l4::drop::ipv4_bad_source},
    {"IPv4 fragment (more-fragments set)",
     [] {
       auto f = udp4().bytes();
       f[14 + 6] |= 0x20;
       // fix the header checksum after the change
       f[14 + 10] = f[14 + 11] = 0;
       uint16_t ck = edge_test::fold(edge_test::sum16(&f[14], 20));
       f[14 + 10] = ck >> 8, f[14 + 11] = ck & 0xff;
       return f;
     },
     l4::drop::ipv4_fragment},
    {"TCP bad checksum",
     [] {
       auto b = tcp4();
       b.bad_l4_checksum = true;
       return b.bytes();
     },
     l4::drop::tcp_bad_checksum},
    {"TCP data offset beyond segment",
     [] {
       auto f = tcp4().bytes();
       f[14 + 20 + 12] = 0xf0;
       return f;
     },
     l4::drop::tcp_truncated},
    {"TCP over IPv6 bad checksum",
     [] {
       auto b = tcp6();
       b.bad_l4_checksum = true;
       return b.bytes();
     },
     l4::drop::tcp_bad_checksum},
    {"UDP bad checksum",
     [] {
       auto b = udp4();
       b.bad_l4_checksum = true;
       return b.bytes();
     },
     l4::drop::udp_bad_checksum},
    {"UDP length shorter than the IP payload (found by fuzz_l4_forward)",
     [] {
       auto b = udp4();
       b.payload = {1, 2, 3, 4, 5, 6};
       auto f = b.bytes();
       f[14 + 20 + 4] = 0, f[14 + 20 + 5] = 13;  // UDP length 13 of 14
       f[14 + 20 + 6] = f[14 + 20 + 7] = 0;      // no checksum (allowed over IPv4)
       return f;
     },
     l4::drop::udp_length_mismatch},
    {"UDP zero checksum over IPv4 is allowed",
     [] {
       auto b = udp4();
       b.zero_udp_checksum = true;
       return b.bytes();
     },
     l4::drop::none},
    {"UDP zero checksum over IPv6 is not",
     [] {
       packet_builder b;
       b.from("fd00::2").to("fd00::1");
       b.zero_udp_checksum = true;
       return b.bytes();
     },
     l4::drop::udp_bad_checksum},
    {"ICMP bad checksum",
     [] {
       auto b = udp4();
       b.proto = IPPROTO_ICMP;
       b.bad_l4_checksum = true;
       return b.bytes();
     },
     l4::drop::icmp_bad_checksum},
    {"IPv6 payload length beyond frame",
     [] {
       auto b = tcp6();
       b.ip_total_len_delta = 100;
       return b.bytes();
     },
     l4::drop::ipv6_truncated},
    {"IPv6 payload length 65535 on a short frame (16-bit end offset wrapped, read 64 KiB out)",
     [] {
       auto f = tcp6().bytes();
       f[14 + 4] = 0xff, f[14 + 5] = 0xff;
       return f;
     },
     l4::drop::ipv6_truncated},
    {"IPv6 payload length 65482 (end offset wraps to exactly 0)",
     [] {
       auto f = tcp6().bytes();
       f[14 + 4] = 0xff, f[14 + 5] = 0xca;
       return f;
     },
     l4::drop::ipv6_truncated},
    {"IPv6 multicast source",
     [] {
       auto b = tcp6();
       b.from("ff02::1");
       return b.bytes();
     },
     l4::drop::ipv6_bad_source},
    {"IPv6 with two destination-options headers", [] { return ipv6_with_ext(60, 2); },
     l4::drop::none},
    {"IPv6 with five extension headers", [] { return ipv6_with_ext(60, 5); },
     l4::drop::ipv6_ext_chain},
    {"IPv6 fragment header", [] { return ipv6_with_ext(44, 1); }, l4::drop::ipv6_fragment},
};

class parse_table : public ::testing::TestWithParam<parse_case> {};

TEST_P(parse_table, verdict) {
  const auto& c = GetParam();
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), c.frame());
  ASSERT_NE(m, nullptr);
  l4::packet p;
  const l4::drop d = l4::parse(m, p);
  EXPECT_EQ(l4::info(d).name, l4::info(c.expected).name) << c.description;
  rte_pktmbuf_free(m);
}

INSTANTIATE_TEST_SUITE_P(cases, parse_table, ::testing::ValuesIn(cases));

TEST(parse, fills_tuple_and_offsets) {
  auto b = tcp4();
  b.sport = 40000;
  b.dport = 443;
  b.payload = {1, 2, 3, 4, 5};
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), b.bytes());
  l4::packet p;
  ASSERT_EQ(l4::parse(m, p), l4::drop::none);
  EXPECT_EQ(p.l3, l4::l3_kind::ipv4);
  EXPECT_EQ(p.proto, IPPROTO_TCP);
  EXPECT_EQ(p.src.str(), "10.0.0.2");
  EXPECT_EQ(p.dst.str(), "10.0.0.1");
  EXPECT_EQ(p.sport, 40000);
  EXPECT_EQ(p.dport, 443);
  EXPECT_EQ(p.l2_len, 14);
  EXPECT_EQ(p.l3_len, 20);
  EXPECT_EQ(p.l4_len, 24);
  EXPECT_EQ(p.payload_len, 5);
  EXPECT_EQ(p.tcp_flags, 0x02);
  rte_pktmbuf_free(m);
}

TEST(parse, burst_gives_one_verdict_per_frame) {
  auto good = udp4();
  auto bad = udp4();
  bad.bad_ip_checksum = true;
  rte_mbuf* ms[3] = {edge_test::to_mbuf(edge_test::mempool(), good.bytes()),
                     edge_test::to_mbuf(edge_test::mempool(), bad.bytes()),
                     edge_test::to_mbuf(edge_test::mempool(), good.bytes())};
  l4::packet ps[3];
  l4::drop vs[3];
  l4::parse_burst(ms, ps, vs);
  EXPECT_EQ(vs[0], l4::drop::none);
  EXPECT_EQ(vs[1], l4::drop::ipv4_bad_checksum);
  EXPECT_EQ(vs[2], l4::drop::none);
  for (auto* m : ms) rte_pktmbuf_free(m);
}

TEST(drop_table, names_are_unique_and_described) {
  for (size_t i = 0; i < l4::drop_count; ++i) {
    EXPECT_FALSE(l4::drop_table[i].description.empty());
    for (size_t j = i + 1; j < l4::drop_count; ++j)
      EXPECT_NE(l4::drop_table[i].name, l4::drop_table[j].name);
  }
}

}  // namespace

EDGE_TEST_MAIN_WITH_EAL()
