// Closing: FIN and RST in every state, RFC 5961 challenge ACKs, TIME_WAIT, idle and FIN-wait
// timeouts, app close/abort, and the memory a connection holds.
#include <fstream>
#include <functional>
#include <string>

#include "tcp_harness.hh"

namespace tcp_test {
namespace {

using l4::drop;
using l4::tcp::reset_reason;

class closing : public harness {
 protected:
  void expect_closed(close_reason why) {
    ASSERT_EQ(app.closed.size(), 1u);
    EXPECT_EQ(app.closed[0].second, why);
  }
};

TEST_F(closing, passive_close_close_wait_last_ack) {
  start();
  auto c = establish();
  ASSERT_EQ(cseg(ACK | FIN, 0, 0), drop::none);  // ESTABLISHED -> CLOSE_WAIT
  auto a = one();
  EXPECT_EQ(a.flags, ACK);
  EXPECT_EQ(a.ack, cisn + 2);
  EXPECT_EQ(app.peer_fin, 1);
  // The half-closed connection still sends.
  EXPECT_EQ(st->send(c, bytes(10)), 10u);
  EXPECT_EQ(one().payload.size(), 10u);
  st->shutdown_write(c);  // CLOSE_WAIT -> LAST_ACK
  auto f = one();
  EXPECT_EQ(f.flags, ACK | FIN);
  EXPECT_EQ(f.seq, siss + 11);
  EXPECT_TRUE(app.closed.empty());
  ASSERT_EQ(cseg(ACK, 1, 11), drop::none);  // ACK of our FIN -> CLOSED
  expect_closed(close_reason::normal);
  EXPECT_EQ(st->stats().active.get(), 0u);
  EXPECT_TRUE(drain().empty());
}

TEST_F(closing, active_close_fin_wait_time_wait) {
  cfg.time_wait_ms = 1000;
  start();
  auto c = establish();
  ASSERT_EQ(st->send(c, bytes(10)), 10u);
  EXPECT_EQ(one().flags, ACK | PSH);  // sent at once (no Nagle/cork)
  st->shutdown_write(c);              // FIN follows the data
  auto f = one();
  EXPECT_EQ(f.flags, ACK | FIN);
  EXPECT_EQ(f.seq, siss + 11);
  EXPECT_EQ(st->send(c, bytes(1)), 0u);     // no data after FIN
  ASSERT_EQ(cseg(ACK, 0, 11), drop::none);  // FIN_WAIT_1 -> FIN_WAIT_2
  EXPECT_TRUE(drain().empty());
  // The peer still sends until its FIN.
  app.auto_read = true;
  ASSERT_EQ(cseg(ACK | PSH, 0, 11, bytes(5)), drop::none);
  ASSERT_EQ(cseg(ACK | FIN, 5, 11), drop::none);  // FIN_WAIT_2 -> TIME_WAIT
  auto a = drain().back();
  EXPECT_EQ(a.ack, cisn + 1 + 6);
  EXPECT_EQ(app.data.size(), 5u);
  expect_closed(close_reason::normal);
  EXPECT_EQ(st->stats().active.get(), 1u);  // held in TIME_WAIT
  // A retransmitted FIN in TIME_WAIT is ACKed again; a RST is ignored (RFC 1337).
  ASSERT_EQ(cseg(ACK | FIN, 5, 11), drop::none);
  EXPECT_EQ(one().ack, cisn + 1 + 6);
  EXPECT_EQ(cseg(RST, 6, 0), drop::tcp_time_wait);
  EXPECT_EQ(st->stats().active.get(), 1u);
  advance_ms(1001);
  EXPECT_EQ(st->stats().active.get(), 0u);
}

TEST_F(closing, simultaneous_close_goes_through_closing) {
  cfg.time_wait_ms = 500;
  start();
  auto c = establish();
  st->shutdown_write(c);
  EXPECT_EQ(one().flags, ACK | FIN);
  ASSERT_EQ(cseg(ACK | FIN, 0, 0), drop::none);  // their FIN, ours not yet ACKed: CLOSING
  EXPECT_EQ(one().ack, cisn + 2);
  EXPECT_TRUE(app.closed.empty());
  ASSERT_EQ(cseg(ACK, 1, 1), drop::none);  // CLOSING -> TIME_WAIT
  expect_closed(close_reason::normal);
  advance_ms(501);
  EXPECT_EQ(st->stats().active.get(), 0u);
}

TEST_F(closing, fin_with_ack_of_our_fin_in_fin_wait_1) {
  start();
  auto c = establish();
  st->shutdown_write(c);
  drain();
  ASSERT_EQ(cseg(ACK | FIN, 0, 1), drop::none);  // FIN_WAIT_1 -> TIME_WAIT directly
  EXPECT_EQ(one().ack, cisn + 2);
  expect_closed(close_reason::normal);
}

TEST_F(closing, our_fin_is_retransmitted) {
  start();
  auto c = establish();
  st->shutdown_write(c);
  auto f = one();
  advance_ms(1000);  // initial RTO
  auto r = one();
  EXPECT_EQ(r.flags, ACK | FIN);
  EXPECT_EQ(r.seq, f.seq);
}

TEST_F(closing, fin_wait_2_times_out) {
  cfg.fin_wait_timeout_ms = 5000;
  start();
  auto c = establish();
  st->close(c);
  drain();
  ASSERT_EQ(cseg(ACK, 0, 1), drop::none);  // FIN_WAIT_2, peer never closes
  advance_ms(4000);
  EXPECT_TRUE(drain().empty());
  advance_ms(1001);
  EXPECT_TRUE(one().flags & RST);
  EXPECT_EQ(st->stats().resets(reset_reason::fin_wait_timeout), 1u);
  EXPECT_EQ(st->stats().active.get(), 0u);
  EXPECT_TRUE(app.closed.empty());  // closed by the app: no callback
}

TEST_F(closing, idle_timeout_resets) {
  cfg.idle_timeout_ms = 10'000;
  start();
  establish();
  advance_ms(6000);
  ASSERT_EQ(cseg(ACK, 0, 0, bytes(1)), drop::none);  // activity pushes the deadline
  advance_ms(6000);
  EXPECT_EQ(st->stats().active.get(), 1u);
  drain();
  advance_ms(4001);
  EXPECT_TRUE(one().flags & RST);
  expect_closed(close_reason::idle_timeout);
  EXPECT_EQ(st->stats().resets(reset_reason::idle_timeout), 1u);
}

// Issue 13: a peer that only ACKs (or sends keepalives / window probes) makes no progress, so it
// cannot hold a connection past the idle timeout; payload in either direction (our data ACKed) can.
TEST_F(closing, bare_acks_do_not_keep_the_idle_timer_alive) {
  cfg.idle_timeout_ms = 10'000;
  start();
  auto c = establish();
  for (int i = 0; i < 4; ++i) {
    advance_ms(2000);
    ASSERT_EQ(cseg(ACK, 0, 0), drop::none);  // empty ACK, nothing new acknowledged
    ASSERT_EQ(cseg(ACK, static_cast<uint32_t>(-1), 0, bytes(1)), drop::tcp_duplicate);  // keepalive
  }
  drain();
  advance_ms(2001);  // 10 s after the handshake
  EXPECT_TRUE(one().flags & RST);
  expect_closed(close_reason::idle_timeout);
  EXPECT_EQ(st->stats().resets(reset_reason::idle_timeout), 1u);
  (void)c;
}

TEST_F(closing, acked_data_of_ours_keeps_the_idle_timer_alive) {
  cfg.idle_timeout_ms = 10'000;
  start();
  auto c = establish();
  for (uint32_t i = 1; i <= 4; ++i) {  // a slow download: the client only ACKs what we send
    advance_ms(4000);
    ASSERT_EQ(st->send(c, bytes(100)), 100u);
    drain();
    ASSERT_EQ(cseg(ACK, 0, 100 * i), drop::none);
  }
  EXPECT_EQ(st->stats().active.get(), 1u);
  EXPECT_TRUE(app.closed.empty());
  advance_ms(10'001);
  expect_closed(close_reason::idle_timeout);
}

// RST at exactly rcv_nxt closes the connection in each synchronized state.
TEST_F(closing, rst_in_each_state) {
  start();
  struct step {
    const char* name;
    std::function<void(conn_handle)> to_state;
    uint32_t rst_seq_off;
  };
  auto fin_from_peer = [&](conn_handle) { ASSERT_EQ(cseg(ACK | FIN, 0, 0), drop::none); };
  std::vector<step> steps{
      {"established", [](conn_handle) {}, 0},
      {"close_wait", fin_from_peer, 1},
      {"last_ack",
       [&](conn_handle c) {
         fin_from_peer(c);
         st->shutdown_write(c);
       },
       1},
      {"fin_wait_1", [&](conn_handle c) { st->shutdown_write(c); }, 0},
      {"fin_wait_2",
       [&](conn_handle c) {
         st->shutdown_write(c);
         ASSERT_EQ(cseg(ACK, 0, 1), drop::none);
       },
       0},
      {"closing",
       [&](conn_handle c) {
         st->shutdown_write(c);
         fin_from_peer(c);
       },
       1},
  };
  uint16_t port = 41000;
  for (auto& s : steps) {
    SCOPED_TRACE(s.name);
    b.sport = port++;
    app.closed.clear();
    auto c = establish();
    s.to_state(c);
    drain();
    EXPECT_EQ(cseg(RST, s.rst_seq_off, 0), drop::none);
    EXPECT_TRUE(drain().empty());  // no reply to a RST
    // After shutdown_write the app still owns the handle, so it hears of the reset too.
    ASSERT_EQ(app.closed.size(), 1u);
    EXPECT_EQ(app.closed[0].second, close_reason::peer_reset);
    EXPECT_EQ(st->stats().active.get(), 0u);
  }
}

TEST_F(closing, rst_in_window_gets_challenge_ack) {
  start();
  establish();
  EXPECT_EQ(cseg(RST, 100, 0), drop::tcp_rst_challenged);  // RFC 5961 §3.2
  auto a = one();
  EXPECT_EQ(a.flags, ACK);
  EXPECT_EQ(a.seq, siss + 1);
  EXPECT_EQ(a.ack, cisn + 1);
  EXPECT_EQ(st->stats().challenge_acks.get(), 1u);
  EXPECT_TRUE(app.closed.empty());
  EXPECT_EQ(cseg(RST, 1u << 30, 0), drop::tcp_rst_out_of_window);
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(st->stats().active.get(), 1u);
}

TEST_F(closing, syn_on_established_gets_challenge_ack) {
  start();
  establish();
  EXPECT_EQ(inject(SYN, cisn + 5000, 0, {}, opt_ts(++tsv, 0)),
            drop::tcp_syn_challenged);  // RFC 5961 §4
  auto a = one();
  EXPECT_EQ(a.flags, ACK);
  EXPECT_EQ(a.ack, cisn + 1);
  EXPECT_EQ(st->stats().active.get(), 1u);
  EXPECT_TRUE(app.closed.empty());
}

// Issue 10: the limit is per connection first (one per invalid_ack_interval_ms), then a
// randomised worker budget (side_channel_test.cc); a worker-wide count alone was CVE-2016-5696.
TEST_F(closing, challenge_acks_are_rate_limited) {
  cfg.challenge_acks_per_s = 3;
  start();
  establish();
  for (int i = 0; i < 10; ++i) cseg(RST, 100, 0);
  EXPECT_EQ(drain().size(), 1u);
  EXPECT_EQ(drops(drop::tcp_challenge_limited), 9u);
  advance_ms(1000);
  cseg(RST, 100, 0);
  EXPECT_EQ(drain().size(), 1u);
}

TEST_F(closing, new_syn_reuses_a_time_wait_tuple) {
  cfg.time_wait_ms = 60'000;
  start();
  auto c = establish();
  st->shutdown_write(c);
  drain();
  ASSERT_EQ(cseg(ACK | FIN, 0, 1), drop::none);
  drain();
  ASSERT_EQ(st->stats().active.get(), 1u);
  // An old duplicate SYN is not a new connection; one beyond the old sequence space is.
  EXPECT_EQ(inject(SYN, cisn, 0, {}, opt_ts(++tsv, 0)), drop::tcp_time_wait);
  cisn += 100'000;
  EXPECT_EQ(inject(SYN, cisn, 0, {}, opt_ts(++tsv, 0)), drop::none);
  EXPECT_EQ(one().flags, SYN | ACK);
  EXPECT_EQ(st->stats().active.get(), 1u);
}

TEST_F(closing, full_pool_recycles_oldest_time_wait) {
  cfg.max_connections = 2;
  cfg.time_wait_ms = 60'000;
  start();
  for (uint16_t port : {41000, 41001}) {
    b.sport = port;
    auto c = establish();
    st->shutdown_write(c);
    drain();
    ASSERT_EQ(cseg(ACK | FIN, 0, 1), drop::none);  // -> TIME_WAIT
    drain();
  }
  ASSERT_EQ(st->stats().active.get(), 2u);
  b.sport = 41002;
  EXPECT_EQ(inject(SYN, cisn, 0), drop::none);
  EXPECT_EQ(one().flags, SYN | ACK);
  EXPECT_EQ(st->stats().time_wait_recycled.get(), 1u);
  EXPECT_EQ(st->stats().active.get(), 2u);
  // The oldest (port 41000) went: its FIN retransmission now finds no connection.
  b.sport = 41000;
  EXPECT_EQ(cseg(ACK | FIN, 0, 1), drop::tcp_no_connection);
  EXPECT_TRUE(one().flags & RST);
  b.sport = 41001;
  EXPECT_EQ(cseg(ACK | FIN, 0, 1), drop::none);  // still in TIME_WAIT: ACKed
  EXPECT_EQ(one().flags, ACK);
}

TEST_F(closing, app_abort_and_close_with_unread_data_reset) {
  start();
  auto c1 = establish();
  st->abort(c1);
  auto r = one();
  EXPECT_TRUE(r.flags & RST);
  EXPECT_EQ(r.seq, siss + 1);
  EXPECT_EQ(st->stats().resets(reset_reason::app_abort), 1u);
  EXPECT_TRUE(app.closed.empty());        // the app knows
  EXPECT_EQ(st->send(c1, bytes(1)), 0u);  // stale handle

  b.sport = 40001;
  auto c2 = establish();
  ASSERT_EQ(cseg(ACK, 0, 0, bytes(10)), drop::none);
  st->close(c2);
  EXPECT_TRUE(drain().back().flags & RST);
  EXPECT_EQ(st->stats().resets(reset_reason::close_unread), 1u);
  EXPECT_EQ(st->stats().active.get(), 0u);
}

TEST_F(closing, data_after_close_resets) {
  start();
  auto c = establish();
  st->close(c);  // FIN_WAIT_1, the app will not read
  drain();
  EXPECT_EQ(cseg(ACK, 0, 1, bytes(10)), drop::none);
  EXPECT_TRUE(one().flags & RST);
  EXPECT_EQ(st->stats().resets(reset_reason::data_after_close), 1u);
  EXPECT_EQ(st->stats().active.get(), 0u);
}

// An answer sent while the peer is still sending (an error to a request whose body is on its way):
// close_lingering() drops the unread bytes and whatever comes for linger_ms, ACKing it, so the
// answer and the FIN reach the peer rather than a RST that makes it discard them. After linger_ms
// data draws the RST that close() gives at once.
TEST_F(closing, a_lingering_close_takes_and_drops_data_then_resets) {
  cfg.linger_ms = 2000;
  start();
  auto c = establish();
  ASSERT_EQ(cseg(ACK, 0, 0, bytes(1000)), drop::none);
  ASSERT_EQ(st->send(c, bytes(100)), 100u);  // the answer
  st->close_lingering(c);
  auto out = drain();
  ASSERT_FALSE(out.empty());
  for (const auto& o : out) EXPECT_FALSE(o.flags & RST) << "unread bytes do not reset";
  EXPECT_TRUE(out.back().flags & FIN);
  uint32_t sent = 0;
  for (const auto& o : out) sent += uint32_t(o.payload.size());
  EXPECT_EQ(sent, 100u) << "the answer went out before the FIN";
  // The rest of the body: taken and ACKed, with the window open, never a RST.
  uint32_t off = 1000;
  seg_out last;
  for (int i = 0; i < 20; ++i, off += 1000) {
    ASSERT_EQ(cseg(ACK, off, 0, bytes(1000)), drop::none);
    advance_ms(50);  // past the delayed ACK
    for (auto& o : drain()) {
      EXPECT_FALSE(o.flags & RST) << "segment " << i;
      last = o;
    }
  }
  EXPECT_EQ(last.ack, cisn + 1 + off) << "every byte ACKed";
  EXPECT_GE(last.win, 16384u / 2) << "the window stays open: nothing is kept";
  EXPECT_EQ(st->stats().linger_discarded.get(), 20u);
  EXPECT_EQ(st->stats().resets(reset_reason::data_after_close), 0u);
  // Past linger_ms (20 x 50 ms + 50 already; 1 s more): data now resets.
  advance_ms(1000);
  drain();
  ASSERT_EQ(cseg(ACK, off, 0, bytes(10)), drop::none);
  EXPECT_TRUE(drain().back().flags & RST);
  EXPECT_EQ(st->stats().resets(reset_reason::data_after_close), 1u);
}

TEST_F(closing, stale_handles_are_harmless) {
  cfg.max_connections = 1;
  start();
  auto c1 = establish();
  st->abort(c1);
  drain();
  b.sport = 40001;
  auto c2 = establish();
  EXPECT_EQ(c1.index, c2.index);  // same slot, new generation
  EXPECT_NE(c1.gen, c2.gen);
  EXPECT_EQ(st->send(c1, bytes(5)), 0u);
  st->close(c1);
  st->abort(c1);
  EXPECT_EQ(st->info(c1), nullptr);
  EXPECT_TRUE(drain().empty());
  EXPECT_NE(st->info(c2), nullptr);
  EXPECT_EQ(st->send(c2, bytes(5)), 5u);
}

uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, rss = 0;
  f >> size >> rss;
  return rss * 4096;
}

// Memory per idle connection: sizeof(tcb) + flow table share is what an established connection
// that moved no data touches; buffer pages are backed on first use.
TEST_F(closing, memory_per_idle_connection) {
  cfg.max_connections = 4000;
  cfg.snd_buf = cfg.rcv_buf = 16384;
  const uint64_t before = rss_bytes();  // includes the TCB array and flow table made by start()
  start();
  for (uint32_t i = 0; i < 4000; ++i) {
    b.sport = uint16_t(20000 + i % 40000);
    b.from(("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1)).c_str());
    establish();
    drain();
  }
  const uint64_t after = rss_bytes();
  const double per_conn = double(after - before) / 4000;
  const size_t bound = l4::tcp::stack::bytes_per_connection(cfg);
  std::printf(
      "idle connection: %.0f bytes RSS measured, %zu bytes bound (tcb + 2 x 16 KiB + flow)\n",
      per_conn, bound);
  EXPECT_EQ(st->stats().active.get(), 4000u);
  EXPECT_LT(per_conn, double(bound));
}

// Stopping the appliance: open_connections counts what is still to drain (TIME_WAIT aside), and
// abort_all resets each of those, the app's and those it closed with data still queued, with
// reason shutdown and no further events.
TEST_F(closing, abort_all_resets_every_open_connection_but_time_wait) {
  cfg.time_wait_ms = 1000;
  start();
  b.sport = 40000;
  establish();  // held by the app, idle
  b.sport = 40001;
  auto closed_with_data = establish();
  // Closed by the app with data the peer has not acknowledged yet: FIN_WAIT_1, still to drain.
  ASSERT_EQ(st->send(closed_with_data, bytes(100)), 100u);
  st->close(closed_with_data);
  drain();
  // In TIME_WAIT: we close, the peer ACKs our FIN and sends its own.
  b.sport = 40002;
  auto waiting = establish();
  st->shutdown_write(waiting);
  drain();
  ASSERT_EQ(cseg(ACK, 0, 1), drop::none);
  ASSERT_EQ(cseg(ACK | FIN, 0, 1), drop::none);
  drain();
  EXPECT_EQ(st->stats().active.get(), 3u);
  EXPECT_EQ(st->open_connections(), 2u);
  const size_t closed_events = app.closed.size();
  EXPECT_EQ(st->abort_all(), 2u);
  auto out = drain();
  ASSERT_EQ(out.size(), 2u);
  for (const auto& o : out) EXPECT_EQ(o.flags & RST, RST);
  EXPECT_EQ(st->stats().resets(reset_reason::shutdown), 2u);
  EXPECT_EQ(app.closed.size(), closed_events);  // as abort(): no callbacks
  EXPECT_EQ(st->open_connections(), 0u);
  EXPECT_EQ(st->stats().active.get(), 1u);  // the TIME_WAIT one stays
}

}  // namespace
}  // namespace tcp_test

EDGE_TEST_MAIN_WITH_EAL()
