#include "upstream_conn.hh"

#include <netinet/tcp.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/sockaddr.hh"

namespace edge::upstream {

const char* to_string(upstream_error e) {
  static constexpr const char* texts[] = {EDGE_UPSTREAM_ERRORS(COMMON_ENUM_TEXT)};
  return common::enum_text(e, texts, "unknown");
}

// ---- pool of connection objects ----

common::result<std::unique_ptr<upstream_conns>> upstream_conns::create(
    uring& ring, const conn_pool_config& cfg) {
  if (cfg.conns == 0) return common::fail("upstream connections: conns must be > 0");
  if (cfg.tx_buffer < 4096 || cfg.rx_buffer < 4096 || cfg.tx_buffer > (64u << 20) ||
      cfg.rx_buffer > (64u << 20))
    return common::fail("upstream connections: buffers must be in 4 KiB..64 MiB");
  const size_t tx = std::bit_ceil(cfg.tx_buffer), rx = std::bit_ceil(cfg.rx_buffer);
  std::unique_ptr<upstream_conns> p(new upstream_conns());
  p->ring_ = &ring;
  p->count_ = cfg.conns;
  p->drain_timeout_.tv_sec = cfg.drain_timeout_ms / 1000;
  p->drain_timeout_.tv_nsec = static_cast<long long>(cfg.drain_timeout_ms % 1000) * 1000000;
  p->conns_ = std::make_unique<upstream_conn[]>(cfg.conns);
  p->buffers_ = std::make_unique_for_overwrite<std::byte[]>(cfg.conns * (tx + rx));
  p->free_.reserve(cfg.conns);
  for (size_t i = cfg.conns; i-- > 0;) {
    upstream_conn& c = p->conns_[i];
    c.ring_ = &ring;
    c.owner_ = p.get();
    std::byte* base = p->buffers_.get() + i * (tx + rx);
    c.tx_ = byte_ring(base, tx);
    c.rx_ = byte_ring(base + tx, rx);
    p->free_.push_back(&c);
  }
  return p;
}

upstream_conns::~upstream_conns() {
  // The kernel may still write into our buffers: reset whatever is open and let every in-flight
  // op complete (or be cancelled) on the still-living ring. Shutdown only; bounded to 2 s.
  for (size_t i = 0; i < count_; ++i) {
    upstream_conn& c = conns_[i];
    if (c.relay_owned_)
      c.abort();
    else if (c.state_ == upstream_conn::state::draining)
      c.finish_close(true);
  }
  for (int k = 0; k < 200 && free_.size() < count_; ++k) ring_->wait(10);
}

common::expected<upstream_conn*, upstream_error> upstream_conns::open(const upstream_open& o) {
  if (!o.pool || !o.events)
    return common::unexpected(upstream_error::no_resources);  // caller bug, not a crash
  if (free_.empty()) {
    counters_.exhausted.add();
    return common::unexpected(upstream_error::no_resources);
  }
  upstream_conn* c = free_.back();
  c->pool_ = o.pool;
  c->events_ = o.events;
  c->cookie_ = o.cookie;
  c->by_hash_ = o.by_hash;
  c->hash_ = o.hash;
  c->tx_.clear();
  c->rx_.clear();
  c->send_inflight_ = c->recv_inflight_ = false;
  c->need_connect_ = c->need_send_ = c->need_recv_ = c->need_cancel_ = false;
  c->need_timer_remove_ = c->drain_timer_armed_ = false;
  c->write_blocked_ = c->shut_wr_requested_ = c->shut_wr_done_ = c->fin_received_ = false;
  c->timed_out_ = c->active_counted_ = false;
  c->connect_phase_ = 0;
  c->connect_res_ = 0;
  c->fd_ = -1;
  c->inflight_ = 0;
  c->attempts_ = 0;
  c->backend_ = no_backend;
  if (o.proxy) {
    // The tx ring is empty, so its write region is the whole buffer: encode in place.
    auto r = c->tx_.write_region();
    auto n = encode_proxy_v2(*o.proxy, {reinterpret_cast<uint8_t*>(r.data()), r.size()});
    if (!n) {
      counters_.proxy_header_errors.add();
      return common::unexpected(upstream_error::proxy_header);
    }
    c->tx_.commit(*n);
  }
  const unsigned ms = o.pool->spec().connect_timeout_ms;
  c->timeout_.tv_sec = ms / 1000;
  c->timeout_.tv_nsec = static_cast<long long>(ms % 1000) * 1000000;
  switch (c->attempt()) {
    case upstream_conn::attempt_result::started:
      break;
    case upstream_conn::attempt_result::no_backend:
      o.pool->counters().no_backend.add();
      return common::unexpected(upstream_error::no_backend);
    case upstream_conn::attempt_result::sys_error:
      counters_.socket_errors.add();
      return common::unexpected(upstream_error::no_resources);
  }
  free_.pop_back();
  ++c->gen_;
  c->relay_owned_ = true;
  counters_.opened.add();
  counters_.in_use.set(count_ - free_.size());
  return c;
}

void upstream_conns::reclaim(upstream_conn* c) {
  c->state_ = upstream_conn::state::free;
  c->events_ = nullptr;
  ++c->gen_;
  free_.push_back(c);
  counters_.in_use.set(count_ - free_.size());
}

// ---- connect with fall-over ----

upstream_conn::attempt_result upstream_conn::attempt() {
  std::span<const size_t> tried(tried_, attempts_);
  size_t b = by_hash_ ? pool_->select_by_hash(hash_, tried) : pool_->select_least_conn(tried);
  if (b == no_backend) return attempt_result::no_backend;
  const backend_spec& spec = pool_->at(b).spec;
  const common::sock_addr sa =
      common::make_sock_addr(spec.address.v6, spec.address.b.data(), spec.port);
  addr_ = sa.ss;
  addr_len_ = sa.len;
  // socket() and setsockopt() never block; the connect itself goes through the ring.
  fd_ = ::socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    connect_res_ = -errno;
    pool_->counters().connect_failures.add();
    return attempt_result::sys_error;
  }
  int one = 1;
  (void)::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  tried_[attempts_++] = b;
  backend_ = b;
  pool_->on_attempt(b);
  active_counted_ = true;
  state_ = state::connecting;
  submit_connect();
  return attempt_result::started;
}

void upstream_conn::submit_connect() {
  if (!ring_->has_room(2)) {  // the pair must go in together or the timeout would not be linked
    need_connect_ = true;
    ring_->wait_room(this);
    return;
  }
  need_connect_ = false;
  io_uring_sqe* sqe = ring_->get_sqe(this, tag_connect);
  io_uring_prep_connect(sqe, fd_, reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
  sqe->flags |= IOSQE_IO_LINK;
  io_uring_sqe* to = ring_->get_sqe(this, tag_connect_timeout);
  io_uring_prep_link_timeout(to, &timeout_, 0);
  inflight_ += 2;
  connect_phase_ = 2;
  connect_res_ = 0;
  timed_out_ = false;
}

void upstream_conn::connect_done() {
  if (state_ != state::connecting) return;  // aborted meanwhile; finish_close did the rest
  backend& b = pool_->at(backend_);
  if (connect_res_ == 0 && !timed_out_) {
    b.counters.connects.add();
    pool_->counters().connects.add();
    state_ = state::connected;
    const uint32_t g = gen_;
    events_->on_upstream_connected(*this);
    if (g != gen_ || state_ != state::connected) return;
    post_send();
    maybe_shutdown();  // a half-close asked for before the connection was up, with nothing queued
    post_recv();
    return;
  }
  if (timed_out_) {
    b.counters.connect_timeouts.add();
    pool_->counters().connect_timeouts.add();
  } else {
    b.counters.connect_failures.add();
    pool_->counters().connect_failures.add();
  }
  const int err = timed_out_ ? ETIMEDOUT : -connect_res_;
  const bool was_timeout = timed_out_;
  ::close(fd_);  // nothing of ours is in flight on it: both connect CQEs are in
  fd_ = -1;
  pool_->on_finished(backend_);
  active_counted_ = false;
  if (attempts_ < pool_->spec().max_connect_attempts && attempts_ < 8) {
    switch (attempt()) {
      case attempt_result::started:
        pool_->counters().retries.add();
        return;
      case attempt_result::no_backend:
        break;
      case attempt_result::sys_error:
        break;
    }
  }
  pool_->counters().gave_up.add();
  fail(was_timeout ? upstream_error::connect_timeout : upstream_error::connect_failed, err);
}

// ---- data ----

size_t upstream_conn::send(std::span<const std::byte> data) {
  if ((state_ != state::connecting && state_ != state::connected) || shut_wr_requested_) return 0;
  size_t n = tx_.write(data);
  if (n < data.size()) write_blocked_ = true;
  if (state_ == state::connected) post_send();
  return n;
}

void upstream_conn::post_send() {
  if (send_inflight_ || tx_.empty() || fd_ < 0) return;
  if (state_ != state::connected && state_ != state::draining) return;
  io_uring_sqe* sqe = ring_->get_sqe(this, tag_send);
  if (!sqe) {
    need_send_ = true;
    ring_->wait_room(this);
    return;
  }
  need_send_ = false;
  auto r = tx_.read_region();
  io_uring_prep_send(sqe, fd_, r.data(), r.size(), MSG_NOSIGNAL);
  send_inflight_ = true;
  ++inflight_;
}

void upstream_conn::post_recv() {
  if (recv_inflight_ || fin_received_ || state_ != state::connected || rx_.space() == 0) return;
  io_uring_sqe* sqe = ring_->get_sqe(this, tag_recv);
  if (!sqe) {
    need_recv_ = true;
    ring_->wait_room(this);
    return;
  }
  need_recv_ = false;
  auto r = rx_.write_region();
  io_uring_prep_recv(sqe, fd_, r.data(), r.size(), 0);
  recv_inflight_ = true;
  ++inflight_;
}

void upstream_conn::consume(size_t n) {
  rx_.consume(n);
  post_recv();
}

void upstream_conn::shutdown_write() {
  if (state_ != state::connecting && state_ != state::connected) return;
  shut_wr_requested_ = true;
  maybe_shutdown();
}

void upstream_conn::maybe_shutdown() {
  if (!shut_wr_requested_ || shut_wr_done_ || !tx_.empty() || send_inflight_ || fd_ < 0) return;
  if (state_ != state::connected && state_ != state::draining) return;
  shut_wr_done_ = true;
  (void)::shutdown(fd_, SHUT_WR);  // queues a FIN; never blocks
}

void upstream_conn::count_bytes(bool to_upstream, uint64_t n) {
  backend& b = pool_->at(backend_);
  if (to_upstream) {
    b.counters.bytes_to_upstream.add(n);
    pool_->counters().bytes_to_upstream.add(n);
  } else {
    b.counters.bytes_from_upstream.add(n);
    pool_->counters().bytes_from_upstream.add(n);
  }
}

void upstream_conn::on_completion(uint16_t tag, int32_t res, uint32_t) {
  --inflight_;
  const uint32_t g = gen_;
  switch (tag) {
    case tag_connect:
      connect_res_ = res;
      if (--connect_phase_ == 0) connect_done();
      break;
    case tag_connect_timeout:
      if (res == -ETIME) timed_out_ = true;
      if (--connect_phase_ == 0) connect_done();
      break;
    case tag_send:
      send_inflight_ = false;
      if (state_ != state::connected && state_ != state::draining) break;
      if (res < 0) {
        io_failed(res);
        break;
      }
      tx_.consume(static_cast<size_t>(res));
      count_bytes(true, static_cast<uint64_t>(res));
      post_send();
      maybe_shutdown();
      if (state_ == state::draining) {
        if (tx_.empty()) finish_close(false);
        break;
      }
      if (write_blocked_ && tx_.space() > 0) {
        write_blocked_ = false;
        events_->on_upstream_writable(*this);
      }
      break;
    case tag_recv:
      recv_inflight_ = false;
      if (state_ != state::connected) break;  // draining/closing: nobody wants the bytes
      if (res > 0) {
        rx_.commit(static_cast<size_t>(res));
        count_bytes(false, static_cast<uint64_t>(res));
        events_->on_upstream_data(*this);
        if (g == gen_) post_recv();
      } else if (res == 0) {
        fin_received_ = true;
        events_->on_upstream_fin(*this);
      } else if (res != -ECANCELED) {
        io_failed(res);
      }
      break;
    case tag_drain_timer:
      drain_timer_armed_ = false;
      if (res == -ETIME && state_ == state::draining) {
        owner_->counters_.drain_timeouts.add();
        finish_close(true);
      }
      break;
    case tag_cancel:
    case tag_timer_remove:
      break;
  }
  if (g == gen_) maybe_reclaim();
}

void upstream_conn::on_room() {
  if (state_ == state::free) return;
  if (need_timer_remove_) {
    if (io_uring_sqe* sqe = ring_->get_sqe(this, tag_timer_remove)) {
      io_uring_prep_timeout_remove(sqe, drain_timer_ud_, 0);
      ++inflight_;
      need_timer_remove_ = false;
    } else {
      ring_->wait_room(this);
      return;
    }
  }
  if (need_cancel_ && fd_ >= 0 && state_ == state::closing) {
    if (io_uring_sqe* sqe = ring_->get_sqe(this, tag_cancel)) {
      io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
      ++inflight_;
      need_cancel_ = false;
    } else {
      ring_->wait_room(this);
    }
  }
  if (state_ == state::closing) return;
  if (need_connect_ && state_ == state::connecting) submit_connect();
  if (need_send_) post_send();
  if (need_recv_) post_recv();
}

// ---- errors and release ----

void upstream_conn::io_failed(int res) {
  backend& b = pool_->at(backend_);
  const bool reset = res == -ECONNRESET || res == -EPIPE;
  (reset ? b.counters.resets : b.counters.errors).add();
  (reset ? pool_->counters().resets : pool_->counters().errors).add();
  if (state_ == state::draining) {  // the relay is gone; just release
    finish_close(true);
    return;
  }
  fail(reset ? upstream_error::reset : upstream_error::io_error, -res);
}

void upstream_conn::fail(upstream_error e, int err) {
  state_ = state::failed;
  if (relay_owned_) events_->on_upstream_error(*this, e, err);
}

void upstream_conn::close() {
  if (!relay_owned_) return;
  relay_owned_ = false;
  owner_->counters_.closed.add();
  if (state_ == state::connected && (!tx_.empty() || send_inflight_)) {
    // A peer that stops reading must not hold the object forever: bound the drain with a timer.
    io_uring_sqe* sqe = ring_->get_sqe(this, tag_drain_timer);
    if (sqe) {
      io_uring_prep_timeout(sqe, &owner_->drain_timeout_, 0, 0);
      drain_timer_ud_ = sqe->user_data;
      drain_timer_armed_ = true;
      ++inflight_;
      shut_wr_requested_ = true;  // FIN right after the last byte
      state_ = state::draining;
      return;
    }
    owner_->counters_.drain_timeouts.add();  // no SQE for the timer: reset rather than risk a leak
    finish_close(true);
    return;
  }
  finish_close(false);
}

void upstream_conn::abort() {
  if (!relay_owned_) return;
  relay_owned_ = false;
  owner_->counters_.aborted.add();
  finish_close(true);
}

void upstream_conn::finish_close(bool reset) {
  state_ = state::closing;
  write_blocked_ = false;
  if (drain_timer_armed_) {
    drain_timer_armed_ = false;
    need_timer_remove_ = true;  // removed in on_room() below, or when an SQE is free
  }
  if (fd_ >= 0 && reset) {
    linger l{1, 0};  // the final close sends RST instead of FIN and drops unsent data
    (void)::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  if (fd_ >= 0 && inflight_ > 0) {
    // In-flight ops reference the socket and its buffers. Cancel them and keep the descriptor open
    // until they are in, so its number cannot be reused under the cancel. SHUT_RD wakes a pending
    // recv without sending anything, in case the cancel has to wait for an SQE.
    (void)::shutdown(fd_, SHUT_RD);
    need_cancel_ = true;
  }
  if (need_cancel_ || need_timer_remove_) on_room();
  if (active_counted_) {
    pool_->on_finished(backend_);
    active_counted_ = false;
  }
  maybe_reclaim();
}

void upstream_conn::maybe_reclaim() {
  if (state_ != state::closing || inflight_ > 0) return;
  if (fd_ >= 0) {
    ::close(fd_);  // never blocks: SO_LINGER is off or {1, 0}
    fd_ = -1;
  }
  need_cancel_ = need_timer_remove_ = false;
  owner_->reclaim(this);
}

}  // namespace edge::upstream
