// The relay's one access-log call: at a connection's end (relay::end), what the relay knows
// of it becomes an access_record in the worker's ring. No allocation, no lock, no syscall but the
// clock: a full ring drops the record (counted).
#include <ctime>

#include "edge/relay.hh"
#include "tls/session.hh"

namespace edge {

void relay::set_access_ring(access_ring* r) {
  alog_ = r;
  alog_start_ = r != nullptr ? std::make_unique<access_start[]>(n_slots_) : nullptr;
}

void relay::log_accept(const conn& rc, const l4::tcp::conn_info& info) {
  const size_t slot = static_cast<size_t>(&rc - slots_.get());
  if (slot >= n_slots_) return;
  access_start& a = alog_start_[slot];
  a.client = info.remote;
  a.client_port = info.remote_port;
  a.vip = info.local;
  a.vip_port = info.local_port;
  a.listener = info.listener;
  a.start_unix_us = clock_now_ns(CLOCK_REALTIME) / 1000;
  a.start_ns = clock_now_ns(CLOCK_MONOTONIC);
}

void relay::log_step(const conn& rc, uint64_t access_start::*step) {
  if (access_start* a = log_slot(rc); a != nullptr && a->*step == 0)
    a->*step = clock_now_ns(CLOCK_MONOTONIC);
}

// What a connection's and its requests' lines share: who, where, the service, the upstream, TLS.
void relay::fill_access(const conn& rc, access_record& r) const {
  r.end_unix_us = clock_now_ns(CLOCK_REALTIME) / 1000;
  const size_t slot = static_cast<size_t>(&rc - slots_.get());
  if (slot < n_slots_ && alog_start_[slot].start_ns != 0) {
    const access_start& a = alog_start_[slot];
    r.client = a.client;
    r.client_port = a.client_port;
    r.vip = a.vip;
    r.vip_port = a.vip_port;
    r.start_unix_us = a.start_unix_us;
    if (a.listener < services_.size()) {
      r.set(r.service, services_[a.listener].name);
      if (services_[a.listener].pool != nullptr)
        r.set(r.pool, services_[a.listener].pool->spec().name);
    }
  }
  r.worker = static_cast<uint16_t>(worker_);
  if (rc.up != nullptr && rc.up->pool() != nullptr &&
      rc.up->backend_index() < rc.up->pool()->size()) {
    const auto& b = rc.up->pool()->at(rc.up->backend_index()).spec;
    r.upstream = b.address;
    r.upstream_port = b.port;
    r.has_upstream = true;
    r.set(r.pool, rc.up->pool()->spec().name);
  }
  if (rc.tls != nullptr) {
    const auto& ti = rc.tls->info();
    r.set_sni(ti.sni);
    r.set_tls(ti.version, ti.cipher);
  }
}

void relay::log_request(const conn& rc, const request_note& n, uint16_t status, int64_t bytes_out,
                        const char* end_reason) {
  access_record r;
  fill_access(rc, r);
  r.request = true;
  r.req = n;
  r.response_code = status;
  r.start_unix_us = n.start_unix_us;
  const uint64_t now = clock_now_ns(CLOCK_MONOTONIC);
  r.duration_us = now >= n.start_ns ? static_cast<int64_t>((now - n.start_ns) / 1000) : -1;
  if (n.first_byte_ns >= n.start_ns && n.first_byte_ns != 0)
    r.first_byte_us = static_cast<int64_t>((n.first_byte_ns - n.start_ns) / 1000);
  r.bytes_received = static_cast<int64_t>(n.bytes_in);
  r.bytes_sent = bytes_out;
  r.waf = n.waf;
  r.limit = n.limit;
  r.end_reason = end_reason;
  (void)alog_->push(r);
}

// Upstream bytes that reached the client, through the framer: each response that completes is
// its request's line (oldest waiting request first). A response with no request waiting (a
// server's 408 before a request) completes unlogged.
void relay::log_responses(conn& rc, std::span<const std::byte> sent) {
  request_log* rl = rc.waf->requests();
  if (rl == nullptr || rl->lost) return;
  std::span<const char> d{reinterpret_cast<const char*>(sent.data()), sent.size()};
  while (!d.empty()) {
    request_note* f = rl->front();
    if (f != nullptr && f->first_byte_ns == 0 && f->status == 0)
      f->first_byte_ns = clock_now_ns(CLOCK_MONOTONIC);
    const auto r = rl->framer.feed(d, f != nullptr && f->head_method);
    d = d.subspan(r.used);
    if (r.ev == waf::response_framer::event::lost) {
      rl->lost = true;  // the rest are logged at the connection's end, with no status
      return;
    }
    if (r.ev == waf::response_framer::event::done || r.ev == waf::response_framer::event::tunnel) {
      if (f != nullptr) {
        log_request(rc, *f, r.status, static_cast<int64_t>(r.bytes), "");
        rl->pop_front();
      }
      continue;
    }
    if (r.used == 0) return;
  }
}

void relay::log_access(conn& rc) {
  // A connection refused at accept (by the relay's admission or a stage) never started: no line.
  if (const access_start* a = log_slot(rc); a == nullptr || a->start_ns == 0) return;
  const char* end = rc.why < relay_end::count_ ? relay_end_names[static_cast<size_t>(rc.why)] : "";
  // Requests still waiting: answered by edge itself (a block, a limit), or never answered.
  if (rc.waf) {
    if (request_log* rl = rc.waf->requests()) {
      // A response delimited by the close completes only if the upstream closed and every byte
      // reached the client; cut short by a reset or an error, it did not complete.
      // (Called from relay::end: the upstream's FIN went on if the connection completed, or ended
      // half-closed that way.)
      const bool up_fin =
          rc.why == relay_end::completed || rc.ended_from == relay_state::upstream_closed;
      if (!rl->lost && up_fin) {
        const auto r = rl->framer.close();
        if (r.ev == waf::response_framer::event::done && rl->front() != nullptr) {
          log_request(rc, *rl->front(), r.status, static_cast<int64_t>(r.bytes), "");
          rl->pop_front();
        }
      }
      if (rl->overflow() != 0) alog_->count_unlogged(rl->overflow());
      for (request_note* n; (n = rl->front()) != nullptr; rl->pop_front())
        log_request(rc, *n, n->status, n->status != 0 ? static_cast<int64_t>(n->bytes_out) : 0,
                    end);
    }
  }
  access_record r;
  fill_access(rc, r);
  const size_t slot = static_cast<size_t>(&rc - slots_.get());
  if (slot < n_slots_ && alog_start_[slot].start_ns != 0) {
    access_start& a = alog_start_[slot];
    r.duration_us = static_cast<int64_t>((clock_now_ns(CLOCK_MONOTONIC) - a.start_ns) / 1000);
    // Envoy's step durations are from the start; a step that did not happen stays null.
    auto since = [&](uint64_t t) {
      return t >= a.start_ns ? int64_t((t - a.start_ns) / 1000) : -1;
    };
    if (a.handshake_ns != 0) r.handshake_us = since(a.handshake_ns);
    if (a.upstream_ns != 0) r.upstream_connect_us = since(a.upstream_ns);
    if (a.first_byte_ns != 0) r.first_byte_us = since(a.first_byte_ns);
    r.bytes_received = static_cast<int64_t>(a.bytes_in);
    r.bytes_sent = static_cast<int64_t>(a.bytes_out);
    a = access_start{};  // the slot's next connection starts clean
  }
  r.end_reason = end;
  if (rc.waf) {
    r.waf = rc.waf->blocked() && !rc.waf->limited() ? access_waf::block : access_waf::pass;
    if (rc.waf->limited()) r.limit = access_limit::limited;
  }
  const std::string_view e = r.end_reason;
  if (e == "service_limit" || e == "limited") r.limit = access_limit::limited;
  (void)alog_->push(r);
}

}  // namespace edge
