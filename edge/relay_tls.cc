// Service kind tls: the relay of relay.cc with a tls::session between the TCP stack and the
// upstream. Ciphertext moves from the TCP receive buffer into the session; plaintext comes out into
// the connection's plaintext buffer (one record), from which the usual client-to-upstream path (and
// the WAF) takes it. Upstream bytes are encrypted only as far as the TCP send buffer has room, so
// the session never holds more than about one record of ciphertext: a slow client still closes the
// upstream's window, as for kind tcp.
//
// The upstream connection opens once the handshake has finished, so that its PROXY v2 header can
// carry the SNI (authority), the ALPN and the SSL TLVs. Until then the connection sits on a FIFO of
// handshake deadlines (one timeout for the appliance, so the list stays sorted), and a handshake
// paused on an offloaded private-key operation resumes from poll_tls().
#include <rte_cycles.h>

#include <algorithm>

#include "edge/relay.hh"

namespace edge {

common::result<void> relay::attach_thread() {
  if (!tls_enabled_ || tls_) return {};
  auto w = tls::worker::create(tls_cfg_);
  if (!w) return common::unexpected(w.error());
  tls_ = std::move(*w);
  return {};
}

void relay::detach_thread() {
  if (!tls_) return;
  // The worker is stopping: TLS connections still open are reset, their sessions go back to the
  // TLS worker, which waits for private-key operations in flight before it is destroyed.
  {
    event ev(*this);  // the sessions go back before the TLS worker
    for (uint32_t i = 0; i < n_slots_; ++i) {
      conn& rc = slots_[i];
      if (!live(rc) || rc.tls == nullptr) continue;
      if (rc.up != nullptr) rc.up->abort();
      rc.up = nullptr;
      if (!rc.tcp_closed) stack_->abort(rc.tcp);
      end(rc, relay_end::shutdown);
    }
  }
  tls_.reset();
}

unsigned relay::poll_tls(unsigned max) {
  if (!tls_) return 0;
  event ev(*this);
  tls::session* ready[32];
  const size_t n = tls_->poll({ready, std::min<size_t>(max, std::size(ready))});
  for (size_t i = 0; i < n; ++i) {
    auto* rc = static_cast<conn*>(ready[i]->user);
    if (rc != nullptr && live(*rc) && rc->tls == ready[i]) client_input(*rc);
  }
  return static_cast<unsigned>(n);
}

void relay::tls_close(conn& rc) {
  if (rc.tls == nullptr) return;
  tls_->close(rc.tls);  // deferred inside while a private-key operation is in flight
  rc.tls = nullptr;
  plain_free_.push_back(rc.plain);
  rc.plain = UINT32_MAX;
}

bool relay::tls_accept(conn& rc, const service& s) {
  if (!tls_ || plain_free_.empty()) return false;
  tls::session* ss = tls_->open(s.tls, &rc);
  if (ss == nullptr) return false;
  rc.tls = ss;
  rc.plain = plain_free_.back();
  plain_free_.pop_back();
  rc.plain_head = rc.plain_tail = 0;
  hs_link(rc, rte_rdtsc());
  return true;
}

// Client bytes arrived (or the client's FIN, or an offload completion).
void relay::client_input(conn& rc) {
  for (size_t i = 0; i < n_stages_; ++i)
    if ((rc.stages & (1u << i)) && stages_[i]->ready(rc) != stage_step::next) return;
  to_upstream(rc);
}

namespace {

// Ciphertext from the TCP receive buffer into the session, as much as its input bound takes.
void feed_session(l4::tcp::stack& st, l4::tcp::conn_handle c, tls::session& ss) {
  for (;;) {
    const auto chunk = st.peek(c);
    if (chunk.empty()) return;
    const size_t n = ss.feed(chunk);
    if (n != 0) st.consume(c, n);
    if (n < chunk.size()) return;
  }
}

}  // namespace

bool relay::tls_handshake(conn& rc) {
  tls::session& ss = *rc.tls;
  if (!rc.tcp_closed) feed_session(*stack_, rc.tcp, ss);
  const tls::io_result r = ss.handshake();
  switch (r.st) {
    case tls::status::ok:
      break;
    case tls::status::want_async:
      return false;  // poll_tls() resumes it
    case tls::status::want_read:
    case tls::status::want_write:
      tls_flush(rc);
      // The client gave up (FIN) in the middle of the handshake.
      if (rc.client_fin && stack_->readable(rc.tcp) == 0)
        tls_fail(rc, relay_end::tls_handshake_aborted, false);
      return false;
    case tls::status::closed:
    case tls::status::error:
      tls_fail(rc, relay_end::tls_handshake_failed, false);
      return false;
  }
  hs_unlink(rc);
  log_step(rc, &access_start::handshake_ns);
  if (rc.waf) rc.waf->set_sni(ss.info().sni);  // requests limits keyed by SNI
  tls_flush(rc);                               // the server's last flight (and TLS 1.3 tickets)
  if (rc.http) {
    enter(rc, relay_state::awaiting_request);  // the upstream opens once a head passed the WAF
    return true;
  }
  const l4::tcp::conn_info* info = stack_->info(rc.tcp);
  const service* s =
      info != nullptr && info->listener < services_.size() ? &services_[info->listener] : nullptr;
  if (s == nullptr || s->pool == nullptr || !open_upstream(rc, *s, *info, &ss.info())) {
    stack_->abort(rc.tcp);
    end(rc, relay_end::no_upstream);
    return false;
  }
  enter(rc, relay_state::streaming);
  return true;
}

// Plaintext buffer is empty: feed the session and decrypt the next record into it.
bool relay::tls_pull(conn& rc) {
  tls::session& ss = *rc.tls;
  if (!rc.tcp_closed) feed_session(*stack_, rc.tcp, ss);
  uint8_t* buf = plain_arena_ + size_t{rc.plain} * plain_size;
  const tls::io_result r = ss.read({buf, plain_size});
  tls_flush(rc);  // what reading produced: a KeyUpdate answer, our close_notify, an alert
  if (r.st == tls::status::error) {
    tls_fail(rc, relay_end::tls_error, false);
    return false;
  }
  rc.plain_head = 0;
  rc.plain_tail = r.st == tls::status::ok ? static_cast<uint32_t>(r.bytes) : 0;
  return true;
}

// Session output (handshake flights, records, alerts) into the TCP send buffer, as far as it has
// room; the rest waits in the session for on_writable.
void relay::tls_flush(conn& rc) {
  if (rc.tcp_closed) return;
  uint8_t buf[16384];
  while (rc.tls->pending_output() != 0) {
    const size_t room = stack_->send_space(rc.tcp);
    if (room == 0) {
      stack_->want_writable(rc.tcp);
      return;
    }
    const size_t n = rc.tls->drain({buf, std::min(room, sizeof buf)});
    if (n == 0) return;
    stack_->send(rc.tcp, {buf, n});  // fits: room was asked for
  }
}

// Upstream bytes → records → TCP send buffer.
void relay::tls_to_client(conn& rc) {
  tls::session& ss = *rc.tls;
  // Record overhead (header, AEAD tag, content type) that must fit beside the plaintext.
  constexpr size_t overhead = 64;
  for (;;) {
    tls_flush(rc);
    if (ss.pending_output() != 0) break;  // the client is slow: on_writable resumes
    const auto chunk = rc.up->peek();
    if (chunk.empty()) break;
    const size_t room = stack_->send_space(rc.tcp);
    const size_t n = std::min({chunk.size(), size_t{16384}, room > overhead ? room - overhead : 0});
    // Do not cut the stream into tiny records because the send buffer is nearly full.
    if (n < std::min(chunk.size(), size_t{2048})) {
      stack_->want_writable(rc.tcp);
      break;
    }
    const tls::io_result r = ss.write({reinterpret_cast<const uint8_t*>(chunk.data()), n});
    if (r.st == tls::status::error) {
      tls_fail(rc, relay_end::tls_error, false);
      return;
    }
    if (r.st == tls::status::closed) {
      // The client sent close_notify (ours went back): it takes no more data; drop the rest.
      rc.up->consume(chunk.size());
      continue;
    }
    if (r.st != tls::status::ok || r.bytes == 0) break;
    sent_to_client(rc, chunk.first(r.bytes));
    rc.up->consume(r.bytes);
    ctr_.bytes_to_client.add(r.bytes);
    log_bytes(rc, 0, r.bytes);
  }
  if (rc.upstream_fin && rc.state != relay_state::upstream_closed && rc.up->readable() == 0) {
    if (!rc.tls_close_queued) {
      rc.tls_close_queued = true;
      ss.shutdown();
    }
    tls_flush(rc);
    if (ss.pending_output() == 0) {  // close_notify is in the send buffer: FIN after it
      stack_->shutdown_write(rc.tcp);
      fin_passed(rc, relay_state::upstream_closed);
    }
  }
}

// The connection ends on a TLS failure: the session's alert (if any) goes out, then FIN (or RST);
// the upstream, if open, is reset. The close lingers (unread client bytes dropped; see waf_block).
void relay::tls_fail(conn& rc, relay_end why, bool reset) {
  if (rc.up != nullptr) rc.up->abort();
  rc.up = nullptr;
  if (!rc.tcp_closed) {
    if (reset) {
      stack_->abort(rc.tcp);
    } else {
      tls_flush(rc);
      stack_->close_lingering(rc.tcp);
    }
  }
  end(rc, why);
}

// The WAF's block response, encrypted, then close_notify and FIN. The caller ends the connection.
void relay::tls_block(conn& rc, std::span<const char> response) {
  tls::session& ss = *rc.tls;
  ss.write({reinterpret_cast<const uint8_t*>(response.data()), response.size()});
  ss.shutdown();
  tls_flush(rc);
  stack_->close_lingering(rc.tcp);
}

void relay::hs_link(conn& rc, uint64_t now) {
  const auto i = static_cast<uint32_t>(&rc - slots_.get());
  rc.hs_deadline = now + hs_timeout_tsc_;
  rc.hs_prev = hs_tail_;
  rc.hs_next = UINT32_MAX;
  rc.in_hs = true;
  if (hs_tail_ != UINT32_MAX)
    slots_[hs_tail_].hs_next = i;
  else
    hs_head_ = i;
  hs_tail_ = i;
}

void relay::hs_unlink(conn& rc) {
  if (!rc.in_hs) return;
  if (rc.hs_prev != UINT32_MAX)
    slots_[rc.hs_prev].hs_next = rc.hs_next;
  else
    hs_head_ = rc.hs_next;
  if (rc.hs_next != UINT32_MAX)
    slots_[rc.hs_next].hs_prev = rc.hs_prev;
  else
    hs_tail_ = rc.hs_prev;
  rc.in_hs = false;
  rc.hs_prev = rc.hs_next = UINT32_MAX;
}

// Handshakes past tls.handshake_timeout_ms: reset (a slowloris on the handshake holds a session,
// a plaintext buffer and possibly an ASYNC job).
void relay::expire_handshakes(uint64_t now) {
  while (hs_head_ != UINT32_MAX) {
    conn& rc = slots_[hs_head_];
    if (rc.hs_deadline > now) return;
    if (!rc.tcp_closed) stack_->abort(rc.tcp);
    end(rc, relay_end::tls_handshake_timeout);
  }
}

}  // namespace edge
