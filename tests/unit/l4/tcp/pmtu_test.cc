// Path MTU discovery for terminated connections: an ICMP "fragmentation needed" / "packet too
// big" quoting one of our segments lowers the connection's MSS and the segments in flight go out
// again cut to it; one that quotes a sequence number not in flight (RFC 5927 §4.1), a connection
// we do not have, a truncated quote or an MTU that lowers nothing is refused and counted.
#include "tcp_harness.hh"

namespace tcp_test {
namespace {

using l4::drop;

class pmtu : public harness {
 protected:
  static constexpr uint32_t mss = 1448;  // peer MSS 1460 less 12 for timestamps

  std::vector<seg_out> data_segments() {
    std::vector<seg_out> r;
    for (auto& s : drain())
      if (!s.payload.empty()) r.push_back(s);
    return r;
  }

  // An ICMP error from a router on the path, quoting `quote_len` bytes of `seg` (a frame we sent).
  drop frag_needed(const seg_out& seg, uint32_t mtu, size_t quote_len = SIZE_MAX,
                   int32_t seq_delta = 0) {
    std::vector<uint8_t> q(seg.frame.begin() + seg.p.l2_len, seg.frame.end());
    if (seq_delta != 0) {
      const uint32_t s = be32(&q[seg.p.l3_len + 4]) + static_cast<uint32_t>(seq_delta);
      for (int k = 0; k < 4; ++k) q[seg.p.l3_len + 4 + k] = uint8_t(s >> (24 - 8 * k));
    }
    if (q.size() > quote_len) q.resize(quote_len);
    edge_test::packet_builder e;
    e.v6 = b.v6;
    e.from(b.v6 ? "fd00::fe" : "10.0.0.254").to(b.v6 ? "fd00::1" : "10.0.0.1");
    e.proto = b.v6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP};
    e.icmp_type = b.v6 ? 2 : 3;
    e.icmp_code = b.v6 ? 0 : 4;
    e.icmp_id = b.v6 ? uint16_t(mtu >> 16) : 0;  // ICMPv6: 32-bit MTU; ICMP: unused, then MTU
    e.icmp_seq = uint16_t(mtu);
    e.payload = q;
    rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), e.bytes());
    EXPECT_NE(m, nullptr);
    l4::packet p;
    EXPECT_EQ(l4::parse(m, p), drop::none);
    return st->icmp_error(m, p);
  }
};

TEST_F(pmtu, frag_needed_lowers_the_mss_and_resends_what_no_longer_fits) {
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(4 * mss)), 4 * mss);
  auto first = data_segments();
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[0].payload.size(), mss);
  // A router with a 1000-byte MTU drops the second segment and says so.
  ASSERT_EQ(frag_needed(first[1], 1000, 28), drop::none) << "IP header + 8 bytes is enough";
  EXPECT_EQ(st->stats().pmtu_lowered.get(), 1u);
  EXPECT_EQ(st->info(c)->mss, 1000u - 40 - 12);
  // Everything in flight went out again at once, in segments that fit the path.
  auto again = data_segments();
  ASSERT_FALSE(again.empty());
  uint32_t covered = 0;
  for (const auto& s : again) {
    EXPECT_LE(s.payload.size() + s.p.l3_len + s.p.l4_len, 1000u) << "segment fits the path MTU";
    covered += uint32_t(s.payload.size());
  }
  EXPECT_EQ(covered, 4 * mss);
  EXPECT_EQ(again.front().seq, siss + 1);
  // New data uses the new size too.
  cseg(ACK, 0, 4 * mss);
  ASSERT_EQ(st->send(c, bytes(3000)), 3000u);
  for (const auto& s : data_segments()) EXPECT_LE(s.payload.size(), 1000u - 40 - 12);
}

// A run of errors each lowering the MTU by a byte (1400, 1399, ...) lowers the MSS each time but
// resends the flight at once only for the first one in an RTT: each would otherwise send a window
// again (a few quoted bytes in, a window out). The re-marked segments go out on the next ACK.
TEST_F(pmtu, a_run_of_lowering_errors_resends_once_per_rtt) {
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(8 * mss)), 8 * mss);
  auto flight = data_segments();
  ASSERT_EQ(flight.size(), 8u);
  ASSERT_EQ(frag_needed(flight[1], 1400), drop::none);
  const size_t first = data_segments().size();
  EXPECT_GE(first, 8u) << "the first lowering resends the flight";
  size_t later = 0;
  for (uint32_t mtu = 1399; mtu > 1300; --mtu) {
    ASSERT_EQ(frag_needed(flight[1], mtu), drop::none) << mtu;
    later += data_segments().size();
  }
  EXPECT_EQ(later, 0u) << "99 more errors within the RTT resend nothing at once";
  EXPECT_EQ(st->stats().pmtu_lowered.get(), 100u);
  EXPECT_EQ(st->stats().pmtu_resend_deferred.get(), 99u);
  EXPECT_EQ(st->info(c)->mss, 1301u - 40 - 12);
  // The peer's ACK of the first segment: what no longer fits goes out, cut to the new size.
  cseg(ACK, 0, mss);
  auto after = data_segments();
  ASSERT_FALSE(after.empty());
  for (const auto& s : after) EXPECT_LE(s.payload.size() + s.p.l3_len + s.p.l4_len, 1301u);
  // After an RTT (here the RTO floor: no RTT sample yet) a lowering resends at once again.
  advance_ms(250);
  (void)data_segments();  // whatever the timers sent
  ASSERT_EQ(frag_needed(after.front(), 1200), drop::none);
  EXPECT_FALSE(data_segments().empty());
  EXPECT_EQ(st->stats().pmtu_resend_deferred.get(), 99u);
}

TEST_F(pmtu, packet_too_big_lowers_an_ipv6_connection_to_no_less_than_1280) {
  b.from("fd00::2").to("fd00::1");
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(2 * 1428)), 2u * 1428);  // v6: peer MSS 1460 capped by ours (1440)
  auto segs = data_segments();
  ASSERT_FALSE(segs.empty());
  ASSERT_EQ(frag_needed(segs[0], 600), drop::none) << "an MTU below 1280 is raised to 1280";
  EXPECT_EQ(st->info(c)->mss, 1280u - 60 - 12);
}

TEST_F(pmtu, errors_that_quote_nothing_in_flight_are_refused_and_counted) {
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(2 * mss)), 2 * mss);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 2u);
  const uint16_t before = st->info(c)->mss;
  struct row {
    const char* what;
    uint32_t mtu;
    size_t quote;
    int32_t seq_delta;
    drop want;
  } rows[] = {
      {"sequence number before snd_una (already acknowledged)", 1000, SIZE_MAX, -1,
       drop::tcp_icmp_bad_seq},
      {"sequence number beyond what was sent (a blind guess)", 1000, SIZE_MAX, int32_t(2 * mss),
       drop::tcp_icmp_bad_seq},
      {"sequence number far off", 1000, SIZE_MAX, 0x40000000, drop::tcp_icmp_bad_seq},
      {"quote without the sequence number", 1000, 24, 0, drop::tcp_icmp_inner_bad},
      {"quote of the IP header only", 1000, 20, 0, drop::tcp_icmp_inner_bad},
      {"MTU at or above the current one", 1500, SIZE_MAX, 0, drop::tcp_icmp_mtu_not_lower},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(frag_needed(segs[0], r.mtu, r.quote, r.seq_delta), r.want) << r.what;
    EXPECT_EQ(st->info(c)->mss, before) << r.what;
    EXPECT_TRUE(drain().empty()) << r.what << ": nothing sent";
  }
  EXPECT_EQ(drops(drop::tcp_icmp_bad_seq), 3u);
  EXPECT_EQ(drops(drop::tcp_icmp_inner_bad), 2u);
  EXPECT_EQ(st->stats().pmtu_lowered.get(), 0u);
  // A connection this stack does not have (another port): not ours to change.
  auto other = segs[0];
  other.frame[other.p.l2_len + other.p.l3_len + 2] ^= 0x01;  // the quoted destination port
  EXPECT_EQ(frag_needed(other, 1000), drop::tcp_icmp_no_conn);
  // With everything acknowledged nothing is in flight: a late error changes nothing.
  cseg(ACK, 0, 2 * mss);
  EXPECT_EQ(frag_needed(segs[1], 1000), drop::tcp_icmp_bad_seq);
  EXPECT_EQ(st->info(c)->mss, before);
  // A tiny MTU is floored: the MSS never goes below min_peer_mss (less the timestamps).
  ASSERT_EQ(st->send(c, bytes(mss)), mss);
  auto more = data_segments();
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(frag_needed(more[0], 68), drop::none);
  EXPECT_EQ(st->info(c)->mss, l4::tcp::min_peer_mss - 12u);
}

}  // namespace
}  // namespace tcp_test

EDGE_TEST_MAIN_WITH_EAL()
