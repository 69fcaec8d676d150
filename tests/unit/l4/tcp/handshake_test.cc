// Passive open, SYN cookies, listener and pool limits, through the real stack on mbufs.
#include "tcp_harness.hh"

namespace tcp_test {
namespace {

using l4::drop;
using l4::tcp::cookie_mode;
using l4::tcp::reset_reason;

class handshake : public harness {};

TEST_F(handshake, syn_ack_carries_negotiated_options) {
  cfg.rcv_buf = 256 * 1024;  // needs a window scale of 3
  start();
  ASSERT_EQ(
      inject(SYN, cisn, 0, {}, cat({opt_mss(1400), opt_sack_ok(), opt_ts(777, 0), opt_ws(7)})),
      drop::none);
  auto sa = one();
  EXPECT_EQ(sa.flags, SYN | ACK);
  EXPECT_EQ(sa.ack, cisn + 1);
  EXPECT_EQ(sa.mss, 1460);  // ours, from the 1500 MTU
  EXPECT_EQ(sa.wscale, 3);
  EXPECT_TRUE(sa.sack_ok);
  EXPECT_TRUE(sa.has_ts);
  EXPECT_EQ(sa.tsecr, 777u);
  EXPECT_EQ(sa.win, 65535);  // never scaled in a SYN
  EXPECT_EQ(sa.p.src.str(), "10.0.0.1");
  EXPECT_EQ(sa.p.dst.str(), "10.0.0.2");
  EXPECT_EQ(sa.p.sport, 443);
  EXPECT_EQ(sa.p.dport, 40000);
  EXPECT_EQ(st->stats().active.get(), 1u);
  EXPECT_TRUE(app.accepted.empty());  // not before the final ACK

  ASSERT_EQ(inject(ACK, cisn + 1, sa.seq + 1, {}, opt_ts(778, sa.tsval)), drop::none);
  ASSERT_EQ(app.accepted.size(), 1u);
  EXPECT_EQ(app.last_info.listener, 7);
  EXPECT_EQ(app.last_info.remote_port, 40000);
  EXPECT_EQ(app.last_info.mss, 1400 - 12);  // peer MSS less the timestamp option
  EXPECT_EQ(app.last_info.snd_wscale, 7);
  EXPECT_EQ(app.last_info.rcv_wscale, 3);
  EXPECT_TRUE(app.last_info.sack);
  EXPECT_TRUE(app.last_info.timestamps);
  EXPECT_FALSE(app.last_info.from_cookie);
  EXPECT_EQ(st->stats().opened.get(), 1u);
  EXPECT_TRUE(drain().empty());  // a bare ACK needs no answer
}

TEST_F(handshake, syn_without_options_uses_defaults) {
  start();
  ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  auto sa = one();
  EXPECT_EQ(sa.mss, 1460);
  EXPECT_EQ(sa.wscale, -1);
  EXPECT_FALSE(sa.sack_ok);
  EXPECT_FALSE(sa.has_ts);
  ASSERT_EQ(inject(ACK, cisn + 1, sa.seq + 1), drop::none);
  ASSERT_EQ(app.accepted.size(), 1u);
  EXPECT_EQ(app.last_info.mss, 536);
  EXPECT_FALSE(app.last_info.wscale);
}

TEST_F(handshake, ipv6_handshake_and_data) {
  b.from("fd00::2").to("fd00::1");
  start();
  auto c = establish();
  EXPECT_EQ(app.last_info.mss, 1440 - 12);  // our IPv6 MSS (1500 - 60) bounds it
  app.auto_read = true;
  ASSERT_EQ(cseg(ACK | PSH, 0, 0, bytes(100)), drop::none);
  EXPECT_EQ(app.data, bytes(100));
  EXPECT_EQ(st->send(c, bytes(10)), 10u);
  auto d = drain();
  ASSERT_FALSE(d.empty());
  EXPECT_EQ(d.back().p.l3, l4::l3_kind::ipv6);
  EXPECT_EQ(d.back().payload, bytes(10));
  EXPECT_EQ(d.back().ack, cisn + 1 + 100);
}

TEST_F(handshake, vlan_and_macs_are_mirrored) {
  b.vlan = 42;
  start();
  establish();
  ASSERT_EQ(st->send(app.accepted[0], bytes(5)), 5u);
  auto s = one();
  EXPECT_TRUE(s.p.has_vlan);
  EXPECT_EQ(s.p.vlan_tci & 0xfff, 42);
  EXPECT_EQ(0, std::memcmp(s.frame.data(), b.src_mac, 6));      // to the client's MAC
  EXPECT_EQ(0, std::memcmp(s.frame.data() + 6, b.dst_mac, 6));  // from ours
}

TEST_F(handshake, retransmitted_syn_gets_the_same_syn_ack) {
  start();
  ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  auto a = one();
  ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  auto b2 = one();
  EXPECT_EQ(b2.flags, SYN | ACK);
  EXPECT_EQ(b2.seq, a.seq);
  EXPECT_EQ(st->stats().active.get(), 1u);
}

TEST_F(handshake, syn_ack_retransmitted_with_backoff_then_given_up) {
  cfg.max_synack_retries = 2;
  cfg.handshake_timeout_ms = 60'000;
  start();
  ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  one();
  advance_ms(999);
  EXPECT_TRUE(drain().empty());
  advance_ms(2);  // initial RTO 1 s
  EXPECT_EQ(one().flags, SYN | ACK);
  advance_ms(1990);
  EXPECT_TRUE(drain().empty());
  advance_ms(20);  // doubled: 2 s
  EXPECT_EQ(one().flags, SYN | ACK);
  advance_ms(4010);
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(st->stats().active.get(), 0u);  // gave up after 2 retries
}

TEST_F(handshake, bad_ack_in_syn_received_is_reset) {
  start();
  ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  auto sa = one();
  EXPECT_EQ(inject(ACK, cisn + 1, sa.seq + 99), drop::tcp_bad_ack);
  auto r = one();
  EXPECT_EQ(r.flags, RST);
  EXPECT_EQ(r.seq, sa.seq + 99);
  EXPECT_TRUE(app.accepted.empty());
}

TEST_F(handshake, rst_in_syn_received_releases_silently) {
  start();
  ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  one();
  EXPECT_EQ(inject(RST, cisn + 1, 0), drop::none);
  EXPECT_EQ(st->stats().active.get(), 0u);
  EXPECT_TRUE(app.closed.empty());
  EXPECT_TRUE(drain().empty());
}

TEST_F(handshake, app_refusal_resets) {
  start();
  app.refuse = true;
  ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  auto sa = one();
  EXPECT_EQ(inject(ACK, cisn + 1, sa.seq + 1), drop::tcp_app_refused);
  auto r = one();
  EXPECT_TRUE(r.flags & RST);
  EXPECT_EQ(st->stats().resets(reset_reason::app_refused), 1u);
  EXPECT_EQ(st->stats().refused.get(), 1u);
  EXPECT_EQ(st->stats().active.get(), 0u);
}

TEST_F(handshake, no_listener_gets_rst) {
  start();
  b.dport = 444;
  EXPECT_EQ(inject(SYN, cisn, 0), drop::tcp_no_listener);
  auto r = one();
  EXPECT_EQ(r.flags, RST | ACK);
  EXPECT_EQ(r.ack, cisn + 1);
  EXPECT_EQ(r.seq, 0u);
  EXPECT_EQ(st->stats().resets(reset_reason::no_listener), 1u);
  EXPECT_EQ(inject(ACK, 5, 77), drop::tcp_no_listener);
  r = one();
  EXPECT_EQ(r.flags, RST);
  EXPECT_EQ(r.seq, 77u);
  EXPECT_EQ(inject(RST, 5, 0), drop::tcp_no_listener);  // never answered
  EXPECT_TRUE(drain().empty());
}

TEST_F(handshake, bad_flags_and_options_are_counted) {
  start();
  EXPECT_EQ(inject(SYN | FIN, cisn, 0), drop::tcp_bad_flags);
  EXPECT_EQ(inject(0, cisn, 0), drop::tcp_bad_flags);
  EXPECT_EQ(inject(SYN, cisn, 0, {}, {2, 0, 0, 0}), drop::tcp_bad_options);   // length 0
  EXPECT_EQ(inject(SYN, cisn, 0, {}, {8, 12, 0, 0}), drop::tcp_bad_options);  // beyond header
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(drops(drop::tcp_bad_flags), 2u);
  EXPECT_EQ(drops(drop::tcp_bad_options), 2u);
}

TEST_F(handshake, full_pool_refuses_with_rst_or_silently) {
  cfg.max_connections = 2;
  start();
  for (uint16_t i = 0; i < 2; ++i) {
    b.sport = uint16_t(50000 + i);
    ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  }
  drain();
  b.sport = 50002;
  EXPECT_EQ(inject(SYN, cisn, 0), drop::tcp_pool_full);
  auto r = one();
  EXPECT_EQ(r.flags, RST | ACK);
  EXPECT_EQ(st->stats().refused.get(), 1u);
  EXPECT_EQ(st->stats().resets(reset_reason::pool_full), 1u);
  EXPECT_EQ(st->stats().active.get(), 2u);
}

TEST_F(handshake, full_pool_drop_mode_is_silent_and_recovers) {
  cfg.max_connections = 1;
  cfg.on_pool_full = l4::tcp::pool_full_action::drop;
  cfg.handshake_timeout_ms = 3000;
  start();
  ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  drain();
  b.sport = 50002;
  EXPECT_EQ(inject(SYN, cisn, 0), drop::tcp_pool_full);
  EXPECT_TRUE(drain().empty());
  advance_ms(20'000);  // the half-open TCB times out and its slot comes back
  drain();
  EXPECT_EQ(st->stats().active.get(), 0u);
  EXPECT_EQ(inject(SYN, cisn, 0), drop::none);
  EXPECT_EQ(one().flags, SYN | ACK);
}

TEST_F(handshake, backlog_full_without_cookies_drops_syn) {
  cfg.syn_backlog = 1;
  start();
  ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  drain();
  b.sport = 50001;
  EXPECT_EQ(inject(SYN, cisn, 0), drop::tcp_backlog_full);
  EXPECT_TRUE(drain().empty());
}

class cookies : public harness {};

TEST_F(cookies, round_trip_restores_options) {
  cfg.cookies = cookie_mode::always;
  cfg.rcv_buf = 256 * 1024;
  start();
  ASSERT_EQ(
      inject(SYN, cisn, 0, {}, cat({opt_mss(1400), opt_sack_ok(), opt_ts(777, 0), opt_ws(9)})),
      drop::none);
  auto sa = one();
  EXPECT_EQ(sa.flags, SYN | ACK);
  EXPECT_EQ(sa.ack, cisn + 1);
  EXPECT_EQ(sa.mss, 1460);
  EXPECT_EQ(sa.wscale, 3);
  EXPECT_TRUE(sa.sack_ok);
  EXPECT_EQ(sa.tsecr, 777u);
  EXPECT_LE(sa.tsval, now / 1000);          // option bits ride below the clock
  EXPECT_EQ(st->stats().active.get(), 0u);  // no state kept
  EXPECT_EQ(st->stats().cookies_sent.get(), 1u);

  advance_ms(30'000);  // still valid half a minute later
  ASSERT_EQ(inject(ACK, cisn + 1, sa.seq + 1, bytes(20), opt_ts(900, sa.tsval)), drop::none);
  ASSERT_EQ(app.accepted.size(), 1u);
  EXPECT_TRUE(app.last_info.from_cookie);
  EXPECT_EQ(app.last_info.mss, 1400 - 12);  // 1400 is in the cookie MSS table
  EXPECT_EQ(app.last_info.snd_wscale, 9);
  EXPECT_TRUE(app.last_info.sack);
  EXPECT_TRUE(app.last_info.timestamps);
  EXPECT_EQ(st->stats().cookies_validated.get(), 1u);
  EXPECT_EQ(st->readable(app.accepted[0]), 20u);  // data on the final ACK is kept

  // The restored window scale applies to the peer's window: 10 << 9 bytes.
  siss = sa.seq;
  tsv = 900;
  srv_ts = sa.tsval;
  ASSERT_EQ(cseg(ACK, 20, 0, {}, 10), drop::none);
  drain();
  EXPECT_EQ(st->send(app.accepted[0], bytes(8000)), 8000u);
  uint32_t sent = 0;
  for (auto& s : drain()) sent += uint32_t(s.payload.size());
  // Three full segments fit; the 956-byte runt waits (sender silly-window avoidance).
  EXPECT_EQ(sent, 3u * (1400 - 12));
  EXPECT_LE(sent, 5120u);
}

TEST_F(cookies, without_timestamps_no_scale_or_sack) {
  cfg.cookies = cookie_mode::always;
  start();
  ASSERT_EQ(inject(SYN, cisn, 0, {}, cat({opt_mss(1460), opt_sack_ok(), opt_ws(7)})), drop::none);
  auto sa = one();
  EXPECT_EQ(sa.wscale, -1);
  EXPECT_FALSE(sa.sack_ok);
  EXPECT_FALSE(sa.has_ts);
  ASSERT_EQ(inject(ACK, cisn + 1, sa.seq + 1), drop::none);
  ASSERT_EQ(app.accepted.size(), 1u);
  EXPECT_EQ(app.last_info.mss, 1460);
  EXPECT_FALSE(app.last_info.wscale);
  EXPECT_FALSE(app.last_info.sack);
}

TEST_F(cookies, forged_or_stale_cookie_fails) {
  cfg.cookies = cookie_mode::always;
  start();
  ASSERT_EQ(inject(SYN, cisn, 0, {}, cat({opt_mss(1460), opt_ts(777, 0), opt_ws(7)})), drop::none);
  auto sa = one();
  // Wrong cookie.
  EXPECT_EQ(inject(ACK, cisn + 1, sa.seq + 2, {}, opt_ts(778, sa.tsval)), drop::tcp_cookie_invalid);
  EXPECT_EQ(one().flags, RST);
  // Right cookie, tampered option bits in the echoed timestamp.
  EXPECT_EQ(inject(ACK, cisn + 1, sa.seq + 1, {}, opt_ts(778, sa.tsval ^ 0x20)),
            drop::tcp_cookie_invalid);
  drain();
  // Right cookie, different client ISN.
  EXPECT_EQ(inject(ACK, cisn + 2, sa.seq + 1, {}, opt_ts(778, sa.tsval)), drop::tcp_cookie_invalid);
  drain();
  // Too old (more than two 64 s periods).
  advance_ms(200'000);
  EXPECT_EQ(inject(ACK, cisn + 1, sa.seq + 1, {}, opt_ts(778, sa.tsval)), drop::tcp_cookie_invalid);
  drain();
  EXPECT_EQ(st->stats().cookies_failed.get(), 4u);
  EXPECT_TRUE(app.accepted.empty());
}

TEST_F(cookies, stray_ack_without_cookies_out_is_no_connection) {
  cfg.cookies = cookie_mode::on_pressure;
  start();
  EXPECT_EQ(inject(ACK, cisn + 1, 12345), drop::tcp_no_connection);
  EXPECT_EQ(one().flags, RST);
  EXPECT_EQ(st->stats().cookies_failed.get(), 0u);
}

TEST_F(cookies, switched_on_by_syn_pressure) {
  cfg.cookies = cookie_mode::on_pressure;
  cfg.syn_backlog = 2;
  start();
  for (uint16_t i = 0; i < 3; ++i) {
    b.sport = uint16_t(50000 + i);
    ASSERT_EQ(inject(SYN, cisn, 0), drop::none);
  }
  auto out = drain();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(st->stats().active.get(), 2u);
  EXPECT_EQ(st->stats().cookies_sent.get(), 1u);
  // The cookie connection completes like any other.
  ASSERT_EQ(inject(ACK, cisn + 1, out[2].seq + 1), drop::none);
  EXPECT_EQ(app.accepted.size(), 1u);
  EXPECT_TRUE(app.last_info.from_cookie);
  EXPECT_EQ(st->stats().active.get(), 3u);
}

}  // namespace
}  // namespace tcp_test

EDGE_TEST_MAIN_WITH_EAL()
