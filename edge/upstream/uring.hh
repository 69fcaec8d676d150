#pragma once
// One io_uring per worker, polled from the worker loop. Operations carry a slot index from a fixed
// pool in user_data, so a completion finds its handler without a heap allocation or a lookup map,
// and a full SQ or an exhausted slot pool is back-pressure (counted), not a blocking call.
#include <liburing.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/counter.hh"
#include "common/result.hh"

namespace edge::upstream {

struct uring_config {
  unsigned sq_entries = 1024;  // the kernel rounds up to a power of two
  unsigned cq_entries = 0;     // 0: 4 x sq_entries (connect + link timeout + send + recv per conn)
  unsigned max_ops = 8192;     // operation slots = operations in flight at once
  bool sqpoll = false;         // a kernel thread submits; saves the io_uring_enter per loop
  unsigned sqpoll_idle_ms = 1000;
};

struct uring_counters {
  common::counter submitted;           // SQEs handed to the kernel
  common::counter completed;           // CQEs dispatched to a handler
  common::counter sq_full;             // get_sqe/has_room refused: SQ ring full even after a flush
  common::counter slots_exhausted;     // get_sqe/has_room refused: not enough free operation slots
  common::counter fairness_deferrals;  // refused because earlier requests still wait for room
  common::counter submit_errors;      // io_uring_submit returned an error (other than EBUSY/EAGAIN)
  common::counter stale_completions;  // CQE whose slot generation no longer matched (a bug if > 0)
};

template <class F>
void visit(const uring_counters& c, F&& f) {
  f("submitted", c.submitted.get());
  f("completed", c.completed.get());
  f("sq_full", c.sq_full.get());
  f("slots_exhausted", c.slots_exhausted.get());
  f("fairness_deferrals", c.fairness_deferrals.get());
  f("submit_errors", c.submit_errors.get());
  f("stale_completions", c.stale_completions.get());
}

class uring;

// The target of completions. `tag` is the handler's own name for the operation (connect, send,
// ...).
class completion_handler {
 public:
  virtual void on_completion(uint16_t tag, int32_t res, uint32_t cqe_flags) = 0;
  // After get_sqe failed and the handler asked wait_room(): poll() calls this once room is back.
  virtual void on_room() {}

 protected:
  completion_handler() = default;
  ~completion_handler() = default;
  completion_handler(const completion_handler&) = delete;
  completion_handler& operator=(const completion_handler&) = delete;

 private:
  friend class uring;
  completion_handler* room_next_ = nullptr;
  bool room_waiting_ = false;
};

class uring {
 public:
  static common::result<std::unique_ptr<uring>> create(const uring_config& cfg);
  ~uring();
  uring(const uring&) = delete;
  uring& operator=(const uring&) = delete;

  // An SQE whose completion goes to h->on_completion(tag, ...); h may be null for fire-and-forget
  // operations (cancels). Null when the SQ or the slot pool is full: the caller keeps its state and
  // may wait_room(). user_data is set here and io_uring_prep_* leave it alone; prepare the SQE
  // before the next poll().
  io_uring_sqe* get_sqe(completion_handler* h, uint16_t tag);
  // Whether n SQEs and n slots can be had now (for linked chains that must go in together); a
  // refusal is counted like get_sqe's.
  bool has_room(unsigned n);
  // Ask for on_room() after the next poll() that frees space. Idempotent. While anyone waits,
  // get_sqe/has_room refuse everyone else (FIFO), so waiters are served in order.
  void wait_room(completion_handler* h);

  // Submit what is queued (non-blocking io_uring_enter, none with SQPOLL awake) and dispatch the
  // completions that are ready, up to max. Never waits. Returns the number of completions handled.
  unsigned poll(unsigned max = 256);

  // Waits up to timeout_ms for one completion, then dispatches like poll(). Control threads and
  // tests only: a worker never calls this.
  unsigned wait(unsigned timeout_ms, unsigned max = 256);

  unsigned ops_in_flight() const { return in_flight_; }
  unsigned max_ops() const { return static_cast<unsigned>(slots_.size()); }
  const uring_counters& counters() const { return counters_; }
  io_uring* raw() { return &ring_; }

 private:
  struct slot {
    completion_handler* handler = nullptr;
    uint32_t gen = 0;
    uint32_t next_free = 0;
    uint16_t tag = 0;
    bool busy = false;
  };
  static constexpr uint32_t no_slot = UINT32_MAX;

  uring() = default;
  io_uring_sqe* sqe_or_flush();
  void dispatch(io_uring_cqe* cqe);
  void wake_room_waiters();
  void flush();

  io_uring ring_{};
  bool ring_ok_ = false;
  std::vector<slot> slots_;
  uint32_t free_head_ = no_slot;
  unsigned in_flight_ = 0;
  completion_handler* room_head_ = nullptr;
  completion_handler* room_tail_ = nullptr;
  bool waking_ = false;
  uring_counters counters_;
};

}  // namespace edge::upstream
