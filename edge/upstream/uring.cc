#include "uring.hh"

#include <cerrno>
#include <cstring>
#include <string>

namespace edge::upstream {

common::result<std::unique_ptr<uring>> uring::create(const uring_config& cfg) {
  if (cfg.sq_entries == 0 || cfg.sq_entries > 32768)
    return common::fail("io_uring sq_entries must be in 1..32768, got " +
                        std::to_string(cfg.sq_entries));
  if (cfg.max_ops == 0 || cfg.max_ops > (1u << 24))
    return common::fail("io_uring max_ops must be in 1..16777216, got " +
                        std::to_string(cfg.max_ops));
  std::unique_ptr<uring> u(new uring());
  io_uring_params p{};
  p.flags = IORING_SETUP_CQSIZE;
  p.cq_entries = cfg.cq_entries ? cfg.cq_entries : cfg.sq_entries * 4;
  if (cfg.sqpoll) {
    p.flags |= IORING_SETUP_SQPOLL;
    p.sq_thread_idle = cfg.sqpoll_idle_ms;
  }
  // SUBMIT_ALL (5.18): one bad SQE must not leave the rest of the batch sitting in the SQ.
  io_uring_params with_all = p;
  with_all.flags |= IORING_SETUP_SUBMIT_ALL;
  int rc = io_uring_queue_init_params(cfg.sq_entries, &u->ring_, &with_all);
  if (rc == -EINVAL)
    rc = io_uring_queue_init_params(cfg.sq_entries, &u->ring_, &p);
  else
    p = with_all;
  if (rc < 0) return common::fail(std::string("io_uring_queue_init: ") + std::strerror(-rc));
  u->ring_ok_ = true;
  // Linked timeouts and connect need these; refuse early rather than fail per connection.
  if (!(p.features & IORING_FEAT_NODROP))
    return common::fail("io_uring: kernel lacks IORING_FEAT_NODROP (need Linux >= 5.5)");
  u->slots_.resize(cfg.max_ops);
  for (uint32_t i = 0; i < cfg.max_ops; ++i)
    u->slots_[i].next_free = i + 1 < cfg.max_ops ? i + 1 : no_slot;
  u->free_head_ = 0;
  return u;
}

uring::~uring() {
  if (ring_ok_) io_uring_queue_exit(&ring_);
}

void uring::flush() {
  if (io_uring_sq_ready(&ring_) == 0) return;
  int rc = io_uring_submit(&ring_);
  if (rc > 0) {
    counters_.submitted.add(static_cast<uint64_t>(rc));
  } else if (rc < 0 && rc != -EBUSY && rc != -EAGAIN) {
    counters_.submit_errors.add();
  }
}

io_uring_sqe* uring::sqe_or_flush() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe) return sqe;
  // The SQ ring is full of prepared entries: hand them to the kernel (does not wait) and retry
  // once.
  flush();
  return io_uring_get_sqe(&ring_);
}

bool uring::has_room(unsigned n) {
  if (room_head_ && !waking_) {
    counters_.fairness_deferrals.add();
    return false;
  }
  if (slots_.size() - in_flight_ < n) {
    counters_.slots_exhausted.add();
    return false;
  }
  if (io_uring_sq_space_left(&ring_) >= n) return true;
  flush();
  if (io_uring_sq_space_left(&ring_) >= n) return true;
  counters_.sq_full.add();
  return false;
}

io_uring_sqe* uring::get_sqe(completion_handler* h, uint16_t tag) {
  // First come, first served once anyone waits: otherwise a handler that re-arms from inside its
  // completion (recv after consume) takes every freed slot and starves the waiters for good.
  if (room_head_ && !waking_) {
    counters_.fairness_deferrals.add();
    return nullptr;
  }
  if (free_head_ == no_slot) {
    counters_.slots_exhausted.add();
    return nullptr;
  }
  io_uring_sqe* sqe = sqe_or_flush();
  if (!sqe) {
    counters_.sq_full.add();
    return nullptr;
  }
  uint32_t idx = free_head_;
  slot& s = slots_[idx];
  free_head_ = s.next_free;
  s.handler = h;
  s.tag = tag;
  s.busy = true;
  ++s.gen;
  ++in_flight_;
  // Zero the SQE so a caller's prep_* starts clean, and set user_data now: io_uring_prep_* keep it.
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(s.gen) << 32) | idx);
  return sqe;
}

void uring::wait_room(completion_handler* h) {
  if (h->room_waiting_) return;
  h->room_waiting_ = true;
  h->room_next_ = nullptr;
  if (room_tail_)
    room_tail_->room_next_ = h;
  else
    room_head_ = h;
  room_tail_ = h;
}

void uring::dispatch(io_uring_cqe* cqe) {
  uint64_t ud = io_uring_cqe_get_data64(cqe);
  uint32_t idx = static_cast<uint32_t>(ud);
  uint32_t gen = static_cast<uint32_t>(ud >> 32);
  if (idx >= slots_.size() || !slots_[idx].busy || slots_[idx].gen != gen) {
    counters_.stale_completions.add();
    return;
  }
  slot& s = slots_[idx];
  completion_handler* h = s.handler;
  uint16_t tag = s.tag;
  // Free the slot before the handler runs so that it can re-arm the same operation at once.
  s.busy = false;
  s.handler = nullptr;
  s.next_free = free_head_;
  free_head_ = idx;
  --in_flight_;
  counters_.completed.add();
  if (h) h->on_completion(tag, cqe->res, cqe->flags);
}

void uring::wake_room_waiters() {
  // Only those waiting now: a handler that fails again re-queues itself for the next poll.
  completion_handler* h = room_head_;
  room_head_ = room_tail_ = nullptr;
  waking_ = true;
  while (h) {
    completion_handler* next = h->room_next_;
    h->room_next_ = nullptr;
    h->room_waiting_ = false;
    h->on_room();
    h = next;
  }
  waking_ = false;
}

unsigned uring::poll(unsigned max) {
  flush();
  unsigned done = 0;
  io_uring_cqe* cqes[64];
  while (done < max) {
    unsigned want = max - done < 64 ? max - done : 64;
    unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, want);
    if (n == 0) break;
    for (unsigned i = 0; i < n; ++i) dispatch(cqes[i]);
    io_uring_cq_advance(&ring_, n);
    done += n;
  }
  if (room_head_ && free_head_ != no_slot) wake_room_waiters();
  return done;
}

unsigned uring::wait(unsigned timeout_ms, unsigned max) {
  flush();
  if (io_uring_cq_ready(&ring_) == 0) {
    __kernel_timespec ts{};
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1000000;
    io_uring_cqe* cqe = nullptr;
    (void)io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
  }
  return poll(max);
}

}  // namespace edge::upstream
