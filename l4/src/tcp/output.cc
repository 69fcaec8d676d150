// Segments we send: frame building, the send loop (window, congestion window, lost segments
// first) and RTT estimation (RFC 6298). Loss detection and congestion control: recovery.cc.
#include <netinet/in.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_tcp.h>

#include <algorithm>
#include <cstring>

#include "engine.hh"

namespace l4::tcp {
namespace {

constexpr uint8_t f_fin = RTE_TCP_FIN_FLAG, f_syn = RTE_TCP_SYN_FLAG, f_rst = RTE_TCP_RST_FLAG,
                  f_psh = RTE_TCP_PSH_FLAG, f_ack = RTE_TCP_ACK_FLAG;

}  // namespace

route route_from(const rte_mbuf* m, const packet& p) {
  route r;
  const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
  r.peer_mac = eth->src_addr;
  r.own_mac = eth->dst_addr;
  r.has_vlan = p.has_vlan;
  r.vlan_tci = p.vlan_tci;
  r.v6 = p.l3 == l3_kind::ipv6;
  r.local = p.dst, r.remote = p.src;
  r.local_port = p.dport, r.remote_port = p.sport;
  return r;
}

rte_mbuf* engine::build(const route& rt, uint32_t seq, uint32_t ack, uint8_t flags, uint16_t wnd,
                        const out_options& o, const tcb* data_from, uint32_t data_off,
                        uint32_t len) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool_);
  if (m == nullptr) {
    ctr_.drops.add(drop::tcp_tx_no_mbuf);
    return nullptr;
  }
  uint8_t opts[40];
  const uint8_t optlen = write_options(opts, o);
  const uint32_t l2 = sizeof(rte_ether_hdr) + (rt.has_vlan ? 4u : 0u);
  const uint32_t l3 = rt.v6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
  const uint32_t l4 = sizeof(rte_tcp_hdr) + optlen;
  // In 32 bits and against the tailroom before anything is written: a 16-bit sum would wrap and
  // let a short append pass while the payload copy below ran past the mbuf (issue 10).
  const uint32_t frame = l2 + l3 + l4 + len;
  if (len > cfg_.snd_buf || frame > rte_pktmbuf_tailroom(m) || l3 + l4 + len > cfg_.mtu) {
    rte_pktmbuf_free(m);
    ctr_.drops.add(drop::tcp_tx_too_long);
    return nullptr;
  }
  auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, static_cast<uint16_t>(frame)));
  if (f == nullptr) {
    rte_pktmbuf_free(m);
    ctr_.drops.add(drop::tcp_tx_too_long);
    return nullptr;
  }
  auto* eth = reinterpret_cast<rte_ether_hdr*>(f);
  eth->dst_addr = rt.peer_mac;
  eth->src_addr = rt.own_mac;
  const uint16_t l3_type = rt.v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4;
  if (rt.has_vlan) {
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN);
    auto* vh = reinterpret_cast<rte_vlan_hdr*>(eth + 1);
    vh->vlan_tci = rte_cpu_to_be_16(rt.vlan_tci);
    vh->eth_proto = rte_cpu_to_be_16(l3_type);
  } else {
    eth->ether_type = rte_cpu_to_be_16(l3_type);
  }
  uint8_t* ip = f + l2;
  auto* th = reinterpret_cast<rte_tcp_hdr*>(ip + l3);
  th->src_port = rte_cpu_to_be_16(rt.local_port);
  th->dst_port = rte_cpu_to_be_16(rt.remote_port);
  th->sent_seq = rte_cpu_to_be_32(seq);
  th->recv_ack = rte_cpu_to_be_32(ack);
  th->data_off = static_cast<uint8_t>((l4 / 4) << 4);
  th->tcp_flags = flags;
  th->rx_win = rte_cpu_to_be_16(wnd);
  th->cksum = 0;
  th->tcp_urp = 0;
  std::memcpy(th + 1, opts, optlen);
  if (len > 0) {
    uint8_t* dst = reinterpret_cast<uint8_t*>(th) + l4;
    uint32_t pos = data_from->tx_head + data_off;
    if (pos >= cfg_.snd_buf) pos -= cfg_.snd_buf;
    const uint32_t first = std::min(len, cfg_.snd_buf - pos);
    std::memcpy(dst, data_from->tx + pos, first);
    std::memcpy(dst + first, data_from->tx, len - first);
  }
  if (rt.v6) {
    auto* h = reinterpret_cast<rte_ipv6_hdr*>(ip);
    h->vtc_flow = rte_cpu_to_be_32(6u << 28);
    h->payload_len = rte_cpu_to_be_16(static_cast<uint16_t>(l4 + len));
    h->proto = IPPROTO_TCP;
    h->hop_limits = 64;
    std::memcpy(h->src_addr, rt.local.b.data(), 16);
    std::memcpy(h->dst_addr, rt.remote.b.data(), 16);
    th->cksum = rte_ipv6_udptcp_cksum(h, th);
  } else {
    auto* h = reinterpret_cast<rte_ipv4_hdr*>(ip);
    h->version_ihl = 0x45;
    h->type_of_service = 0;
    h->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(l3 + l4 + len));
    h->packet_id = 0;
    h->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
    h->time_to_live = 64;
    h->next_proto_id = IPPROTO_TCP;
    h->hdr_checksum = 0;
    h->src_addr = rt.local.v4_be();
    h->dst_addr = rt.remote.v4_be();
    h->hdr_checksum = rte_ipv4_cksum(h);
    th->cksum = rte_ipv4_udptcp_cksum(h, th);
  }
  return m;
}

uint32_t engine::rcv_space(const tcb& t) const {
  return cfg_.rcv_buf - (t.rcv_nxt - t.rcv_read - (t.peer_fin ? 1 : 0));
}

uint16_t engine::rcv_window(tcb& t) {
  uint32_t right = t.rcv_nxt + rcv_space(t);
  uint32_t wnd;
  if (seq_lt(right, t.rcv_adv)) {
    // Never move the right edge back (RFC 9293 §3.8.6.2.1); round up so scaling cannot either.
    wnd = (t.rcv_adv - t.rcv_nxt + (1u << t.rcv_wscale) - 1) >> t.rcv_wscale;
  } else {
    wnd = (right - t.rcv_nxt) >> t.rcv_wscale;
  }
  wnd = std::min<uint32_t>(wnd, 65535);
  right = t.rcv_nxt + (wnd << t.rcv_wscale);
  if (seq_gt(right, t.rcv_adv)) t.rcv_adv = right;
  return static_cast<uint16_t>(wnd);
}

// Payload bytes the next segment may carry: the MSS less the SACK blocks send_segment will add
// (the timestamp is already out of t.mss). Without this, a data segment carrying SACK blocks
// while out-of-order data is held went out up to 36 bytes over the MTU (found by fuzz_tcp_input).
uint32_t engine::seg_room(const tcb& t) const {
  if (!t.info.sack) return t.mss;
  uint32_t blocks = (t.dsack.start != t.dsack.end ? 1u : 0u) + t.n_ooo;
  blocks = std::min<uint32_t>(blocks, 4);
  blocks = std::min<uint32_t>(blocks, t.info.timestamps ? 3 : 4);  // what fits beside the timestamp
  return blocks == 0 ? t.mss : t.mss - (4 + 8 * blocks);
}

uint32_t engine::ts_now(const tcb& t) const {
  return static_cast<uint32_t>(now_ms()) + t.ts_offset;
}

bool engine::send_segment(tcb& t, uint32_t seq, uint32_t len, uint8_t flags, tx_kind kind) {
  out_options o;
  uint16_t wnd;
  if (flags & f_syn) {
    o.mss = t.rt.v6 ? our_mss_v6_ : our_mss_v4_;
    if (t.info.wscale) o.wscale = static_cast<int8_t>(t.rcv_wscale);
    o.sack_permitted = t.info.sack;
    wnd = static_cast<uint16_t>(std::min<uint32_t>(rcv_space(t), 65535));  // SYN: never scaled
    t.rcv_adv = t.rcv_nxt + wnd;
  } else {
    wnd = rcv_window(t);
    // A duplicate first (D-SACK, RFC 2883), then the most recent range, then the others
    // (RFC 2018 §4).
    if (t.info.sack && t.dsack.start != t.dsack.end && (flags & f_rst) == 0)
      o.sack[o.n_sack++] = t.dsack;
    if (t.info.sack && t.n_ooo > 0 && (flags & f_rst) == 0) {
      uint8_t first = 0;
      for (uint8_t i = 0; i < t.n_ooo; ++i)
        if (seq_geq(t.last_ooo_seq, t.ooo[i].start) && seq_lt(t.last_ooo_seq, t.ooo[i].end))
          first = i;
      o.sack[o.n_sack++] = t.ooo[first];
      for (uint8_t i = 0; i < t.n_ooo && o.n_sack < 4; ++i)
        if (i != first) o.sack[o.n_sack++] = t.ooo[i];
    }
  }
  if (t.info.timestamps && (flags & f_rst) == 0) {
    o.ts = true;
    o.tsval = ts_now(t);
    o.tsecr = t.ts_recent;
  }
  const uint32_t ack = (flags & f_ack) ? t.rcv_nxt : 0;
  rte_mbuf* m = build(t.rt, seq, ack, flags, wnd, o, &t, seq - t.snd_una, len);
  if (m == nullptr) return false;
  push_tx(m);
  if (flags & f_ack) {
    t.dsack = {};
    t.last_ack_sent = t.rcv_nxt;
    t.ack_now = false;
    t.t_delack = 0;
    t.unacked_segs = 0;
  }
  const uint32_t end = seq + len + ((flags & f_syn) ? 1 : 0) + ((flags & f_fin) ? 1 : 0);
  if (end != seq) {
    if (kind == tx_kind::probe) {
      // Zero-window probes neither time the RTT nor start the RTO: the persist timer owns them.
    } else if (kind == tx_kind::retransmit) {
      ctr_.retransmits.add();
      if (t.rtt_timing && seq_leq(seq, t.rtt_seq)) t.rtt_timing = false;  // Karn
    } else if (!t.rtt_timing) {
      t.rtt_timing = true;
      t.rtt_seq = seq;
      t.rtt_start = now_;
    }
    if (seq_gt(end, t.snd_max)) {
      // The send map covers [snd_una, snd_max); a probe's byte beyond it is sent again as lost
      // data once the window opens. The SYN is not in the map (the handshake covers it).
      if ((flags & f_syn) == 0)
        map_append(t, seq_max(seq, t.snd_max), end, kind == tx_kind::probe ? seg_lost : 0);
      t.snd_max = end;
    }
    t.snd_nxt = t.snd_max;
    if (t.t_rexmit == 0 && !t.persist && kind != tx_kind::probe) arm_rto(t);
  }
  return true;
}

void engine::send_rst(tcb& t, reset_reason why) {
  out_options none;
  // snd_max: the peer may have received everything we sent.
  rte_mbuf* m = build(t.rt, t.snd_max, t.rcv_nxt, f_rst | f_ack, 0, none, nullptr, 0, 0);
  if (m == nullptr) return;
  push_tx(m);
  ctr_.resets_sent[static_cast<size_t>(why)].add();
}

void engine::send_rst_reply(const packet& p, const rte_mbuf* m, const segment& s,
                            reset_reason why) {
  if (s.flags & f_rst) return;  // never answer a RST with a RST
  const route rt = route_from(m, p);
  out_options none;
  rte_mbuf* r;
  if (s.flags & f_ack) {
    r = build(rt, s.ack, 0, f_rst, 0, none, nullptr, 0, 0);
  } else {
    const uint32_t ack = s.seq + s.len + ((s.flags & f_syn) ? 1 : 0) + ((s.flags & f_fin) ? 1 : 0);
    r = build(rt, 0, ack, f_rst | f_ack, 0, none, nullptr, 0, 0);
  }
  if (r == nullptr) return;
  push_tx(r);
  ctr_.resets_sent[static_cast<size_t>(why)].add();
}

void engine::send_synack_cookie(const route& rt, uint32_t isn, uint32_t irs, uint16_t mss,
                                const tcp_options& syn, uint32_t tsval) {
  (void)mss;  // the cookie carries the peer's MSS; we advertise our own
  out_options o;
  o.mss = rt.v6 ? our_mss_v6_ : our_mss_v4_;
  if (syn.has_ts && cfg_.timestamps) {
    // Window scale and SACK only when the timestamp can carry them back (see syn_cookie.hh).
    o.ts = true;
    o.tsval = tsval;
    o.tsecr = syn.tsval;
    if (syn.wscale >= 0 && cfg_.window_scale) o.wscale = static_cast<int8_t>(our_wscale_);
    o.sack_permitted = syn.sack_permitted && cfg_.sack;
  }
  const uint16_t wnd = static_cast<uint16_t>(std::min<uint32_t>(cfg_.rcv_buf, 65535));
  rte_mbuf* m = build(rt, isn, irs + 1, f_syn | f_ack, wnd, o, nullptr, 0, 0);
  if (m != nullptr) push_tx(m);
}

void engine::rtt_sample(tcb& t, uint64_t r_us) {
  const int64_t r = static_cast<int64_t>(std::max<uint64_t>(r_us, 1));
  if (t.srtt_us < 0) {
    t.srtt_us = r;
    t.rttvar_us = r / 2;
  } else {
    const int64_t d = t.srtt_us > r ? t.srtt_us - r : r - t.srtt_us;
    t.rttvar_us = (3 * t.rttvar_us + d) / 4;
    t.srtt_us = (7 * t.srtt_us + r) / 8;
  }
  const uint64_t rto_us =
      static_cast<uint64_t>(t.srtt_us + std::max<int64_t>(1000, 4 * t.rttvar_us));
  t.rto_ms = static_cast<uint32_t>(
      std::clamp<uint64_t>((rto_us + 999) / 1000, cfg_.rto_min_ms, cfg_.rto_max_ms));
}

void engine::output(tcb& t) {
  if (t.release_pending) return;
  const bool can_send_data = t.state == tcp_state::established ||
                             t.state == tcp_state::close_wait || t.state == tcp_state::fin_wait_1 ||
                             t.state == tcp_state::last_ack || t.state == tcp_state::closing;
  bool sent = false;
  if (can_send_data) {
    const uint32_t in_flight = pipe(t);
    // Limited transmit (RFC 3042): each of the first two duplicate ACKs lets one new segment out.
    const uint32_t allowance =
        t.cwnd + (t.in_recovery ? 0u : std::min<uint32_t>(t.dupacks, 2) * uint32_t{t.mss});
    uint32_t budget = allowance > in_flight ? allowance - in_flight : 0;
    // Lost data first (RFC 6675 NextSeg rule 1), then new data.
    if (t.snd_wnd > 0 && retransmit_lost(t, budget)) sent = true;
    bool fresh = false;
    for (;;) {
      const uint32_t off = t.snd_max - t.snd_una;
      const uint32_t avail = t.tx_len > off ? t.tx_len - off : 0;
      const uint32_t in_wnd = t.snd_wnd > off ? t.snd_wnd - off : 0;
      const uint32_t room = seg_room(t);
      const uint32_t len = std::min({avail, in_wnd, budget, room});
      // The FIN sits right after the last queued byte.
      const bool fin = t.fin_queued && off + len == t.tx_len;
      if (len == 0 && !fin) break;
      // Sender silly-window avoidance: hold a runt while data is in flight and more is queued.
      if (len < room && len < avail && off > 0) break;
      uint8_t flags = f_ack;
      if (len > 0 && len == avail) flags |= f_psh;
      if (fin) flags |= f_fin;
      if (!send_segment(t, t.snd_max, len, flags, tx_kind::fresh)) break;
      budget = budget > len ? budget - len : 0;
      sent = fresh = true;
      if (fin) break;
    }
    if (fresh) arm_tlp(t);
    // Zero window with data waiting and nothing in flight: probe (RFC 9293 §3.8.6.1).
    const uint32_t off = t.snd_max - t.snd_una;
    if (t.snd_wnd == 0 && t.tx_len > off && t.snd_max == t.snd_una && !t.persist) {
      t.persist = true;
      t.backoff = 0;
      t.t_tlp = 0;
      t.t_rexmit = now_ + ms(std::max(t.rto_ms, cfg_.rto_min_ms));
    }
  }
  if (!sent && t.ack_now && t.state != tcp_state::syn_received) send_ack(t);
  schedule(t);
}

}  // namespace l4::tcp
