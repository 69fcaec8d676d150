#pragma once
// The immutable view of the configuration that workers read on the fast path. The control thread
// builds a new one on start and reload, publishes it with one atomic store, and frees the old one
// once every worker has passed a quiescent point (rte_rcu_qsbr).
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <rte_rcu_qsbr.h>

#include "edge/config.hh"
#include "edge/inspection/waf_control.hh"
#include "edge/service_index.hh"
#include "l4/lb/lb_config.hh"
#include "l4/local.hh"
#include "tls/context.hh"

namespace edge {

struct snapshot {
  uint64_t generation = 0;
  std::shared_ptr<const config> cfg;
  std::vector<l4::local_addrs> local;  // per port index: MAC, own addresses and the VIPs it serves
  std::shared_ptr<const l4::lb::lb_config> lb;  // services of kind l4; null when there are none
  // Backend health per pool, indexed like cfg->pools and their backends (true: up or unchecked).
  // Workers copy it into their own upstream pools (kind tcp) when they pick the snapshot up.
  std::vector<std::vector<bool>> pool_health;
  // The rules directory's compiled WAF rules, the services' bound policies and the limit set;
  // null without a rules directory. With one but no WAF policy it holds only the limits (rules
  // null): check `rules` before using the WAF side.
  std::shared_ptr<const waf_rules_snapshot> waf;
  // Limits and ACLs of the kind l4 services a limit file names, indexed like cfg->services (null
  // for the others); set by attach_l4_limits() from `waf` (which owns them) before publication.
  std::vector<const limits::service_limits*> l4_limits;
  bool any_l4_limits = false;
  void attach_l4_limits();
  // The limits of the kind l4 service packet `p` is addressed to, or null.
  const limits::service_limits* l4_limits_for(const l4::ip_addr& dst, uint16_t dport,
                                              uint8_t proto) const {
    if (!any_l4_limits) return nullptr;
    const service_config* s = find_service(dst, dport, proto);
    return s == nullptr ? nullptr : l4_limits[static_cast<size_t>(s - cfg->services.data())];
  }
  // TLS contexts by service name (kind tls). A reload builds new ones (certificates re-read);
  // connections keep the set they started with.
  std::map<std::string, tls::context_set_ptr> tls;

  // cfg->services and lb's services by (vip, port, protocol): one bounded probe per packet. Built
  // by index_services() once cfg and lb are set; empty until then.
  service_index services;

  void index_services() { services.build(cfg->services, lb.get()); }
  const service_config* find_service(const l4::ip_addr& vip, uint16_t port, uint8_t proto) const {
    const service_entry* e = services.find(vip, port, proto);
    return e != nullptr ? e->cfg : nullptr;
  }
};

// Owns the published pointer and the RCU state shared by the workers.
class snapshot_publisher {
 public:
  explicit snapshot_publisher(unsigned workers);
  ~snapshot_publisher();
  snapshot_publisher(const snapshot_publisher&) = delete;
  snapshot_publisher& operator=(const snapshot_publisher&) = delete;

  // Control thread: publish `next` and free the previous snapshot after a grace period.
  void publish(std::unique_ptr<snapshot> next);
  // Workers: the current snapshot (valid until the worker's next quiescent point).
  const snapshot* current() const { return current_.load(std::memory_order_acquire); }
  void register_worker(unsigned id);
  void unregister_worker(unsigned id);
  void quiescent(unsigned id) { rte_rcu_qsbr_quiescent(qs_, id); }

 private:
  std::atomic<const snapshot*> current_{nullptr};
  rte_rcu_qsbr* qs_ = nullptr;
};

}  // namespace edge
