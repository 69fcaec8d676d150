#include "edge/appliance.hh"

#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "edge/flow_steer.hh"
#include "edge/limit_targets.hh"
#include "rules/limits_file.hh"

namespace edge {

appliance::appliance(config c) : cfg_(std::make_shared<const config>(std::move(c))) {}

appliance::~appliance() {
  shutdown();
}

namespace {

// Runs `fn` on `lcore` (a worker lcore with nothing running yet) and waits for it, so that what
// `fn` allocates and first touches lands on that lcore's NUMA socket.
common::result<void> run_on_lcore(unsigned lcore, const std::function<common::result<void>()>& fn) {
  struct call {
    const std::function<common::result<void>()>* fn;
    common::result<void> r;
  } k{&fn, {}};
  const auto entry = [](void* arg) -> int {
    auto* kk = static_cast<call*>(arg);
    try {
      kk->r = (*kk->fn)();
    } catch (const std::exception& e) {  // bad_alloc building a worker's tables: refuse to start
      kk->r = common::fail(std::string("building the worker's state: ") + e.what());
    }
    return 0;
  };
  if (int rc = rte_eal_remote_launch(entry, &k, lcore); rc != 0)
    return common::fail("cannot run on lcore " + std::to_string(lcore) + ": " + strerror(-rc));
  rte_eal_wait_lcore(lcore);
  return k.r;
}

l4::lb::port_spec lb_port(const config& c, const std::vector<port_state>& ports, port_role role) {
  l4::lb::port_spec ps;
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i].role != role) continue;
    const port_config& pc = c.ports[i];
    ps.port_id = ports[i].id;
    ps.mac = ports[i].mac;
    ps.mtu = pc.mtu;
    for (const auto& a : pc.addresses) {
      if (a.addr.v6 && !ps.addr_v6.v6) ps.addr_v6 = a.addr;
      if (!a.addr.v6 && ps.addr_v4 == l4::ip_addr{}) ps.addr_v4 = a.addr;
    }
    ps.gw_v4 = pc.gateway_v4;
    ps.gw_v6 = pc.gateway_v6;
    for (const auto& [a, mac] : pc.neighbors) {
      rte_ether_addr m;
      std::memcpy(m.addr_bytes, mac.data(), 6);
      ps.static_neighbors.emplace_back(a, m);
    }
    break;
  }
  return ps;
}

// Kinds tcp and tls both run on the worker's userspace TCP stack and upstream relay.
bool has_tcp_service(const config& c) {
  return c.any_kind(service_kind::tcp) || c.any_kind(service_kind::tls);
}

l4::lb::fwd_mode lb_mode(forwarding_mode m) {
  switch (m) {
    case forwarding_mode::fnat:
      return l4::lb::fwd_mode::fnat;
    case forwarding_mode::ipip:
      return l4::lb::fwd_mode::ipip;
    case forwarding_mode::gue:
      return l4::lb::fwd_mode::gue;
  }
  return l4::lb::fwd_mode::fnat;
}

}  // namespace

common::result<std::shared_ptr<const l4::lb::lb_config>> appliance::build_lb(
    const config& c) const {
  l4::lb::lb_spec spec;
  for (const auto& sc : c.services) {
    if (sc.kind != service_kind::l4) continue;
    l4::lb::service_spec ss;
    ss.vip = sc.vip;
    ss.port = sc.port;
    ss.proto = sc.protocol;
    ss.mode = lb_mode(sc.forwarding);
    ss.gue_port = c.l4.gue_port;
    const pool_config& pool = *c.find_pool(sc.pool);
    const auto h = healthy_.find(pool.name);
    for (size_t i = 0; i < pool.backends.size(); ++i) {
      const auto& b = pool.backends[i];
      const bool up = (h == healthy_.end() || i >= h->second.size() || h->second[i]) &&
                      !operator_disabled(pool.name, b);
      ss.backends.push_back({b.address, b.port, b.weight, up});
    }
    spec.services.push_back(std::move(ss));
  }
  if (spec.services.empty()) return std::shared_ptr<const l4::lb::lb_config>();
  for (const auto& a : c.l4.snat_addresses) (a.v6 ? spec.snat_v6 : spec.snat_v4).push_back(a);
  spec.snat_port_lo = c.l4.snat_port_low;
  spec.snat_port_hi = c.l4.snat_port_high;
  spec.workers = static_cast<uint16_t>(c.workers.lcores.size());
  spec.wan = lb_port(c, dp_.ports(), port_role::wan);
  spec.lan = lb_port(c, dp_.ports(), port_role::lan);
  return l4::lb::lb_config::build(spec, lb_.get());
}

std::unique_ptr<snapshot> appliance::build_snapshot(std::shared_ptr<const config> c) const {
  auto s = std::make_unique<snapshot>();
  s->generation = generation_;
  s->cfg = std::move(c);
  for (const auto& ps : dp_.ports()) {
    l4::local_addrs la;
    la.mac = ps.mac;
    for (const auto& pc : s->cfg->ports)
      if (pc.name == ps.name)
        for (const auto& a : pc.addresses) la.addrs.push_back(a.addr);
    // VIPs are answered on the client-facing ports.
    if (ps.role == port_role::wan)
      for (const auto& svc : s->cfg->services)
        if (!la.has(svc.vip)) la.addrs.push_back(svc.vip);
    // Full-NAT source addresses live on the backend side: replies come back to them.
    if (ps.role == port_role::lan)
      for (const auto& a : s->cfg->l4.snat_addresses)
        if (!la.has(a)) la.addrs.push_back(a);
    s->local.push_back(std::move(la));
  }
  for (const auto& pool : s->cfg->pools) {
    const auto h = healthy_.find(pool.name);
    std::vector<bool> up(pool.backends.size(), true);
    if (h != healthy_.end())
      for (size_t i = 0; i < up.size() && i < h->second.size(); ++i) up[i] = h->second[i];
    for (size_t i = 0; i < up.size(); ++i)
      up[i] = up[i] && !operator_disabled(pool.name, pool.backends[i]);
    s->pool_health.push_back(std::move(up));
  }
  return s;
}

common::result<void> appliance::check(const config& c) {
  if (auto r = check_host(c); !r) return r;
  for (const auto& s : c.services) {
    if (s.kind != service_kind::tls) continue;
    if (auto set = tls::context_set::build(s.tls); !set)
      return common::fail("service '" + s.name + "': " + set.error().str(), s.tls_where);
  }
  if (c.any_waf() || !c.waf.rules_dir.empty()) {
    // As start compiles them, without writing the database cache (a check changes nothing).
    waf_control_config wc{.rules_dir = c.waf.rules_dir, .cache_dir = {}, .services = {}};
    wc.compile_rules = c.any_waf();
    wc.check_limits = [&c](limits::limits_config& lc) {
      mark_explicit_only(lc, c);
      return check_limit_targets(lc, c);
    };
    for (const auto& s : c.services)
      if (s.waf)
        wc.services.push_back({.service = s.name,
                               .policy_file = s.waf_policy_file,
                               .node = s.waf_policy,
                               .where = s.waf_where});
    auto ctl = waf_control::create(std::move(wc), [](std::shared_ptr<const waf_rules_snapshot>) {});
    if (!ctl) {
      auto e = ctl.error();
      e.message = (c.any_waf() ? "WAF: " : "rules directory: ") + e.message;
      if (e.where.empty()) e.where = c.path;
      return common::unexpected(std::move(e));
    }
  }
  return {};
}

common::result<void> appliance::start(const char* argv0) {
  started_ = std::chrono::steady_clock::now();
  const config& c = *cfg_;
  if (auto r = check_host(c); !r) {
    config_error_ = true;
    return r;
  }
  // The CPUs this process was given, read before EAL pins the main thread to its lcore: where
  // the crypto threads may go.
  cpu_set_t given;
  const bool have_given = sched_getaffinity(0, sizeof given, &given) == 0;
  if (auto r = dp_.init_eal(c, argv0); !r) return r;
  if (auto r = dp_.start_ports(c); !r) return r;
  if (auto r = admin_.listen(c.admin.address, c.admin.port); !r) return r;
  install_routes();
  install_drain_routes();
  install_backend_routes();

  // The rules directory: WAF rules for the services with a policy, limits and ACLs for every
  // service (with or without a WAF, any kind).
  if (c.any_waf() || !c.waf.rules_dir.empty())
    if (auto r = start_waf(); !r) {
      config_error_ = true;
      return r;
    }
  if (c.any_kind(service_kind::tls)) {
    if (c.tls.async && c.tls.engine.empty()) {
      // Crypto threads on the CPUs no worker lcore is pinned to (when there are any).
      std::vector<unsigned> cpus;
      if (have_given)
        for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
          if (!CPU_ISSET(cpu, &given)) continue;
          bool worker_cpu = false;
          for (unsigned lc : c.workers.lcores) worker_cpu = worker_cpu || lc == cpu;
          if (!worker_cpu) cpus.push_back(cpu);
        }
      offload_threads_ =
          offload_threads_for(c.tls.offload_threads, c.workers.lcores.size(), cpus.size());
      auto off =
          tls::offload::start({.threads = offload_threads_, .queue_capacity = 4096, .cpus = cpus});
      if (!off) return common::unexpected(off.error());
      tls_offload_ = std::move(*off);
    }
    auto ctx = build_tls(c);
    if (!ctx) {
      config_error_ = true;
      return common::unexpected(ctx.error());
    }
    tls_ctx_ = std::move(*ctx);
    cert_expiry_ = read_cert_expiry(c);
    spdlog::info("TLS: {} service(s), private keys {}", tls_ctx_.size(),
                 !c.tls.async ? "signed on the workers (async off)"
                 : c.tls.engine.empty()
                     ? fmt::format("offloaded to {} crypto thread(s){}", offload_threads_,
                                   c.tls.offload_threads == 0 ? " (auto)" : "")
                     : "through engine " + c.tls.engine);
  }
  if (!c.logging.access_log.empty()) {
    auto al = access_log::open(c.logging.access_log);
    if (!al) return common::unexpected(al.error());
    access_log_ = std::move(*al);
  }
  snapshots_ = std::make_unique<snapshot_publisher>(static_cast<unsigned>(c.workers.lcores.size()));
  if (auto r = republish(); !r) return r;
  if (c.workers.snat_steering == worker_config::steering_mode::flow) {
    if (const auto* lb = snapshots_->current()->lb.get();
        lb != nullptr && c.workers.lcores.size() > 1) {
      // Full-NAT replies come back on the lan ports (where the SNAT addresses are answered).
      const auto rules = snat_steering_rules(*lb);
      for (const auto& ps : dp_.ports()) {
        if (ps.role != port_role::lan) continue;
        if (auto r = install_steering(ps.id, ps.name, rules, steering_); !r) return r;
        spdlog::info(
            "port {}: {} rte_flow rule(s) steer replies to the SNAT addresses to their "
            "owner's queue",
            ps.name, rules.size());
      }
    } else {
      spdlog::info("workers.snat_steering: flow has nothing to steer ({})",
                   c.workers.lcores.size() > 1 ? "no l4 service" : "one worker");
    }
  }

  if (has_tcp_service(c)) {
    // Every relayed connection holds a kernel socket towards its upstream: raise the soft limit
    // on open files to what the relays can use, as far as the hard limit allows.
    const rlim_t want = static_cast<rlim_t>(c.workers.lcores.size()) * c.tcp.max_connections + 1024;
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
      rl.rlim_cur = std::min(want, rl.rlim_max);
      setrlimit(RLIMIT_NOFILE, &rl);
      if (rl.rlim_cur < want)
        spdlog::warn(
            "open-file limit {} is below the {} upstream sockets tcp.max_connections allows",
            rl.rlim_cur, want);
    }
  }
  // SYN cookie and ISN secret: random per boot, shared by the workers.
  std::array<uint8_t, 16> tcp_secret{};
  {
    std::random_device rd;
    for (size_t k = 0; k < tcp_secret.size(); k += 4) {
      const uint32_t v = rd();
      std::memcpy(tcp_secret.data() + k, &v, 4);
    }
  }
  // Hand-off rings (the ownership rule, l4/lb/owner.hh) and the node's neighbour tables exist
  // before the first worker runs: it may hand a packet to, or learn a MAC for, any other.
  if (c.workers.lcores.size() > max_workers)
    return common::fail("at most " + std::to_string(max_workers) + " workers");
  std::vector<rte_ring*> handoff;
  if (c.workers.lcores.size() > 1)
    for (unsigned i = 0; i < c.workers.lcores.size(); ++i) {
      const std::string name = "edge_handoff_" + std::to_string(i);
      rte_ring* r = rte_ring_create(name.c_str(), handoff_ring_size,
                                    rte_lcore_to_socket_id(c.workers.lcores[i]), RING_F_SC_DEQ);
      if (r == nullptr) return common::fail("cannot create hand-off ring " + name);
      handoff.push_back(r);
    }
  l4::lb::shared_neighbors neighbors;
  if (snapshots_->current()->lb) {
    constexpr uint64_t neighbor_max_age_s = 60;  // refreshed from 30 s on
    auto n = l4::lb::shared_neighbors::create(1024, rte_get_tsc_hz(),
                                              neighbor_max_age_s * rte_get_tsc_hz());
    if (!n) return common::unexpected(n.error());
    neighbors = std::move(*n);
  }
  for (unsigned i = 0; i < c.workers.lcores.size(); ++i) {
    // The worker's state is built on the worker's own lcore, so that its tables (connections,
    // TCBs, TLS and WAF state), allocated and first touched there, sit on its NUMA socket and in
    // the malloc arena of its thread. The control thread waits: one worker at a time.
    std::unique_ptr<worker_context> w;
    auto build = [&]() -> common::result<void> {
      w = std::make_unique<worker_context>();
      w->built_on_lcore = rte_lcore_id();
      w->handoff = handoff;
      w->id = i;
      w->lcore = c.workers.lcores[i];
      w->burst = c.workers.burst;
      w->idle_sleep_max_us = c.workers.idle_sleep_max_us;
      w->ports = dp_.ports();
      w->snapshots = snapshots_.get();
      w->stop = &stop_workers_;
      w->drain = &drain_phase_;
      const std::string ring = "edge_ctl_" + std::to_string(i);
      w->tsc_hz = rte_get_tsc_hz();
      w->closed_port_rsts =
          l4::reply_limiter(w->tsc_hz, closed_port_rst_per_s, closed_port_rst_burst);
      w->pool = dp_.pool(i);
      if (snapshots_->current()->lb) {
        auto lbw = l4::lb::lb_worker::create({.index = static_cast<uint16_t>(i),
                                              .conn_capacity = c.l4.conn_table_size,
                                              .hz = w->tsc_hz,
                                              .neighbor_capacity = 1024,
                                              .wan_neighbors = neighbors.wan,
                                              .lan_neighbors = neighbors.lan});
        if (!lbw) return common::unexpected(lbw.error());
        w->lb = std::move(*lbw);
      }
      if (has_tcp_service(c)) {
        relay_setup rs;
        rs.worker = i;
        rs.tcp = c.tcp;
        rs.tx_pool = w->pool;
        rs.secret = tcp_secret;
        rs.tls = c.any_kind(service_kind::tls);
        rs.tls_worker = {.max_sessions = c.tcp.max_connections, .async_jobs = c.tls.async_jobs};
        rs.tls_handshake_timeout_ms = c.tls.handshake_timeout_ms;
        rs.services = &service_counters_;
        // Clients reach tcp VIPs through the wan port (VIPs are answered there only).
        for (size_t p = 0; p < c.ports.size(); ++p)
          if (c.ports[p].role == port_role::wan) {
            w->tcp_port = static_cast<unsigned>(p);
            rs.mtu = c.ports[p].mtu;
            break;
          }
        auto r = relay::create(rs);
        if (!r) return common::unexpected(r.error());
        w->tcp = std::move(*r);
        if (access_log_) w->tcp->set_access_ring(access_log_->add_ring(8192));
        if (!w->tcp->sync(*snapshots_->current()))
          return common::fail("worker " + std::to_string(i) +
                              ": cannot set up the tcp services' listeners and pools");
        if (waf_ctl_ && waf_ctl_->current()->rules) {
          waf_rings_.push_back(std::make_unique<waf_audit_ring>(4096));
          auto ww = waf_worker::create(static_cast<uint16_t>(i), *waf_ctl_->current()->rules,
                                       waf_rings_.back().get());
          if (!ww) return common::unexpected(ww.error());
          w->tcp->set_waf(std::move(*ww));
          waf_audit_->add_ring(waf_rings_.back().get());
          // Again, now that the relay has its WAF state: the services pick up their policies.
          if (!w->tcp->sync(*snapshots_->current()))
            return common::fail("worker " + std::to_string(i) +
                                ": cannot set up the WAF for the tcp services");
        }
        w->seen_generation =
            0;  // the worker syncs again with whatever snapshot is current when it runs
      }
      w->control_tx = rte_ring_create(ring.c_str(), 1024, static_cast<int>(rte_socket_id()),
                                      RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (w->control_tx == nullptr) return common::fail("cannot create control ring " + ring);
      return {};
    };
    if (auto r = run_on_lcore(c.workers.lcores[i], build); !r) return r;
    if (int rc = rte_eal_remote_launch(worker_main, w.get(), w->lcore); rc != 0)
      return common::fail("cannot launch worker on lcore " + std::to_string(w->lcore) + ": " +
                          strerror(-rc));
    spdlog::info("worker {} running on lcore {} (NUMA socket {}; its state built on lcore {})", i,
                 w->lcore, rte_lcore_to_socket_id(w->lcore), w->built_on_lcore);
    workers_.push_back(std::move(w));
  }
  // A worker that cannot set up its thread state (TLS) stops at once: refuse to start.
  for (const auto& w : workers_) {
    for (int i = 0; i < 5000 && !w->running.load() && !w->failed.load(); ++i) usleep(1000);
    if (w->failed.load())
      return common::fail("worker " + std::to_string(w->id) + ": " + w->start_error);
  }
  if (access_log_) access_log_->start();
  if (waf_ctl_) {
    waf_audit_->start();
    if (auto r = waf_ctl_->start_watching(); !r) return r;
  }
  announce();
  {
    auto targets = health_targets(c);
    {
      std::lock_guard lock(publish_mu_);
      healthy_ = health_map(c, targets);
    }
    if (auto r = start_health_checks(std::move(targets)); !r) return r;
  }
  drain_ = std::make_unique<drain_control>(make_drain_hooks());
  started_ok_ = true;
  spdlog::info("edged ready: {} port(s), {} worker(s), {} service(s), admin on {}:{}",
               dp_.ports().size(), workers_.size(), c.services.size(), c.admin.address.str(),
               c.admin.port);
  return {};
}

// Gratuitous ARP / unsolicited NA for every local address and VIP, sent through worker 0, so that
// neighbours learn (or re-learn after a failover) where the addresses live.
void appliance::announce() {
  const snapshot* s = snapshots_->current();
  for (size_t i = 0; i < dp_.ports().size(); ++i) {
    const port_state& ps = dp_.ports()[i];
    for (const auto& a : s->local[i].addrs) {
      rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool(0));
      if (m == nullptr) break;
      const bool built = l4::build_announcement(m, ps.mac, a);
      m->port = static_cast<uint16_t>(i);  // after the build, which resets the mbuf
      if (!built || rte_ring_sp_enqueue(workers_[0]->control_tx, m) != 0) {
        rte_pktmbuf_free(m);
        spdlog::warn("port {}: could not send announcement for {}", ps.name, a.str());
      }
    }
  }
}

bool appliance::ready() const {
  return not_ready_reason().empty();
}

// Empty when ready; otherwise what is missing, for /readyz.
std::string appliance::not_ready_reason() const {
  if (!started_ok_) return "starting";
  if (drain_ && drain_->draining()) return "draining";
  for (const auto& w : workers_)
    if (!w->running.load()) return "worker " + std::to_string(w->id) + " not running";
  for (const auto& p : dp_.ports()) {
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(p.id, &link) != 0 || link.link_status != RTE_ETH_LINK_UP)
      return "port " + p.name + " link down";
  }
  if (cfg_->admin.readiness == admin_config::readiness_mode::pools) {
    std::lock_guard lock(publish_mu_);
    for (const auto& s : cfg_->services) {
      const pool_config* pool = cfg_->find_pool(s.pool);
      if (pool == nullptr) continue;
      const auto h = healthy_.find(pool->name);
      bool any = false;
      for (size_t i = 0; i < pool->backends.size() && !any; ++i)
        any = pool->backends[i].weight > 0 &&
              (h == healthy_.end() || i >= h->second.size() || h->second[i]);
      if (!any) return "service " + s.name + ": no healthy backend in pool " + pool->name;
    }
  }
  return {};
}

void appliance::shutdown() {
  health_.reset();                 // stops the checker thread before the snapshots go
  if (waf_ctl_) waf_ctl_->stop();  // no more rule publications
  remove_steering(steering_);
  if (!workers_.empty()) {
    stop_workers_.store(true);
    rte_eal_mp_wait_lcore();
    for (auto& w : workers_) {
      rte_mbuf* m;
      while (rte_ring_sc_dequeue(w->control_tx, reinterpret_cast<void**>(&m)) == 0)
        rte_pktmbuf_free(m);
      rte_ring_free(w->control_tx);
    }
    // Hand-off rings last: every worker has stopped enqueuing.
    for (rte_ring* r : workers_.front()->handoff) {
      rte_mbuf* m;
      while (rte_ring_sc_dequeue(r, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m);
      rte_ring_free(r);
    }
    // The workers are stopped: write out what their audit rings still hold, before the rings go.
    if (waf_audit_) waf_audit_->stop();
    if (access_log_) access_log_->stop();
    workers_.clear();
    spdlog::info("workers stopped");
  }
  waf_audit_.reset();
  waf_rings_.clear();
  waf_ctl_.reset();
  waf_rules_
      .reset();  // its limit set holds ACL tables (rte_fib, rte_lpm6): freed before the EAL goes
  snapshots_.reset();  // the last snapshot holds TLS context sets, which hold the offload
  tls_ctx_.clear();
  tls_offload_.reset();
  if (!dp_.ports().empty()) spdlog::info("closing ports");
  dp_.stop_ports();
  started_ok_ = false;
}

namespace {

// The keys whose value is taken at start only (EAL, ports' queues, worker loop, admin socket,
// logging, l4 tables), by name, that differ between two configurations.
std::vector<std::string> restart_only_changes(const config& a, const config& b) {
  std::vector<std::string> keys;
  auto note = [&](bool differs, const char* key) {
    if (differs) keys.emplace_back(key);
  };
  note(a.eal_args != b.eal_args, "eal.args");
  bool ports = a.ports.size() != b.ports.size();
  for (size_t i = 0; !ports && i < a.ports.size(); ++i) {
    const port_config &x = a.ports[i], &y = b.ports[i];
    ports = x.name != y.name || x.role != y.role || x.device != y.device || x.mtu != y.mtu ||
            x.rx_descriptors != y.rx_descriptors || x.tx_descriptors != y.tx_descriptors;
  }
  note(ports, "ports (name, role, device, mtu, descriptors)");
  note(a.workers.lcores != b.workers.lcores, "workers.lcores");
  note(a.workers.burst != b.workers.burst, "workers.burst");
  note(a.workers.mbufs != b.workers.mbufs, "workers.mbufs");
  note(a.workers.idle_sleep_max_us != b.workers.idle_sleep_max_us, "workers.idle_sleep_max_us");
  note(a.admin.address != b.admin.address || a.admin.port != b.admin.port, "admin.listen");
  note(a.logging.level != b.logging.level, "logging.level");
  note(a.logging.format != b.logging.format, "logging.format");
  note(a.logging.file != b.logging.file, "logging.file");
  note(a.logging.access_log != b.logging.access_log, "logging.access_log");
  note(a.l4.conn_table_size != b.l4.conn_table_size, "l4.conn_table_size");
  note(a.workers.snat_steering != b.workers.snat_steering, "workers.snat_steering");
  // The NIC's steering rules are written at start from the SNAT addresses and ports.
  note(a.workers.snat_steering == worker_config::steering_mode::flow &&
           (a.l4.snat_addresses != b.l4.snat_addresses ||
            a.l4.snat_port_low != b.l4.snat_port_low || a.l4.snat_port_high != b.l4.snat_port_high),
       "l4.snat_addresses / snat_port_low / snat_port_high (with workers.snat_steering: flow)");
  return keys;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
  return out;
}

std::string pool_key(const pool_config& p) {
  std::string k =
      std::to_string(p.proxy_protocol) + "|" + std::to_string(static_cast<int>(p.balance)) + "|" +
      std::to_string(p.connect_timeout_ms) + "|" + std::to_string(p.max_connect_attempts) + "|" +
      std::to_string(static_cast<int>(p.health.kind)) + p.health.path + "|" +
      std::to_string(p.health.interval_ms) + "|" + std::to_string(p.health.timeout_ms) + "|" +
      std::to_string(p.health.rise) + "|" + std::to_string(p.health.fall);
  for (const auto& b : p.backends)
    k += "|" + b.address.str() + ":" + std::to_string(b.port) + "*" + std::to_string(b.weight);
  return k;
}

std::string service_key(const service_config& s) {
  std::string k = s.vip.str() + ":" + std::to_string(s.port) + "/" + std::to_string(s.protocol) +
                  "|" + to_string(s.kind) + "|" + s.pool + "|" + to_string(s.forwarding) + "|" +
                  std::to_string(s.max_connections) + "|" + s.waf_policy_file + "|" +
                  std::to_string(s.max_connections_per_source) + "|" +
                  std::to_string(s.request_head_timeout_ms) +
                  (s.request_head_timeout_set ? "s" : "");
  for (const auto& c : s.tls.certs) k += "|" + c.cert_file + "," + c.key_file + "," + c.ocsp_file;
  for (const auto& a : s.tls.alpn) k += "|" + a;
  return k;
}

// "services: +new -old ~changed; pools: ..." between the running and the new configuration.
template <class T, class Key>
std::string diff_named(const char* what, const std::vector<T>& cur, const std::vector<T>& next,
                       Key key) {
  std::vector<std::string> added, removed, changed;
  for (const auto& n : next) {
    const T* c = nullptr;
    for (const auto& x : cur)
      if (x.name == n.name) c = &x;
    if (c == nullptr)
      added.push_back("+" + n.name);
    else if (key(*c) != key(n))
      changed.push_back("~" + n.name);
  }
  for (const auto& c : cur) {
    bool kept = false;
    for (const auto& n : next) kept = kept || n.name == c.name;
    if (!kept) removed.push_back("-" + c.name);
  }
  std::vector<std::string> all = added;
  all.insert(all.end(), removed.begin(), removed.end());
  all.insert(all.end(), changed.begin(), changed.end());
  if (all.empty()) return {};
  std::string out = std::string(what) + ":";
  for (const auto& x : all) out += " " + x;
  return out;
}

}  // namespace

common::result<std::string> appliance::reload() {
  auto r = reload_once();
  if (!r)
    spdlog::error("reload: {}", r.error().str());
  else
    spdlog::info("configuration {}", r->substr(0, r->find('\n')));
  return r;
}

common::result<std::string> appliance::reload_once() {
  auto next = load_config(cfg_->path);
  if (!next) {
    ++reloads_failed_;
    auto e = next.error();
    e.message += "; running configuration kept";
    return common::unexpected(std::move(e));
  }
  // Ports, lcores, EAL arguments, the admin socket and logging are fixed for the life of the
  // process: a change there is named and refused, never reported as applied.
  const config& cur = *cfg_;
  if (auto keys = restart_only_changes(cur, *next); !keys.empty()) {
    ++reloads_failed_;
    return common::fail(
        "changed keys that need a restart: " + join(keys) +
            "; running configuration kept (restart edged to apply them, or revert them to reload)",
        cfg_->path);
  }
  // The tcp data path (stack, io_uring, relay pools) is sized and created at start.
  if (has_tcp_service(*next) && !workers_.empty() && !workers_[0]->tcp) {
    ++reloads_failed_;
    return common::fail(
        "the first service of kind tcp needs a restart (edged started without one); "
        "running configuration kept",
        cfg_->path);
  }
  if (next->any_kind(service_kind::tls) && !cur.any_kind(service_kind::tls)) {
    ++reloads_failed_;
    return common::fail(
        "the first service of kind tls needs a restart (edged started without one); "
        "running configuration kept",
        cfg_->path);
  }
  if (next->tls.async != cur.tls.async || next->tls.offload_threads != cur.tls.offload_threads ||
      next->tls.engine != cur.tls.engine || next->tls.async_jobs != cur.tls.async_jobs ||
      next->tls.handshake_timeout_ms != cur.tls.handshake_timeout_ms) {
    ++reloads_failed_;
    return common::fail("the top-level tls settings need a restart; running configuration kept",
                        cfg_->path);
  }
  // The stack and relay take every tcp setting at start; only the per-worker active limit is live.
  tcp_config next_tcp = next->tcp;
  next_tcp.max_active_per_worker = cur.tcp.max_active_per_worker;
  if (!(next_tcp == cur.tcp)) {
    ++reloads_failed_;
    return common::fail(
        "tcp settings other than max_active_per_worker (buffers, pool size, timeouts, syn cookies, "
        "rto_min_ms, congestion_control) need a restart; running configuration kept",
        cfg_->path);
  }
  // The WAF control plane (rules dir, cache, audit log, which services have which policy) is set
  // up at start; the policy files' contents and the rules are re-read below.
  auto waf_key = [](const config& k) {
    std::string key = k.waf.rules_dir + "|" + k.waf.cache_dir + "|" + k.waf.audit_log;
    for (const auto& s : k.services)
      if (s.waf) key += "|" + s.name + "=" + s.waf_policy_file + ":" + YAML::Dump(s.waf_policy);
    return key;
  };
  if (waf_key(cur) != waf_key(*next)) {
    ++reloads_failed_;
    return common::fail(
        "the waf settings (rules_dir, cache_dir, audit_log, services' policies) need a restart; "
        "running configuration kept",
        cfg_->path);
  }
  // The limit files as they are now, against the new configuration (which may add a service that
  // a limit already names, with a kind that cannot enforce it): refused before anything changes,
  // rather than a new configuration serving next to limits it was never checked against.
  if (waf_ctl_ && !next->waf.rules_dir.empty()) {
    common::result<void> ok;
    if (auto lc = rules::load_limits_dir(next->waf.rules_dir); !lc) {
      ok = common::unexpected(lc.error());
    } else {
      mark_explicit_only(*lc, *next);
      ok = check_limit_targets(*lc, *next);
    }
    if (!ok) {
      ++reloads_failed_;
      auto e = ok.error();
      e.message +=
          " (limit files checked against the new configuration); running configuration kept";
      return common::unexpected(std::move(e));
    }
  }
  // New certificates, keys and ticket keys: read and checked before anything changes.
  auto tls_next = build_tls(*next);
  if (!tls_next) {
    ++reloads_failed_;
    auto e = tls_next.error();
    e.message += "; running configuration kept";
    return common::unexpected(std::move(e));
  }
  std::string changes = diff_named("services", cur.services, next->services, service_key);
  if (auto p = diff_named("pools", cur.pools, next->pools, pool_key); !p.empty())
    changes += (changes.empty() ? "" : "; ") + p;
  // Health: the running checker stops here, so that no verdict lands between the state carried
  // into the new snapshot and the checker that goes on from it (a backend that recovered but is
  // not yet up again would otherwise stay out of the tables while the checker says up).
  if (health_) health_->stop();
  auto previous = cfg_;
  auto tls_previous = tls_ctx_;
  auto healthy_previous = healthy_;
  auto next_cfg = std::make_shared<const config>(std::move(*next));
  auto targets = health_targets(*next_cfg);
  {
    std::lock_guard lock(publish_mu_);  // the limit check of the rules watcher reads cfg_
    cfg_ = std::move(next_cfg);
    tls_ctx_ = std::move(*tls_next);
    cert_expiry_ = read_cert_expiry(*cfg_);
    healthy_ = health_map(*cfg_, targets);
  }
  if (auto r = republish(); !r) {
    {
      std::lock_guard lock(publish_mu_);
      cfg_ = previous;
      tls_ctx_ = std::move(tls_previous);
      healthy_ = std::move(healthy_previous);
    }
    if (auto hr = start_health_checks(health_targets(*cfg_)); !hr)
      spdlog::error("health checks not restarted: {}", hr.error().str());
    ++reloads_failed_;
    auto e = r.error();
    e.message += "; running configuration kept";
    return common::unexpected(std::move(e));
  }
  ++reloads_ok_;
  if (auto r = start_health_checks(std::move(targets)); !r) {
    // Nothing checks the backends now: publish them all as up rather than frozen in the last state.
    spdlog::error("health checks not restarted, backends taken as up: {}", r.error().str());
    {
      std::lock_guard lock(publish_mu_);
      healthy_.clear();
    }
    if (auto pr = republish(); !pr)
      spdlog::error("cannot republish after the health checks failed: {}", pr.error().str());
  }
  if (waf_ctl_) {
    auto wr = waf_ctl_->reload();
    if (!wr) {
      return common::fail(
          "configuration reloaded, but the WAF rules reload failed (previous rules kept): " +
              wr.error().str(),
          cfg_->path);
    }
  }
  announce();
  return "reloaded, generation " + std::to_string(generation_) + " (" +
         (changes.empty() ? std::string("no service or pool changed") : changes) + ")\n";
}

common::result<void> appliance::republish() {
  std::lock_guard lock(publish_mu_);
  const auto eff = effective_config();  // cfg_ with the operator's backend weights
  auto lb = build_lb(*eff);
  if (!lb) return common::unexpected(lb.error());
  if (auto r = service_counters_.apply(*cfg_); !r) return r;
  auto snap = build_snapshot(eff);
  snap->lb = *lb;
  snap->index_services();
  snap->waf = waf_rules_;
  snap->attach_l4_limits();
  snap->tls = tls_ctx_;
  snap->generation = ++generation_;
  lb_ = *lb;
  snapshots_->publish(std::move(snap));
  return {};
}

// One target for every backend of every pool of `c` that has a health_check, each starting in the
// state the running checker (stopped, or none) reached for the same pool, address and port.
std::vector<upstream::health_target> appliance::health_targets(const config& c) const {
  std::vector<upstream::health_target> targets;
  for (const auto& pool : c.pools) {
    if (pool.health.kind == health_check_config::type::none) continue;
    // Only the tcp/tls relay writes PROXY headers; an l4 pool's backends see the client's packets.
    bool relayed = false;
    for (const auto& s : c.services)
      relayed = relayed || (s.pool == pool.name && s.kind != service_kind::l4);
    const bool proxy_v2 = pool.health.proxy_protocol.value_or(relayed && pool.proxy_protocol);
    for (size_t i = 0; i < pool.backends.size(); ++i) {
      upstream::health_target t;
      t.pool = pool.name;
      t.backend = i;
      t.address = pool.backends[i].address;
      t.port = pool.backends[i].port;
      t.params.kind = pool.health.kind == health_check_config::type::http
                          ? upstream::health_kind::http
                          : upstream::health_kind::tcp;
      t.params.path = pool.health.path;
      t.params.interval_ms = pool.health.interval_ms;
      t.params.timeout_ms = pool.health.timeout_ms;
      t.params.rise = pool.health.rise;
      t.params.fall = pool.health.fall;
      t.params.port = pool.health.port;
      t.params.proxy_v2 = proxy_v2;
      targets.push_back(std::move(t));
    }
  }
  upstream::carry_health(health_.get(), targets);
  return targets;
}

// What republish() publishes for those targets: their starting states by pool and backend index.
std::map<std::string, std::vector<bool>> appliance::health_map(
    const config& c, const std::vector<upstream::health_target>& targets) {
  std::map<std::string, std::vector<bool>> m;
  for (const auto& pool : c.pools)
    if (pool.health.kind != health_check_config::type::none)
      m[pool.name].assign(pool.backends.size(), true);
  for (const auto& t : targets) {
    auto it = m.find(t.pool);
    if (it != m.end() && t.backend < it->second.size())
      it->second[t.backend] = t.params.initially_up;
  }
  return m;
}

// Replaces the checker; a state change rebuilds the l4 tables (the backend leaves or rejoins
// Maglev; established flows stay) and the tcp/tls pools' health, and republishes.
common::result<void> appliance::start_health_checks(std::vector<upstream::health_target> targets) {
  health_.reset();
  if (targets.empty()) return {};
  auto hc = upstream::health_checker::create(
      std::move(targets), [this](const upstream::health_change& ch) { on_health_change(ch); });
  if (!hc) return common::unexpected(hc.error());
  health_ = std::move(*hc);
  health_->start();
  spdlog::info("health checks running for {} backend(s)", health_->size());
  return {};
}

void appliance::on_health_change(const upstream::health_change& ch) {
  {
    std::lock_guard lock(publish_mu_);
    auto it = healthy_.find(ch.info->pool);
    if (it == healthy_.end() || ch.info->backend >= it->second.size()) return;
    it->second[ch.info->backend] = ch.up;
  }
  if (ch.up)
    spdlog::info("backend {}:{} of pool {} is up", ch.info->address.str(), ch.info->port,
                 ch.info->pool);
  else
    spdlog::warn("backend {}:{} of pool {} is down ({}{}: {})", ch.info->address.str(),
                 ch.info->port, ch.info->pool, upstream::to_string(ch.last_failure),
                 ch.last_status != 0 ? " " + std::to_string(ch.last_status) : "",
                 upstream::explain(ch.last_failure, ch.info->params.proxy_v2));
  if (auto r = republish(); !r)
    spdlog::error("cannot rebuild the l4 tables after a health change: {}", r.error().str());
}

namespace {

std::map<uint32_t, std::string> rule_messages(const waf::ruleset& rs) {
  std::map<uint32_t, std::string> m;
  for (const auto& r : rs.rules()) m[r.id] = r.message;
  return m;
}

}  // namespace

common::result<void> appliance::start_waf() {
  const config& c = *cfg_;
  waf_control_config wc{.rules_dir = c.waf.rules_dir, .cache_dir = c.waf.cache_dir, .services = {}};
  wc.limit_registry = &limit_states_;
  wc.compile_rules = c.any_waf();  // fixed for the process: a new policy needs a restart
  wc.check_limits = [this](limits::limits_config& lc) {
    std::shared_ptr<const config> cur;
    {
      std::lock_guard lock(publish_mu_);
      cur = cfg_;
    }
    mark_explicit_only(lc, *cur);
    return check_limit_targets(lc, *cur);
  };
  for (const auto& s : c.services)
    if (s.waf)
      wc.services.push_back({.service = s.name,
                             .policy_file = s.waf_policy_file,
                             .node = s.waf_policy,
                             .where = s.waf_where});
  auto ctl = waf_control::create(std::move(wc), [this](auto s) { on_waf_rules(std::move(s)); });
  if (!ctl) return common::fail("WAF rules not loaded: " + ctl.error().str(), c.path);
  waf_ctl_ = std::move(*ctl);
  auto audit = waf_audit_drainer::create(c.waf.audit_log.empty() ? "/dev/null" : c.waf.audit_log);
  if (!audit) return common::unexpected(audit.error());
  waf_audit_ = std::move(*audit);
  const auto m = waf_ctl_->metrics();
  if (!c.any_waf()) {
    spdlog::info("limits loaded from {} (no service has a WAF policy: no WAF rules compiled)",
                 c.waf.rules_dir);
    return {};
  }
  waf_audit_->set_rule_messages(rule_messages(*waf_ctl_->current()->rules));
  spdlog::info("WAF rules loaded from {}: {} rules, {} expressions, {:.1f} ms{}", c.waf.rules_dir,
               m.rules, m.expressions, m.last_compile_ms, m.last_from_cache ? " (cache)" : "");
  return {};
}

// Called by waf_control: synchronously inside create() (before the snapshots exist) and later from
// its watcher thread or a POST /reload.
void appliance::on_waf_rules(std::shared_ptr<const waf_rules_snapshot> s) {
  const uint64_t gen = s->generation;
  const bool same = s->same_rules;
  if (waf_audit_ && s->rules) waf_audit_->set_rule_messages(rule_messages(*s->rules));
  {
    std::lock_guard lock(publish_mu_);
    waf_rules_ = std::move(s);
    if (!snapshots_) return;
  }
  if (auto r = republish(); !r)
    spdlog::error("cannot publish WAF rules generation {}: {}", gen, r.error().str());
  else
    spdlog::info("WAF rules generation {} published{}", gen, same ? " (rules unchanged)" : "");
}

common::result<std::map<std::string, tls::context_set_ptr>> appliance::build_tls(
    const config& c) const {
  std::map<std::string, tls::context_set_ptr> out;
  for (const auto& s : c.services) {
    if (s.kind != service_kind::tls) continue;
    tls::context_set_ptr prev;
    {
      std::lock_guard lock(publish_mu_);
      if (auto it = tls_ctx_.find(s.name); it != tls_ctx_.end()) prev = it->second;
    }
    auto set = tls::context_set::build(s.tls, tls_offload_, prev.get());
    if (!set) return common::fail("service '" + s.name + "': " + set.error().str(), s.tls_where);
    out.emplace(s.name, std::move(*set));
  }
  return out;
}

void appliance::install_routes() {
  admin_.route("GET", "/healthz", [](const http_request&) {
    return http_response{200, "text/plain", "ok\n"};
  });
  admin_.route("GET", "/readyz", [this](const http_request&) {
    const std::string why = not_ready_reason();
    return why.empty() ? http_response{200, "text/plain", "ready\n"}
                       : http_response{503, "text/plain", "not ready: " + why + "\n"};
  });
  admin_.route("GET", "/metrics", [this](const http_request&) {
    return http_response{200, "text/plain; version=0.0.4", metrics_text()};
  });
  admin_.route("GET", "/stats", [this](const http_request&) {
    return http_response{200, "application/json", stats_json()};
  });
  admin_.route("GET", "/config", [this](const http_request&) {
    return http_response{200, "application/json", config_json()};
  });
  admin_.route("POST", "/reload", [this](const http_request&) {
    auto r = reload();
    return r ? http_response{200, "text/plain", *r}
             : http_response{409, "text/plain", r.error().str() + "\n"};
  });
}

}  // namespace edge
