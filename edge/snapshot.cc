#include "edge/snapshot.hh"

#include <rte_malloc.h>

#include <cstdlib>

namespace edge {

snapshot_publisher::snapshot_publisher(unsigned workers) {
  const size_t sz = rte_rcu_qsbr_get_memsize(workers);
  qs_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("edge_rcu", sz, RTE_CACHE_LINE_SIZE));
  if (qs_ == nullptr || rte_rcu_qsbr_init(qs_, workers) != 0) std::abort();
}

snapshot_publisher::~snapshot_publisher() {
  delete current_.exchange(nullptr);
  rte_free(qs_);
}

void snapshot_publisher::register_worker(unsigned id) {
  rte_rcu_qsbr_thread_register(qs_, id);
  rte_rcu_qsbr_thread_online(qs_, id);
}

void snapshot_publisher::unregister_worker(unsigned id) {
  rte_rcu_qsbr_thread_offline(qs_, id);
  rte_rcu_qsbr_thread_unregister(qs_, id);
}

void snapshot_publisher::publish(std::unique_ptr<snapshot> next) {
  const snapshot* old = current_.exchange(next.release(), std::memory_order_acq_rel);
  if (old == nullptr) return;
  // Every online worker reports a quiescent state once per loop iteration, so this returns within
  // one loop (plus at most one idle back-off sleep).
  rte_rcu_qsbr_synchronize(qs_, RTE_QSBR_THRID_INVALID);
  delete old;
}

}  // namespace edge

namespace edge {

void snapshot::attach_l4_limits() {
  l4_limits.assign(cfg->services.size(), nullptr);
  any_l4_limits = false;
  const limits::limit_set* set = waf ? waf->limits.get() : nullptr;
  if (set == nullptr) return;
  for (size_t i = 0; i < cfg->services.size(); ++i) {
    if (cfg->services[i].kind != service_kind::l4) continue;
    l4_limits[i] = set->named(cfg->services[i].name);
    any_l4_limits = any_l4_limits || l4_limits[i] != nullptr;
  }
}

}  // namespace edge
