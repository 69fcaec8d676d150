// Setup, tables (TCB pool, flow table, listeners) and the calls the application makes.
#include "engine.hh"

#include <rte_cycles.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <random>

namespace l4::tcp {
namespace {

// The configured secret, or one drawn at start when none was given (all zero).
sip_key boot_secret(const sip_key& configured) {
  if (std::any_of(configured.begin(), configured.end(), [](uint8_t b) { return b != 0; }))
    return configured;
  sip_key k;
  std::random_device rd;
  for (size_t i = 0; i < k.size(); i += 4) {
    const uint32_t v = rd();
    std::memcpy(k.data() + i, &v, 4);
  }
  return k;
}

}  // namespace

engine::engine(const config& cfg, rte_mempool* tx_pool, app* a)
    : cfg_(cfg),
      pool_(tx_pool),
      app_(a),
      secret_(boot_secret(cfg.secret)),
      cookies_(derive_key(secret_, "syn-cookie", 0), derive_key(secret_, "isn")),
      flow_key_(derive_key(secret_, "flow-hash")),
      rng_(0),
      tsc_per_ms_(std::max<uint64_t>(1, (cfg.tsc_hz != 0 ? cfg.tsc_hz : rte_get_tsc_hz()) / 1000)),
      our_mss_v4_(static_cast<uint16_t>(cfg.mtu - 40)),
      our_mss_v6_(static_cast<uint16_t>(cfg.mtu - 60)),
      our_wscale_(0),
      map_cap_(map_records(cfg)) {
  const sip_key r = derive_key(secret_, "challenge-ack");
  std::memcpy(&rng_, r.data(), 8);
  rng_ |= 1;
  if (cfg_.window_scale)
    while (our_wscale_ < 14 && (cfg_.rcv_buf >> our_wscale_) > 65535) ++our_wscale_;
  tcbs_.resize(cfg_.max_connections);
  // new[] without () leaves the bytes untouched: pages are only backed once a connection uses them.
  // The send maps follow the byte buffers, aligned for their records.
  const size_t bufs = static_cast<size_t>(cfg_.max_connections) *
                      (static_cast<size_t>(cfg_.rcv_buf) + cfg_.snd_buf);
  const size_t maps_at = (bufs + alignof(sent_seg) - 1) / alignof(sent_seg) * alignof(sent_seg);
  const size_t map_bytes = size_t{map_cap_} * sizeof(sent_seg);
  arena_.reset(new uint8_t[maps_at + cfg_.max_connections * map_bytes]);
  for (uint32_t i = 0; i < cfg_.max_connections; ++i) {
    tcb& t = tcbs_[i];
    t.rx = arena_.get() + static_cast<size_t>(i) * (cfg_.rcv_buf + cfg_.snd_buf);
    t.tx = t.rx + cfg_.rcv_buf;
    // sent_seg is an aggregate (an implicit-lifetime type): raw arena bytes can hold them.
    t.map = reinterpret_cast<sent_seg*>(arena_.get() + maps_at + i * map_bytes);
    t.free_next = i + 1 < cfg_.max_connections ? i + 1 : no_index;
  }
  free_head_ = 0;
  size_t cap = 16;
  while (cap < static_cast<size_t>(cfg_.max_connections) * 2) cap <<= 1;
  flows_.assign(cap, no_index);
  flow_mask_ = cap - 1;
  wheel_.assign(wheel_slots + 1, no_index);
  tx_.assign(std::bit_ceil(static_cast<uint32_t>(cfg_.tx_batch)), nullptr);
  tx_mask_ = static_cast<uint32_t>(tx_.size() - 1);
  listeners_.reserve(64);
}

common::result<void> engine::add_listener(const ip_addr& vip, uint16_t port, uint16_t id) {
  if (find_listener(vip, port) != nullptr)
    return common::fail("listener " + vip.str() + ":" + std::to_string(port) + " exists",
                        "l4::tcp::stack::add_listener");
  listeners_.push_back({vip, port, id});
  return {};
}

bool engine::remove_listener(const ip_addr& vip, uint16_t port) {
  auto it = std::find_if(listeners_.begin(), listeners_.end(),
                         [&](const listener& l) { return l.port == port && l.vip == vip; });
  if (it == listeners_.end()) return false;
  listeners_.erase(it);
  return true;
}

const listener* engine::find_listener(const ip_addr& vip, uint16_t port) const {
  for (const auto& l : listeners_)
    if (l.port == port && l.vip == vip) return &l;
  return nullptr;
}

uint64_t engine::flow_hash(const ip_addr& raddr, uint16_t rport, const ip_addr& laddr,
                           uint16_t lport) const {
  // Keyed so that a peer cannot aim its 4-tuples at one probe chain.
  uint64_t k0, k1, a0, a1, b0;
  std::memcpy(&k0, flow_key_.data(), 8);
  std::memcpy(&k1, flow_key_.data() + 8, 8);
  std::memcpy(&a0, raddr.b.data(), 8);
  std::memcpy(&a1, raddr.b.data() + 8, 8);
  std::memcpy(&b0, laddr.b.data(), 8);
  uint64_t h = k0 ^ (static_cast<uint64_t>(rport) << 16 | lport);
  for (uint64_t w : {a0, a1, b0, k1}) {
    h ^= w;
    h *= 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
  }
  return h;
}

uint32_t engine::flow_find(const ip_addr& raddr, uint16_t rport, const ip_addr& laddr,
                           uint16_t lport) const {
  for (uint64_t i = flow_hash(raddr, rport, laddr, lport) & flow_mask_;; i = (i + 1) & flow_mask_) {
    const uint32_t idx = flows_[i];
    if (idx == no_index) return no_index;
    const route& r = tcbs_[idx].rt;
    if (r.remote_port == rport && r.local_port == lport && r.remote == raddr && r.local == laddr)
      return idx;
  }
}

void engine::flow_insert(uint32_t idx) {
  const route& r = tcbs_[idx].rt;
  uint64_t i = flow_hash(r.remote, r.remote_port, r.local, r.local_port) & flow_mask_;
  while (flows_[i] != no_index) i = (i + 1) & flow_mask_;  // never full: capacity >= 2 * pool
  flows_[i] = idx;
}

void engine::flow_erase(uint32_t idx) {
  const route& r = tcbs_[idx].rt;
  uint64_t i = flow_hash(r.remote, r.remote_port, r.local, r.local_port) & flow_mask_;
  while (flows_[i] != idx) {
    if (flows_[i] == no_index) return;
    i = (i + 1) & flow_mask_;
  }
  // Backward-shift deletion keeps probe chains intact without tombstones.
  flows_[i] = no_index;
  for (uint64_t j = (i + 1) & flow_mask_; flows_[j] != no_index; j = (j + 1) & flow_mask_) {
    const route& rj = tcbs_[flows_[j]].rt;
    const uint64_t home =
        flow_hash(rj.remote, rj.remote_port, rj.local, rj.local_port) & flow_mask_;
    const bool movable = ((j - home) & flow_mask_) >= ((j - i) & flow_mask_);
    if (movable) {
      flows_[i] = flows_[j];
      flows_[j] = no_index;
      i = j;
    }
  }
}

void engine::tw_append(tcb& t) {
  const uint32_t idx = index_of(t);
  t.in_tw_list = true;
  t.tw_next = no_index;
  t.tw_prev = tw_tail_;
  if (tw_tail_ != no_index)
    tcbs_[tw_tail_].tw_next = idx;
  else
    tw_head_ = idx;
  tw_tail_ = idx;
}

void engine::tw_unlink(tcb& t) {
  if (!t.in_tw_list) return;
  if (t.tw_prev != no_index)
    tcbs_[t.tw_prev].tw_next = t.tw_next;
  else
    tw_head_ = t.tw_next;
  if (t.tw_next != no_index)
    tcbs_[t.tw_next].tw_prev = t.tw_prev;
  else
    tw_tail_ = t.tw_prev;
  t.tw_prev = t.tw_next = no_index;
  t.in_tw_list = false;
}

tcb* engine::alloc_tcb(const route& rt, uint16_t listener_id) {
  if (free_head_ == no_index && tw_head_ != no_index) {
    // TIME_WAIT is bounded by the pool: a new connection beats the oldest TIME_WAIT. Reaping
    // here is safe: only listen_input allocates, and no caller uses a released TCB after it.
    release(tcbs_[tw_head_]);
    reap();
    ctr_.time_wait_recycled.add();
  }
  if (free_head_ == no_index) return nullptr;
  const uint32_t idx = free_head_;
  tcb& t = tcbs_[idx];
  free_head_ = t.free_next;
  uint8_t* rx = t.rx;
  uint8_t* tx = t.tx;
  sent_seg* map = t.map;
  const uint32_t gen = t.gen;
  t = tcb{};
  t.rx = rx, t.tx = tx, t.map = map, t.gen = gen;
  t.rt = rt;
  t.info.listener = listener_id;
  t.info.remote = rt.remote, t.info.local = rt.local;
  t.info.remote_port = rt.remote_port, t.info.local_port = rt.local_port;
  t.last_rx_tsc = now_;
  flow_insert(idx);
  ctr_.active.set(ctr_.active.get() + 1);
  return &t;
}

void engine::release(tcb& t) {
  if (t.release_pending) return;
  if (t.state == tcp_state::syn_received) --syn_received_;
  tw_unlink(t);
  flow_erase(index_of(t));
  wheel_unlink(t);
  t.state = tcp_state::closed;
  t.release_pending = true;
  t.app_closed = true;
  ++t.gen;  // stale handles stop matching at once
  t.release_next = release_head_;
  release_head_ = index_of(t);
}

// Slots go back to the free list only after the current input/poll, because callers up the stack
// may still hold the tcb reference.
void engine::reap() {
  while (release_head_ != no_index) {
    tcb& t = tcbs_[release_head_];
    release_head_ = t.release_next;
    t.release_pending = false;
    t.free_next = free_head_;
    free_head_ = index_of(t);
    ctr_.active.set(ctr_.active.get() - 1);
    ctr_.closed.add();
  }
}

void engine::notify_closed(tcb& t, close_reason why) {
  if (t.accepted && !t.app_closed) {
    app_->on_closed(handle(t), why);
  }
  t.app_closed = true;
}

void engine::reset_conn(tcb& t, reset_reason why, close_reason cr) {
  send_rst(t, why);
  notify_closed(t, cr);
  release(t);
}

conn_handle engine::handle(const tcb& t) const {
  return {index_of(t), t.gen};
}

tcb* engine::get(conn_handle c) const {
  if (c.index >= tcbs_.size()) return nullptr;
  auto& t = const_cast<tcb&>(tcbs_[c.index]);
  if (t.gen != c.gen || t.release_pending || !t.accepted || t.app_closed) return nullptr;
  return &t;
}

size_t engine::send(conn_handle c, std::span<const uint8_t> bytes) {
  tcb* t = get(c);
  if (t == nullptr || t->fin_queued ||
      (t->state != tcp_state::established && t->state != tcp_state::close_wait))
    return 0;
  const uint32_t room = cfg_.snd_buf - t->tx_len;
  const uint32_t n = static_cast<uint32_t>(std::min<size_t>(room, bytes.size()));
  uint32_t pos = t->tx_head + t->tx_len;
  if (pos >= cfg_.snd_buf) pos -= cfg_.snd_buf;
  const uint32_t first = std::min(n, cfg_.snd_buf - pos);
  std::memcpy(t->tx + pos, bytes.data(), first);
  std::memcpy(t->tx, bytes.data() + first, n - first);
  t->tx_len += n;
  if (n < bytes.size()) t->app_want_write = true;
  if (n > 0) output(*t);
  return n;
}

size_t engine::send_space(conn_handle c) const {
  tcb* t = get(c);
  return t == nullptr || t->fin_queued ? 0 : cfg_.snd_buf - t->tx_len;
}

void engine::want_writable(conn_handle c) {
  if (tcb* t = get(c)) t->app_want_write = true;
}

size_t engine::readable(conn_handle c) const {
  tcb* t = get(c);
  return t == nullptr ? 0 : t->rcv_nxt - t->rcv_read - (t->peer_fin ? 1 : 0);
}

std::span<const uint8_t> engine::peek(conn_handle c) const {
  tcb* t = get(c);
  if (t == nullptr) return {};
  const uint32_t avail = t->rcv_nxt - t->rcv_read - (t->peer_fin ? 1 : 0);
  return {t->rx + t->rx_head, std::min(avail, cfg_.rcv_buf - t->rx_head)};
}

void engine::consume(conn_handle c, size_t n) {
  if (tcb* t = get(c)) consume(*t, n);
}

void engine::consume(tcb& t, size_t n) {
  const uint32_t avail = t.rcv_nxt - t.rcv_read - (t.peer_fin ? 1 : 0);
  const uint32_t k = static_cast<uint32_t>(std::min<size_t>(n, avail));
  if (k == 0) return;
  const uint32_t old_right = t.rcv_adv;
  t.rx_head += k;
  if (t.rx_head >= cfg_.rcv_buf) t.rx_head -= cfg_.rcv_buf;
  t.rcv_read += k;
  // Receiver-side silly window avoidance (RFC 9293 §3.8.6.2.2): announce the opened window once
  // it grew by two segments or half the buffer.
  const uint32_t right = t.rcv_read + cfg_.rcv_buf + (t.peer_fin ? 1 : 0);
  const uint32_t grow = right - old_right;
  const uint32_t our_mss = t.rt.v6 ? our_mss_v6_ : our_mss_v4_;
  if (t.synchronized() && !t.peer_fin && seq_gt(right, old_right) &&
      grow >= std::min<uint32_t>(2u * our_mss, cfg_.rcv_buf / 2))
    send_ack(t);
}

size_t engine::recv(conn_handle c, std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    auto chunk = peek(c);
    if (chunk.empty()) break;
    const size_t k = std::min(chunk.size(), out.size() - done);
    std::memcpy(out.data() + done, chunk.data(), k);
    done += k;
    consume(c, k);
  }
  return done;
}

void engine::shutdown_write(conn_handle c) {
  tcb* t = get(c);
  if (t == nullptr || t->fin_queued) return;
  t->fin_queued = true;
  if (t->state == tcp_state::established)
    t->state = tcp_state::fin_wait_1;
  else if (t->state == tcp_state::close_wait)
    t->state = tcp_state::last_ack;
  t->t_state = now_ + ms(cfg_.fin_wait_timeout_ms);
  output(*t);
}

void engine::abort(conn_handle c) {
  tcb* t = get(c);
  if (t == nullptr) return;
  t->app_closed = true;
  send_rst(*t, reset_reason::app_abort);
  release(*t);
  if (!busy_) reap();
}

size_t engine::open_connections() const {
  size_t n = 0;
  for (const tcb& t : tcbs_)
    n += !t.release_pending && t.state != tcp_state::closed && t.state != tcp_state::time_wait;
  return n;
}

size_t engine::abort_all() {
  size_t n = 0;
  for (tcb& t : tcbs_) {
    if (t.release_pending || t.state == tcp_state::closed || t.state == tcp_state::time_wait)
      continue;
    t.app_closed = true;  // as abort() on each handle: no more events
    send_rst(t, reset_reason::shutdown);
    release(t);
    ++n;
  }
  if (!busy_) reap();
  return n;
}

void engine::close(conn_handle c) {
  tcb* t = get(c);
  if (t == nullptr) return;
  if (t->rcv_nxt - t->rcv_read - (t->peer_fin ? 1 : 0) != 0) {
    // RFC 9293 §3.10.4 / Linux: closing with unread data resets, so the peer learns it was lost.
    t->app_closed = true;
    send_rst(*t, reset_reason::close_unread);
    release(*t);
    if (!busy_) reap();
    return;
  }
  shutdown_write(c);
  t->app_closed = true;
}

void engine::close_lingering(conn_handle c) {
  tcb* t = get(c);
  if (t == nullptr) return;
  consume(*t, UINT32_MAX);
  t->linger_until = now_ + ms(cfg_.linger_ms);
  close(c);
}

const conn_info* engine::info(conn_handle c) const {
  tcb* t = get(c);
  return t == nullptr ? nullptr : &t->info;
}

void engine::set_context(conn_handle c, void* ctx) {
  if (tcb* t = get(c)) t->ctx = ctx;
}

void* engine::context(conn_handle c) const {
  tcb* t = get(c);
  return t == nullptr ? nullptr : t->ctx;
}

uint16_t engine::drain_tx(rte_mbuf** out, uint16_t cap) {
  const uint16_t n = static_cast<uint16_t>(std::min<uint32_t>(cap, tx_count_));
  // At most two runs: up to the ring's end, then from its start.
  const uint32_t first = std::min<uint32_t>(n, static_cast<uint32_t>(tx_.size()) - tx_head_);
  std::copy_n(tx_.data() + tx_head_, first, out);
  std::copy_n(tx_.data(), n - first, out + first);
  tx_head_ = (tx_head_ + n) & tx_mask_;
  tx_count_ -= n;
  return n;
}

void engine::push_tx(rte_mbuf* m) {
  if (tx_count_ >= cfg_.tx_batch) {
    rte_pktmbuf_free(m);
    ctr_.drops.add(drop::tcp_tx_batch_full);
    return;
  }
  tx_[(tx_head_ + tx_count_++) & tx_mask_] = m;
  ctr_.segments_out.add();
}

}  // namespace l4::tcp

namespace l4::tcp {

uint64_t engine::next_random() {
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 0x2545f4914f6cdd1dULL;
}

// Called from poll(): the cookie key follows the cookie counter's 64 s period, derived from the
// secret and the period number, so every worker holds the same keys without talking.
void engine::rotate_cookie_key() {
  const uint64_t epoch = now_ms() / 1000 / 64;
  if (cookie_epoch_set_ && epoch == cookie_epoch_) return;
  if (!cookie_epoch_set_ || epoch != cookie_epoch_ + 1) {
    cookies_.rotate(derive_key(secret_, "syn-cookie", epoch - 1));  // the start, or a clock jump
  } else {
    ctr_.cookie_key_rotations.add();
  }
  cookies_.rotate(derive_key(secret_, "syn-cookie", epoch));
  cookie_epoch_ = epoch;
  cookie_epoch_set_ = true;
}

}  // namespace l4::tcp
