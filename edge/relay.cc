#include "edge/relay.hh"

#include <rte_cycles.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "edge/limits_hook.hh"
#include "edge/service_limits.hh"
#include "edge/snapshot.hh"

namespace edge {
namespace {

using upstream::upstream_conn;
using upstream::upstream_error;

l4::tcp::cookie_mode to_stack(syn_cookie_mode m) {
  switch (m) {
    case syn_cookie_mode::off:
      return l4::tcp::cookie_mode::off;
    case syn_cookie_mode::on_pressure:
      return l4::tcp::cookie_mode::on_pressure;
    case syn_cookie_mode::always:
      return l4::tcp::cookie_mode::always;
  }
  return l4::tcp::cookie_mode::on_pressure;
}

// The client tuple as a 64-bit hash, for pools with `balance: hash` (same client, same gateway).
uint64_t tuple_hash(const l4::tcp::conn_info& info) {
  uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](uint8_t b) { h = (h ^ b) * 0x100000001b3ULL; };
  for (uint8_t b : info.remote.b) mix(b);
  for (uint8_t b : info.local.b) mix(b);
  mix(static_cast<uint8_t>(info.local_port >> 8));
  mix(static_cast<uint8_t>(info.local_port));
  // The client port is left out on purpose: a client's connections share one gateway.
  return h;
}

bool same_spec(const upstream::pool_spec& a, const pool_config& b) {
  if (a.name != b.name || a.backends.size() != b.backends.size() ||
      a.connect_timeout_ms != b.connect_timeout_ms ||
      a.max_connect_attempts != b.max_connect_attempts)
    return false;
  for (size_t i = 0; i < a.backends.size(); ++i)
    if (!(a.backends[i].address == b.backends[i].address) ||
        a.backends[i].port != b.backends[i].port || a.backends[i].weight != b.backends[i].weight)
      return false;
  return true;
}

}  // namespace

common::result<std::unique_ptr<relay>> relay::create(const relay_setup& s) {
  std::unique_ptr<relay> r(new relay());
  r->worker_ = s.worker;
  r->registry_ = s.services;
  std::random_device rd;
  r->id_base_ =
      (static_cast<uint64_t>(rd()) << 32 | rd()) ^ (static_cast<uint64_t>(s.worker) << 48);
  const uint32_t n = s.tcp.max_connections;

  // A connection holds at most connect + link timeout, or send + recv + drain timer, at once.
  auto ring = upstream::uring::create({.sq_entries = 1024, .cq_entries = 0, .max_ops = 3 * n + 64});
  if (!ring) return common::unexpected(ring.error());
  r->ring_ = std::move(*ring);
  auto conns = upstream::upstream_conns::create(
      *r->ring_, {.conns = n,
                  .tx_buffer = s.tcp.upstream_buffer,
                  .rx_buffer = s.tcp.upstream_buffer,
                  .drain_timeout_ms = s.tcp.upstream_drain_timeout_ms});
  if (!conns) return common::unexpected(conns.error());
  r->conns_ = std::move(*conns);

  r->slots_ = std::make_unique<conn[]>(n);
  r->n_slots_ = n;
  r->max_active_ = n;
  for (uint32_t i = n; i-- > 0;) {
    r->slots_[i].next_free = r->free_head_;
    r->free_head_ = i;
  }

  l4::tcp::config tc;
  tc.max_connections = n;
  tc.snd_buf = s.tcp.send_buffer;
  tc.rcv_buf = s.tcp.receive_buffer;
  tc.syn_backlog = s.tcp.syn_backlog;
  tc.cookies = to_stack(s.tcp.syn_cookies);
  tc.mtu = s.mtu;
  tc.handshake_timeout_ms = s.tcp.handshake_timeout_ms;
  tc.idle_timeout_ms = s.tcp.idle_timeout_ms;
  tc.fin_wait_timeout_ms = s.tcp.fin_wait_timeout_ms;
  tc.time_wait_ms = s.tcp.time_wait_ms;
  tc.persist_timeout_ms = s.tcp.persist_timeout_ms;
  tc.rto_min_ms = s.tcp.rto_min_ms;
  tc.cc = s.tcp.cubic ? l4::tcp::congestion::cubic : l4::tcp::congestion::newreno;
  tc.secret = s.secret;
  // Segments held until the worker drains them: a handful of upstream completions, each up to a
  // full upstream buffer of payload, plus a burst of SYN-ACKs, fit without tcp_tx_batch_full.
  tc.tx_batch = 2048;
  // The chain's stages, in EDGE_RELAY_CHAIN order.
#define EDGE_RELAY_STAGE_MAKE(name) r->stages_[r->n_stages_++] = make_##name##_stage(*r);
  EDGE_RELAY_CHAIN(EDGE_RELAY_STAGE_MAKE)
#undef EDGE_RELAY_STAGE_MAKE
  auto st = l4::tcp::stack::create(tc, s.tx_pool, r.get());
  if (!st) return common::unexpected(st.error());
  r->stack_ = std::move(*st);

  if (s.tls) {
    r->tls_enabled_ = true;
    r->tls_cfg_ = s.tls_worker;
    r->hs_timeout_tsc_ = rte_get_tsc_hz() / 1000 * s.tls_handshake_timeout_ms;
    // Reserved, not committed: a buffer's pages appear when a connection first uses it, and the
    // LIFO free list keeps reusing the same few under light load.
    void* a = mmap(nullptr, size_t{n} * plain_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (a == MAP_FAILED) return common::fail("tls plaintext buffers: mmap failed");
    r->plain_arena_ = static_cast<uint8_t*>(a);
    r->plain_free_.reserve(n);
    for (uint32_t i = n; i-- > 0;) r->plain_free_.push_back(i);
  }
  return r;
}

relay::~relay() {
  // The stack first (it calls back into us), then the upstream connections (their destructor
  // resets what is open and waits for in-flight ops on the ring), then the ring, then the pools.
  stack_.reset();
  conns_.reset();
  ring_.reset();
  if (plain_arena_ != nullptr) munmap(plain_arena_, size_t{n_slots_} * plain_size);
}

upstream::upstream_pool* relay::pool_for(const pool_config& pc) {
  const size_t n = n_pools_.load(std::memory_order_relaxed);
  for (size_t i = n; i-- > 0;)
    if (same_spec(pools_[i]->spec(), pc)) return pools_[i].get();
  if (n == max_pools) return nullptr;
  upstream::pool_spec spec;
  spec.name = pc.name;
  for (const auto& b : pc.backends) spec.backends.push_back({b.address, b.port, b.weight});
  spec.connect_timeout_ms = pc.connect_timeout_ms;
  spec.max_connect_attempts = pc.max_connect_attempts;
  auto p = upstream::upstream_pool::create(spec);
  if (!p) return nullptr;
  pools_[n] = std::move(*p);
  n_pools_.store(n + 1, std::memory_order_release);  // /metrics sees the pool only once it is whole
  return pools_[n].get();
}

bool relay::sync(const snapshot& snap) {
  bool ok = true;
  const config& c = *snap.cfg;
  // A new WAF generation: size the worker's Hyperscan scratch for it before any connection can use
  // it (grow-only, so connections on older rules stay covered). If that fails the services keep
  // their previous policies.
  limits_ = snap.waf ? snap.waf->limits : nullptr;
  bool waf_ok = true;
  if (snap.waf && waf_ && snap.waf->generation != seen_waf_gen_) {
    if (auto r = waf_->prepare(*snap.waf->rules); r) {
      seen_waf_gen_ = snap.waf->generation;
    } else {
      ctr_.waf_prepare_errors.add();
      waf_ok = false;
      ok = false;
    }
  }
  std::vector<std::shared_ptr<const waf::bound_policy>> kept_waf;
  if (!waf_ok)
    for (const auto& s : services_) kept_waf.push_back(s.waf);
  for (auto& s : services_) s.active = false;
  max_active_ =
      c.tcp.max_active_per_worker != 0 ? std::min(c.tcp.max_active_per_worker, n_slots_) : n_slots_;
  for (const auto& sc : c.services) {
    if (sc.kind != service_kind::tcp && sc.kind != service_kind::tls) continue;
    const pool_config* pc = c.find_pool(sc.pool);
    size_t id = 0;
    while (id < services_.size() && !(services_[id].vip == sc.vip && services_[id].port == sc.port))
      ++id;
    if (id == services_.size()) {
      if (id > UINT16_MAX) {
        ok = false;
        continue;
      }
      services_.push_back({.vip = sc.vip, .port = sc.port});
    }
    service& s = services_[id];
    s.pool = pc ? pool_for(*pc) : nullptr;
    s.tls = nullptr;
    if (sc.kind == service_kind::tls) {
      const auto it = snap.tls.find(sc.name);
      if (it != snap.tls.end() && tls_enabled_) s.tls = it->second;
    }
    if (s.pool == nullptr || (sc.kind == service_kind::tls && s.tls == nullptr)) {
      ok = false;
      continue;
    }
    s.active = true;
    s.proxy_protocol = pc->proxy_protocol;
    s.by_hash = pc->balance == balance_mode::hash;
    s.name = sc.name;
    s.counters = registry_ != nullptr ? registry_->find(sc.name) : nullptr;
    if (waf_ok)
      s.waf = snap.waf && waf_ ? snap.waf->policy_for(sc.name) : nullptr;
    else
      s.waf = id < kept_waf.size() ? kept_waf[id] : nullptr;
    s.http = s.waf != nullptr && s.waf->pol().inspect == waf::inspect_mode::http;
    // Services without HTTP: the server may speak first, so no first-byte timer unless configured.
    const uint32_t head_ms = s.http || sc.request_head_timeout_set ? sc.request_head_timeout_ms : 0;
    s.head_timeout_tsc = rte_get_tsc_hz() / 1000 * head_ms;
    const size_t pool_index = static_cast<size_t>(pc - c.pools.data());
    const std::vector<bool>* health =
        pool_index < snap.pool_health.size() ? &snap.pool_health[pool_index] : nullptr;
    for (size_t i = 0; i < s.pool->size(); ++i)
      s.pool->set_healthy(i, health == nullptr || i >= health->size() || (*health)[i]);
  }
  // Services that left: no new connections (established ones keep running). Their listener goes
  // so that SYNs get the stack's no_listener RST instead of a refusal after the handshake.
  for (size_t id = 0; id < services_.size(); ++id) {
    service& s = services_[id];
    if (!s.active && s.listening) {
      stack_->remove_listener(s.vip, s.port);
      s.listening = false;
    } else if (s.active && !s.listening && !stopped_accepting_) {
      if (stack_->add_listener(s.vip, s.port, static_cast<uint16_t>(id)))
        s.listening = true;
      else
        ok = false;
    }
  }
  return ok;
}

void relay::stop_accepting() {
  stopped_accepting_ = true;
  for (auto& s : services_)
    if (s.listening) {
      stack_->remove_listener(s.vip, s.port);
      s.listening = false;
    }
}

void relay::resume_accepting() {
  stopped_accepting_ = false;
  for (size_t id = 0; id < services_.size(); ++id) {
    service& s = services_[id];
    if (s.active && !s.listening && stack_->add_listener(s.vip, s.port, static_cast<uint16_t>(id)))
      s.listening = true;
  }
}

size_t relay::abort_all() {
  event ev(*this);
  size_t n = 0;
  for (uint32_t i = 0; i < n_slots_; ++i) {
    conn& rc = slots_[i];
    if (!live(rc)) continue;
    if (rc.up != nullptr) rc.up->abort();
    if (!rc.tcp_closed) stack_->abort(rc.tcp);
    end(rc, relay_end::shutdown);
    ++n;
  }
  // What the relay no longer holds: handshakes, and connections closed with data still queued.
  return n + stack_->abort_all();
}

l4::drop relay::input(rte_mbuf* m, const l4::packet& p) {
  event ev(*this);
  return stack_->input(m, p);
}

l4::drop relay::icmp_error(rte_mbuf* m, const l4::packet& p) {
  event ev(*this);
  return stack_->icmp_error(m, p);
}

unsigned relay::poll_upstream(unsigned max) {
  event ev(*this);
  return ring_->poll(max);
}

void relay::poll(uint64_t now_tsc) {
  event ev(*this);
  stack_->poll(now_tsc);
  if (hs_head_ != UINT32_MAX) expire_handshakes(now_tsc);
  if (rh_waiting_ != 0) expire_heads(now_tsc);
}

relay::conn* relay::alloc() {
  if (free_head_ == UINT32_MAX) return nullptr;
  conn& rc = slots_[free_head_];
  free_head_ = rc.next_free;
  const uint32_t gen = rc.gen + 1;
  rc = conn{};
  rc.gen = gen;
  rc.slot = static_cast<uint32_t>(&rc - slots_.get());
  ctr_.active.add();
  return &rc;
}

void relay::enter(conn& rc, relay_state to) {
  if (!relay_state_move_ok(rc.state, to)) {
    ctr_.bad_moves.add();
    return;
  }
  if (rc.state != relay_state::free) ctr_.states[static_cast<size_t>(rc.state)].sub();
  if (to != relay_state::free) ctr_.states[static_cast<size_t>(to)].add();
  rc.state = to;
}

void relay::end(conn& rc, relay_end why) {
  if (!live(rc) && rc.state != relay_state::free) return;  // the first outcome counts
  ctr_.end(why);
  rc.why = why;
  rc.ended_from = rc.state;
  enter(rc, relay_state::ended);
  // Out of every timer list now: an expiry walk must not meet it again in this event.
  rh_unlink(rc);
  if (rc.tls != nullptr) hs_unlink(rc);
  if (alog_ != nullptr) log_access(rc);
  rc.up = nullptr;  // aborted or closed by now: the object may serve another connection already
  rc.next_free = ending_head_;
  ending_head_ = static_cast<uint32_t>(&rc - slots_.get());
  ++n_ending_;
  if (depth_ == 0) release_ended();  // outside any event (start-up, tear-down)
}

void relay::release_ended() {
  while (ending_head_ != UINT32_MAX) {
    conn& rc = slots_[ending_head_];
    ending_head_ = rc.next_free;
    --n_ending_;
    release(rc);
  }
}

void relay::release(conn& rc) {
  if (rc.src_slot != UINT32_MAX && registry_ != nullptr && registry_->sources() != nullptr)
    registry_->sources()->release(rc.src_slot);
  rc.src_slot = UINT32_MAX;
  for (size_t i = n_stages_; i-- > 0;)
    if (rc.stages & (1u << i)) stages_[i]->close(rc);
  rc.stages = 0;
  if (rc.svc != nullptr) rc.svc->release();  // the same counters it took, whatever the snapshot now
  rc.svc = nullptr;
  enter(rc, relay_state::free);
  rc.up = nullptr;
  rc.tcp = {};
  ++rc.gen;
  rc.next_free = free_head_;
  free_head_ = static_cast<uint32_t>(&rc - slots_.get());
  ctr_.active.sub();
}

relay::conn* relay::from_tcp(l4::tcp::conn_handle c) {
  auto* rc = static_cast<conn*>(stack_->context(c));
  return rc != nullptr && live(*rc) && rc->tcp == c ? rc : nullptr;
}

relay::conn* relay::from_upstream(const upstream_conn& c) {
  const uint64_t cookie = c.cookie();
  const auto index = static_cast<uint32_t>(cookie);
  if (index >= n_slots_) return nullptr;
  conn& rc = slots_[index];
  return live(rc) && rc.gen == static_cast<uint32_t>(cookie >> 32) && rc.up == &c ? &rc : nullptr;
}

bool relay::on_accept(l4::tcp::conn_handle c, const l4::tcp::conn_info& info) {
  event ev(*this);
  if (info.listener >= services_.size() || !services_[info.listener].active) {
    ctr_.end(relay_end::no_service);
    return false;  // the stack resets the client (app_refused)
  }
  service& s = services_[info.listener];
  conn* rc = admit(s, info);
  if (rc == nullptr) return false;  // the stack resets the client
  rc->info = info;
  rc->listener = info.listener;
  rc->http = s.http;
  // The stages its service applies, each opened in chain order; a refusal ends the connection (no
  // access-log line: it never started) and closes those already opened.
  for (size_t i = 0; i < n_stages_; ++i) {
    if (!stages_[i]->applies(s)) continue;
    rc->stages |= static_cast<uint8_t>(1u << i);
    if (stages_[i]->filters()) rc->filter = static_cast<uint8_t>(i);  // the last one moves them
    if (const auto why = stages_[i]->open(*rc, s)) {
      refuse(s, *rc, *why);
      return false;  // the stack resets the client
    }
  }
  // HTTP services open the upstream once the first request head has passed the WAF (a connection
  // flood must not become one on the gateways); kind tls once the handshake has finished, when the
  // PROXY header can carry what was negotiated; other services now (the server may speak first).
  if (rc->state == relay_state::free) {
    if (s.http) {
      enter(*rc, relay_state::awaiting_request);
    } else if (open_upstream(*rc, s, info, nullptr)) {
      enter(*rc, relay_state::streaming);
    } else {
      refuse(s, *rc, relay_end::no_upstream);
      return false;
    }
  }
  if (alog_ != nullptr) log_accept(*rc, info);  // from here on it has a line
  if (s.head_timeout_tsc != 0) rh_link(*rc, s, rte_rdtsc());
  rc->tcp = c;
  stack_->set_context(c, rc);
  ctr_.accepted.add();
  if (rc->svc != nullptr) rc->svc->opened.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// The upstream connection of a client connection, with its PROXY v2 header: client and VIP, a
// unique id (8 bytes of boot/worker prefix and an 8-byte sequence, so that a gateway's logs can be
// joined with edged's), and for kind tls the SNI as authority, the ALPN and the SSL TLVs.
bool relay::open_upstream(conn& rc, const service& s, const l4::tcp::conn_info& info,
                          const tls::peer_info* ti) {
  std::array<uint8_t, 16> uid;
  const uint64_t seq = ++id_seq_;
  std::memcpy(uid.data(), &id_base_, 8);
  std::memcpy(uid.data() + 8, &seq, 8);
  upstream::proxy_v2_info pp;
  pp.src = info.remote;
  pp.dst = info.local;
  pp.src_port = info.remote_port;
  pp.dst_port = info.local_port;
  pp.unique_id = uid;
  pp.crc32c = true;
  if (ti != nullptr) {
    pp.authority = ti->sni;
    pp.alpn = ti->alpn;
    pp.ssl.present = true;
    pp.ssl.client_cert = ti->client_cert;
    pp.ssl.cert_verified = ti->client_cert_verified;
    pp.ssl.version = ti->version;
    pp.ssl.cipher = ti->cipher;
    pp.ssl.cert_cn = ti->client_cn;
  }
  const uint32_t index = static_cast<uint32_t>(&rc - slots_.get());
  auto up = conns_->open({.pool = s.pool,
                          .events = this,
                          .proxy = s.proxy_protocol ? &pp : nullptr,
                          .by_hash = s.by_hash,
                          .hash = s.by_hash ? tuple_hash(info) : 0,
                          .cookie = static_cast<uint64_t>(rc.gen) << 32 | index});
  if (!up) return false;
  rc.up = *up;
  return true;
}

bool relay::src_peek(conn& rc, std::span<const uint8_t>& out) {
  if (rc.tls == nullptr) {
    out = stack_->peek(rc.tcp);
    return true;
  }
  if (rc.plain_head == rc.plain_tail && !tls_pull(rc)) return false;
  out = {plain_arena_ + size_t{rc.plain} * plain_size + rc.plain_head,
         rc.plain_tail - rc.plain_head};
  return true;
}

void relay::src_consume(conn& rc, size_t n) {
  if (rc.tls == nullptr) {
    stack_->consume(rc.tcp, n);
    return;
  }
  rc.plain_head += static_cast<uint32_t>(n);
  if (rc.plain_head == rc.plain_tail) rc.plain_head = rc.plain_tail = 0;
}

// Every client byte went through: TCP FIN (and, for TLS, no whole record left in the session) or
// the client's close_notify.
bool relay::client_eof(conn& rc) const {
  if (rc.tls == nullptr) return rc.client_fin && stack_->readable(rc.tcp) == 0;
  if (rc.plain_head != rc.plain_tail) return false;
  return rc.tls->peer_closed() || (rc.client_fin && stack_->readable(rc.tcp) == 0);
}

// Client bytes into the upstream tx buffer, as much as fits; the rest stays in the TCP receive
// buffer, which keeps the client's window closed until on_upstream_writable.
void relay::to_upstream(conn& rc) {
  if (rc.up == nullptr && rc.state != relay_state::awaiting_request) return;
  if (rc.in_rh && rc.state != relay_state::awaiting_request && !rc.http) {
    // Not HTTP: the first byte ends the request-head wait.
    std::span<const uint8_t> chunk;
    if (!src_peek(rc, chunk)) return;
    if (!chunk.empty()) rh_unlink(rc);
  }
  // The last stage that inspects the client's bytes moves them; without one they are copied.
  if (rc.filter != UINT8_MAX) {
    if (stages_[rc.filter]->client_bytes(rc) != stage_step::next) return;
  } else {
    for (;;) {
      std::span<const uint8_t> chunk;
      if (!src_peek(rc, chunk)) return;
      if (chunk.empty()) break;
      const size_t n = rc.up->send(std::as_bytes(chunk));
      if (n == 0) break;
      src_consume(rc, n);
      ctr_.bytes_from_client.add(n);
      log_bytes(rc, n, 0);
      if (n < chunk.size()) break;
    }
  }
  if (rc.state != relay_state::client_closed && client_eof(rc)) {
    if (rc.up == nullptr) {  // HTTP, and no request head passed: there is no upstream to close
      if (!rc.tcp_closed) {
        if (rc.tls != nullptr) {
          rc.tls->shutdown();
          tls_flush(rc);
        }
        stack_->close_lingering(rc.tcp);
      }
      end(rc, relay_end::no_request);
      return;
    }
    rc.up->shutdown_write();
    fin_passed(rc, relay_state::client_closed);
  }
}

// Upstream bytes into the TCP send buffer, as much as fits; the rest stays in the upstream rx
// buffer, which stops the upstream recv until on_writable.
void relay::to_client(conn& rc) {
  if (rc.up == nullptr) return;
  if (rc.tls != nullptr) {
    tls_to_client(rc);
    return;
  }
  for (;;) {
    const auto chunk = rc.up->peek();
    if (chunk.empty()) break;
    const size_t n =
        stack_->send(rc.tcp, {reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()});
    if (n == 0) break;
    sent_to_client(rc, chunk.first(n));
    rc.up->consume(n);
    ctr_.bytes_to_client.add(n);
    log_bytes(rc, 0, n);
    if (n < chunk.size()) break;
  }
  if (rc.upstream_fin && rc.state != relay_state::upstream_closed && rc.up->readable() == 0) {
    stack_->shutdown_write(rc.tcp);
    fin_passed(rc, relay_state::upstream_closed);
  }
}

// A FIN went on in one direction (`half`: client_closed or upstream_closed). With the other one
// passed already, the upstream side flushes and closes, the stack finishes its closing handshake
// on its own (no more events), and the connection is complete.
void relay::fin_passed(conn& rc, relay_state half) {
  const relay_state other = half == relay_state::client_closed ? relay_state::upstream_closed
                                                               : relay_state::client_closed;
  if (rc.state != other) {
    enter(rc, half);
    return;
  }
  rc.up->close();
  if (!rc.tcp_closed) stack_->close(rc.tcp);
  end(rc, relay_end::completed);
}

void relay::on_readable(l4::tcp::conn_handle c) {
  event ev(*this);
  if (conn* rc = from_tcp(c)) client_input(*rc);
}

void relay::on_writable(l4::tcp::conn_handle c) {
  event ev(*this);
  conn* rc = from_tcp(c);
  if (rc == nullptr) return;
  if (rc->state == relay_state::handshake) {
    tls_flush(*rc);  // the rest of a handshake flight
    return;
  }
  to_client(*rc);
}

void relay::on_peer_fin(l4::tcp::conn_handle c) {
  event ev(*this);
  conn* rc = from_tcp(c);
  if (rc == nullptr) return;
  rc->client_fin = true;
  client_input(*rc);
}

void relay::on_closed(l4::tcp::conn_handle c, l4::tcp::close_reason why) {
  event ev(*this);
  conn* rc = from_tcp(c);
  if (rc == nullptr) return;
  using l4::tcp::close_reason;
  if (why == close_reason::normal) {
    // Both FINs exchanged with the client (its FIN may have arrived after ours, which the stack
    // reports here rather than as on_peer_fin): pass on what is still buffered, then FIN upstream.
    rc->tcp_closed = true;
    if (rc->state == relay_state::handshake) {
      end(*rc, relay_end::tls_handshake_aborted);
      return;
    }
    client_input(*rc);
    if (ended(*rc)) return;
    if (rc->up != nullptr) {
      rc->up->close();
      end(*rc, relay_end::completed);
    } else if (rc->state == relay_state::awaiting_request) {
      end(*rc, relay_end::no_request);
    }
    return;
  }
  if (rc->up != nullptr) rc->up->abort();
  end(*rc, why == close_reason::peer_reset         ? relay_end::client_reset
           : why == close_reason::data_after_close ? relay_end::client_data_after_close
           : why == close_reason::persist_timeout  ? relay_end::client_zero_window
                                                   : relay_end::client_timeout);
}

void relay::on_upstream_connected(upstream_conn& c) {
  event ev(*this);
  if (conn* rc = from_upstream(c)) {
    log_step(*rc, &access_start::upstream_ns);
    to_client(*rc);
  }
}

void relay::on_upstream_data(upstream_conn& c) {
  event ev(*this);
  if (conn* rc = from_upstream(c); rc != nullptr && upstream_ready(*rc)) to_client(*rc);
}

void relay::on_upstream_fin(upstream_conn& c) {
  event ev(*this);
  conn* rc = from_upstream(c);
  if (rc == nullptr) return;
  rc->upstream_fin = true;
  if (upstream_ready(*rc)) to_client(*rc);
}

// The stages' say before upstream bytes go to the client; false: held, or the connection ended.
bool relay::upstream_ready(conn& rc) {
  for (size_t i = 0; i < n_stages_; ++i)
    if ((rc.stages & (1u << i)) && stages_[i]->upstream_ready(rc) != stage_step::next) return false;
  return live(rc);
}

void relay::sent_to_client(conn& rc, std::span<const std::byte> sent) {
  for (size_t i = 0; i < n_stages_; ++i)
    if (rc.stages & (1u << i)) stages_[i]->sent_to_client(rc, sent);
}

// The client end of the chain, for a stage or a timer that answers the client itself: a reset, or
// a response (encrypted on kind tls) and a lingering close, so that the answer is not lost to the
// RST that a plain close() draws when the client's unread bytes (or its body, still on its way
// for tcp linger_ms) arrive.
void relay::reset_client(conn& rc) {
  if (!rc.tcp_closed) stack_->abort(rc.tcp);
}

void relay::answer_client(conn& rc, std::span<const char> response) {
  if (rc.tcp_closed) return;
  log_bytes(rc, 0, response.size());  // the local reply counts as sent
  if (rc.tls != nullptr) {
    tls_block(rc, response);
  } else {
    stack_->send(rc.tcp, {reinterpret_cast<const uint8_t*>(response.data()), response.size()});
    stack_->close_lingering(rc.tcp);
  }
}

void relay::on_upstream_writable(upstream_conn& c) {
  event ev(*this);
  if (conn* rc = from_upstream(c)) to_upstream(*rc);
}

void relay::on_upstream_error(upstream_conn& c, upstream_error e, int) {
  event ev(*this);
  conn* rc = from_upstream(c);
  c.abort();  // required after an error; the object is dead afterwards
  if (rc == nullptr) return;
  relay_end why = relay_end::upstream_reset;
  switch (e) {
    case upstream_error::connect_failed:
      why = relay_end::connect_failed;
      break;
    case upstream_error::connect_timeout:
      why = relay_end::connect_timeout;
      break;
    case upstream_error::no_backend:
    case upstream_error::no_resources:
    case upstream_error::proxy_header:
      why = relay_end::no_upstream;
      break;
    case upstream_error::reset:
    case upstream_error::io_error:
      why = relay_end::upstream_reset;
      break;
  }
  rc->up = nullptr;
  stack_->abort(rc->tcp);  // RST to the client, no more events for it
  end(*rc, why);
}

// --- Connection limits ------------------------------------------------------------------------
// Checked once per new connection, after the handshake (the stack answers a refusal with RST):
// the worker's own limit first (no shared write), then the service's count over all workers.

relay::conn* relay::admit(const service& s, const l4::tcp::conn_info& info) {
  if (ctr_.active.get() >= max_active_) {
    refuse(s, relay_end::worker_limit);
    return nullptr;
  }
  if (s.counters != nullptr && !s.counters->try_acquire()) {
    refuse(s, relay_end::service_limit);
    return nullptr;
  }
  // Per source, over all workers (service_limits.hh): after the service's own count, so that a
  // source refused here gave nothing back to the others' share.
  source_table* st = registry_ != nullptr && s.counters != nullptr ? registry_->sources() : nullptr;
  uint32_t src_slot = source_table::untracked_slot;
  if (st != nullptr) {
    if (const uint32_t lim = s.counters->per_source.load(std::memory_order_relaxed); lim != 0) {
      src_slot = st->acquire(registry_->index_of(s.counters), info.remote, lim);
      if (src_slot == source_table::refused) {
        s.counters->release();
        refuse(s, relay_end::source_limit);
        return nullptr;
      }
    }
  }
  conn* rc = alloc();
  if (rc == nullptr) {
    if (s.counters != nullptr) s.counters->release();
    if (st != nullptr) st->release(src_slot);
    refuse(s, relay_end::no_slot);
    return nullptr;
  }
  rc->svc = s.counters;
  rc->src_slot = src_slot;
  return rc;
}

void relay::refuse(const service& s, relay_end e) {
  ctr_.end(e);
  if (s.counters != nullptr) s.counters->refuse(e);
}

void relay::refuse(const service& s, conn& rc, relay_end e) {
  if (s.counters != nullptr) s.counters->refuse(e);
  end(rc, e);
}

}  // namespace edge

// --- Request-head timeout and the deferred upstream ----------------------------------------------
// HAProxy's `timeout http-request`, nginx's `client_header_timeout`: from accept (the TLS handshake
// included, as nginx) to the first request head having passed the WAF, or on services that do not
// parse HTTP to the first client byte; on a keep-alive connection, each later head from its first
// byte (then the upstream is open already: a reset, as for a non-HTTP service). One FIFO per
// service: every entry of a list has the same timeout, so the oldest expires first and the walk
// stops at the first one still in time.

namespace edge {

void relay::rh_link(conn& rc, service& s, uint64_t now) {
  const auto i = static_cast<uint32_t>(&rc - slots_.get());
  rc.rh_deadline = now + s.head_timeout_tsc;
  rc.rh_prev = s.rh_tail;
  rc.rh_next = UINT32_MAX;
  rc.in_rh = true;
  if (s.rh_tail != UINT32_MAX)
    slots_[s.rh_tail].rh_next = i;
  else
    s.rh_head = i;
  s.rh_tail = i;
  ++rh_waiting_;
}

void relay::rh_unlink(conn& rc) {
  if (!rc.in_rh) return;
  service& s = services_[rc.listener];
  if (rc.rh_prev != UINT32_MAX)
    slots_[rc.rh_prev].rh_next = rc.rh_next;
  else
    s.rh_head = rc.rh_next;
  if (rc.rh_next != UINT32_MAX)
    slots_[rc.rh_next].rh_prev = rc.rh_prev;
  else
    s.rh_tail = rc.rh_prev;
  rc.in_rh = false;
  rc.rh_prev = rc.rh_next = UINT32_MAX;
  --rh_waiting_;
}

void relay::expire_heads(uint64_t now) {
  for (service& s : services_)
    while (s.rh_head != UINT32_MAX && slots_[s.rh_head].rh_deadline <= now)
      head_timeout(slots_[s.rh_head]);
}

// HTTP (the upstream is still deferred): 408 and FIN, as HAProxy; over TLS only once the handshake
// finished (before, a reset). Not HTTP: a reset (there is nothing to answer). The upstream, if any,
// is reset.
void relay::head_timeout(conn& rc) {
  static constexpr std::string_view response =
      "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
  if (rc.up != nullptr) rc.up->abort();
  rc.up = nullptr;
  if (rc.state == relay_state::awaiting_request)
    answer_client(rc, response);
  else
    reset_client(rc);
  end(rc, relay_end::request_head_timeout);
}

bool relay::open_deferred(conn& rc) {
  rh_unlink(rc);
  const service* s = rc.listener < services_.size() ? &services_[rc.listener] : nullptr;
  if (s == nullptr || s->pool == nullptr ||
      !open_upstream(rc, *s, rc.info, rc.tls != nullptr ? &rc.tls->info() : nullptr)) {
    if (!rc.tcp_closed) stack_->abort(rc.tcp);
    end(rc, relay_end::no_upstream);
    return false;
  }
  enter(rc, relay_state::streaming);
  return true;
}

}  // namespace edge
