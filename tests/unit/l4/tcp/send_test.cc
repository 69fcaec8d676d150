// Send side: segmentation, send buffer back-pressure, RTO with back-off, fast retransmit and
// NewReno, SACK-based loss recovery with RACK (time-based loss marking, lost retransmissions)
// and tail loss probes (RFC 8985), zero-window probes.
#include "tcp_harness.hh"

namespace tcp_test {
namespace {

using l4::drop;
using l4::tcp::reset_reason;

class sending : public harness {
 protected:
  // Payload bytes per segment we expect: peer MSS 1460 less 12 for timestamps.
  static constexpr uint32_t mss = 1448;
  std::vector<seg_out> data_segments() {
    std::vector<seg_out> r;
    for (auto& s : drain())
      if (!s.payload.empty()) r.push_back(s);
    return r;
  }
  // A handshake over a path of `rtt_ms`, so that SRTT (and RACK's windows) are not zero.
  conn_handle establish_with_rtt(uint64_t rtt_ms) {
    EXPECT_EQ(
        inject(SYN, cisn, 0, {}, cat({opt_mss(1460), opt_sack_ok(), opt_ts(tsv, 0), opt_ws(7)})),
        drop::none);
    auto sa = one();
    siss = sa.seq;
    advance_ms(rtt_ms);
    EXPECT_EQ(inject(ACK, cisn + 1, siss + 1, {}, opt_ts(++tsv, sa.tsval)), drop::none);
    EXPECT_EQ(app.accepted.size(), 1u);
    return app.accepted.empty() ? conn_handle{} : app.accepted.back();
  }
  // Ten segments out over a path of `rtt_ms`, segment 0 lost and repaired by fast recovery, then
  // a long queue: returns the new segments the reduced window lets out at once.
  size_t flight_after_one_loss_impl(uint32_t seg, uint64_t rtt_ms = 10) {
    auto c = establish_with_rtt(rtt_ms);
    EXPECT_EQ(st->send(c, bytes(10 * seg)), 10 * seg);
    EXPECT_EQ(data_segments().size(), 10u);
    advance_ms(rtt_ms);
    EXPECT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(1, 10)})), drop::none);
    auto r = data_segments();
    EXPECT_EQ(r.size(), 1u);
    advance_ms(rtt_ms);
    EXPECT_EQ(cseg(ACK, 0, 10 * seg), drop::none);  // full ACK: recovery ends at ssthresh
    conn = c;
    acked = 10 * seg;
    EXPECT_EQ(st->send(c, bytes(600 * seg)), 600 * seg);
    const auto segs = data_segments();
    top = acked;
    for (auto& s : segs)
      top = std::max<uint32_t>(top, s.seq + uint32_t(s.payload.size()) - siss - 1);
    return segs.size();
  }
  // One round trip of the flight in the air: each segment ACKed on its own after `rtt_ms`; returns
  // the size of the next flight the window lets out (segments).
  size_t ack_round(uint64_t rtt_ms) {
    advance_ms(rtt_ms);
    std::vector<seg_out> sent;
    const uint32_t echo = srv_ts;  // the flight's TSval, not that of segments sent while ACKing
    for (uint32_t a = acked + mss; a <= top; a += mss) {
      srv_ts = echo;
      EXPECT_EQ(cseg(ACK, 0, a), drop::none);
      for (auto& s : data_segments()) sent.push_back(s);
    }
    acked = top;
    for (auto& s : sent)
      top = std::max<uint32_t>(top, s.seq + uint32_t(s.payload.size()) - siss - 1);
    return sent.size();
  }
  conn_handle conn;
  uint32_t acked = 0, top = 0;
  // SACK blocks in units of segments above the first data byte.
  std::pair<uint32_t, uint32_t> blk(uint32_t a, uint32_t b) const {
    return {siss + 1 + a * mss, siss + 1 + b * mss};
  }
};

TEST_F(sending, segments_at_mss_and_back_pressure) {
  start();
  auto c = establish();
  const auto all = bytes(cfg.snd_buf + 1000);
  EXPECT_EQ(st->send_space(c), cfg.snd_buf);
  EXPECT_EQ(st->send(c, all), cfg.snd_buf);  // bounded by the send buffer
  EXPECT_EQ(st->send_space(c), 0u);
  auto segs = data_segments();
  // Initial window: 10 segments (RFC 6928), capped at 14600 bytes.
  ASSERT_EQ(segs.size(), 10u);
  uint32_t next = siss + 1;
  for (auto& s : segs) {
    EXPECT_EQ(s.seq, next);
    EXPECT_LE(s.payload.size(), mss);
    EXPECT_EQ(s.ack, cisn + 1);
    EXPECT_TRUE(s.flags & ACK);
    EXPECT_EQ(s.payload, std::vector<uint8_t>(all.begin() + (s.seq - siss - 1),
                                              all.begin() + (s.seq - siss - 1) + s.payload.size()));
    next += uint32_t(s.payload.size());
  }
  EXPECT_EQ(segs[0].payload.size(), mss);
  EXPECT_EQ(app.writable, 0);
  // ACK of the first 4 segments frees space: on_writable, and more data goes out.
  ASSERT_EQ(cseg(ACK, 0, 4 * mss), drop::none);
  EXPECT_EQ(app.writable, 1);
  EXPECT_EQ(st->send_space(c), 4 * mss);
  segs = data_segments();
  ASSERT_FALSE(segs.empty());
  EXPECT_EQ(segs[0].seq, next);
}

// The TX queue between the stack and the port: partial drains hand segments out oldest first,
// also once the queue wraps round its ring, and a full queue (tx_batch) is a counted drop.
TEST_F(sending, tx_queue_keeps_order_across_partial_drains_and_bounds_its_size) {
  cfg.tx_batch = 4;
  start();
  auto c = establish();
  const auto all = bytes(7 * mss);
  ASSERT_EQ(st->send(c, std::span(all).first(3 * mss)), 3 * mss);
  EXPECT_EQ(st->tx_pending(), 3u);
  rte_mbuf* out[8];
  ASSERT_EQ(st->drain_tx(out, 2), 2u);
  std::vector<seg_out> got;
  for (uint16_t i = 0; i < 2; ++i) {
    got.push_back(decode(out[i]));
    rte_pktmbuf_free(out[i]);
  }
  // Three more fill the queue (4) and wrap it; the fourth finds it full.
  ASSERT_EQ(st->send(c, std::span(all).subspan(3 * mss, 4 * mss)), 4 * mss);
  EXPECT_EQ(st->tx_pending(), 4u);
  EXPECT_EQ(drops(drop::tcp_tx_batch_full), 1u);
  for (uint16_t n; (n = st->drain_tx(out, 3)) != 0;)
    for (uint16_t i = 0; i < n; ++i) {
      got.push_back(decode(out[i]));
      rte_pktmbuf_free(out[i]);
    }
  EXPECT_EQ(st->tx_pending(), 0u);
  ASSERT_EQ(got.size(), 6u);
  for (uint32_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].seq, siss + 1 + k * mss) << "segment " << k;
    EXPECT_EQ(got[k].payload,
              std::vector<uint8_t>(all.begin() + k * mss, all.begin() + (k + 1) * mss));
  }
}

TEST_F(sending, rto_backs_off_and_gives_up) {
  cfg.max_retransmits = 3;
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(100)), 100u);
  auto first = one();
  EXPECT_EQ(first.payload.size(), 100u);
  // The handshake measured ~0 ms (TSecr echo): RTO = max(rto_min, srtt + 4 rttvar) = 200 ms,
  // then it doubles.
  uint64_t rto = 200;
  for (int i = 0; i < 3; ++i) {
    advance_ms(rto - 1);
    EXPECT_TRUE(drain().empty()) << "retransmit " << i << " too early";
    advance_ms(1);
    auto r = one();
    EXPECT_EQ(r.seq, first.seq);
    EXPECT_EQ(r.payload, first.payload);
    rto *= 2;
  }
  EXPECT_EQ(st->stats().rto_events.get(), 3u);
  EXPECT_EQ(st->stats().retransmits.get(), 3u);
  advance_ms(rto);
  auto r = one();
  EXPECT_TRUE(r.flags & RST);
  ASSERT_EQ(app.closed.size(), 1u);
  EXPECT_EQ(app.closed[0].second, close_reason::retransmit_limit);
  EXPECT_EQ(st->stats().resets(reset_reason::retransmit_limit), 1u);
  EXPECT_EQ(st->stats().active.get(), 0u);
  EXPECT_EQ(st->send(c, bytes(1)), 0u);  // stale handle
}

TEST_F(sending, rto_floor_follows_the_configured_minimum) {
  cfg.rto_min_ms = 50;  // tcp.rto_min_ms
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(100)), 100u);
  auto first = one();
  // SRTT ~0: the RTO is the floor, 50 ms instead of the default 200, then it doubles.
  advance_ms(49);
  EXPECT_TRUE(drain().empty());
  advance_ms(1);
  EXPECT_EQ(one().seq, first.seq);
  advance_ms(99);
  EXPECT_TRUE(drain().empty());
  advance_ms(1);
  EXPECT_EQ(one().seq, first.seq);
  EXPECT_EQ(st->stats().rto_events.get(), 2u);
}

TEST_F(sending, rto_without_timestamps_uses_initial_then_collapses_cwnd) {
  start();
  auto c = establish(false);
  ASSERT_EQ(st->send(c, bytes(5000)), 5000u);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 10u);  // MSS 536, initial window 10 segments
  // The SYN-ACK/ACK exchange measured ~0 ms: RTO = max(rto_min, srtt + 4 rttvar) = 200 ms.
  advance_ms(199);
  EXPECT_TRUE(drain().empty());
  advance_ms(1);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);  // cwnd is one segment after a timeout
  EXPECT_EQ(segs[0].seq, siss + 1);
  // The ACK of the retransmission opens the window: slow start sends the next two.
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1 + 536), drop::none);
  segs = data_segments();
  EXPECT_EQ(segs.size(), 2u);
  EXPECT_EQ(segs[0].seq, siss + 1 + 536);
}

TEST_F(sending, rtt_sample_sets_rto) {
  start();
  // A handshake whose final ACK comes 300 ms after the SYN-ACK: that RTT seeds the RTO.
  ASSERT_EQ(inject(SYN, cisn, 0, {}, cat({opt_mss(1460), opt_ts(tsv, 0)})), drop::none);
  auto sa = one();
  siss = sa.seq;
  advance_ms(300);
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1, {}, opt_ts(++tsv, sa.tsval)), drop::none);
  ASSERT_EQ(app.accepted.size(), 1u);
  ASSERT_EQ(st->send(app.accepted[0], bytes(100)), 100u);
  drain();
  // First sample R = 300 ms: srtt = 300, rttvar = 150, RTO = srtt + 4 rttvar = 900 ms (RFC 6298).
  advance_ms(899);
  EXPECT_TRUE(drain().empty());
  advance_ms(1);
  EXPECT_EQ(one().seq, siss + 1);
}

TEST_F(sending, window_closed_on_data_in_flight_turns_into_probes) {
  start();
  auto c = establish(false);
  ASSERT_EQ(st->send(c, bytes(1000)), 1000u);
  drain();
  // The peer takes 500 bytes and closes its window.
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1 + 500, {}, {}, 0), drop::none);
  for (int i = 0; i < 12; ++i) {  // well past max_retransmits worth of timeouts
    advance_ms(1000);
    for (auto& s : drain()) EXPECT_LE(s.payload.size(), 1u);
  }
  EXPECT_TRUE(app.closed.empty());
  EXPECT_GT(st->stats().persist_probes.get(), 3u);
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1 + 500, {}, {}, 8192), drop::none);
  uint32_t top = 0;
  for (auto& s : drain()) top = std::max<uint32_t>(top, s.seq + uint32_t(s.payload.size()));
  EXPECT_EQ(top, siss + 1 + 1000);
}

TEST_F(sending, fast_retransmit_and_newreno_partial_ack) {
  start();
  auto c = establish(false);  // no SACK: NewReno
  ASSERT_EQ(st->send(c, bytes(5360)), 5360u);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 10u);
  // Segments 1 and 3 lost: three duplicate ACKs for siss+1.
  for (int i = 0; i < 2; ++i) ASSERT_EQ(inject(ACK, cisn + 1, siss + 1), drop::none);
  EXPECT_TRUE(data_segments().empty());
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1), drop::none);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, siss + 1);
  EXPECT_EQ(st->stats().fast_retransmits.get(), 1u);
  // Partial ACK up to the second hole: it is retransmitted at once (RFC 6582).
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1 + 2 * 536), drop::none);
  segs = data_segments();
  ASSERT_GE(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, siss + 1 + 2 * 536);
  // Full ACK ends recovery.
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1 + 5360), drop::none);
  EXPECT_EQ(st->stats().recoveries.get(), 1u);
  EXPECT_EQ(st->stats().rto_events.get(), 0u);
}

TEST_F(sending, sack_recovery_retransmits_only_holes) {
  start();
  auto c = establish_with_rtt(10);
  ASSERT_EQ(st->send(c, bytes(10 * mss)), 10 * mss);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 10u);
  const uint32_t base = siss + 1;
  advance_ms(10);  // the SACKs come one 10 ms round trip later
  // Segments 0 and 2 lost; the peer SACKs 1, then 3.., one dup ACK per arriving segment. With
  // fewer than three segments SACKed, RACK waits a reordering window before calling 0 lost.
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(1, 2)})), drop::none);
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(3, 4), blk(1, 2)})), drop::none);
  EXPECT_TRUE(data_segments().empty());
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(3, 5), blk(1, 2)})), drop::none);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);  // fast retransmit of the first hole; the pipe holds the second
  EXPECT_EQ(segs[0].seq, base);
  std::vector<uint32_t> seqs{segs[0].seq};
  // More SACKs drain the pipe: the second hole (segment 2) goes out, never a SACKed segment.
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(3, 7), blk(1, 2)})), drop::none);
  for (auto& s : data_segments()) seqs.push_back(s.seq);
  EXPECT_NE(std::find(seqs.begin(), seqs.end(), base + 2 * mss), seqs.end());
  for (uint32_t sacked : {1u, 3u, 4u, 5u, 6u})
    EXPECT_EQ(std::find(seqs.begin(), seqs.end(), base + sacked * mss), seqs.end()) << sacked;
  EXPECT_EQ(st->stats().fast_retransmits.get(), 1u);
  EXPECT_EQ(st->stats().rack_marked_lost.get(), 2u);
  EXPECT_EQ(st->stats().rto_events.get(), 0u);
  // Cumulative ACK of everything ends recovery.
  ASSERT_EQ(cseg(ACK, 0, 10 * mss), drop::none);
  EXPECT_EQ(st->send(c, bytes(10)), 10u);
  EXPECT_EQ(data_segments().size(), 1u);
}

TEST_F(sending, rack_marks_a_hole_lost_after_the_reordering_window) {
  start();
  auto c = establish_with_rtt(10);
  ASSERT_EQ(st->send(c, bytes(10 * mss)), 10 * mss);
  ASSERT_EQ(data_segments().size(), 10u);
  advance_ms(10);
  // Segment 0 missing, 1 SACKed: it may be reordering. RACK waits min_rtt / 4 = 2.5 ms past
  // segment 0's send time plus the RTT (RFC 8985 §6.2), then marks it lost without 3 dup ACKs.
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(1, 2)})), drop::none);
  EXPECT_TRUE(data_segments().empty());
  advance_ms(2);
  EXPECT_TRUE(data_segments().empty()) << "marked lost inside the reordering window";
  advance_ms(1);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, siss + 1);
  EXPECT_EQ(segs[0].payload.size(), mss);
  EXPECT_EQ(st->stats().rack_marked_lost.get(), 1u);
  EXPECT_EQ(st->stats().recoveries.get(), 1u);
  EXPECT_EQ(st->stats().rto_events.get(), 0u);
}

TEST_F(sending, reordering_seen_keeps_the_window_in_recovery) {
  start();
  auto c = establish_with_rtt(10);
  ASSERT_EQ(st->send(c, bytes(10 * mss)), 10 * mss);
  ASSERT_EQ(data_segments().size(), 10u);
  advance_ms(10);
  // Segment 0 arrives late, after 1: reordering, not loss. Nothing is resent.
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(1, 2)})), drop::none);
  ASSERT_EQ(cseg(ACK, 0, 2 * mss), drop::none);
  advance_ms(5);
  EXPECT_TRUE(data_segments().empty());
  EXPECT_EQ(st->stats().rack_marked_lost.get(), 0u);
  // Later, segment 3 is missing while 4-6 are SACKed: with reordering seen, the window stays
  // min_rtt / 4 even with three segments SACKed, so the loss is called only after it.
  ASSERT_EQ(cseg(ACK, 0, 3 * mss, {}, 65535, opt_sack({blk(4, 7)})), drop::none);
  EXPECT_TRUE(data_segments().empty());
  advance_ms(3);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, siss + 1 + 3 * mss);
}

TEST_F(sending, lost_retransmission_is_sent_again_without_rto) {
  cfg.snd_buf = 65536;
  start();
  auto c = establish_with_rtt(10);
  ASSERT_EQ(st->send(c, bytes(10 * mss)), 10 * mss);
  ASSERT_EQ(data_segments().size(), 10u);
  const uint32_t base = siss + 1;
  advance_ms(10);
  // Segment 0 lost; three SACKed segments above it: lost at once, fast retransmit.
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(1, 4)})), drop::none);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, base);
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(1, 10)})), drop::none);
  // New data goes out after the retransmission...
  ASSERT_EQ(st->send(c, bytes(2 * mss)), 2 * mss);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_EQ(segs[0].seq, base + 10 * mss);
  // ...and is SACKed one round trip later while segment 0 is still missing: its retransmission
  // was lost too (sent before data that arrived), so it goes a third time, without an RTO.
  advance_ms(10);
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({blk(10, 12), blk(1, 10)})), drop::none);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, base);
  EXPECT_EQ(st->stats().lost_retransmits.get(), 1u);
  EXPECT_EQ(st->stats().retransmits.get(), 2u);
  EXPECT_EQ(st->stats().rto_events.get(), 0u);
  ASSERT_EQ(cseg(ACK, 0, 12 * mss), drop::none);
  EXPECT_EQ(st->stats().rto_events.get(), 0u);
}

TEST_F(sending, tail_loss_probe_resends_the_last_segment) {
  start();
  auto c = establish_with_rtt(10);
  ASSERT_EQ(st->send(c, bytes(10 * mss)), 10 * mss);
  ASSERT_EQ(data_segments().size(), 10u);
  const uint32_t base = siss + 1;
  advance_ms(10);
  // The last two segments are lost: no SACK, no duplicate ACK can tell. The probe timeout is
  // 2 SRTT + 2 ms = 22 ms after the ACK (RFC 8985 §7.2), long before the 200 ms RTO.
  ASSERT_EQ(cseg(ACK, 0, 8 * mss), drop::none);
  EXPECT_TRUE(data_segments().empty());
  advance_ms(21);
  EXPECT_TRUE(data_segments().empty()) << "probe before the PTO";
  advance_ms(1);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, base + 9 * mss);  // the last segment again
  EXPECT_EQ(st->stats().loss_probes.get(), 1u);
  // Its SACK shows segment 8 missing: RACK marks it lost, fast recovery resends it.
  advance_ms(10);
  ASSERT_EQ(cseg(ACK, 0, 8 * mss, {}, 65535, opt_sack({blk(9, 10)})), drop::none);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, base + 8 * mss);
  EXPECT_EQ(st->stats().recoveries.get(), 1u);
  ASSERT_EQ(cseg(ACK, 0, 10 * mss), drop::none);
  EXPECT_EQ(st->stats().rto_events.get(), 0u);
}

TEST_F(sending, tail_loss_probe_sends_new_data_when_it_can) {
  cfg.snd_buf = 65536;
  start();
  auto c = establish_with_rtt(10);
  // 12 segments queued; the initial window sends 10.
  ASSERT_EQ(st->send(c, bytes(12 * mss)), 12 * mss);
  ASSERT_EQ(data_segments().size(), 10u);
  advance_ms(22);  // no ACK at all: the probe is the next new segment, not a retransmission
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, siss + 1 + 10 * mss);
  EXPECT_EQ(st->stats().loss_probes.get(), 1u);
  EXPECT_EQ(st->stats().retransmits.get(), 0u);
  // One probe per episode: the RTO (200 ms after the probe) comes next if nothing answers.
  advance_ms(199);
  EXPECT_TRUE(data_segments().empty());
  advance_ms(1);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, siss + 1);
  EXPECT_EQ(st->stats().rto_events.get(), 1u);
}

TEST_F(sending, d_sack_of_a_probe_keeps_the_window) {
  cfg.snd_buf = 65536;
  start();
  auto c = establish_with_rtt(10);
  ASSERT_EQ(st->send(c, bytes(4 * mss)), 4 * mss);
  ASSERT_EQ(data_segments().size(), 4u);
  advance_ms(30);  // the ACK was lost: the probe resends segment 3
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, siss + 1 + 3 * mss);
  // The peer had it all: the cumulative ACK carries a D-SACK of the probe (RFC 2883). Nothing was
  // lost, so the window is not reduced: the next flight is as large as before.
  ASSERT_EQ(cseg(ACK, 0, 4 * mss, {}, 65535, opt_sack({blk(3, 4)})), drop::none);
  ASSERT_EQ(st->send(c, bytes(12 * mss)), 12 * mss);
  EXPECT_GE(data_segments().size(), 10u);
}

TEST_F(sending, rto_after_a_lost_retransmission_skips_sacked_segments) {
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(4 * mss)), 4 * mss);
  ASSERT_EQ(data_segments().size(), 4u);
  const uint32_t base = siss + 1;
  // Segments 0 and 3 lost; 1-2 SACKed: RACK resends 0.
  const auto sack12 = opt_sack({{base + mss, base + 3 * mss}});
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, sack12), drop::none);
  advance_ms(1);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, base);
  // Nothing answers: a loss probe (2 SRTT + 2 ms) resends the highest unSACKed segment, 3.
  advance_ms(2);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, base + 3 * mss);
  EXPECT_EQ(st->stats().loss_probes.get(), 1u);
  // The probe is lost too: the RTO, restarted by the probe (200 ms), resends segment 0, cwnd 1.
  advance_ms(199);
  EXPECT_TRUE(data_segments().empty());
  advance_ms(1);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, base);
  EXPECT_EQ(st->stats().rto_events.get(), 1u);
  // Segment 0 arrives: the next byte sent is segment 3's, not the SACKed 1 and 2 again.
  ASSERT_EQ(cseg(ACK, 0, mss, {}, 65535, sack12), drop::none);
  segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, base + 3 * mss);
  EXPECT_EQ(segs[0].payload.size(), mss);
  ASSERT_EQ(cseg(ACK, 0, 4 * mss), drop::none);
  EXPECT_EQ(st->stats().rto_events.get(), 1u);
  EXPECT_EQ(st->stats().retransmits.get(), 4u);
}

TEST_F(sending, newreno_halves_the_window_on_loss) {
  cfg.snd_buf = 1 << 20;
  start();
  EXPECT_EQ(flight_after_one_loss_impl(mss), 5u);  // ssthresh = flight / 2 (RFC 5681 (4))
}

TEST_F(sending, cubic_keeps_seventy_percent_of_the_window_on_loss) {
  cfg.snd_buf = 1 << 20;
  cfg.cc = l4::tcp::congestion::cubic;
  start();
  EXPECT_EQ(flight_after_one_loss_impl(mss), 7u);  // ssthresh = 0.7 cwnd (RFC 9438 §4.6)
}

TEST_F(sending, cubic_regrows_concave_to_the_last_maximum_then_convex) {
  cfg.snd_buf = 1 << 20;
  cfg.cc = l4::tcp::congestion::cubic;
  start();
  // A 900 ms path (below the 1 s initial RTO, so the handshake is timed), so the cubic curve and
  // not the Reno-friendly estimate drives the window: after the loss at 10 segments cwnd is 7 and
  // K = cbrt((10 - 7) / 0.4) = 1.96 s.
  ASSERT_EQ(flight_after_one_loss_impl(mss, 900), 7u);
  std::vector<size_t> flights;
  std::string shape;
  for (int round = 0; round < 6; ++round) flights.push_back(ack_round(900));
  for (size_t f : flights) shape += std::to_string(f) + " ";
  SCOPED_TRACE("flights per round: " + shape);
  // Concave: back near w_max (10) within a round, then a plateau there (NewReno would climb one
  // segment per round from 5)...
  EXPECT_GE(flights[0], 8u);
  for (int i : {1, 2}) {
    EXPECT_GE(flights[i], 9u) << i;
    EXPECT_LE(flights[i], 10u) << i;
  }
  // ...then convex probing beyond it, each round adding more than the one before.
  EXPECT_GT(flights[4] - flights[3], 1u);
  EXPECT_GT(flights[5] - flights[4], flights[4] - flights[3]);
  for (size_t i = 1; i < flights.size(); ++i) EXPECT_GE(flights[i], flights[i - 1]) << i;
}

TEST_F(sending, early_retransmit_for_a_short_flight) {
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(2 * mss)), 2 * mss);
  ASSERT_EQ(data_segments().size(), 2u);
  // Only one duplicate ACK can come back: with two segments out, it is enough (RFC 5827).
  ASSERT_EQ(cseg(ACK, 0, 0, {}, 65535, opt_sack({{siss + 1 + mss, siss + 1 + 2 * mss}})),
            drop::none);
  auto segs = data_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].seq, siss + 1);
  EXPECT_EQ(st->stats().fast_retransmits.get(), 1u);
}

TEST_F(sending, zero_window_probes_back_off_and_resume) {
  start();
  auto c = establish(false);
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1, {}, {}, 0), drop::none);  // peer window 0
  ASSERT_EQ(st->send(c, bytes(1000)), 1000u);
  EXPECT_TRUE(drain().empty());
  advance_ms(200);  // the persist interval starts at the RTO (200 ms after the handshake sample)
  auto p = one();
  EXPECT_EQ(p.seq, siss + 1);
  EXPECT_EQ(p.payload.size(), 1u);
  EXPECT_EQ(st->stats().persist_probes.get(), 1u);
  // The peer answers with window 0 again: the next probe waits twice as long.
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1, {}, {}, 0), drop::none);
  advance_ms(399);
  EXPECT_TRUE(drain().empty());
  advance_ms(1);
  EXPECT_EQ(one().payload.size(), 1u);
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1, {}, {}, 0), drop::none);
  advance_ms(799);
  EXPECT_TRUE(drain().empty());
  advance_ms(1);
  EXPECT_EQ(one().payload.size(), 1u);
  EXPECT_EQ(st->stats().rto_events.get(), 0u);  // probes are not retransmission timeouts
  // Window opens: the data flows from snd_una.
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1, {}, {}, 8192), drop::none);
  uint32_t sent = 0;
  for (auto& s : drain()) sent += uint32_t(s.payload.size());
  EXPECT_EQ(sent, 1000u);
}

// Issue 13: a peer that answers every zero-window probe with a zero window is reset once the
// window has stayed closed for persist_timeout_ms, on time (not up to a backed-off probe late).
TEST_F(sending, zero_window_persist_is_bounded) {
  cfg.persist_timeout_ms = 5000;
  start();
  auto c = establish(false);
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1, {}, {}, 0), drop::none);  // peer window 0
  ASSERT_EQ(st->send(c, bytes(1000)), 1000u);
  uint64_t t = 0;
  bool reset = false;
  while (t < 10'000 && !reset) {
    advance_ms(50);
    t += 50;
    for (auto& s : drain()) {
      if (s.flags & RST) {
        reset = true;
        break;
      }
      ASSERT_EQ(s.payload.size(), 1u);  // a probe: answered with window 0 again
      ASSERT_EQ(inject(ACK, cisn + 1, siss + 1, {}, {}, 0), drop::none);
    }
  }
  ASSERT_TRUE(reset);
  // The first probe goes at the RTO (200 ms), the bound counts from it.
  EXPECT_GE(t, 5200u);
  EXPECT_LE(t, 5250u);
  EXPECT_GE(st->stats().persist_probes.get(), 4u);
  EXPECT_EQ(st->stats().resets(l4::tcp::reset_reason::persist_timeout), 1u);
  ASSERT_EQ(app.closed.size(), 1u);
  EXPECT_EQ(app.closed[0].second, close_reason::persist_timeout);
  EXPECT_EQ(st->stats().active.get(), 0u);
}

TEST_F(sending, zero_window_persist_bound_restarts_when_data_is_acked) {
  cfg.persist_timeout_ms = 5000;
  start();
  auto c = establish(false);
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1, {}, {}, 0), drop::none);
  ASSERT_EQ(st->send(c, bytes(1000)), 1000u);
  uint32_t acked = 0;
  for (uint64_t t = 0; t < 12'000; t += 50) {
    advance_ms(50);
    for (auto& s : drain()) {
      ASSERT_FALSE(s.flags & RST) << "reset at " << t
                                  << " ms although the peer takes a byte every 4 s";
      // Every 4 s the peer takes the probe's byte (and closes its window again): progress.
      const bool take = t % 4000 < 2000 && s.payload.size() == 1 && acked < 1000;
      if (take) ++acked;
      ASSERT_EQ(inject(ACK, cisn + 1, siss + 1 + acked, {}, {}, 0), drop::none);
    }
  }
  EXPECT_GT(acked, 1u);
  EXPECT_EQ(st->stats().resets(l4::tcp::reset_reason::persist_timeout), 0u);
}

TEST_F(sending, ack_of_unsent_data_is_refused) {
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(100)), 100u);
  drain();
  EXPECT_EQ(cseg(ACK, 0, 5000), drop::tcp_bad_ack);
  EXPECT_EQ(one().ack, cisn + 1);
  ASSERT_EQ(cseg(ACK, 0, 100), drop::none);
}

}  // namespace
}  // namespace tcp_test

EDGE_TEST_MAIN_WITH_EAL()
