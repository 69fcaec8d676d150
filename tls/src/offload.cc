#include "tls/offload.hh"

#include <openssl/err.h>
#include <pthread.h>

#include <ctime>

#include "mpmc_ring.hh"

namespace tls {

common::result<std::shared_ptr<offload>> offload::start(const offload_config& cfg) {
  if (cfg.threads == 0 || cfg.threads > 256) return common::fail("offload threads must be 1..256");
  if (cfg.queue_capacity == 0) return common::fail("offload queue_capacity must be > 0");
  std::shared_ptr<offload> o(new offload());
  o->requests_ = std::make_unique<detail::mpmc_ring<detail::offload_op*>>(cfg.queue_capacity);
  for (unsigned i = 0; i < cfg.threads; ++i) {
    o->threads_.emplace_back([p = o.get()] { p->thread_main(); });
    if (!cfg.cpus.empty()) {
      cpu_set_t set;
      CPU_ZERO(&set);
      for (unsigned c : cfg.cpus) CPU_SET(c, &set);
      pthread_setaffinity_np(o->threads_.back().native_handle(), sizeof set, &set);  // best effort
    }
  }
  for (size_t i = 0; i < o->threads_.size(); ++i)
    pthread_setname_np(o->threads_[i].native_handle(), "tls-crypto");
  return o;
}

offload::~offload() {
  stop_.store(true, std::memory_order_seq_cst);
  hold_.store(false, std::memory_order_seq_cst);
  wake_.fetch_add(1, std::memory_order_seq_cst);
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

uint64_t offload::cpu_ns() const {
  uint64_t total = 0;
  for (const auto& t : threads_) {
    clockid_t cid;
    timespec ts{};
    if (pthread_getcpuclockid(const_cast<std::thread&>(t).native_handle(), &cid) == 0 &&
        clock_gettime(cid, &ts) == 0)
      total += static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  }
  return total;
}

void offload::hold(bool on) {
  hold_.store(on, std::memory_order_seq_cst);
  if (!on) {
    wake_.fetch_add(1, std::memory_order_seq_cst);
    wake_.notify_all();
  }
}

bool offload::submit(detail::offload_op* op) {
  op->done.store(false, std::memory_order_relaxed);
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  if (!requests_->push(op)) {
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }
  // seq_cst pairs with the sleeper's increment: either it sees the new wake_ or we see it asleep.
  wake_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) != 0) wake_.notify_one();
  return true;
}

void offload::execute(detail::offload_op* op) {
  op->result = op->run(op);
  ERR_clear_error();  // failures surface as the op's result; keep this thread's queue bounded
  // Copy what is needed before `done`: after it the paused job may run on and reuse its stack.
  auto notify = op->notify;
  void* arg = op->notify_arg;
  in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  completed_.fetch_add(1, std::memory_order_relaxed);
  op->done.store(true, std::memory_order_release);
  if (notify != nullptr) notify(arg);
}

void offload::thread_main() {
  for (;;) {
    if (stop_.load(std::memory_order_acquire)) return;
    detail::offload_op* op = nullptr;
    if (!hold_.load(std::memory_order_acquire) && requests_->pop(op)) {
      execute(op);
      continue;
    }
    // Idle: spin briefly (requests come in bursts), then sleep on the wake word.
    bool got = false;
    for (int i = 0; i < 200 && !hold_.load(std::memory_order_acquire); ++i) {
      if (requests_->pop(op)) {
        got = true;
        break;
      }
      __builtin_ia32_pause();
    }
    if (got) {
      execute(op);
      continue;
    }
    uint32_t w = wake_.load(std::memory_order_seq_cst);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    if (!stop_.load(std::memory_order_seq_cst) &&
        (hold_.load(std::memory_order_seq_cst) || !requests_->pop(op))) {
      wake_.wait(w, std::memory_order_seq_cst);
      op = nullptr;
    }
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    if (op != nullptr) execute(op);
  }
}

}  // namespace tls
