// Receive side: delayed ACKs, out-of-order queue and SACK blocks, duplicates and overlaps
// (D-SACK), the receive window tied to unread bytes, PAWS.
#include "tcp_harness.hh"

namespace tcp_test {
namespace {

using l4::drop;

class receive : public harness {};

TEST_F(receive, delayed_ack_then_every_second_segment) {
  start();
  establish();
  ASSERT_EQ(cseg(ACK, 0, 0, bytes(100)), drop::none);
  EXPECT_TRUE(drain().empty());  // delayed
  advance_ms(39);
  EXPECT_TRUE(drain().empty());
  advance_ms(2);
  auto a = one();
  EXPECT_EQ(a.flags, ACK);
  EXPECT_EQ(a.ack, cisn + 1 + 100);
  EXPECT_EQ(st->stats().delayed_acks.get(), 1u);
  // Two segments: the second is ACKed at once.
  ASSERT_EQ(cseg(ACK, 100, 0, bytes(1000)), drop::none);
  EXPECT_TRUE(drain().empty());
  ASSERT_EQ(cseg(ACK, 1100, 0, bytes(1000)), drop::none);
  a = one();
  EXPECT_EQ(a.ack, cisn + 1 + 2100);
  EXPECT_TRUE(a.has_ts);
  // RFC 7323 §4.3: ts_recent only moves for segments at or below the last ACK sent, so the echo
  // is the first unacknowledged segment's TSval (the RTT the peer measures includes our delay).
  EXPECT_EQ(a.tsecr, tsv - 1);
  advance_ms(100);
  EXPECT_TRUE(drain().empty());  // nothing left to ACK
}

TEST_F(receive, out_of_order_gets_sack_and_is_reassembled) {
  start();
  establish();
  app.auto_read = true;
  const auto all = bytes(3000);
  auto part = [&](size_t off, size_t n) {
    return std::vector<uint8_t>(all.begin() + off, all.begin() + off + n);
  };
  ASSERT_EQ(cseg(ACK, 2000, 0, part(2000, 1000)), drop::none);
  auto a = one();  // immediate duplicate ACK with one SACK block
  EXPECT_EQ(a.ack, cisn + 1);
  ASSERT_EQ(a.sack.size(), 1u);
  EXPECT_EQ(a.sack[0].first, cisn + 1 + 2000);
  EXPECT_EQ(a.sack[0].second, cisn + 1 + 3000);
  ASSERT_EQ(cseg(ACK, 1000, 0, part(1000, 500)), drop::none);
  a = one();
  ASSERT_EQ(a.sack.size(), 2u);  // most recent block first
  EXPECT_EQ(a.sack[0].first, cisn + 1 + 1000);
  EXPECT_EQ(a.sack[0].second, cisn + 1 + 1500);
  EXPECT_EQ(a.sack[1].first, cisn + 1 + 2000);
  EXPECT_TRUE(app.data.empty());
  EXPECT_EQ(st->stats().ooo_segments.get(), 2u);
  // Fill the first hole: everything up to 1500 is readable, SACK shows what is left.
  ASSERT_EQ(cseg(ACK, 0, 0, part(0, 1000)), drop::none);
  a = one();
  EXPECT_EQ(a.ack, cisn + 1 + 1500);
  ASSERT_EQ(a.sack.size(), 1u);
  EXPECT_EQ(a.sack[0].first, cisn + 1 + 2000);
  ASSERT_EQ(cseg(ACK, 1500, 0, part(1500, 500)), drop::none);
  a = one();
  EXPECT_EQ(a.ack, cisn + 1 + 3000);
  EXPECT_TRUE(a.sack.empty());
  EXPECT_EQ(app.data, all);
}

TEST_F(receive, duplicates_and_overlaps_are_trimmed) {
  start();
  establish();
  app.auto_read = true;
  const auto all = bytes(300);
  auto part = [&](size_t off, size_t n) {
    return std::vector<uint8_t>(all.begin() + off, all.begin() + off + n);
  };
  ASSERT_EQ(cseg(ACK, 0, 0, part(0, 100)), drop::none);
  drain();
  // Entirely old: ACKed at once, counted, not delivered twice.
  EXPECT_EQ(cseg(ACK, 0, 0, part(0, 100)), drop::tcp_duplicate);
  EXPECT_EQ(one().ack, cisn + 1 + 100);
  // Overlapping old and new bytes: only the new part is delivered.
  ASSERT_EQ(cseg(ACK, 50, 0, part(50, 150)), drop::none);
  // Overlapping out-of-order ranges merge into one SACK block.
  ASSERT_EQ(cseg(ACK, 250, 0, part(250, 30)), drop::none);
  ASSERT_EQ(cseg(ACK, 240, 0, part(240, 60)), drop::none);
  auto out = drain();
  ASSERT_FALSE(out.empty());
  ASSERT_EQ(out.back().sack.size(), 1u);
  EXPECT_EQ(out.back().sack[0].first, cisn + 1 + 240);
  EXPECT_EQ(out.back().sack[0].second, cisn + 1 + 300);
  ASSERT_EQ(cseg(ACK, 200, 0, part(200, 40)), drop::none);
  EXPECT_EQ(app.data, all);
  EXPECT_EQ(drain().back().ack, cisn + 1 + 300);
}

TEST_F(receive, duplicates_are_reported_with_d_sack) {
  start();
  establish();
  app.auto_read = true;
  const auto all = bytes(400);
  auto part = [&](size_t off, size_t n) {
    return std::vector<uint8_t>(all.begin() + off, all.begin() + off + n);
  };
  ASSERT_EQ(cseg(ACK, 0, 0, part(0, 100)), drop::none);
  ASSERT_EQ(cseg(ACK, 200, 0, part(200, 100)), drop::none);  // a hole at 100..200
  drain();
  // A repeated segment: the ACK (sent at once) names it in a first SACK block below the
  // cumulative ACK (RFC 2883 §4.1.1), then the out-of-order range as before.
  EXPECT_EQ(cseg(ACK, 0, 0, part(0, 100)), drop::tcp_duplicate);
  auto a = one();
  EXPECT_EQ(a.ack, cisn + 1 + 100);
  ASSERT_EQ(a.sack.size(), 2u);
  EXPECT_EQ(a.sack[0], std::make_pair(cisn + 1, cisn + 1 + 100));
  EXPECT_EQ(a.sack[1], std::make_pair(cisn + 1 + 200, cisn + 1 + 300));
  // Partly repeated: only the repeated part is reported, once.
  ASSERT_EQ(cseg(ACK, 50, 0, part(50, 100)), drop::none);
  a = one();
  EXPECT_EQ(a.ack, cisn + 1 + 150);
  ASSERT_EQ(a.sack.size(), 2u);
  EXPECT_EQ(a.sack[0], std::make_pair(cisn + 1 + 50, cisn + 1 + 100));
  ASSERT_EQ(cseg(ACK, 150, 0, part(150, 50)), drop::none);
  a = drain().back();
  EXPECT_EQ(a.ack, cisn + 1 + 300);
  EXPECT_TRUE(a.sack.empty());
  EXPECT_EQ(app.data, std::vector<uint8_t>(all.begin(), all.begin() + 300));
}

TEST_F(receive, out_of_order_range_limit_is_a_counted_drop) {
  cfg.ooo_max_ranges = 2;
  start();
  establish();
  ASSERT_EQ(cseg(ACK, 100, 0, bytes(10)), drop::none);
  ASSERT_EQ(cseg(ACK, 200, 0, bytes(10)), drop::none);
  ASSERT_EQ(cseg(ACK, 300, 0, bytes(10)), drop::none);  // a third range does not fit
  EXPECT_EQ(drops(drop::tcp_ooo_full), 1u);
  auto out = drain();
  EXPECT_EQ(out.back().sack.size(), 2u);
  // Adjacent data still merges into an existing range.
  ASSERT_EQ(cseg(ACK, 110, 0, bytes(10)), drop::none);
  EXPECT_EQ(drops(drop::tcp_ooo_full), 1u);
}

TEST_F(receive, window_follows_unread_bytes_and_reopens) {
  cfg.rcv_buf = 8192;
  start();
  auto c = establish();
  const auto all = bytes(8192);
  for (uint32_t off = 0; off < 8192; off += 1024)
    ASSERT_EQ(cseg(ACK, off, 0, std::vector<uint8_t>(all.begin() + off, all.begin() + off + 1024)),
              drop::none);
  auto a = drain().back();
  EXPECT_EQ(a.ack, cisn + 1 + 8192);
  EXPECT_EQ(a.win, 0);  // the app has read nothing: back-pressure
  // Beyond the window: dropped and answered with the current ACK.
  EXPECT_EQ(cseg(ACK, 8192, 0, bytes(10)), drop::tcp_out_of_window);
  a = one();
  EXPECT_EQ(a.win, 0);
  EXPECT_EQ(st->readable(c), 8192u);
  // Reading a little does not announce a runt window; reading half does.
  uint8_t buf[8192];
  EXPECT_EQ(st->recv(c, std::span<uint8_t>(buf, 100)), 100u);
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(st->recv(c, std::span<uint8_t>(buf, 4000)), 4000u);
  a = one();
  EXPECT_EQ(a.win, 4100);
  EXPECT_EQ(a.ack, cisn + 1 + 8192);
  // The bytes read are the bytes sent.
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + 4000),
            std::vector<uint8_t>(all.begin() + 100, all.begin() + 4100));
}

TEST_F(receive, zero_window_probe_is_answered) {
  cfg.rcv_buf = 4096;
  start();
  establish();
  for (uint32_t off = 0; off < 4096; off += 1024)
    ASSERT_EQ(cseg(ACK, off, 0, bytes(1024)), drop::none);
  advance_ms(50);
  EXPECT_EQ(drain().back().win, 0);
  // A one-byte probe at rcv_nxt: not taken, answered with window 0 and the same ACK.
  EXPECT_EQ(cseg(ACK, 4096, 0, bytes(1)), drop::tcp_out_of_window);
  auto a = one();
  EXPECT_EQ(a.win, 0);
  EXPECT_EQ(a.ack, cisn + 1 + 4096);
}

TEST_F(receive, window_scale_applies_to_our_window) {
  cfg.rcv_buf = 256 * 1024;
  start();
  establish();
  ASSERT_EQ(cseg(ACK, 0, 0, bytes(1000)), drop::none);
  advance_ms(50);
  auto a = one();
  EXPECT_EQ(uint32_t(a.win) << 3, 256u * 1024 - 1000 - ((256u * 1024 - 1000) & 7));
}

TEST_F(receive, paws_drops_old_timestamps) {
  start();
  establish();
  app.auto_read = true;
  ASSERT_EQ(cseg(ACK, 0, 0, bytes(10)), drop::none);
  drain();
  // A segment whose TSval is older than ts_recent: dropped, ACKed, not delivered.
  EXPECT_EQ(inject(ACK, cisn + 1 + 10, siss + 1, bytes(10, 9), opt_ts(tsv - 100, srv_ts)),
            drop::tcp_paws);
  auto a = one();
  EXPECT_EQ(a.ack, cisn + 1 + 10);
  EXPECT_EQ(app.data.size(), 10u);
  EXPECT_EQ(drops(drop::tcp_paws), 1u);
  // The same bytes with a current timestamp are taken.
  ASSERT_EQ(cseg(ACK, 10, 0, bytes(10, 9)), drop::none);
  EXPECT_EQ(app.data.size(), 20u);
}

TEST_F(receive, data_after_peer_fin_is_not_taken) {
  start();
  establish();
  ASSERT_EQ(cseg(ACK | FIN, 0, 0, bytes(10)), drop::none);
  EXPECT_EQ(one().ack, cisn + 1 + 11);
  EXPECT_EQ(app.peer_fin, 1);
  EXPECT_EQ(cseg(ACK, 11, 0, bytes(10)), drop::tcp_data_after_fin);
  EXPECT_EQ(st->readable(app.accepted[0]), 10u);
}

}  // namespace
}  // namespace tcp_test

EDGE_TEST_MAIN_WITH_EAL()
