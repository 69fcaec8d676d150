// Segment arrival (RFC 9293 §3.10.7) with RFC 5961 (blind attacks), RFC 7323 (PAWS, timestamps),
// RFC 2018 (SACK) and SYN cookies.
#include <netinet/in.h>
#include <rte_tcp.h>

#include <algorithm>
#include <cstring>

#include "engine.hh"

namespace l4::tcp {
namespace {

// Merges `b` into the sorted, disjoint ranges `in[0..n)`, writing the result (sorted, disjoint,
// at most n + 1 ranges) to `out`; returns its length (the out-of-order receive ranges).
uint8_t merge_range(const seq_range* in, uint8_t n_in, seq_range b, seq_range* out) {
  uint8_t n = 0;
  bool placed = false;
  for (uint8_t i = 0; i < n_in; ++i) {
    const seq_range r = in[i];
    if (seq_lt(r.end, b.start)) {
      out[n++] = r;
    } else if (seq_lt(b.end, r.start)) {
      if (!placed) out[n++] = b, placed = true;
      out[n++] = r;
    } else {
      b.start = seq_min(b.start, r.start);
      b.end = seq_max(b.end, r.end);
    }
  }
  if (!placed) out[n++] = b;
  return n;
}

constexpr uint8_t f_fin = RTE_TCP_FIN_FLAG, f_syn = RTE_TCP_SYN_FLAG, f_rst = RTE_TCP_RST_FLAG,
                  f_ack = RTE_TCP_ACK_FLAG;

uint32_t get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

four_tuple tuple_of(const packet& p) {
  return {p.src, p.dst, p.sport, p.dport};
}

}  // namespace

drop engine::input(rte_mbuf* m, const packet& p) {
  ctr_.segments_in.add();
  busy_ = true;
  drop d = drop::none;
  if (p.proto != IPPROTO_TCP || p.l4_len < 20 ||
      static_cast<uint32_t>(p.payload_off()) + p.payload_len > rte_pktmbuf_data_len(m)) {
    d = drop::tcp_not_tcp;
  } else {
    segment s;
    const uint8_t* f = rte_pktmbuf_mtod(m, const uint8_t*);
    s.th = f + p.l4_off();
    s.data = f + p.payload_off();
    s.len = p.payload_len;
    s.seq = get32(s.th + 4);
    s.ack = get32(s.th + 8);
    s.flags = s.th[13] & 0x3f;
    s.wnd = static_cast<uint16_t>(s.th[14] << 8 | s.th[15]);
    if (!parse_options(s.th + 20, p.l4_len - 20u, s.opt)) {
      d = drop::tcp_bad_options;
    } else if ((s.flags & (f_syn | f_fin)) == (f_syn | f_fin) ||
               (s.flags & (f_syn | f_rst)) == (f_syn | f_rst) || s.flags == 0) {
      d = drop::tcp_bad_flags;
    } else if (const uint32_t idx = flow_find(p.src, p.sport, p.dst, p.dport); idx != no_index) {
      d = conn_input(tcbs_[idx], m, p, s);
    } else if (const listener* l = find_listener(p.dst, p.dport)) {
      d = listen_input(m, p, s, *l);
    } else {
      d = drop::tcp_no_listener;
      send_rst_reply(p, m, s, reset_reason::no_listener);
    }
  }
  if (d != drop::none) ctr_.drops.add(d);
  rte_pktmbuf_free(m);
  busy_ = false;
  reap();
  return d;
}

drop engine::icmp_error(rte_mbuf* m, const packet& p) {
  busy_ = true;
  const drop d = path_mtu(m, p);
  if (d != drop::none) ctr_.drops.add(d);
  rte_pktmbuf_free(m);
  busy_ = false;
  reap();
  return d;
}

// Path MTU discovery (RFC 1191 / RFC 8201) for the connection an ICMP error quotes. The quoted
// packet is one we sent: its source is our address and port, its sequence number must be of
// data in flight (RFC 5927 §4.1), or anyone who can guess a 4-tuple could shrink our segments.
drop engine::path_mtu(const rte_mbuf* m, const packet& p) {
  const bool v6 = p.l3 == l3_kind::ipv6;
  const uint8_t type = static_cast<uint8_t>(p.sport >> 8), code = static_cast<uint8_t>(p.sport);
  if (v6 ? type != 2 : (p.proto != IPPROTO_ICMP || type != 3 || code != 4))
    return drop::tcp_icmp_unhandled;
  const uint32_t end = static_cast<uint32_t>(p.payload_off()) + p.payload_len;
  if (p.l4_len < 8 || end > rte_pktmbuf_data_len(m)) return drop::tcp_icmp_inner_bad;
  const uint8_t* f = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint8_t* icmp = f + p.l4_off();
  const uint32_t mtu = v6 ? get32(icmp + 4) : static_cast<uint32_t>(icmp[6] << 8 | icmp[7]);
  const uint8_t* in = f + p.payload_off();
  const uint32_t avail = p.payload_len;
  uint32_t l3;
  ip_addr ours, peer;
  if (!v6) {
    if (avail < 20 || (in[0] >> 4) != 4 || in[9] != IPPROTO_TCP) return drop::tcp_icmp_inner_bad;
    l3 = (in[0] & 0xfu) * 4;
    uint32_t s4, d4;
    std::memcpy(&s4, in + 12, 4);
    std::memcpy(&d4, in + 16, 4);
    ours = ip_addr::v4_from_be(s4);
    peer = ip_addr::v4_from_be(d4);
  } else {
    // Our segments carry no extension headers: anything else is not one of ours.
    if (avail < 40 || (in[0] >> 4) != 6 || in[6] != IPPROTO_TCP) return drop::tcp_icmp_inner_bad;
    l3 = 40;
    ours = ip_addr::v6_from(in + 8);
    peer = ip_addr::v6_from(in + 24);
  }
  if (l3 < 20 || avail < l3 + 8) return drop::tcp_icmp_inner_bad;  // ports and sequence number
  const uint8_t* th = in + l3;
  const uint16_t lport = static_cast<uint16_t>(th[0] << 8 | th[1]);
  const uint16_t rport = static_cast<uint16_t>(th[2] << 8 | th[3]);
  const uint32_t seq = get32(th + 4);
  const uint32_t idx = flow_find(peer, rport, ours, lport);
  if (idx == no_index) return drop::tcp_icmp_no_conn;
  tcb& t = tcbs_[idx];
  if (t.snd_una == t.snd_max || seq_lt(seq, t.snd_una) || seq_geq(seq, t.snd_max))
    return drop::tcp_icmp_bad_seq;
  // The MSS the path allows, floored (an attacker on the path could otherwise ask for tiny
  // segments): min_peer_mss for IPv4, the IPv6 minimum MTU's 1220 for IPv6.
  const uint32_t headers = (v6 ? 40u : 20u) + 20u;
  const uint32_t floor = v6 ? 1280u - headers : min_peer_mss;
  const uint32_t path = std::max(mtu > headers ? mtu - headers : 0u, floor);
  const uint32_t want = path - (t.info.timestamps ? 12u : 0u);
  if (want >= t.mss) return drop::tcp_icmp_mtu_not_lower;
  t.mss = static_cast<uint16_t>(want);
  t.info.mss = t.mss;
  ctr_.pmtu_lowered.add();
  // The segments in flight that no longer fit were dropped on the path: send them again now,
  // cut to the new size, rather than wait for the retransmission timer (RFC 1191 §6.5).
  bool any = false;
  for (uint32_t i = 0; i < t.map_n; ++i) {
    sent_seg& r = t.seg(i);
    if ((r.flags & seg_sacked) == 0 && r.len() > t.mss) {
      r.flags |= seg_lost;
      any = true;
    }
  }
  // At most one immediate resend per RTT: a run of errors each lowering the MTU a little (1499,
  // 1498, ...) would otherwise each send a window of data again. Later ones only re-mark; the ACK
  // clock resends those segments.
  if (any && now_ < t.pmtu_resend_at) {
    ctr_.pmtu_resend_deferred.add();
    any = false;
  }
  if (any) {
    t.pmtu_resend_at =
        now_ + (t.srtt_us > 0 ? us(static_cast<uint64_t>(t.srtt_us)) : ms(cfg_.rto_min_ms));
    const bool due = t.fast_rexmit_due;
    t.fast_rexmit_due = true;  // the first goes out whatever the window
    uint32_t budget = t.cwnd;
    retransmit_lost(t, budget);
    t.fast_rexmit_due = due;
  }
  return drop::none;
}

// The payload per segment we send: the peer's MSS raised to min_peer_mss (see README: below it a
// peer could make us divide by zero, wrap the 16-bit length, or send 1-byte segments), capped by
// our own, minus the timestamp option we add to every segment.
// A TSecr usable as an RTT sample: not from the future, and not older than the longest RTO. A
// peer echoing an ancient value would otherwise set SRTT to ~2^31 ms, and the loss-probe and RTO
// arithmetic (µs -> TSC) would overflow.
bool engine::ts_echo_ok(uint32_t tsecr) const {
  const uint32_t now = static_cast<uint32_t>(now_ms());
  return seq_leq(tsecr, now) && now - tsecr <= cfg_.rto_max_ms;
}

uint16_t engine::send_mss(uint16_t peer_mss, uint16_t our_mss, bool timestamps) {
  uint32_t m = peer_mss;
  if (m < min_peer_mss) {
    m = min_peer_mss;
    ctr_.peer_mss_clamped.add();
  }
  m = std::min<uint32_t>(m, our_mss);
  return static_cast<uint16_t>(m - (timestamps ? 12u : 0u));  // our_mss >= 1240 (mtu >= 1280)
}

drop engine::listen_input(rte_mbuf* m, const packet& p, const segment& s, const listener& l) {
  if (s.flags & f_rst) return drop::tcp_rst_no_conn;
  const four_tuple ft = tuple_of(p);
  const uint16_t our_mss = p.l3 == l3_kind::ipv6 ? our_mss_v6_ : our_mss_v4_;
  if ((s.flags & (f_syn | f_ack)) == f_syn) {
    ctr_.syn_received.add();
    // RFC 9293 default MSS when the option is absent.
    const uint16_t peer_mss = s.opt.mss != 0 ? s.opt.mss : (p.l3 == l3_kind::ipv6 ? 1220 : 536);
    const bool pressure = syn_received_ >= cfg_.syn_backlog;
    if (cfg_.cookies == cookie_mode::always ||
        (cfg_.cookies == cookie_mode::on_pressure && pressure)) {
      const uint8_t bits = (s.opt.has_ts && cfg_.timestamps)
                               ? syn_cookies::ts_bits(cfg_.window_scale ? s.opt.wscale : int8_t{-1},
                                                      cfg_.sack && s.opt.sack_permitted)
                               : 0;
      uint16_t mss = 0;
      const uint32_t isn = cookies_.make(ft, s.seq, peer_mss, bits, now_ms() / 1000, mss);
      // Option bits in the low bits of TSval, kept at or below the clock (Linux's rule) so that
      // later timestamps of the connection never go backwards.
      uint32_t tsval = (static_cast<uint32_t>(now_ms()) & ~cookie_ts_mask) | bits;
      if (tsval > static_cast<uint32_t>(now_ms())) tsval -= cookie_ts_mask + 1;
      send_synack_cookie(route_from(m, p), isn, s.seq, mss, s.opt, tsval);
      ctr_.cookies_sent.add();
      last_cookie_ms_ = std::max<uint64_t>(now_ms(), 1);
      return drop::none;
    }
    if (pressure) return drop::tcp_backlog_full;
    const handshake h{.irs = s.seq,
                      .iss = cookies_.isn(ft, now_us()),
                      .wscale = cfg_.window_scale ? s.opt.wscale : int8_t{-1},
                      .sack = cfg_.sack && s.opt.sack_permitted,
                      .peer_mss = peer_mss,
                      .our_mss = our_mss};
    drop d = drop::none;
    tcb* t = open_passive(m, p, s, l, h, d);
    if (t == nullptr) return d;
    t->snd_wnd = t->max_snd_wnd = s.wnd;  // SYN windows are never scaled
    t->t_state = now_ + ms(cfg_.handshake_timeout_ms);
    send_segment(*t, t->iss, 0, f_syn | f_ack, tx_kind::fresh);
    t->snd_nxt = t->iss + 1;
    schedule(*t);
    return drop::none;
  }
  // Only ACKs that can answer a cookie are checked (cookies out within their 128 s lifetime), so
  // cookies_failed counts forgeries and stale cookies, not every stray ACK.
  const bool cookies_live = cfg_.cookies == cookie_mode::always ||
                            (last_cookie_ms_ != 0 && now_ms() - last_cookie_ms_ <= 128'000);
  if ((s.flags & (f_syn | f_ack)) == f_ack && cookies_live) {
    const uint8_t bits = s.opt.has_ts ? static_cast<uint8_t>(s.opt.tsecr & cookie_ts_mask) : 0;
    const auto co = cookies_.check(ft, s.seq - 1, s.ack - 1, bits, now_ms() / 1000);
    if (!co) {
      ctr_.cookies_failed.add();
      send_rst_reply(p, m, s, reset_reason::no_connection);
      return drop::tcp_cookie_invalid;
    }
    ctr_.cookies_validated.add();
    const handshake h{.irs = s.seq - 1,
                      .iss = s.ack - 1,
                      .wscale = co->wscale,
                      .sack = co->sack,
                      .peer_mss = co->mss,
                      .our_mss = our_mss};
    drop d = drop::none;
    tcb* t = open_passive(m, p, s, l, h, d);
    if (t == nullptr) return d;
    // snd_wl1 = irs, so this ACK's window is taken.
    t->from_cookie = t->info.from_cookie = true;
    t->snd_nxt = t->snd_max = t->iss + 1;  // our SYN-ACK was the cookie
    t->rcv_adv = t->rcv_nxt + std::min<uint32_t>(cfg_.rcv_buf, 65535);
    return syn_received_input(*t, s);
  }
  send_rst_reply(p, m, s, reset_reason::no_connection);
  return drop::tcp_no_connection;
}

tcb* engine::open_passive(rte_mbuf* m, const packet& p, const segment& s, const listener& l,
                          const handshake& h, drop& d) {
  tcb* t = alloc_tcb(route_from(m, p), l.id);
  if (t == nullptr) {
    ctr_.refused.add();
    if (cfg_.on_pool_full == pool_full_action::rst)
      send_rst_reply(p, m, s, reset_reason::pool_full);
    d = drop::tcp_pool_full;
    return nullptr;
  }
  ++syn_received_;
  t->state = tcp_state::syn_received;
  t->irs = h.irs;
  t->rcv_nxt = t->rcv_read = t->last_ack_sent = h.irs + 1;
  t->iss = h.iss;
  t->snd_una = t->snd_nxt = t->snd_max = t->recover = t->fack = h.iss;
  t->info.wscale = h.wscale >= 0;
  t->snd_wscale = t->info.wscale ? static_cast<uint8_t>(h.wscale) : 0;
  t->rcv_wscale = t->info.wscale ? our_wscale_ : 0;
  t->info.snd_wscale = t->snd_wscale, t->info.rcv_wscale = t->rcv_wscale;
  t->info.sack = h.sack;
  t->info.timestamps = cfg_.timestamps && s.opt.has_ts;
  t->ts_recent = s.opt.tsval;
  t->ts_recent_tsc = now_;
  t->mss = send_mss(h.peer_mss, h.our_mss, t->info.timestamps);
  t->info.mss = t->mss;
  t->snd_wl1 = h.irs;
  t->rto_ms = cfg_.rto_initial_ms;
  return t;
}

drop engine::conn_input(tcb& t, rte_mbuf* m, const packet& p, const segment& s) {
  if (t.state == tcp_state::syn_received) return syn_received_input(t, s);
  if (t.state != tcp_state::time_wait) return synchronized_input(t, s);
  // TIME_WAIT. RSTs are ignored (RFC 1337: no assassination).
  if (s.flags & f_rst) return drop::tcp_time_wait;
  if ((s.flags & (f_syn | f_ack)) == f_syn) {
    // A new incarnation may reuse the tuple if its ISN (or timestamp) is beyond the old one.
    const bool newer = seq_gt(s.seq, t.rcv_nxt) &&
                       (!t.info.timestamps || !s.opt.has_ts || seq_gt(s.opt.tsval, t.ts_recent));
    if (!newer) return drop::tcp_time_wait;
    release(t);
    const listener* l = find_listener(p.dst, p.dport);
    return l != nullptr ? listen_input(m, p, s, *l) : drop::tcp_no_listener;
  }
  if (s.flags & f_fin) {  // our ACK of the peer's FIN was lost: ACK again, restart the timer
    send_ack(t);
    t.t_state = now_ + ms(cfg_.time_wait_ms);
    schedule(t);
    return drop::none;
  }
  return drop::tcp_time_wait;
}

drop engine::syn_received_input(tcb& t, const segment& s) {
  if (s.flags & f_rst) {
    if (s.seq == t.rcv_nxt) {
      release(t);  // the app never saw it
      return drop::none;
    }
    if (seq_gt(s.seq, t.rcv_nxt) && seq_lt(s.seq, t.rcv_adv)) {
      challenge_ack(t, drop::tcp_rst_challenged);
      return drop::tcp_rst_challenged;
    }
    return drop::tcp_rst_out_of_window;
  }
  if (s.flags & f_syn) {
    if ((s.flags & f_ack) == 0 && s.seq == t.irs) {  // our SYN-ACK was lost: send it again
      send_segment(t, t.iss, 0, f_syn | f_ack, tx_kind::retransmit);
      return drop::none;
    }
    challenge_ack(t, drop::tcp_syn_challenged);
    return drop::tcp_syn_challenged;
  }
  if ((s.flags & f_ack) == 0) return drop::tcp_no_ack;
  if (s.ack != t.iss + 1) {
    // RFC 9293: an unacceptable ACK in SYN-RECEIVED gets <SEQ=SEG.ACK><CTL=RST>.
    out_options none;
    if (rte_mbuf* r = build(t.rt, s.ack, 0, f_rst, 0, none, nullptr, 0, 0)) {
      push_tx(r);
      ctr_.resets_sent[static_cast<size_t>(reset_reason::bad_handshake_ack)].add();
    }
    return drop::tcp_bad_ack;
  }
  --syn_received_;
  t.state = tcp_state::established;
  t.snd_una = t.iss + 1;
  // The handshake's RTT seeds the RTO (RFC 6298 §2.2). Not for cookies: their TSval was bent.
  if (!t.from_cookie) {
    if (t.info.timestamps && s.opt.has_ts && ts_echo_ok(s.opt.tsecr) && t.synack_retries == 0) {
      rtt_sample(t, (static_cast<uint32_t>(now_ms()) - s.opt.tsecr) * 1000ull);
    } else if (t.rtt_timing) {
      rtt_sample(t, (now_ - t.rtt_start) * 1000 / tsc_per_ms_);
    }
  }
  t.rtt_timing = false;
  t.snd_wnd = static_cast<uint32_t>(s.wnd) << t.snd_wscale;
  t.max_snd_wnd = std::max(t.max_snd_wnd, t.snd_wnd);
  t.snd_wl1 = s.seq;
  t.snd_wl2 = s.ack;
  t.cwnd = std::min<uint32_t>(10u * t.mss, std::max<uint32_t>(2u * t.mss, 14600));  // RFC 6928
  t.ssthresh = 1u << 30;
  t.t_rexmit = 0;
  t.backoff = 0;
  t.last_rx_tsc = now_;
  t.t_state = now_ + ms(cfg_.idle_timeout_ms);
  t.accepted = true;
  if (!app_->on_accept(handle(t), t.info)) {
    t.accepted = false;
    ctr_.refused.add();
    send_rst(t, reset_reason::app_refused);
    release(t);
    return drop::tcp_app_refused;
  }
  ctr_.opened.add();
  if (t.release_pending) return drop::none;
  // The ACK may carry data and a FIN.
  return synchronized_input(t, s);
}

// An ACK answering an invalid segment (PAWS, out of window, bad ACK, challenge): at most one per
// connection per invalid_ack_interval_ms (Linux's tcp_invalid_ratelimit), so a peer cannot turn
// a flood of bad segments into a flood of ACKs.
bool engine::invalid_ack_allowed(tcb& t) {
  if (cfg_.invalid_ack_interval_ms != 0 && t.last_invalid_ack_tsc != 0 &&
      now_ - t.last_invalid_ack_tsc < ms(cfg_.invalid_ack_interval_ms)) {
    ctr_.acks_rate_limited.add();
    return false;
  }
  t.last_invalid_ack_tsc = std::max<uint64_t>(now_, 1);
  return true;
}

// RFC 5961 §7. The worker-wide budget alone was the side channel of CVE-2016-5696 (an off-path
// host exhausts it and counts the ACKs left to learn whether a guessed tuple exists): a challenge
// ACK is first limited per connection, and the per-second budget is drawn at random in
// [limit/2, 3*limit/2) as Linux does.
void engine::challenge_ack(tcb& t, drop why) {
  (void)why;
  if (!invalid_ack_allowed(t)) {
    ctr_.drops.add(drop::tcp_challenge_limited);
    return;
  }
  const uint64_t sec = now_ms() / 1000;
  if (sec != challenge_second_) {
    challenge_second_ = sec;
    const uint32_t lim = cfg_.challenge_acks_per_s;
    challenge_budget_ = lim / 2 + (lim != 0 ? static_cast<uint32_t>(next_random() % lim) : 0);
  }
  if (challenge_budget_ == 0) {
    ctr_.acks_rate_limited.add();
    ctr_.drops.add(drop::tcp_challenge_limited);
    return;
  }
  --challenge_budget_;
  ctr_.challenge_acks.add();
  send_ack(t);
}

drop engine::synchronized_input(tcb& t, const segment& s) {
  // PAWS (RFC 7323 §5.3); a ts_recent idle for 24 days is no longer trusted.
  if (t.info.timestamps && s.opt.has_ts && (s.flags & f_rst) == 0 &&
      seq_lt(s.opt.tsval, t.ts_recent) && now_ - t.ts_recent_tsc < ms(24ull * 86400 * 1000)) {
    send_invalid_ack(t);
    return drop::tcp_paws;
  }
  const uint32_t wnd = seq_gt(t.rcv_adv, t.rcv_nxt) ? t.rcv_adv - t.rcv_nxt : 0;
  if (s.flags & f_rst) {  // RFC 5961 §3.2
    if (s.seq == t.rcv_nxt) {
      notify_closed(t, close_reason::peer_reset);
      release(t);
      return drop::none;
    }
    if (seq_gt(s.seq, t.rcv_nxt) && seq_lt(s.seq, t.rcv_nxt + std::max<uint32_t>(wnd, 1))) {
      challenge_ack(t, drop::tcp_rst_challenged);
      return drop::tcp_rst_challenged;
    }
    return drop::tcp_rst_out_of_window;
  }
  if (s.flags & f_syn) {  // RFC 5961 §4: any SYN on a synchronized connection
    challenge_ack(t, drop::tcp_syn_challenged);
    return drop::tcp_syn_challenged;
  }
  if ((s.flags & f_ack) == 0) return drop::tcp_no_ack;

  // Trim to the receive window (RFC 9293 §3.10.7.4, BSD's tcp_input).
  drop result = drop::none;
  uint32_t seq = s.seq, len = s.len;
  const uint8_t* data = s.data;
  bool fin = (s.flags & f_fin) != 0;
  if (seq_lt(seq, t.rcv_nxt)) {
    const uint32_t todrop = t.rcv_nxt - seq;
    if (todrop > len || (todrop == len && !fin)) {
      // Entirely old: ACK so the peer resynchronises, and still use its ACK field.
      if (len > 0 || fin) {
        result = drop::tcp_duplicate;
        t.ack_now = true;
        if (len > 0) t.dsack = {seq, seq_min(seq + len, t.rcv_nxt)};  // RFC 2883 §4.1.1
      }
      fin = false;
      len = 0;
      seq = t.rcv_nxt;
    } else {
      t.dsack = {seq, t.rcv_nxt};  // partly duplicate: report the repeated part (RFC 2883)
      data += todrop;
      len -= todrop;
      seq = t.rcv_nxt;
    }
  }
  if (len > 0 || fin) {
    if (wnd == 0 || seq_geq(seq, t.rcv_nxt + wnd)) {
      t.ack_now = true;
      if (!(wnd == 0 && seq == t.rcv_nxt)) {
        send_invalid_ack(t);
        return drop::tcp_out_of_window;
      }
      // A zero-window probe: take its ACK field, drop its byte, answer with our window.
      result = drop::tcp_out_of_window;
      len = 0;
      fin = false;
    } else if (seq_gt(seq + len, t.rcv_nxt + wnd)) {
      len = t.rcv_nxt + wnd - seq;
      fin = false;
    }
    // The ring holds rcv_buf bytes from rcv_read; rounding of a scaled window may promise a
    // few bytes more.
    const uint32_t used = seq - t.rcv_read;  // seq >= rcv_nxt >= rcv_read here
    const uint32_t room = used < cfg_.rcv_buf ? cfg_.rcv_buf - used : 0;
    if (len > room) {
      len = room;
      fin = false;
    }
  }
  // RFC 7323 §4.3: take TSval from segments covering the last ACK we sent.
  if (t.info.timestamps && s.opt.has_ts && seq_leq(s.seq, t.last_ack_sent) &&
      seq_geq(s.opt.tsval, t.ts_recent)) {
    t.ts_recent = s.opt.tsval;
    t.ts_recent_tsc = now_;
  }
  bool window_changed = false;
  const uint32_t una_before = t.snd_una;
  if (const drop d = process_ack(t, s, window_changed); d != drop::none) return d;
  if (t.release_pending) return result;
  // The idle timer counts from the last progress: new payload or a FIN from the peer, or an ACK of
  // new data of ours. A bare ACK, a keepalive or a zero-window probe alone keeps nothing alive.
  if (len > 0 || fin || t.snd_una != una_before) t.last_rx_tsc = now_;

  bool readable = false;
  if (len > 0) {
    if (t.state == tcp_state::established || t.state == tcp_state::fin_wait_1 ||
        t.state == tcp_state::fin_wait_2) {
      if (t.app_closed && now_ >= t.linger_until) {
        t.ack_now = false;
        reset_conn(t, reset_reason::data_after_close, close_reason::data_after_close);
        return drop::none;
      }
      receive_data(t, seq, data, len, readable);
      if (t.app_closed) {  // close_lingering(): taken, ACKed and dropped
        consume(t, UINT32_MAX);
        ctr_.linger_discarded.add();
      }
    } else {
      result = drop::tcp_data_after_fin;
      t.ack_now = true;
      fin = false;
    }
  }
  if (readable && t.accepted && !t.app_closed) {
    app_->on_readable(handle(t));
    if (t.release_pending) return result;
  }
  if (fin) {
    if (seq + len == t.rcv_nxt && !t.peer_fin) {
      process_fin(t);
      if (t.release_pending) return result;
    } else {
      t.ack_now = true;  // a FIN beyond a hole: the peer sends it again
    }
  }
  output(t);
  if (!t.ack_now && t.last_ack_sent != t.rcv_nxt && t.t_delack == 0) {
    t.t_delack = now_ + ms(cfg_.delayed_ack_ms);
    schedule(t);
  }
  return result;
}

drop engine::process_ack(tcb& t, const segment& s, bool& window_changed) {
  const uint32_t ack = s.ack;
  if (seq_gt(ack, t.snd_max)) {  // ACK for data never sent
    send_invalid_ack(t);
    return drop::tcp_bad_ack;
  }
  if (seq_lt(ack, t.snd_una - std::max<uint32_t>(t.max_snd_wnd, t.mss))) {  // RFC 5961 §5.2
    challenge_ack(t, drop::tcp_bad_ack);
    return drop::tcp_bad_ack;
  }
  const uint32_t wnd = static_cast<uint32_t>(s.wnd) << t.snd_wscale;
  if (seq_lt(t.snd_wl1, s.seq) || (t.snd_wl1 == s.seq && seq_leq(t.snd_wl2, ack))) {
    window_changed = wnd != t.snd_wnd;
    t.snd_wnd = wnd;
    t.snd_wl1 = s.seq;
    t.snd_wl2 = ack;
    t.max_snd_wnd = std::max(t.max_snd_wnd, wnd);
    if (wnd > 0 && t.persist) {
      t.persist = false;
      t.t_rexmit = 0;
      t.backoff = 0;
    }
  }
  const bool dsack = update_scoreboard(t, s);
  bool dupack_loss = false;
  if (seq_gt(ack, t.snd_una)) {
    const uint32_t acked = ack - t.snd_una;
    if (t.info.timestamps && s.opt.has_ts && s.opt.tsecr != 0 && ts_echo_ok(s.opt.tsecr)) {
      rtt_sample(t, (static_cast<uint32_t>(now_ms()) - s.opt.tsecr) * 1000ull);
    } else if (t.rtt_timing && seq_gt(ack, t.rtt_seq)) {
      rtt_sample(t, (now_ - t.rtt_start) * 1000 / tsc_per_ms_);
    }
    if (t.rtt_timing && seq_gt(ack, t.rtt_seq)) t.rtt_timing = false;
    const uint32_t data_acked = std::min(acked, t.tx_len);
    const bool fin_acked = t.fin_queued && acked > t.tx_len;
    t.tx_head += data_acked;
    if (t.tx_head >= cfg_.snd_buf) t.tx_head -= cfg_.snd_buf;
    t.tx_len -= data_acked;
    t.snd_una = ack;
    t.persist_since = 0;  // the peer took data: a later zero window starts a new persist bound
    if (seq_lt(t.snd_nxt, t.snd_una)) t.snd_nxt = t.snd_una;
    map_ack(t, ack);
    t.backoff = 0;
    if (!t.persist) {
      t.t_rexmit = 0;
      if (t.snd_una != t.snd_max) arm_rto(t);  // RFC 6298 (5.3)
    }
    tlp_on_ack(t, ack, dsack);
    on_new_ack(t, acked);
    if (data_acked > 0 && t.app_want_write && t.accepted && !t.app_closed && !t.fin_queued) {
      t.app_want_write = false;
      app_->on_writable(handle(t));
      if (t.release_pending) return drop::none;
    }
    if (fin_acked) {
      if (t.state == tcp_state::fin_wait_1) {
        t.state = tcp_state::fin_wait_2;
      } else if (t.state == tcp_state::closing) {
        enter_time_wait(t);
      } else if (t.state == tcp_state::last_ack) {
        notify_closed(t, close_reason::normal);
        release(t);
      }
    }
  } else if (ack == t.snd_una && s.len == 0 && (s.flags & f_fin) == 0 && !window_changed &&
             t.snd_max != t.snd_una && t.snd_wnd != 0 && !t.persist) {
    // Duplicate ACK (RFC 5681 §2); three start fast retransmit unless a recovery for this
    // window already ran (RFC 6582 §3.2 step 2). With SACK, RACK usually decides first.
    ++t.dupacks;
    // Early retransmit (RFC 5827): with fewer than four segments out and nothing new to send,
    // three duplicate ACKs can never come; one fewer than the segments outstanding will do.
    uint32_t thresh = 3;
    const uint32_t outstanding = t.snd_max - t.snd_una;
    if (t.tx_len <= outstanding || t.snd_wnd <= outstanding) {
      const uint32_t segs = (outstanding + t.mss - 1) / t.mss;
      if (segs < 4) thresh = std::max<uint32_t>(1, segs - 1);
    }
    if (!t.in_recovery && t.dupacks >= thresh && seq_gt(t.snd_una, t.recover)) {
      dupack_loss = true;
    } else if (t.in_recovery && !t.info.sack) {
      t.cwnd += t.mss;  // NewReno inflation
    }
  }
  if (t.release_pending || t.state == tcp_state::time_wait) return drop::none;
  after_ack(t, dupack_loss);
  return drop::none;
}

// Applies the peer's SACK blocks to the send map, lowest first so that the reordering check
// compares each newly SACKed record with what the peer held before. Returns whether the first
// block reports a duplicate (D-SACK, RFC 2883 §4).
bool engine::update_scoreboard(tcb& t, const segment& s) {
  if (!t.info.sack || s.opt.n_sack == 0) return false;
  const seq_range& b0 = s.opt.sack[0];
  const bool dsack =
      seq_leq(b0.end, s.ack) || (s.opt.n_sack > 1 && seq_geq(b0.start, s.opt.sack[1].start) &&
                                 seq_leq(b0.end, s.opt.sack[1].end));
  seq_range blocks[4];
  const uint8_t n = std::min<uint8_t>(s.opt.n_sack, 4);
  for (uint8_t k = 0; k < n; ++k) {  // insertion sort of at most four blocks
    uint8_t j = k;
    for (; j > 0 && seq_lt(s.opt.sack[k].start, blocks[j - 1].start); --j)
      blocks[j] = blocks[j - 1];
    blocks[j] = s.opt.sack[k];
  }
  for (uint8_t k = 0; k < n; ++k) {
    seq_range b = blocks[k];
    if (!seq_lt(b.start, b.end) || seq_gt(b.end, t.snd_max) || seq_leq(b.end, s.ack) ||
        seq_leq(b.end, t.snd_una))
      continue;  // bogus, or a D-SACK below the cumulative ACK
    if (seq_lt(b.start, t.snd_una)) b.start = t.snd_una;
    map_sack(t, b);
  }
  return dsack;
}

void engine::receive_data(tcb& t, uint32_t seq, const uint8_t* data, uint32_t len, bool& readable) {
  uint32_t pos = t.rx_head + (seq - t.rcv_read);
  if (pos >= cfg_.rcv_buf) pos -= cfg_.rcv_buf;
  const uint32_t first = std::min(len, cfg_.rcv_buf - pos);
  std::memcpy(t.rx + pos, data, first);
  std::memcpy(t.rx, data + first, len - first);
  if (seq == t.rcv_nxt) {
    t.rcv_nxt += len;
    const bool filled = t.n_ooo > 0;
    uint8_t k = 0;
    while (k < t.n_ooo && seq_leq(t.ooo[k].start, t.rcv_nxt)) {
      t.rcv_nxt = seq_max(t.rcv_nxt, t.ooo[k].end);
      ++k;
    }
    if (k > 0) {
      std::copy(t.ooo + k, t.ooo + t.n_ooo, t.ooo);
      t.n_ooo = static_cast<uint8_t>(t.n_ooo - k);
    }
    readable = true;
    // RFC 5681 §4.2: ACK at once when a gap fills, and at least every second segment.
    if (filled || ++t.unacked_segs >= 2) t.ack_now = true;
    return;
  }
  bool dropped = false;
  insert_ooo(t, seq, len, dropped);
  if (dropped) {
    ctr_.drops.add(drop::tcp_ooo_full);
  } else {
    ctr_.ooo_segments.add();
    t.last_ooo_seq = seq;
  }
  t.ack_now = true;  // duplicate ACK with SACK, so the sender learns of the hole
}

void engine::insert_ooo(tcb& t, uint32_t seq, uint32_t len, bool& dropped) {
  seq_range out[max_ooo_ranges + 1];
  const uint8_t n = merge_range(t.ooo, t.n_ooo, seq_range{seq, seq + len}, out);
  if (n > std::min<uint8_t>(cfg_.ooo_max_ranges, max_ooo_ranges)) {
    dropped = true;
    return;
  }
  std::copy_n(out, n, t.ooo);
  t.n_ooo = n;
}

void engine::process_fin(tcb& t) {
  t.rcv_nxt += 1;
  t.peer_fin = true;
  t.ack_now = true;
  switch (t.state) {
    case tcp_state::established:
      t.state = tcp_state::close_wait;
      if (t.accepted && !t.app_closed) app_->on_peer_fin(handle(t));
      break;
    case tcp_state::fin_wait_1:
      // Our FIN not yet acknowledged: simultaneous close.
      t.state = tcp_state::closing;
      break;
    case tcp_state::fin_wait_2:
      enter_time_wait(t);
      break;
    default:
      break;
  }
}

void engine::enter_time_wait(tcb& t) {
  t.state = tcp_state::time_wait;
  t.t_rexmit = t.t_reo = t.t_tlp = 0;
  t.persist = false;
  t.t_delack = 0;
  t.t_state = now_ + ms(cfg_.time_wait_ms);
  tw_append(t);
  notify_closed(t, close_reason::normal);
  schedule(t);
}

}  // namespace l4::tcp
