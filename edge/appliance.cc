#include "edge/appliance.hh"

#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <sstream>

namespace edge {

appliance::appliance(config c) : cfg_(std::make_shared<const config>(std::move(c))) {}

appliance::~appliance() { shutdown(); }

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
    s->local.push_back(std::move(la));
  }
  return s;
}

common::result<void> appliance::start(const char* argv0) {
  started_ = std::chrono::steady_clock::now();
  const config& c = *cfg_;
  if (auto r = dp_.init_eal(c, argv0); !r) return r;
  if (auto r = dp_.start_ports(c); !r) return r;
  if (auto r = admin_.listen(c.admin.address, c.admin.port); !r) return r;
  install_routes();

  snapshots_ = std::make_unique<snapshot_publisher>(static_cast<unsigned>(c.workers.lcores.size()));
  ++generation_;
  snapshots_->publish(build_snapshot(cfg_));

  for (unsigned i = 0; i < c.workers.lcores.size(); ++i) {
    auto w = std::make_unique<worker_context>();
    w->id = i;
    w->lcore = c.workers.lcores[i];
    w->burst = c.workers.burst;
    w->idle_sleep_max_us = c.workers.idle_sleep_max_us;
    w->ports = dp_.ports();
    w->snapshots = snapshots_.get();
    w->stop = &stop_workers_;
    const std::string ring = "edge_ctl_" + std::to_string(i);
    w->control_tx = rte_ring_create(ring.c_str(), 1024, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (w->control_tx == nullptr) return common::fail("cannot create control ring " + ring);
    if (int rc = rte_eal_remote_launch(worker_main, w.get(), w->lcore); rc != 0)
      return common::fail("cannot launch worker on lcore " + std::to_string(w->lcore) + ": " + strerror(-rc));
    spdlog::info("worker {} running on lcore {}", i, w->lcore);
    workers_.push_back(std::move(w));
  }
  announce();
  started_ok_ = true;
  spdlog::info("edged ready: {} port(s), {} worker(s), {} service(s), admin on {}:{}", dp_.ports().size(),
               workers_.size(), c.services.size(), c.admin.address.str(), c.admin.port);
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
  if (!started_ok_) return false;
  for (const auto& w : workers_)
    if (!w->running.load()) return false;
  for (const auto& p : dp_.ports()) {
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(p.id, &link) != 0 || link.link_status != RTE_ETH_LINK_UP) return false;
  }
  return true;
}

void appliance::run(const std::atomic<bool>& stop) {
  while (!stop.load()) admin_.poll_once(100);
}

void appliance::shutdown() {
  if (!workers_.empty()) {
    stop_workers_.store(true);
    rte_eal_mp_wait_lcore();
    for (auto& w : workers_) {
      rte_mbuf* m;
      while (rte_ring_sc_dequeue(w->control_tx, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m);
      rte_ring_free(w->control_tx);
    }
    workers_.clear();
    spdlog::info("workers stopped");
  }
  snapshots_.reset();
  if (!dp_.ports().empty()) spdlog::info("closing ports");
  dp_.stop_ports();
  started_ok_ = false;
}

common::result<std::string> appliance::reload() {
  auto next = load_config(cfg_->path);
  if (!next) {
    ++reloads_failed_;
    spdlog::error("reload refused, running configuration kept: {}", next.error().str());
    return std::unexpected(next.error());
  }
  // Ports, lcores and EAL arguments are fixed for the life of the process.
  const config& cur = *cfg_;
  auto same_ports = [&] {
    if (cur.ports.size() != next->ports.size()) return false;
    for (size_t i = 0; i < cur.ports.size(); ++i)
      if (cur.ports[i].name != next->ports[i].name || cur.ports[i].device != next->ports[i].device ||
          cur.ports[i].mtu != next->ports[i].mtu)
        return false;
    return true;
  };
  if (!same_ports() || cur.workers.lcores != next->workers.lcores || cur.eal_args != next->eal_args) {
    ++reloads_failed_;
    return common::fail("ports, worker lcores and EAL arguments need a restart; running configuration kept",
                        cfg_->path);
  }
  cfg_ = std::make_shared<const config>(std::move(*next));
  ++generation_;
  snapshots_->publish(build_snapshot(cfg_));
  ++reloads_ok_;
  announce();
  spdlog::info("configuration reloaded (generation {})", generation_);
  return "reloaded, generation " + std::to_string(generation_) + "\n";
}

void appliance::install_routes() {
  admin_.route("GET", "/healthz", [](const http_request&) { return http_response{200, "text/plain", "ok\n"}; });
  admin_.route("GET", "/readyz", [this](const http_request&) {
    return ready() ? http_response{200, "text/plain", "ready\n"} : http_response{503, "text/plain", "not ready\n"};
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
    return r ? http_response{200, "text/plain", *r} : http_response{409, "text/plain", r.error().str() + "\n"};
  });
}

}  // namespace edge
