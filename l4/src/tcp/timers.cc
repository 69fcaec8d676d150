// The per-worker timer wheel (1 ms slots, one entry per TCB at its earliest deadline) and what
// each timer does: retransmission (RFC 6298), RACK reordering window and tail loss probe
// (RFC 8985), SYN-ACK retries, zero-window probes, delayed ACKs, handshake / idle / FIN-wait /
// TIME_WAIT expiry, and the persist bound.
#include <rte_tcp.h>

#include <algorithm>

#include "engine.hh"

namespace l4::tcp {

void engine::wheel_unlink(tcb& t) {
  if (t.wheel_slot == no_index) return;
  if (t.wheel_prev != no_index)
    tcbs_[t.wheel_prev].wheel_next = t.wheel_next;
  else
    wheel_[t.wheel_slot] = t.wheel_next;
  if (t.wheel_next != no_index) tcbs_[t.wheel_next].wheel_prev = t.wheel_prev;
  t.wheel_prev = t.wheel_next = no_index;
  t.wheel_slot = no_index;
}

void engine::wheel_link(tcb& t, uint32_t slot) {
  const uint32_t idx = index_of(t);
  t.wheel_slot = slot;
  t.wheel_prev = no_index;
  t.wheel_next = wheel_[slot];
  if (t.wheel_next != no_index) tcbs_[t.wheel_next].wheel_prev = idx;
  wheel_[slot] = idx;
}

void engine::schedule(tcb& t) {
  if (t.release_pending) return;
  uint64_t at = 0;
  for (uint64_t d : {t.t_rexmit, t.t_delack, t.t_state, t.t_reo, t.t_tlp})
    if (d != 0 && (at == 0 || d < at)) at = d;
  if (at == t.wheel_at && t.wheel_slot != no_index) return;
  wheel_unlink(t);
  t.wheel_at = at;
  if (at == 0) return;
  // A deadline in the past or in this tick fires on the next tick; one beyond the wheel's span
  // goes round and is re-queued when its slot comes up early.
  const uint64_t tick = std::max<uint64_t>(at / tsc_per_ms_, wheel_tick_ + 1);
  wheel_link(t, static_cast<uint32_t>(tick % wheel_slots));
}

void engine::arm_rto(tcb& t) {
  const uint64_t rto =
      std::min<uint64_t>(uint64_t{t.rto_ms} << std::min<uint8_t>(t.backoff, 20), cfg_.rto_max_ms);
  t.t_rexmit = now_ + ms(rto);
}

void engine::poll(uint64_t now_tsc) {
  if (now_tsc > now_) now_ = now_tsc;
  rotate_cookie_key();
  busy_ = true;
  const uint64_t target = now_ / tsc_per_ms_;
  if (target > wheel_tick_) {
    const uint64_t steps = std::min<uint64_t>(target - wheel_tick_, wheel_slots);
    for (uint64_t i = 1; i <= steps; ++i) {
      // Advance the tick before walking its slot: a TCB re-queued during the walk must land in a
      // later slot of this catch-up, not in one already walked (a full revolution late).
      wheel_tick_ = target - steps + i;
      const uint32_t slot = static_cast<uint32_t>(wheel_tick_ % wheel_slots);
      if (wheel_[slot] != no_index) process_slot(slot);  // most slots are empty after a jump
    }
    wheel_tick_ = target;
  }
  busy_ = false;
  reap();
}

void engine::process_slot(uint32_t slot) {
  // Detach the slot onto the "in progress" list so that re-queued TCBs (and TCBs another
  // callback closes) never disturb the walk.
  const uint32_t busy = wheel_slots;
  wheel_[busy] = wheel_[slot];
  wheel_[slot] = no_index;
  for (uint32_t i = wheel_[busy]; i != no_index; i = tcbs_[i].wheel_next)
    tcbs_[i].wheel_slot = busy;
  while (wheel_[busy] != no_index) {
    tcb& t = tcbs_[wheel_[busy]];
    wheel_unlink(t);
    if (t.wheel_at <= now_) {
      fire(t);
    }
    t.wheel_at = 0;
    schedule(t);
  }
}

void engine::fire(tcb& t) {
  if (t.t_delack != 0 && t.t_delack <= now_) {
    t.t_delack = 0;
    if (t.last_ack_sent != t.rcv_nxt && t.synchronized()) {
      send_ack(t);
      ctr_.delayed_acks.add();
    }
  }
  if (t.t_reo != 0 && t.t_reo <= now_) {  // RACK's reordering window passed (RFC 8985 §6.3)
    if (rack_detect_loss(t) && !t.in_recovery && seq_gt(t.snd_una, t.recover)) enter_recovery(t);
    output(t);
    if (t.release_pending) return;
  }
  if (t.t_tlp != 0 && t.t_tlp <= now_) {
    tlp_fire(t);
    if (t.release_pending) return;
  }
  if (t.t_rexmit != 0 && t.t_rexmit <= now_) {
    t.t_rexmit = 0;
    rexmit_timer(t);
    if (t.release_pending) return;
  }
  if (t.t_state != 0 && t.t_state <= now_) {
    t.t_state = 0;
    state_timer(t);
  }
}

void engine::rexmit_timer(tcb& t) {
  if (t.state == tcp_state::syn_received) {
    if (t.synack_retries >= cfg_.max_synack_retries) {
      ctr_.handshake_timeouts.add();
      release(t);
      return;
    }
    ++t.synack_retries;
    ++t.backoff;
    t.rtt_timing = false;
    send_segment(t, t.iss, 0, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, tx_kind::retransmit);
    arm_rto(t);
    return;
  }
  if (!t.persist && t.snd_wnd == 0 && t.tx_len > 0 && t.snd_una != t.snd_max) {
    // The peer closed its window on data in flight: probe it instead of backing off to a reset;
    // what is in flight goes again once the window opens.
    t.persist = true;
    t.t_tlp = t.t_reo = 0;
    map_mark_all_lost(t, false);
  }
  if (t.persist) {
    if (t.snd_wnd == 0 && t.tx_len > 0) {
      // Bounded persist: a peer that answers every probe with a zero window holds the TCB and its
      // send buffer for ever otherwise (Linux resets probes_out on each answer; only
      // TCP_USER_TIMEOUT bounds it). Counted from the first probe; only ACKed data restarts it.
      const uint64_t bound = ms(cfg_.persist_timeout_ms);
      if (t.persist_since == 0) t.persist_since = now_;
      if (bound != 0 && now_ - t.persist_since >= bound) {
        reset_conn(t, reset_reason::persist_timeout, close_reason::persist_timeout);
        return;
      }
      send_segment(t, t.snd_una, 1, RTE_TCP_ACK_FLAG, tx_kind::probe);
      ctr_.persist_probes.add();
      if (t.backoff < 16) ++t.backoff;
      arm_rto(t);
      t.t_rexmit = std::max(t.t_rexmit, now_ + ms(cfg_.rto_min_ms));
      if (bound != 0)
        t.t_rexmit = std::min(t.t_rexmit, t.persist_since + bound);  // on time, not a backoff late
    } else {
      t.persist = false;
      t.backoff = 0;
      output(t);
    }
    return;
  }
  if (t.snd_una == t.snd_max) return;
  if (t.backoff >= cfg_.max_retransmits) {
    reset_conn(t, reset_reason::retransmit_limit, close_reason::retransmit_limit);
    return;
  }
  ctr_.rto_events.add();
  ++t.backoff;
  if (t.backoff == 1)
    t.ssthresh = loss_ssthresh(t, t.snd_max - t.snd_una);  // RFC 5681 (4), RFC 9438 §4.8
  t.cwnd = t.mss;
  t.in_recovery = false;
  t.dupacks = 0;
  t.recover = t.snd_max;  // RFC 6582 §3.2 step 1 after a timeout
  // Everything unSACKed is lost and goes again in sequence order as the window grows; SACKed
  // data is skipped (RFC 6675 §5.1). A receiver that reneges is still covered: SACKed bytes stay
  // in the send buffer until cumulatively ACKed, and a second RTO forgets the SACKs.
  map_mark_all_lost(t, t.backoff > 1);
  t.fast_rexmit_due = false;
  t.tlp_out = false;
  t.t_tlp = t.t_reo = 0;
  t.rtt_timing = false;  // Karn
  arm_rto(t);
  output(t);
}

void engine::state_timer(tcb& t) {
  switch (t.state) {
    case tcp_state::syn_received:
      ctr_.handshake_timeouts.add();
      release(t);
      return;
    case tcp_state::time_wait:
      release(t);
      return;
    case tcp_state::established:
    case tcp_state::close_wait:
    case tcp_state::fin_wait_1:
    case tcp_state::fin_wait_2:
    case tcp_state::closing:
    case tcp_state::last_ack: {
      const bool open = t.state == tcp_state::established || t.state == tcp_state::close_wait;
      const uint64_t limit = ms(open ? cfg_.idle_timeout_ms : cfg_.fin_wait_timeout_ms);
      if (t.last_rx_tsc + limit > now_) {
        t.t_state = t.last_rx_tsc + limit;
        return;
      }
      if (open)
        reset_conn(t, reset_reason::idle_timeout, close_reason::idle_timeout);
      else
        reset_conn(t, reset_reason::fin_wait_timeout, close_reason::fin_wait_timeout);
      return;
    }
    case tcp_state::closed:
      return;
  }
}

}  // namespace l4::tcp
