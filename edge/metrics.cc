// /metrics (Prometheus text format) and /stats, /config (JSON) for the admin API. Worker counters
// are single-writer and read here with relaxed loads, summed over workers.
#include <rte_ethdev.h>

#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

#include "edge/appliance.hh"
#include "edge/inspection/waf_metrics.hh"
#include "edge/limits_metrics.hh"
#include "edge/metrics_counters.hh"
#include "edge/metrics_tls.hh"
#include "edge/prom_text.hh"

namespace edge {
namespace {

using prom_text::label;

uint64_t drops_of(const worker_context& w, size_t reason) {
  uint64_t v = w.stats.drops.by_reason[reason].get();
  if (w.lb) v += w.lb->drops.by_reason[reason].get();
  if (w.tcp) v += w.tcp->tcp_stats().drops.by_reason[reason].get();
  return v;
}

// Service kind tcp: the userspace TCP stack, the relay and the upstream side, summed over workers.
void tcp_metrics(prom_text::writer& p,
                 const std::vector<std::unique_ptr<worker_context>>& workers) {
  std::vector<const l4::tcp::counters*> per_worker;
  std::vector<const relay_counters*> relays;
  uint64_t sync_errors = 0;
  for (const auto& w : workers)
    if (w->tcp) {
      per_worker.push_back(&w->tcp->tcp_stats());
      relays.push_back(&w->tcp->stats());
      sync_errors += w->tcp_sync_errors.get();
    }
  if (relays.empty()) return;
  append_counter_families<l4::tcp::counters>(p, tcp_counter_families, per_worker);
  p.family("edge_tcp_resets_sent_total", "counter", "RSTs the TCP stack sent, by reason.");
  for (size_t r = 0; r < l4::tcp::reset_reason_count; ++r) {
    uint64_t v = 0;
    for (const l4::tcp::counters* c : per_worker) v += c->resets_sent[r].get();
    p.sample({{"reason", l4::tcp::reset_reason_names[r]}}, v);
  }
  append_relay_families(p, relays);
  p.family("edge_relay_sync_errors_total", "counter",
           "Snapshots whose tcp services could not all be applied.");
  p.sample(sync_errors);

  // Upstream pools, summed by pool name over workers (a pool changed by a reload keeps counting
  // under its name).
  std::map<std::string, std::vector<std::pair<std::string, uint64_t>>> pools;
  for (const auto& w : workers) {
    if (!w->tcp) continue;
    for (size_t i = 0; i < w->tcp->pool_count(); ++i) {
      const auto& pool = w->tcp->pool(i);
      auto& vals = pools[pool.spec().name];
      size_t k = 0;
      upstream::visit(pool.counters(), [&](std::string_view name, uint64_t v) {
        if (k == vals.size()) vals.emplace_back(std::string(name), 0);
        vals[k++].second += v;
      });
    }
  }
  p.family("edge_upstream", "untyped",
           "Upstream pool counters of kind tcp, by pool and counter "
           "(active is a level; the rest are totals).");
  for (const auto& [name, vals] : pools)
    for (const auto& [counter, v] : vals) p.sample({{"pool", name}, {"counter", counter}}, v);

  std::vector<std::pair<std::string, uint64_t>> conns, ring;
  for (const auto& w : workers) {
    if (!w->tcp) continue;
    size_t k = 0;
    upstream::visit(w->tcp->conn_stats(), [&](std::string_view name, uint64_t v) {
      if (k == conns.size()) conns.emplace_back(std::string(name), 0);
      conns[k++].second += v;
    });
    k = 0;
    upstream::visit(w->tcp->ring_stats(), [&](std::string_view name, uint64_t v) {
      if (k == ring.size()) ring.emplace_back(std::string(name), 0);
      ring[k++].second += v;
    });
  }
  p.family("edge_upstream_conns", "untyped",
           "Upstream connection objects, by counter (in_use is a level).");
  for (const auto& [counter, v] : conns) p.sample({{"counter", counter}}, v);
  p.family("edge_upstream_uring", "counter", "Worker io_uring operations, by counter.");
  for (const auto& [counter, v] : ring) p.sample({{"counter", counter}}, v);
}

// Per service (kinds tcp/tls), over all workers: one series per service name seen since start,
// so a service removed by a reload still shows its totals (and the connections it still holds).
void service_metrics(prom_text::writer& p, const service_registry& reg) {
  const size_t n = reg.size();
  if (n == 0) return;
  auto svc = [&](size_t i) { return label{"service", reg.at(i).name}; };
  p.family("edge_service_connections_active", "gauge",
           "Client connections a service holds now, all workers.");
  for (size_t i = 0; i < n; ++i)
    p.sample({svc(i)}, reg.at(i).active.load(std::memory_order_relaxed));
  p.family("edge_service_connections_limit", "gauge", "services[].max_connections (0: no limit).");
  for (size_t i = 0; i < n; ++i)
    p.sample({svc(i)}, reg.at(i).limit.load(std::memory_order_relaxed));
  p.family("edge_service_connections_opened_total", "counter",
           "Client connections a service accepted and handed to an upstream.");
  for (size_t i = 0; i < n; ++i)
    p.sample({svc(i)}, reg.at(i).opened.load(std::memory_order_relaxed));
  p.family("edge_service_connections_refused_total", "counter",
           "New client connections a service refused with RST, by reason (the relay end).");
  for (size_t i = 0; i < n; ++i)
    for (relay_end e : service_refusals)
      p.sample({svc(i), {"reason", relay_end_names[static_cast<size_t>(e)]}},
               reg.at(i).refused[static_cast<size_t>(e)].load(std::memory_order_relaxed));
  p.family("edge_service_connections_per_source_limit", "gauge",
           "services[].max_connections_per_source (0: no limit).");
  for (size_t i = 0; i < n; ++i)
    p.sample({svc(i)}, reg.at(i).per_source.load(std::memory_order_relaxed));
  if (const source_table* st = reg.sources()) {
    p.family(
        "edge_source_table_untracked_total", "counter",
        "Connections admitted without a per-source count: their bucket of the table was full.");
    p.sample(st->untracked());
  }
}

}  // namespace

std::string appliance::metrics_text() const {
  prom_text::writer p;
  const auto& ports = dp_.ports();
  auto port_label = [&](size_t i) { return label{"port", ports[i].name}; };

  struct port_counter {
    const char* name;
    const char* help;
    uint64_t rte_eth_stats::*field;
  };
  static constexpr port_counter port_counters[] = {
      {"edge_port_rx_packets_total", "Frames received by the port (device counter).",
       &rte_eth_stats::ipackets},
      {"edge_port_tx_packets_total", "Frames sent by the port (device counter).",
       &rte_eth_stats::opackets},
      {"edge_port_rx_bytes_total", "Bytes received by the port.", &rte_eth_stats::ibytes},
      {"edge_port_tx_bytes_total", "Bytes sent by the port.", &rte_eth_stats::obytes},
      {"edge_port_rx_missed_total", "Frames the device dropped because RX queues were full.",
       &rte_eth_stats::imissed},
      {"edge_port_rx_errors_total", "Erroneous frames received.", &rte_eth_stats::ierrors},
      {"edge_port_tx_errors_total", "Failed transmissions.", &rte_eth_stats::oerrors},
      {"edge_port_rx_nombuf_total", "RX mbuf allocation failures.", &rte_eth_stats::rx_nombuf},
  };
  std::vector<rte_eth_stats> st(ports.size());
  for (size_t i = 0; i < ports.size(); ++i) rte_eth_stats_get(ports[i].id, &st[i]);
  for (const auto& pc : port_counters) {
    p.family(pc.name, "counter", pc.help);
    for (size_t i = 0; i < ports.size(); ++i) p.sample({port_label(i)}, st[i].*pc.field);
  }

  p.family("edge_port_rx_kernel_drops_total", "counter",
           "Frames the kernel dropped because an af_packet RX ring was full (PACKET_STATISTICS).");
  for (size_t i = 0; i < ports.size(); ++i) p.sample({port_label(i)}, dp_.kernel_rx_drops(i));

  p.family("edge_port_tx_dropped_total", "counter", "Frames freed because the TX queue was full.");
  for (size_t i = 0; i < ports.size(); ++i) {
    uint64_t v = 0;
    for (const auto& w : workers_) v += w->stats.tx_dropped[i].get();
    p.sample({port_label(i)}, v);
  }

  p.family("edge_drops_total", "counter", "Packets not forwarded, by reason, summed over workers.");
  for (size_t r = 1; r < l4::drop_count; ++r) {
    uint64_t v = 0;
    for (const auto& w : workers_) v += drops_of(*w, r);
    const auto& info = l4::drop_table[r];
    p.sample({{"reason", info.name}, {"severity", l4::to_string(info.sev)}}, v);
  }

  p.family("edge_local_replies_total", "counter",
           "ARP, neighbour advertisement and echo replies sent.");
  uint64_t replies = 0;
  for (const auto& w : workers_) replies += w->stats.replies.get();
  p.sample(replies);

  struct worker_counter {
    const char* name;
    const char* help;
    common::counter worker_stats::*field;
  };
  static constexpr worker_counter worker_counters[] = {
      {"edge_worker_loops_total", "Worker loop iterations.", &worker_stats::loops},
      {"edge_worker_busy_loops_total", "Iterations that received at least one frame.",
       &worker_stats::busy_loops},
      {"edge_worker_idle_loops_total", "Iterations that received nothing.",
       &worker_stats::idle_loops},
      {"edge_worker_sleeps_total", "Idle back-off sleeps.", &worker_stats::sleeps},
      {"edge_worker_sleep_microseconds_total", "Time spent in idle back-off sleeps.",
       &worker_stats::sleep_us},
      {"edge_worker_handoffs_out_total",
       "Packets this worker received and handed to the worker that owns them.",
       &worker_stats::handoff_out},
      {"edge_worker_handoffs_in_total", "Packets other workers handed to this one (their owner).",
       &worker_stats::handoff_in},
  };
  for (const auto& wc : worker_counters) {
    p.family(wc.name, "counter", wc.help);
    for (const auto& w : workers_)
      p.sample({{"worker", std::to_string(w->id)}, {"lcore", std::to_string(w->lcore)}},
               (w->stats.*wc.field).get());
  }
  p.family("edge_worker_rx_packets_total", "counter", "Frames received by each worker, by port.");
  for (const auto& w : workers_)
    for (size_t i = 0; i < ports.size(); ++i)
      p.sample({{"worker", std::to_string(w->id)}, port_label(i)}, w->stats.rx_packets[i].get());

  {
    std::vector<const l4::lb::lb_counters*> per_worker;
    for (const auto& w : workers_)
      if (w->lb) per_worker.push_back(&w->lb->counters);
    append_counter_families<l4::lb::lb_counters>(p, lb_counter_families, per_worker);
  }

  tcp_metrics(p, workers_);
  service_metrics(p, service_counters_);

  if (health_) {
    // Each family's samples together, after its header, as the format wants them.
    std::vector<std::string> backends;
    for (size_t i = 0; i < health_->size(); ++i) {
      const auto& t = health_->target(i);
      backends.push_back(t.address.str() + ":" + std::to_string(t.port));
    }
    auto each = [&](auto value) {
      for (size_t i = 0; i < health_->size(); ++i)
        p.sample({{"pool", health_->target(i).pool}, {"backend", backends[i]}},
                 value(health_->state(i)));
    };
    p.family("edge_backend_up", "gauge", "1 when the backend passes its health checks.");
    each([](const auto& hs) { return hs.up.load() ? 1 : 0; });
    p.family("edge_backend_health_checks_total", "counter", "Health checks run, by backend.");
    each([](const auto& hs) { return hs.checks.get(); });
    p.family("edge_backend_health_failures_total", "counter", "Failed health checks, by backend.");
    each([](const auto& hs) { return hs.failures.get(); });
  }

  p.family("edge_config_generation", "gauge",
           "Generation of the published configuration snapshot.");
  p.sample(generation_);
  p.family("edge_config_reloads_total", "counter", "Configuration reloads, by outcome.");
  p.sample({{"outcome", "ok"}}, reloads_ok_);
  p.sample({{"outcome", "refused"}}, reloads_failed_);
  p.family("edge_ready", "gauge", "1 when every port is up and every worker runs.");
  p.sample(ready() ? 1 : 0);
  {
    std::vector<const tls::worker*> tw;
    for (const auto& w : workers_)
      if (w->tcp && w->tcp->tls_worker() != nullptr) tw.push_back(w->tcp->tls_worker());
    append_tls_metrics(p, tw, tls_offload_.get());
    std::lock_guard lock(publish_mu_);
    append_cert_expiry_metrics(p, cert_expiry_, static_cast<int64_t>(std::time(nullptr)));
  }
  if (waf_ctl_) {
    std::vector<const waf::worker_stats*> ws;
    std::vector<const waf_worker*> wstate;
    uint64_t prepare_errors = 0;
    for (const auto& w : workers_)
      if (w->tcp && w->tcp->waf() != nullptr) {
        ws.push_back(&w->tcp->waf()->stats());
        wstate.push_back(w->tcp->waf());
        prepare_errors += w->tcp->stats().waf_prepare_errors.get();
      }
    append_waf_metrics(p, {.control = waf_ctl_.get(),
                           .workers = ws,
                           .audit = waf_audit_.get(),
                           .worker_state = wstate});
    p.family("edge_waf_prepare_errors_total", "counter",
             "WAF rule generations a worker could not size its scratch for (its services kept the "
             "previous rules).");
    p.sample(prepare_errors);
    append_limit_metrics(p, limit_states_);
  }
  admin_.append_metrics(p);
  if (drain_) drain_->append_metrics(p);
  if (access_log_) access_log_->append_metrics(p);
  return std::move(p).str();
}

std::string appliance::stats_json() const {
  nlohmann::json j;
  j["uptime_seconds"] =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count();
  j["ready"] = ready();
  if (drain_)
    j["drain"] = nlohmann::json::parse(drain_->state_json(std::chrono::steady_clock::now()));
  j["config_generation"] = generation_;
  const auto& ports = dp_.ports();
  for (size_t i = 0; i < ports.size(); ++i) {
    rte_eth_stats st{};
    rte_eth_stats_get(ports[i].id, &st);
    char mac[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(mac, sizeof(mac), &ports[i].mac);
    j["ports"].push_back({{"name", ports[i].name},
                          {"role", to_string(ports[i].role)},
                          {"mac", mac},
                          {"rx_packets", st.ipackets},
                          {"tx_packets", st.opackets},
                          {"rx_missed", st.imissed},
                          {"rx_errors", st.ierrors},
                          {"tx_errors", st.oerrors}});
  }
  nlohmann::json drops = nlohmann::json::object();
  for (size_t r = 1; r < l4::drop_count; ++r) {
    uint64_t v = 0;
    for (const auto& w : workers_) v += drops_of(*w, r);
    if (v != 0) drops[std::string(l4::drop_table[r].name)] = v;
  }
  j["drops"] = drops;
  if (health_) {
    for (size_t i = 0; i < health_->size(); ++i) {
      const auto& t = health_->target(i);
      const auto& hs = health_->state(i);
      j["backends"].push_back(
          {{"pool", t.pool},
           {"backend", t.address.str() + ":" + std::to_string(t.port)},
           {"up", hs.up.load()},
           {"last_status", hs.last_status.load()},
           {"last_failure",
            upstream::to_string(static_cast<upstream::health_failure>(hs.last_failure.load()))},
           {"last_check",
            upstream::explain(static_cast<upstream::health_failure>(hs.last_failure.load()),
                              t.params.proxy_v2)},
           {"check_port", t.params.port != 0 ? t.params.port : t.port},
           {"proxy_v2_check", t.params.proxy_v2},
           {"checks", hs.checks.get()},
           {"failures", hs.failures.get()}});
    }
  }
  for (const auto& w : workers_) {
    uint64_t rx = 0;
    for (size_t i = 0; i < ports.size(); ++i) rx += w->stats.rx_packets[i].get();
    j["workers"].push_back({{"id", w->id},
                            {"lcore", w->lcore},
                            {"running", w->running.load()},
                            {"rx_packets", rx},
                            {"loops", w->stats.loops.get()},
                            {"idle_loops", w->stats.idle_loops.get()},
                            {"replies", w->stats.replies.get()}});
  }
  // The TLS, WAF and per-service counters, as /metrics has them (one source: the same text).
  const std::string text = metrics_text();
  nlohmann::json tls = nlohmann::json::object(), waf = nlohmann::json::object(),
                 services = nlohmann::json::object();
  for (size_t at = 0; at < text.size();) {
    const size_t eol = std::min(text.find('\n', at), text.size());
    const std::string_view line(text.data() + at, eol - at);
    at = eol + 1;
    const size_t sp = line.rfind(' ');
    if (line.empty() || line[0] == '#' || sp == std::string_view::npos) continue;
    std::string key(line.substr(0, sp));
    const double v = std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
    // A service label groups the series under services.NAME; the rest keep their labels.
    const size_t sl = key.find("service=\"");
    if (sl != std::string::npos && key.starts_with("edge_")) {
      const size_t from = sl + 9, to = key.find('"', from);
      const std::string svc = key.substr(from, to - from);
      std::string rest = key.substr(0, sl) + key.substr(std::min(to + 1, key.size()));
      for (const char* junk : {"{,", ",}", "{}"})
        if (const size_t k = rest.find(junk); k != std::string::npos)
          rest.replace(k, 2, junk[0] == '{' && junk[1] == ',' ? "{" : junk[0] == ',' ? "}" : "");
      services[svc][rest.substr(5)] = v;
    } else if (key.starts_with("edge_tls_")) {
      tls[key.substr(9)] = v;
    } else if (key.starts_with("edge_waf_")) {
      waf[key.substr(9)] = v;
    }
  }
  j["tls"] = tls;
  j["waf"] = waf;
  j["services"] = services;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";  // never throws on bad UTF-8
}

std::string appliance::config_json() const {
  const config& c = *cfg_;
  nlohmann::json j;
  j["path"] = c.path;
  j["generation"] = generation_;
  for (const auto& p : c.ports) {
    nlohmann::json addrs = nlohmann::json::array();
    for (const auto& a : p.addresses) addrs.push_back(a.str());
    j["ports"].push_back({{"name", p.name},
                          {"role", to_string(p.role)},
                          {"device", p.device},
                          {"addresses", addrs},
                          {"mtu", p.mtu}});
  }
  j["workers"] = {
      {"lcores", c.workers.lcores}, {"burst", c.workers.burst}, {"mbufs", c.workers.mbufs}};
  for (const auto& pool : c.pools) {
    nlohmann::json bs = nlohmann::json::array();
    for (const auto& b : pool.backends)
      bs.push_back({{"address", b.address.str()}, {"port", b.port}, {"weight", b.weight}});
    j["pools"].push_back(
        {{"name", pool.name}, {"backends", bs}, {"proxy_protocol", pool.proxy_protocol}});
  }
  for (const auto& s : c.services)
    j["services"].push_back({{"name", s.name},
                             {"vip", s.vip.str()},
                             {"port", s.port},
                             {"protocol", s.protocol == 6 ? "tcp" : "udp"},
                             {"kind", to_string(s.kind)},
                             {"pool", s.pool}});
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";  // never throws on bad UTF-8
}

}  // namespace edge
