// The worker's burst path on synthetic packets (no I/O): edge::process_burst (parse, service
// lookup, classification, forward_burst, TX buffer) on bursts of 32 full-NAT packets of
// established flows, next to what the worker did before for the same packets (parse_burst, then
// per packet is_lb_packet + forward_one), in the same run. One line per path; mbufs are refilled
// from templates outside the timed region and taken back from the TX buffer after it.
// Usage: l4_worker_bench [--seconds S] [--core N] [--flows F]
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "edge/worker.hh"
#include "l4/lb/forward.hh"
#include "l4/parse.hh"
#include "packet_builder.hh"

namespace {

constexpr size_t burst = 32;
uint32_t flows = 65536;

l4::ip_addr ip(const char* s) {
  return *l4::ip_addr::parse(s);
}

l4::lb::lb_spec make_spec() {
  l4::lb::lb_spec s;
  s.wan.port_id = 0;
  s.wan.mac = {{0x02, 0, 0, 0, 0, 1}};
  s.wan.gw_v4 = ip("192.0.2.254");
  s.lan.port_id = 1;
  s.lan.mac = {{0x02, 0, 0, 0, 0, 2}};
  s.lan.addr_v4 = ip("10.0.0.1");
  s.snat_v4 = {ip("10.0.0.100"), ip("10.0.0.101")};
  l4::lb::service_spec svc;
  svc.vip = ip("198.51.100.1");
  svc.port = 80;
  for (int b = 1; b <= 16; ++b)
    svc.backends.push_back({ip(("10.0.1." + std::to_string(b)).c_str()), 8080});
  s.services.push_back(svc);
  return s;
}

std::unique_ptr<l4::lb::lb_worker> make_lb_worker() {
  auto w =
      l4::lb::lb_worker::create({.index = 0, .conn_capacity = 1u << 19, .hz = rte_get_tsc_hz()});
  if (!w) std::exit(1);
  (*w)->neighbors(l4::lb::port_role::wan).add_static(ip("192.0.2.254"), {{0x02, 0xaa, 0, 0, 0, 1}});
  for (int b = 1; b <= 16; ++b)
    (*w)->neighbors(l4::lb::port_role::lan)
        .add_static(ip(("10.0.1." + std::to_string(b)).c_str()),
                    {{0x02, 0xbb, 0, 0, 0, static_cast<uint8_t>(b)}});
  return std::move(*w);
}

std::vector<std::vector<uint8_t>> templates() {
  std::vector<std::vector<uint8_t>> t;
  for (uint32_t i = 0; i < flows; ++i) {
    edge_test::packet_builder b;
    char client[64];
    std::snprintf(client, sizeof client, "100.64.%u.%u", (i >> 8) & 0xff, i & 0xff);
    b.from(client).to("198.51.100.1");
    b.proto = IPPROTO_TCP;
    b.sport = static_cast<uint16_t>(1024 + (i * 7) % 60000);
    b.dport = 80;
    b.tcp_flags = 0x10;
    b.payload.assign(6, 0x42);
    t.push_back(b.bytes());
  }
  return t;
}

struct figures {
  uint64_t pkts = 0, tx = 0, cycles = 0;
  std::vector<uint32_t> burst_cycles;
};

enum class path { worker, per_packet };

figures run(path which, const std::shared_ptr<const l4::lb::lb_config>& cfg, double seconds,
            rte_mempool* mp) {
  auto cfg_edge = std::make_shared<edge::config>();
  edge::service_config sc;
  sc.name = "l4";
  sc.vip = ip("198.51.100.1");
  sc.port = 80;
  sc.kind = edge::service_kind::l4;
  cfg_edge->services.push_back(sc);
  edge::snapshot snap;
  snap.cfg = cfg_edge;
  snap.lb = cfg;
  snap.local.resize(2);
  snap.local[0].addrs = {ip("198.51.100.1")};
  snap.local[1].addrs = {ip("10.0.0.100")};
  snap.index_services();
  auto w = std::make_unique<edge::worker_context>();
  w->ports.resize(2);
  w->ports[0].id = 0;
  w->ports[1].id = 1;
  w->ports[1].role = edge::port_role::lan;
  w->lb = make_lb_worker();

  const auto tpl = templates();
  rte_mbuf* mbufs[burst];
  if (rte_pktmbuf_alloc_bulk(mp, mbufs, burst) != 0) std::exit(1);
  l4::packet parsed[burst];
  l4::drop pv[burst];
  rte_mbuf* out[burst];
  size_t next = 0;
  auto one_burst = [&](figures& fig) {
    for (size_t i = 0; i < burst; ++i) {
      const auto& f = tpl[next];
      next = next + 1 == tpl.size() ? 0 : next + 1;
      rte_mbuf* m = mbufs[i];
      m->data_off = RTE_PKTMBUF_HEADROOM;
      m->data_len = m->pkt_len = static_cast<uint16_t>(f.size());
      std::memcpy(rte_pktmbuf_mtod(m, void*), f.data(), f.size());
    }
    size_t n_out = 0;
    const uint64_t t0 = rte_rdtsc();
    if (which == path::worker) {
      edge::process_burst(*w, snap, 0, std::span(mbufs, burst));
    } else {
      l4::parse_burst(mbufs, parsed, pv);
      const uint64_t now = rte_rdtsc();
      for (size_t i = 0; i < burst; ++i) {
        if (pv[i] != l4::drop::none || !l4::lb::is_lb_packet(*cfg, parsed[i])) continue;
        const auto v = l4::lb::forward_one(*cfg, *w->lb, mbufs[i], parsed[i], now);
        if (v.action == l4::lb::lb_action::tx) out[n_out++] = mbufs[i];
      }
    }
    const uint64_t t1 = rte_rdtsc();
    if (which == path::worker) {
      // What the port would send: back to the refill (the mbufs are the same ones).
      for (auto& b : w->tx) {
        fig.tx += b.n;
        b.n = 0;
      }
    } else {
      fig.tx += n_out;
    }
    fig.cycles += t1 - t0;
    if (fig.burst_cycles.size() < fig.burst_cycles.capacity())
      fig.burst_cycles.push_back(static_cast<uint32_t>(t1 - t0));
    fig.pkts += burst;
  };
  figures warm;
  for (size_t i = 0; i < 2 * tpl.size() / burst; ++i) one_burst(warm);
  figures fig;
  fig.burst_cycles.reserve(1u << 22);
  const uint64_t budget = static_cast<uint64_t>(seconds * static_cast<double>(rte_get_tsc_hz()));
  const uint64_t start = rte_rdtsc();
  while (rte_rdtsc() - start < budget)
    for (int k = 0; k < 64; ++k) one_burst(fig);
  rte_pktmbuf_free_bulk(mbufs, burst);
  return fig;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2.0;
  const char* core = "0";
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--core") == 0) core = argv[i + 1];
    if (std::strcmp(argv[i], "--flows") == 0) flows = static_cast<uint32_t>(std::atoi(argv[i + 1]));
  }
  const char* eal[] = {
      "worker_bench", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
      "-m",           "512",       "-l",       core,          "--log-level=lib.eal:error"};
  if (rte_eal_init(sizeof(eal) / sizeof(eal[0]), const_cast<char**>(eal)) < 0) {
    std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  rte_mempool* mp = rte_pktmbuf_pool_create("bench", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                            static_cast<int>(rte_socket_id()));
  if (mp == nullptr) return 1;
  auto cfg = l4::lb::lb_config::build(make_spec());
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().str().c_str());
    return 1;
  }
  const double ns_per_cycle = 1e9 / static_cast<double>(rte_get_tsc_hz());
  for (const auto which : {path::per_packet, path::worker, path::per_packet, path::worker}) {
    const figures f = run(which, *cfg, seconds, mp);
    const double ns = static_cast<double>(f.cycles) * ns_per_cycle / static_cast<double>(f.pkts);
    std::vector<uint32_t> b = f.burst_cycles;
    std::nth_element(b.begin(), b.begin() + b.size() / 2, b.end());
    const double ns_med = b[b.size() / 2] * ns_per_cycle / burst;
    std::printf(
        "path=%s flows=%u pkts=%llu forwarded=%.4f mean_ns=%.1f mean_mpps=%.2f median_ns=%.1f "
        "median_mpps=%.2f\n",
        which == path::worker ? "worker_burst" : "per_packet_forward_one", flows,
        static_cast<unsigned long long>(f.pkts),
        static_cast<double>(f.tx) / static_cast<double>(f.pkts), ns, 1e3 / ns, ns_med,
        1e3 / ns_med);
    std::fflush(stdout);
  }
  rte_mempool_free(mp);
  rte_eal_cleanup();
  return 0;
}
