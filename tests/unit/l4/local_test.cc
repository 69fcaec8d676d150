// ARP, neighbour discovery and echo replies through l4::local_input, checked byte by byte and
// re-parsed (a reply must itself pass the parse stage with valid checksums).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "l4/local.hh"
#include "l4/parse.hh"
#include "packet_builder.hh"
#include "test_eal.hh"

namespace {

const rte_ether_addr own_mac{{0x02, 0, 0, 0, 0, 0x01}};
const uint8_t peer_mac[6] = {0x02, 0, 0, 0, 0, 0x02};

l4::local_addrs local() {
  l4::local_addrs l;
  l.mac = own_mac;
  l.addrs = {*l4::ip_addr::parse("10.0.0.1"), *l4::ip_addr::parse("10.0.0.100"),
             *l4::ip_addr::parse("fd00::1")};
  return l;
}

std::vector<uint8_t> arp_request(const char* target) {
  std::vector<uint8_t> f = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  f.insert(f.end(), peer_mac, peer_mac + 6);
  f.insert(f.end(), {0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1});
  f.insert(f.end(), peer_mac, peer_mac + 6);
  f.insert(f.end(), {10, 0, 0, 2});
  f.insert(f.end(), 6, 0);
  uint8_t tip[4];
  inet_pton(AF_INET, target, tip);
  f.insert(f.end(), tip, tip + 4);
  return f;
}

struct outcome {
  l4::local_verdict v;
  std::vector<uint8_t> out;
  l4::drop reparse = l4::drop::none;
  l4::packet p;
};

outcome run(const std::vector<uint8_t>& frame) {
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), frame);
  l4::packet p;
  EXPECT_EQ(l4::parse(m, p), l4::drop::none);
  outcome o{l4::local_input(m, p, local()), {}};
  o.out = edge_test::from_mbuf(m);
  o.reparse = l4::parse(m, o.p);
  rte_pktmbuf_free(m);
  return o;
}

TEST(local, arp_request_for_vip_gets_reply_with_our_mac) {
  auto o = run(arp_request("10.0.0.100"));
  ASSERT_EQ(o.v.action, l4::local_action::reply);
  EXPECT_EQ(0, memcmp(&o.out[0], peer_mac, 6));             // to the asker
  EXPECT_EQ(0, memcmp(&o.out[6], own_mac.addr_bytes, 6));   // from us
  EXPECT_EQ(o.out[21], 2);                                  // opcode reply
  EXPECT_EQ(0, memcmp(&o.out[22], own_mac.addr_bytes, 6));  // sender hw = us
  EXPECT_EQ(o.p.src.str(), "10.0.0.100");
  EXPECT_EQ(o.p.dst.str(), "10.0.0.2");
}

TEST(local, arp_for_unknown_address_is_dropped) {
  auto o = run(arp_request("10.0.0.77"));
  EXPECT_EQ(o.v.action, l4::local_action::dropped);
  EXPECT_EQ(o.v.reason, l4::drop::arp_not_local);
}

TEST(local, icmp_echo_reply_is_valid) {
  edge_test::packet_builder b;
  b.from("10.0.0.2").to("10.0.0.100");
  b.proto = IPPROTO_ICMP;
  b.icmp_id = 77;
  b.payload = {'p', 'i', 'n', 'g'};
  auto o = run(b.bytes());
  ASSERT_EQ(o.v.action, l4::local_action::reply);
  ASSERT_EQ(o.reparse, l4::drop::none) << l4::info(o.reparse).name;
  EXPECT_EQ(o.p.src.str(), "10.0.0.100");
  EXPECT_EQ(o.p.dst.str(), "10.0.0.2");
  EXPECT_EQ(o.p.sport >> 8, 0);  // echo reply
  EXPECT_EQ(o.p.dport, 77);
  EXPECT_EQ(0, memcmp(&o.out[0], peer_mac, 6));
}

TEST(local, icmp_other_than_echo_is_counted) {
  edge_test::packet_builder b;
  b.from("10.0.0.2").to("10.0.0.100");
  b.proto = IPPROTO_ICMP;
  b.icmp_type = 13;  // timestamp
  auto o = run(b.bytes());
  EXPECT_EQ(o.v.reason, l4::drop::icmp_unhandled);
}

TEST(local, tcp_to_vip_is_delivered_and_to_others_dropped) {
  edge_test::packet_builder b;
  b.from("10.0.0.2").to("10.0.0.100");
  b.proto = IPPROTO_TCP;
  EXPECT_EQ(run(b.bytes()).v.action, l4::local_action::deliver);
  b.to("10.0.0.9");
  EXPECT_EQ(run(b.bytes()).v.reason, l4::drop::not_local);
}

uint32_t get32(const std::vector<uint8_t>& f, size_t off) {
  return (uint32_t{f[off]} << 24) | (uint32_t{f[off + 1]} << 16) | (uint32_t{f[off + 2]} << 8) |
         f[off + 3];
}

// A TCP segment to a port without a service gets the RST of a closed port (RFC 9293 §3.10.7.1):
// with ACK <SEQ=SEG.ACK><RST>, without <SEQ=0><ACK=SEG.SEQ+SEG.LEN><RST,ACK>; a RST is never
// answered. The reply must itself parse with valid checksums.
TEST(local, closed_port_gets_rst_with_rfc_seq_and_ack) {
  struct row {
    const char* what;
    const char* src;
    const char* dst;
    int vlan;
    uint8_t flags;
    uint32_t seq, ack;
    size_t payload;
    bool answered;
    uint8_t want_flags;
    uint32_t want_seq, want_ack;
  } rows[] = {
      {"SYN", "10.0.0.2", "10.0.0.100", -1, 0x02, 1000, 0, 0, true, 0x14, 0, 1001},
      {"SYN with data and FIN", "10.0.0.2", "10.0.0.100", -1, 0x03, 1000, 0, 5, true, 0x14, 0,
       1007},
      {"SYN at the top of the sequence space", "10.0.0.2", "10.0.0.100", -1, 0x02, 0xffffffff, 0, 0,
       true, 0x14, 0, 0},
      {"ACK", "10.0.0.2", "10.0.0.100", -1, 0x10, 5000, 777, 0, true, 0x04, 777, 0},
      {"ACK with data (PSH)", "10.0.0.2", "10.0.0.100", -1, 0x18, 5000, 777, 100, true, 0x04, 777,
       0},
      {"SYN on a VLAN", "10.0.0.2", "10.0.0.100", 42, 0x02, 1, 0, 0, true, 0x14, 0, 2},
      {"IPv6 SYN", "fd00::2", "fd00::1", -1, 0x02, 1000, 0, 0, true, 0x14, 0, 1001},
      {"RST", "10.0.0.2", "10.0.0.100", -1, 0x04, 1000, 0, 0, false, 0, 0, 0},
      {"RST+ACK", "10.0.0.2", "10.0.0.100", -1, 0x14, 1000, 5, 0, false, 0, 0, 0},
  };
  for (const row& r : rows) {
    SCOPED_TRACE(r.what);
    edge_test::packet_builder b;
    b.from(r.src).to(r.dst);
    b.proto = IPPROTO_TCP;
    b.vlan = r.vlan;
    b.sport = 40000;
    b.dport = 8080;
    b.tcp_flags = r.flags;
    b.seq = r.seq;
    b.ack = r.ack;
    b.tcp_options = {2, 4, 0x05, 0xb4};  // MSS: dropped from the reply
    b.payload.assign(r.payload, 'x');
    rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), b.bytes());
    l4::packet p;
    ASSERT_EQ(l4::parse(m, p), l4::drop::none);
    const l4::local_verdict v = l4::closed_port_reset(m, p, own_mac);
    if (!r.answered) {
      EXPECT_EQ(v.action, l4::local_action::dropped);
      EXPECT_EQ(v.reason, l4::drop::no_service);
      rte_pktmbuf_free(m);
      continue;
    }
    ASSERT_EQ(v.action, l4::local_action::reply);
    const std::vector<uint8_t> out = edge_test::from_mbuf(m);
    l4::packet q;
    ASSERT_EQ(l4::parse(m, q), l4::drop::none) << "the RST parses with valid checksums";
    rte_pktmbuf_free(m);
    const size_t l2 = r.vlan >= 0 ? 18 : 14, l3 = b.v6 ? 40 : 20;
    EXPECT_EQ(out.size(), l2 + l3 + 20) << "no options, no payload";
    EXPECT_EQ(0, memcmp(&out[0], peer_mac, 6));
    EXPECT_EQ(0, memcmp(&out[6], own_mac.addr_bytes, 6));
    EXPECT_EQ(q.src.str(), r.dst);
    EXPECT_EQ(q.dst.str(), r.src);
    EXPECT_EQ(q.sport, 8080);
    EXPECT_EQ(q.dport, 40000);
    EXPECT_EQ(q.tcp_flags, r.want_flags);
    EXPECT_EQ(get32(out, l2 + l3 + 4), r.want_seq);
    EXPECT_EQ(get32(out, l2 + l3 + 8), r.want_ack);
    EXPECT_EQ(q.payload_len, 0);
    EXPECT_EQ(q.ttl, 64);
  }
  // UDP to a closed port is not answered here.
  edge_test::packet_builder u;
  u.from("10.0.0.2").to("10.0.0.100");
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), u.bytes());
  l4::packet p;
  ASSERT_EQ(l4::parse(m, p), l4::drop::none);
  EXPECT_EQ(l4::closed_port_reset(m, p, own_mac).reason, l4::drop::no_service);
  rte_pktmbuf_free(m);
}

// The per-worker limit on those RSTs: a burst, then the rate.
TEST(local, closed_port_rst_limiter) {
  l4::reply_limiter none;
  EXPECT_FALSE(none.allow(1)) << "default-constructed: allows nothing";
  const uint64_t hz = 1'000'000;     // 1 tick = 1 us
  l4::reply_limiter lim(hz, 10, 3);  // 10/s, burst 3
  uint64_t t = 5;
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += lim.allow(t);
  EXPECT_EQ(allowed, 3) << "the burst";
  EXPECT_FALSE(lim.allow(t + 99'999)) << "less than 1/10 s later: nothing yet";
  EXPECT_TRUE(lim.allow(t + 100'000)) << "1/10 s later: one more";
  EXPECT_FALSE(lim.allow(t + 100'001));
  allowed = 0;
  t += 100'000;
  for (int s = 0; s < 10'000; ++s) allowed += lim.allow(t + s * 1000);  // a SYN every ms for 10 s
  EXPECT_GE(allowed, 99);
  EXPECT_LE(allowed, 101) << "10 s at 10/s";
  allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += lim.allow(t + 3600 * hz);
  EXPECT_EQ(allowed, 3) << "after an hour idle: the burst again, not an hour of tokens";
}

TEST(local, neighbour_solicitation_gets_advertisement) {
  edge_test::packet_builder b;
  b.from("fd00::2").to("ff02::1:ff00:1");
  b.proto = IPPROTO_ICMPV6;
  b.ttl = 255;
  b.icmp_type = 135;
  // target fd00::1 (after the 4 reserved bytes the builder already wrote as id/seq zero)
  b.icmp_id = 0, b.icmp_seq = 0;
  uint8_t target[16];
  inet_pton(AF_INET6, "fd00::1", target);
  b.payload.assign(target, target + 16);
  b.payload.insert(b.payload.end(), {1, 1});
  b.payload.insert(b.payload.end(), peer_mac, peer_mac + 6);
  auto o = run(b.bytes());
  ASSERT_EQ(o.v.action, l4::local_action::reply);
  ASSERT_EQ(o.reparse, l4::drop::none) << l4::info(o.reparse).name;
  EXPECT_EQ(o.p.sport >> 8, 136);
  EXPECT_EQ(o.p.src.str(), "fd00::1");
  EXPECT_EQ(o.p.dst.str(), "fd00::2");
  EXPECT_EQ(o.p.ttl, 255);
  const size_t icmp = 14 + 40;
  EXPECT_EQ(o.out[icmp + 4] & 0x40, 0x40);  // solicited
  EXPECT_EQ(o.out[icmp + 24], 2);           // target link-layer address option
  EXPECT_EQ(0, memcmp(&o.out[icmp + 26], own_mac.addr_bytes, 6));
}

TEST(local, neighbour_solicitation_with_bad_hop_limit_is_malformed) {
  edge_test::packet_builder b;
  b.from("fd00::2").to("ff02::1:ff00:1");
  b.proto = IPPROTO_ICMPV6;
  b.ttl = 64;
  b.icmp_type = 135;
  b.icmp_id = 0, b.icmp_seq = 0;
  b.payload.assign(16, 0);
  EXPECT_EQ(run(b.bytes()).v.reason, l4::drop::nd_malformed);
}

TEST(local, icmpv6_echo_reply_is_valid) {
  edge_test::packet_builder b;
  b.from("fd00::2").to("fd00::1");
  b.proto = IPPROTO_ICMPV6;
  b.icmp_type = 128;
  b.payload = {1, 2, 3};
  auto o = run(b.bytes());
  ASSERT_EQ(o.v.action, l4::local_action::reply);
  ASSERT_EQ(o.reparse, l4::drop::none) << l4::info(o.reparse).name;
  EXPECT_EQ(o.p.sport >> 8, 129);
  EXPECT_EQ(o.p.dst.str(), "fd00::2");
}

TEST(local, announcements_parse_cleanly) {
  for (const char* a : {"10.0.0.100", "fd00::1"}) {
    rte_mbuf* m = rte_pktmbuf_alloc(edge_test::mempool());
    ASSERT_TRUE(l4::build_announcement(m, own_mac, *l4::ip_addr::parse(a)));
    l4::packet p;
    EXPECT_EQ(l4::parse(m, p), l4::drop::none) << a;
    EXPECT_EQ(p.src.str(), a);
    rte_pktmbuf_free(m);
  }
}

}  // namespace
