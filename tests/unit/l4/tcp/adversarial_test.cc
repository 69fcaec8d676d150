// Hostile peers (issue 10): tables of adversarial handshakes and segments through the real stack.
// Each row states its outcome: the payload size of every segment we then send (within
// [min_peer_mss - options, our MSS] and within the mbuf), a counted drop, or a RST.
#include "tcp_harness.hh"

using namespace tcp_test;
using l4::drop;

namespace {

constexpr uint16_t floor_mss = l4::tcp::min_peer_mss;  // 536
constexpr size_t max_frame = 1500 + 14;                // MTU + Ethernet: what the mbuf must hold

struct mss_row {
  const char* name;
  int mss;  // -1: no MSS option
  bool ts;
  uint16_t expect;  // payload bytes per segment we send
  bool clamped;     // peer_mss_clamped counted
};

// Our MSS is 1460 (MTU 1500); timestamps cost 12 bytes of every segment.
const mss_row mss_rows[] = {
    {"mss_absent", -1, false, 536, false},
    {"mss_absent_ts", -1, true, 524, false},
    {"mss_0", 0, false, 536, false},  // an MSS option of 0 reads as "absent": the 536 default
    {"mss_0_ts", 0, true, 524, false},
    {"mss_1", 1, false, 536, true},
    {"mss_1_ts", 1, true, 524, true},  // was: 1 - 12 wrapped to 65525, 64 KiB copied into 2 KiB
    {"mss_11", 11, false, 536, true},
    {"mss_11_ts", 11, true, 524, true},
    {"mss_12", 12, false, 536, true},
    {"mss_12_ts", 12, true, 524, true},  // was: mss 0, nothing sent, later SIGFPE
    {"mss_13", 13, false, 536, true},
    {"mss_13_ts", 13, true, 524, true},  // was: 1-byte segments (amplification)
    {"mss_60", 60, false, 536, true},
    {"mss_60_ts", 60, true, 524, true},
    {"mss_535", 535, false, 536, true},
    {"mss_535_ts", 535, true, 524, true},
    {"mss_536", 536, false, 536, false},
    {"mss_536_ts", 536, true, 524, false},
    {"mss_1460", 1460, true, 1448, false},
    {"mss_65535", 65535, false, 1460, false},  // capped by ours
    {"mss_65535_ts", 65535, true, 1448, false},
};

class mss_table : public harness, public ::testing::WithParamInterface<mss_row> {};

TEST_P(mss_table, segments_stay_within_floor_our_mss_and_the_mbuf) {
  const mss_row& r = GetParam();
  cfg.snd_buf = 128 * 1024;  // a wrapped MSS could then fill a 64 KiB frame
  start();
  std::vector<uint8_t> opts;
  if (r.mss >= 0) opts = opt_mss(static_cast<uint16_t>(r.mss));
  if (r.ts) opts = cat({opts, opt_ts(tsv, 0)});
  opts = cat({opts, opt_ws(7)});
  ASSERT_EQ(inject(SYN, cisn, 0, {}, opts), drop::none);
  auto sa = one();
  ASSERT_EQ(sa.flags, SYN | ACK);
  siss = sa.seq;
  ASSERT_EQ(
      inject(ACK, cisn + 1, siss + 1, {}, r.ts ? opt_ts(++tsv, sa.tsval) : std::vector<uint8_t>{}),
      drop::none);
  ASSERT_EQ(app.accepted.size(), 1u);
  EXPECT_EQ(app.last_info.mss, r.expect);
  EXPECT_EQ(st->stats().peer_mss_clamped.get(), r.clamped ? 1u : 0u);

  EXPECT_EQ(st->send(app.accepted[0], bytes(64 * 1024)), 64u * 1024);
  const auto out = drain();
  size_t data_segs = 0;
  for (const auto& s : out) {
    EXPECT_LE(s.frame.size(), max_frame);
    if (s.payload.empty()) continue;
    ++data_segs;
    // The initial window holds whole segments: every one is exactly the MSS.
    EXPECT_EQ(s.payload.size(), r.expect) << "segment at " << s.seq - siss;
  }
  EXPECT_GE(data_segs, 2u) << "the initial window must let data out";
  EXPECT_EQ(drops(drop::tcp_tx_too_long), 0u);
}

INSTANTIATE_TEST_SUITE_P(rows, mss_table, ::testing::ValuesIn(mss_rows),
                         [](const auto& i) { return std::string(i.param.name); });

class adversarial : public harness {
 protected:
  // Handshake with the given SYN options; the ACK echoes the SYN-ACK's timestamp if `ts`.
  conn_handle open_with(const std::vector<uint8_t>& syn_opts, bool ts) {
    EXPECT_EQ(inject(SYN, cisn, 0, {}, syn_opts), drop::none);
    auto sa = one();
    EXPECT_EQ(sa.flags, SYN | ACK);
    siss = sa.seq;
    EXPECT_EQ(
        inject(ACK, cisn + 1, siss + 1, {}, ts ? opt_ts(++tsv, sa.tsval) : std::vector<uint8_t>{}),
        drop::none);
    EXPECT_EQ(app.accepted.size(), 1u);
    return app.accepted.empty() ? conn_handle{} : app.accepted.back();
  }
};

// The remote crash of issue 10: MSS 12 + timestamps gave mss 0; a zero window, one persist probe
// byte, then two window-1 ACKs of snd_una reached `outstanding / mss` (SIGFPE, edged died).
TEST_F(adversarial, zero_window_then_window_one_acks_with_mss_12_ts_does_not_divide_by_zero) {
  start();
  const auto h = open_with(cat({opt_mss(12), opt_sack_ok(), opt_ts(tsv, 0)}), true);  // no wscale
  EXPECT_EQ(app.last_info.mss, floor_mss - 12);
  EXPECT_EQ(cseg(ACK, 0, 0, {}, 0), drop::none);  // window 0
  EXPECT_EQ(st->send(h, bytes(4000)), 4000u);
  EXPECT_TRUE(drain().empty());
  advance_ms(1500);  // persist timer: a 1-byte probe
  auto probe = drain();
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_EQ(probe[0].payload.size(), 1u);
  EXPECT_EQ(cseg(ACK, 0, 0, {}, 1), drop::none);  // window 1, probe not acknowledged
  EXPECT_EQ(cseg(ACK, 0, 0, {}, 1), drop::none);  // duplicate: early-retransmit threshold
  EXPECT_EQ(cseg(ACK, 0, 0, {}, 1), drop::none);
  drain();
  // The window opens: the stack is alive and sends floor-sized segments.
  EXPECT_EQ(cseg(ACK, 0, 1, {}, 65535), drop::none);
  const auto out = drain();
  size_t data = 0;
  for (const auto& s : out) {
    EXPECT_LE(s.frame.size(), max_frame);
    EXPECT_LE(s.payload.size(), floor_mss - 12u);
    data += s.payload.size();
  }
  EXPECT_GT(data, 0u);
}

// Found by fuzz_tcp_input: while we hold out-of-order data, every segment we send carries SACK
// blocks; full-MSS data segments then went out up to 36 bytes over the MTU. Rows: with and without
// timestamps (3 or 4 blocks fit), one to four out-of-order ranges, and a D-SACK on top.
TEST_F(adversarial, data_segments_carrying_sack_blocks_fit_the_mtu) {
  for (bool ts : {true, false}) {
    for (uint32_t ranges : {1u, 2u, 4u}) {
      SCOPED_TRACE(std::string(ts ? "timestamps, " : "no timestamps, ") + std::to_string(ranges) +
                   " out-of-order ranges");
      st.reset();
      app = recorder{};
      start();
      const auto h = open_with(ts ? cat({opt_mss(1460), opt_sack_ok(), opt_ts(tsv, 0), opt_ws(7)})
                                  : cat({opt_mss(1460), opt_sack_ok(), opt_ws(7)}),
                               ts);
      auto seg = [&](uint32_t off, std::vector<uint8_t> data) {
        return inject(ACK, cisn + 1 + off, siss + 1, std::move(data),
                      ts ? opt_ts(++tsv, srv_ts) : std::vector<uint8_t>{}, 65535);
      };
      for (uint32_t k = 0; k < ranges; ++k) EXPECT_EQ(seg(1000 + 500 * k, bytes(100)), drop::none);
      EXPECT_EQ(seg(0, bytes(10)), drop::none);
      EXPECT_EQ(seg(0, bytes(10)), drop::tcp_duplicate);  // D-SACK pending as well
      drain();
      EXPECT_EQ(seg(0, bytes(10)), drop::tcp_duplicate);
      ASSERT_EQ(st->send(h, bytes(8 * 1460)), 8u * 1460);
      size_t data = 0;
      for (const auto& s : drain()) {
        EXPECT_LE(s.frame.size(), max_frame)
            << "payload " << s.payload.size() << ", " << s.sack.size() << " SACK blocks";
        data += s.payload.size();
      }
      EXPECT_GT(data, 0u);
      EXPECT_EQ(drops(drop::tcp_tx_too_long), 0u);
    }
  }
}

// RFC 7323 §2.3: a shift above 14 is used as 14 (our window arithmetic is 32-bit).
TEST_F(adversarial, window_scale_above_14_is_used_as_14) {
  for (uint8_t ws : {uint8_t{14}, uint8_t{15}, uint8_t{255}}) {
    SCOPED_TRACE(int(ws));
    st.reset();
    app = recorder{};
    start();
    const auto h = open_with(cat({opt_mss(1460), opt_sack_ok(), opt_ts(tsv, 0), opt_ws(ws)}), true);
    EXPECT_EQ(app.last_info.snd_wscale, 14);
    // The largest window it can announce (65535 << 14) still bounds what we send by snd_buf.
    EXPECT_EQ(cseg(ACK, 0, 0, {}, 65535), drop::none);
    EXPECT_EQ(st->send(h, bytes(cfg.snd_buf)), cfg.snd_buf);
    for (const auto& s : drain()) EXPECT_LE(s.payload.size(), 1448u);
  }
}

// SACK blocks that lie outside [snd_una, snd_max], are reversed or span half the sequence space
// are ignored: nothing is marked delivered, so RACK marks nothing lost and nothing is resent.
TEST_F(adversarial, sack_blocks_outside_the_window_are_ignored) {
  start();
  const auto h = establish();
  ASSERT_EQ(st->send(h, bytes(3 * 1448)), 3u * 1448);
  ASSERT_EQ(drain().size(), 3u);
  const uint32_t una = siss + 1, max = una + 3 * 1448;
  const std::vector<std::pair<uint32_t, uint32_t>> bogus[] = {
      {{max + 1000, max + 2000}},                       // beyond anything sent
      {{una - 5000, una - 4000}},                       // below the cumulative ACK
      {{una + 2000, una + 1000}},                       // reversed
      {{una + 1448, una + 1448 + 0x80000000u}},         // half the sequence space
      {{una - 0x7fffffffu, una + 10}, {max, max + 1}},  // wraps below, and one past snd_max
  };
  // Each ACK announces a different window, so that it is a window update and not a duplicate ACK
  // (RFC 5681 (e)): two duplicates alone would trigger early retransmit (RFC 5827) here.
  uint16_t win = 65535;
  for (const auto& blocks : bogus) {
    EXPECT_EQ(cseg(ACK, 0, 0, {}, --win, opt_sack(blocks)), drop::none);
    for (const auto& s : drain())
      ADD_FAILURE() << "SACK [" << blocks[0].first - una << ", " << blocks[0].second - una
                    << ") made the stack send seq " << s.seq - una << " len " << s.payload.size();
  }
  EXPECT_EQ(st->stats().retransmits.get(), 0u);
  EXPECT_EQ(st->stats().fast_retransmits.get(), 0u);
  // The connection still works: a real cumulative ACK frees the send buffer.
  EXPECT_EQ(cseg(ACK, 0, 3 * 1448), drop::none);
  EXPECT_EQ(st->send_space(h), cfg.snd_buf);
}

// Timestamps wrap modulo 2^32 (RFC 7323 §5.3): a TSval that crossed 0 is newer, not a PAWS drop;
// one 2^31 behind is old.
TEST_F(adversarial, timestamp_wrap_is_newer_and_half_space_back_is_paws) {
  tsv = 0xfffffff0u;
  start();
  const auto h = establish();
  app.auto_read = true;
  tsv = 0xfffffffeu;
  EXPECT_EQ(cseg(ACK | PSH, 0, 0, bytes(100)), drop::none);    // TSval 0xffffffff
  EXPECT_EQ(cseg(ACK | PSH, 100, 0, bytes(100)), drop::none);  // TSval 0: wrapped, newer
  EXPECT_EQ(app.data.size(), 200u);
  drain();
  tsv = 0x80000000u - 2;  // next TSval is 2^31 - 1 behind ts_recent (0)
  EXPECT_EQ(cseg(ACK | PSH, 200, 0, bytes(100)), drop::tcp_paws);
  EXPECT_EQ(app.data.size(), 200u);
  (void)h;
}

// A TSecr echoing an ancient value (2^30 ms back) was taken as an RTT sample: SRTT ~12 days, RTO
// pinned at rto_max (60 s), and the loss probe's µs -> TSC product near overflow. It is ignored
// now: a lost segment is retransmitted within a second.
TEST_F(adversarial, ancient_tsecr_is_not_an_rtt_sample) {
  start();
  const auto h = establish();
  ASSERT_EQ(st->send(h, bytes(100)), 100u);
  auto d = drain();
  ASSERT_EQ(d.size(), 1u);
  const uint32_t ancient = d[0].tsval - 0x40000000u;
  ASSERT_EQ(inject(ACK, cisn + 1, siss + 1 + 100, {}, opt_ts(++tsv, ancient)), drop::none);
  ASSERT_EQ(st->send(h, bytes(100)), 100u);
  d = drain();
  ASSERT_EQ(d.size(), 1u);
  const uint32_t lost_seq = d[0].seq;
  advance_ms(1000);
  bool resent = false;
  for (const auto& s : drain()) resent = resent || (s.seq == lost_seq && s.payload.size() == 100);
  EXPECT_TRUE(resent) << "no retransmission within 1 s: the RTO was inflated by a forged TSecr";
}

// Header and option lengths a peer controls: each is a counted drop, never a read past the frame.
TEST_F(adversarial, bad_data_offsets_and_option_lengths_are_counted_drops) {
  start();
  establish();
  struct row {
    const char* name;
    std::vector<uint8_t> opts;  // after the timestamp
    drop expect;
  } rows[] = {
      {"option length 0", {30, 0, 0, 0}, drop::tcp_bad_options},
      {"option length 1", {30, 1, 0, 0}, drop::tcp_bad_options},
      {"option runs past the header", {30, 12, 0, 0}, drop::tcp_bad_options},
      {"option kind at the last byte", {1, 1, 1, 30}, drop::tcp_bad_options},
      {"SACK length not 2 + 8n (ignored)", {1, 5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0}, drop::none},
      {"MSS length 3 on a data segment (ignored)", {2, 3, 0, 1}, drop::none},
  };
  for (const auto& r : rows) {
    const uint64_t before = drops(r.expect);
    EXPECT_EQ(cseg(ACK, 0, 0, {}, 65535, r.opts), r.expect) << r.name;
    if (r.expect != drop::none) {
      EXPECT_EQ(drops(r.expect), before + 1) << r.name;
    }
  }
  // Data offsets: below 5 words, or beyond the segment, are stopped by l4::parse.
  for (uint8_t doff : {uint8_t{0}, uint8_t{4}, uint8_t{15}}) {
    b.tcp_flags = ACK;
    b.tcp_options.clear();
    b.payload.clear();
    auto f = b.bytes();
    f[14 + 20 + 12] = static_cast<uint8_t>(doff << 4);
    rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), f);
    l4::packet p;
    EXPECT_EQ(l4::parse(m, p), drop::tcp_truncated) << "data offset " << int(doff);
    rte_pktmbuf_free(m);
  }
  // A packet description claiming a header shorter than 20 bytes is refused by the stack too.
  b.tcp_flags = ACK;
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), b.bytes());
  l4::packet p;
  ASSERT_EQ(l4::parse(m, p), drop::none);
  p.l4_len = 16;
  EXPECT_EQ(st->input(m, p), drop::tcp_not_tcp);
}

}  // namespace

EDGE_TEST_MAIN_WITH_EAL()
