// Loss recovery of the send side: the send map (one record per transmitted range), RACK-TLP loss
// detection (RFC 8985) including lost retransmissions and tail losses, SACK recovery bounded by
// the pipe (RFC 6675), NewReno without SACK (RFC 6582) and the congestion window (RFC 5681).
#include <rte_tcp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine.hh"

namespace l4::tcp {
namespace {

constexpr uint8_t f_fin = RTE_TCP_FIN_FLAG, f_psh = RTE_TCP_PSH_FLAG, f_ack = RTE_TCP_ACK_FLAG;

// RFC 8985 RACK_sent_after: transmit time first, sequence as the tie-break.
bool sent_after(uint32_t t1, uint32_t seq1, uint32_t t2, uint32_t seq2) {
  const int32_t d = static_cast<int32_t>(t1 - t2);
  return d > 0 || (d == 0 && seq_gt(seq1, seq2));
}

// RFC 8985 §7.2: a lone segment may wait for the peer's delayed ACK (worst case 200 ms); with
// more in flight the probe waits 2 SRTT plus Linux's 2 ms of timer slack.
constexpr uint32_t wc_delack_us = 200'000;
constexpr uint32_t pto_slack_us = 2'000;

// RFC 9438 §5: C = 0.4 segments/s^3, β = 0.7; α = 3(1 - β)/(1 + β) for the Reno-friendly estimate.
constexpr double cubic_c = 0.4, cubic_beta = 0.7,
                 cubic_alpha = 3 * (1 - cubic_beta) / (1 + cubic_beta);

}  // namespace

void engine::map_append(tcb& t, uint32_t start, uint32_t end, uint8_t flags) {
  if (t.map_head + t.map_n == map_cap_) {
    if (t.map_head > 0) {
      std::memmove(t.map, t.map + t.map_head, t.map_n * sizeof(sent_seg));
      t.map_head = 0;
    } else {
      // Full (many small writes in flight): the last record absorbs the range. Its older bytes
      // then look as recent as the new ones, which only delays RACK; the RTO still covers them.
      sent_seg& last = t.seg(t.map_n - 1);
      last.end = end;
      last.xmit_us = now32();
      last.flags = static_cast<uint8_t>((last.flags & seg_lost) | flags);
      ctr_.send_map_merges.add();
      return;
    }
  }
  t.map[t.map_head + t.map_n++] = sent_seg{start, end, now32(), flags};
}

bool engine::map_split(tcb& t, uint32_t i, uint32_t at) {
  if (t.map_head + t.map_n == map_cap_) {
    if (t.map_head == 0) return false;
    std::memmove(t.map, t.map + t.map_head, t.map_n * sizeof(sent_seg));
    t.map_head = 0;
  }
  sent_seg* base = t.map + t.map_head;
  std::memmove(base + i + 1, base + i, (t.map_n - i) * sizeof(sent_seg));
  ++t.map_n;
  base[i].end = at;
  base[i + 1].start = at;
  return true;
}

void engine::map_ack(tcb& t, uint32_t ack) {
  while (t.map_n > 0 && seq_leq(t.seg(0).end, ack)) {
    const sent_seg r = t.seg(0);
    ++t.map_head;
    --t.map_n;
    if ((r.flags & seg_sacked) == 0) rack_advance(t, r);
  }
  if (t.map_n == 0)
    t.map_head = 0;
  else if (seq_lt(t.seg(0).start, ack))
    t.seg(0).start = ack;
  if (seq_gt(ack, t.fack)) t.fack = ack;
}

uint32_t engine::map_sack(tcb& t, seq_range b) {
  uint32_t newly = 0;
  for (uint32_t i = 0; i < t.map_n; ++i) {
    if (seq_leq(t.seg(i).end, b.start)) continue;
    if (seq_geq(t.seg(i).start, b.end)) break;
    if (t.seg(i).flags & seg_sacked) continue;
    // Split a partly covered record; with no room it stays unSACKed (at worst resent).
    if (seq_lt(t.seg(i).start, b.start)) {
      map_split(t, i, b.start);
      continue;
    }
    if (seq_gt(t.seg(i).end, b.end) && !map_split(t, i, b.end)) break;
    sent_seg& r = t.seg(i);
    r.flags = static_cast<uint8_t>((r.flags | seg_sacked) & ~seg_lost);
    newly += r.len();
    rack_advance(t, r);
  }
  if (seq_gt(b.end, t.fack)) t.fack = b.end;
  return newly;
}

void engine::map_mark_all_lost(tcb& t, bool forget_sacks) {
  for (uint32_t i = 0; i < t.map_n; ++i) {
    sent_seg& r = t.seg(i);
    if (forget_sacks) r.flags = static_cast<uint8_t>(r.flags & ~seg_sacked);
    if ((r.flags & seg_sacked) == 0) r.flags |= seg_lost;
  }
}

void engine::mark_first_lost(tcb& t) {
  for (uint32_t i = 0; i < t.map_n; ++i) {
    sent_seg& r = t.seg(i);
    if (r.flags & seg_sacked) continue;
    r.flags |= seg_lost;
    return;
  }
}

// RFC 8985 §6.2 step 2: a delivered record advances RACK if it was sent after the one that did
// before. A retransmitted record whose RTT is below the path's minimum was probably delivered by
// its original transmission, so it says nothing about the retransmission's time.
void engine::rack_advance(tcb& t, const sent_seg& r) {
  const uint32_t rtt = now32() - r.xmit_us;
  if (r.flags & seg_rexmit) {
    if (rtt < t.min_rtt_us) return;
  } else {
    t.min_rtt_us = std::min(t.min_rtt_us, rtt);
    // An original transmission delivered below what the peer already held: the path reorders.
    if (seq_lt(r.end, t.fack)) t.reord_seen = true;
  }
  t.rack_rtt_us = rtt;
  if (!t.rack_valid || sent_after(r.xmit_us, r.end, t.rack_xmit_us, t.rack_end)) {
    t.rack_xmit_us = r.xmit_us;
    t.rack_end = r.end;
    t.rack_valid = true;
  }
}

// RFC 8985 §6.2 step 4, without the D-SACK driven growth: no reordering window while
// recovering or once DupThresh segments are SACKed on a path never seen to reorder.
uint32_t engine::rack_reo_wnd(const tcb& t) const {
  if (!t.reord_seen) {
    if (t.in_recovery || seq_lt(t.snd_una, t.recover)) return 0;
    uint32_t sacked = 0;
    for (uint32_t i = 0; i < t.map_n; ++i)
      if (const sent_seg& r = t.map[t.map_head + i]; r.flags & seg_sacked) sacked += r.len();
    if (sacked >= 3u * t.mss) return 0;
  }
  if (t.min_rtt_us == UINT32_MAX) return 0;
  const uint32_t quarter = t.min_rtt_us / 4;
  return t.srtt_us >= 0 ? std::min<uint32_t>(quarter, static_cast<uint32_t>(t.srtt_us)) : quarter;
}

// RFC 8985 §6.2 step 5: every record sent before the most recently delivered one is lost once
// an RTT plus the reordering window passed since it went out; the others arm the reorder timer.
// A retransmission counts like any transmission, so a lost retransmission is found the same way.
bool engine::rack_detect_loss(tcb& t) {
  t.t_reo = 0;
  if (!t.rack_valid || !t.info.sack) return false;
  const uint32_t reo = rack_reo_wnd(t), now = now32();
  int32_t wait = 0;
  bool lost = false;
  for (uint32_t i = 0; i < t.map_n; ++i) {
    sent_seg& r = t.seg(i);
    if (r.flags & (seg_sacked | seg_lost)) continue;
    if (sent_after(r.xmit_us, r.end, t.rack_xmit_us, t.rack_end)) continue;
    const int32_t remaining = static_cast<int32_t>(r.xmit_us + t.rack_rtt_us + reo - now);
    if (remaining <= 0) {
      r.flags |= seg_lost;
      lost = true;
      ctr_.rack_marked_lost.add();
      if (r.flags & seg_rexmit) ctr_.lost_retransmits.add();
    } else {
      wait = std::max(wait, remaining);
    }
  }
  if (wait > 0) t.t_reo = now_ + std::max<uint64_t>(us(static_cast<uint32_t>(wait)), 1);
  return lost;
}

uint32_t engine::pipe(const tcb& t) const {
  uint32_t n = 0;
  for (uint32_t i = 0; i < t.map_n; ++i)
    if (const sent_seg& r = t.map[t.map_head + i]; (r.flags & (seg_sacked | seg_lost)) == 0)
      n += r.len();
  return n;
}

bool engine::retransmit_seg(tcb& t, uint32_t i) {
  const sent_seg r = t.seg(i);
  const bool fin = t.fin_sent() && r.end == t.data_end() + 1;
  const uint32_t dend = fin ? r.end - 1 : r.end;
  uint32_t seq = r.start;
  do {
    const uint32_t len = seq_lt(seq, dend) ? std::min<uint32_t>(dend - seq, seg_room(t)) : 0;
    const uint8_t flags = static_cast<uint8_t>(f_ack | ((fin && seq + len == dend) ? f_fin : 0));
    if (len == 0 && (flags & f_fin) == 0) break;
    if (!send_segment(t, seq, len, flags, tx_kind::retransmit)) return false;
    seq += len;
  } while (seq_lt(seq, dend));
  sent_seg& w = t.seg(i);
  w.xmit_us = now32();
  w.flags = static_cast<uint8_t>((w.flags & ~seg_lost) | seg_rexmit);
  return true;
}

// RFC 6675 NextSeg rule 1: lost records, lowest first, while the congestion window has room.
// The first retransmission of a recovery goes out regardless (fast retransmit).
bool engine::retransmit_lost(tcb& t, uint32_t& budget) {
  bool sent = false;
  for (uint32_t i = 0; i < t.map_n; ++i) {
    const sent_seg r = t.seg(i);
    if ((r.flags & (seg_lost | seg_sacked)) != seg_lost) continue;
    if (seq_geq(r.start, t.snd_una + t.snd_wnd)) break;
    const uint32_t len = r.len();
    if (!t.fast_rexmit_due && budget < std::min<uint32_t>(len, t.mss)) break;
    if (!retransmit_seg(t, i)) break;
    t.fast_rexmit_due = false;
    budget = budget > len ? budget - len : 0;
    sent = true;
  }
  return sent;
}

// The multiplicative decrease on a congestion event (fast recovery, a probe that repaired a loss,
// the first RTO). NewReno: half of `flight` (RFC 5681 (4)). CUBIC: 0.7 of the window, which is
// remembered as w_max (lowered further when it was still below the last one: fast convergence,
// RFC 9438 §4.7); the next congestion-avoidance ACK starts a new epoch.
uint32_t engine::loss_ssthresh(tcb& t, uint32_t flight) {
  if (cfg_.cc == congestion::cubic) {
    const uint32_t w = t.cwnd;
    t.cubic_wmax = w < t.cubic_wmax ? static_cast<uint32_t>(w * (1 + cubic_beta) / 2) : w;
    t.cubic_epoch = 0;
    return std::max<uint32_t>(static_cast<uint32_t>(w * cubic_beta), 2u * t.mss);
  }
  return std::max<uint32_t>(flight / 2, 2u * t.mss);
}

// RFC 9438 §4.2-4.4: the target is W_cubic(t + RTT) = C (t + RTT - K)^3 + w_max (segments),
// clamped to [cwnd, 1.5 cwnd]; the window moves a fraction (target - cwnd) / cwnd of it per ACK,
// unless the Reno-friendly estimate (W_est += α · acked / cwnd segments per ACK, §4.3) is above it.
void engine::cubic_ack(tcb& t, uint32_t acked) {
  const double mss = t.mss;
  // Not limited by cwnd (send buffer or peer window): the curve is not probing anything, so it
  // does not grow past twice what was in flight (Linux's tcp_is_cwnd_limited; RFC 7661).
  if (t.cwnd >= 2 * (t.snd_max - t.snd_una + acked)) {
    t.cubic_epoch = 0;
    return;
  }
  if (t.cubic_epoch == 0) {
    t.cubic_epoch = std::max<uint64_t>(now_, 1);
    t.cubic_west = t.cwnd;
    if (t.cwnd < t.cubic_wmax) {
      t.cubic_k_us =
          static_cast<uint32_t>(std::cbrt((t.cubic_wmax - t.cwnd) / mss / cubic_c) * 1e6);
      t.cubic_origin = t.cubic_wmax;
    } else {
      t.cubic_k_us = 0;
      t.cubic_origin = t.cwnd;
    }
  }
  const double rtt_s = std::max<int64_t>(t.srtt_us, 0) / 1e6;
  const double since = static_cast<double>(now_ - t.cubic_epoch) / tsc_per_ms_ / 1000;
  const double d = since + rtt_s - t.cubic_k_us / 1e6;
  const double cubic = t.cubic_origin + cubic_c * d * d * d * mss;
  const double target = std::clamp<double>(cubic, t.cwnd, 1.5 * t.cwnd);
  t.cubic_west += static_cast<uint32_t>(cubic_alpha * mss * acked / t.cwnd);
  if (t.cubic_west > target) {
    t.cwnd = std::max(t.cwnd, std::min<uint32_t>(t.cubic_west, 1u << 30));
  } else {
    t.cwnd += std::max<uint32_t>(1, static_cast<uint32_t>((target - t.cwnd) * acked / t.cwnd));
  }
}

void engine::enter_recovery(tcb& t) {
  t.ssthresh = loss_ssthresh(t, t.snd_max - t.snd_una);
  t.recover = t.snd_max;
  t.in_recovery = true;
  t.fast_rexmit_due = true;
  t.cwnd = t.ssthresh + (t.info.sack ? 0 : 3u * t.mss);
  ctr_.recoveries.add();
  ctr_.fast_retransmits.add();
}

void engine::on_new_ack(tcb& t, uint32_t acked) {
  if (t.in_recovery) {
    if (seq_geq(t.snd_una, t.recover)) {
      t.in_recovery = false;  // full ACK (RFC 6582 §3.2 step 3)
      t.fast_rexmit_due = false;
      t.cwnd = std::max<uint32_t>(t.ssthresh, t.mss);
      t.dupacks = 0;
      return;
    }
    // Partial ACK without SACK: the next segment is lost too (RFC 6582 §3.2 step 5). With SACK,
    // RACK decides from what was delivered.
    if (!t.info.sack) {
      mark_first_lost(t);
      t.fast_rexmit_due = true;
      t.cwnd = (t.cwnd > acked ? t.cwnd - acked : 0) + t.mss;
    }
    return;
  }
  t.dupacks = 0;
  if (t.cwnd < t.ssthresh) {
    t.cwnd += std::min<uint32_t>(acked, 2u * t.mss);  // RFC 3465 with L = 2
  } else if (cfg_.cc == congestion::cubic) {
    cubic_ack(t, acked);
  } else {
    t.cwnd += std::max<uint32_t>(1, static_cast<uint32_t>(uint64_t{t.mss} * acked / t.cwnd));
  }
  t.cwnd = std::min<uint32_t>(t.cwnd, 1u << 30);
}

// After an ACK's scoreboard and cumulative updates: RACK marks losses, which start a recovery
// (one per window, RFC 6582 §3.2), and the loss probe is re-armed.
void engine::after_ack(tcb& t, bool dupack_loss) {
  bool lost = rack_detect_loss(t);
  if (dupack_loss) {
    mark_first_lost(t);
    lost = true;
  }
  if (lost && !t.in_recovery && seq_gt(t.snd_una, t.recover)) enter_recovery(t);
  arm_tlp(t);
}

// RFC 8985 §7.4: a probe that resent data and was answered without a D-SACK repaired a loss,
// which gets the congestion response of a fast recovery.
void engine::tlp_on_ack(tcb& t, uint32_t ack, bool dsack) {
  if (!t.tlp_out || seq_lt(ack, t.tlp_end)) return;
  t.tlp_out = false;
  if (t.tlp_rexmit && !dsack && seq_gt(ack, t.tlp_end) && !t.in_recovery) {
    t.ssthresh = loss_ssthresh(t, t.cwnd);  // the flight is gone: halve the window
    t.cwnd = t.ssthresh;
  }
}

void engine::arm_tlp(tcb& t) {
  t.t_tlp = 0;
  // Unlike RFC 8985 §7.2, a probe is also armed in recovery: with the send buffer all in flight
  // nothing new goes out after the last retransmission, so when that one is lost no later
  // delivery shows it to RACK and only the RTO (200 ms at least) would.
  if (!t.info.sack || t.tlp_out || t.persist || t.snd_una == t.snd_max || t.srtt_us < 0 ||
      t.t_rexmit == 0)
    return;
  const uint32_t flight = t.snd_max - t.snd_una;
  const uint64_t pto_us =
      2 * static_cast<uint64_t>(t.srtt_us) + (flight <= t.mss ? wc_delack_us : pto_slack_us);
  const uint64_t at = now_ + us(pto_us);
  // A probe no earlier than the RTO adds nothing: the RTO resends the same segment.
  if (at >= t.t_rexmit) return;
  t.t_tlp = at;
}

// RFC 8985 §7.3: new data if the windows allow one segment, else the highest unSACKed record
// again (one MSS of it), so that the ACK it draws tells RACK what was lost at the tail.
void engine::tlp_fire(tcb& t) {
  t.t_tlp = 0;
  if (t.snd_una == t.snd_max || t.tlp_out || t.map_n == 0) return;
  const uint32_t off = t.snd_max - t.snd_una;
  const uint32_t avail = t.tx_len > off ? t.tx_len - off : 0;
  const uint32_t in_wnd = t.snd_wnd > off ? t.snd_wnd - off : 0;
  const uint32_t room = seg_room(t);
  const uint32_t len = std::min({avail, in_wnd, room});
  bool sent = false;
  if (len > 0) {
    const bool fin = t.fin_queued && off + len == t.tx_len;
    const uint8_t flags =
        static_cast<uint8_t>(f_ack | (len == avail ? f_psh : 0) | (fin ? f_fin : 0));
    sent = send_segment(t, t.snd_max, len, flags, tx_kind::fresh);
    t.tlp_rexmit = false;
  } else {
    uint32_t i = t.map_n;
    while (i > 0 && (t.seg(i - 1).flags & seg_sacked)) --i;
    if (i == 0) return;  // all SACKed: the cumulative ACK is on its way
    --i;
    if (t.seg(i).len() > room && map_split(t, i, t.seg(i).end - room)) ++i;
    sent = retransmit_seg(t, i);
    t.tlp_rexmit = true;
  }
  if (!sent) return;
  ctr_.loss_probes.add();
  t.tlp_out = true;
  t.tlp_end = t.snd_max;
  t.t_rexmit = 0;  // the RTO restarts after a probe
  arm_rto(t);
}

}  // namespace l4::tcp
