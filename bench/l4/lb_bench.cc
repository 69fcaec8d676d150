// In-process L4 load-balancing pipeline on synthetic packets (no I/O): parse_burst +
// forward_burst over bursts of 32 mbufs, per scenario (full NAT / IPIP / GUE, connection hit or
// miss). Prints one line per scenario; bench/l4/run.sh runs testpmd on the same core and prints
// the ratio. The timed region is the stage only; refilling the burst from templates (standing in
// for the NIC's DMA) is timed separately and reported as `with_refill`.
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

#include "l4/lb/forward.hh"
#include "l4/parse.hh"
#include "packet_builder.hh"

using namespace l4::lb;

namespace {

constexpr size_t burst = 32;
uint32_t flows = 65536;  // --flows

l4::ip_addr ip(const char* s) {
  return *l4::ip_addr::parse(s);
}

lb_spec make_spec() {
  lb_spec s;
  s.wan.port_id = 0;
  s.wan.mac = {{0x02, 0, 0, 0, 0, 1}};
  s.wan.gw_v4 = ip("192.0.2.254");
  s.wan.gw_v6 = ip("2001:db8::fe");
  s.lan.port_id = 1;
  s.lan.mac = {{0x02, 0, 0, 0, 0, 2}};
  s.lan.addr_v4 = ip("10.0.0.1");
  s.lan.addr_v6 = ip("fd00::1");
  s.snat_v4 = {ip("10.0.0.100"), ip("10.0.0.101")};
  s.snat_v6 = {ip("fd00::100")};
  const struct {
    const char* vip;
    fwd_mode mode;
    bool v6;
  } rows[] = {{"198.51.100.1", fwd_mode::fnat, false},
              {"198.51.100.2", fwd_mode::ipip, false},
              {"198.51.100.3", fwd_mode::gue, false},
              {"2001:db8:100::1", fwd_mode::fnat, true},
              {"2001:db8:100::3", fwd_mode::gue, true}};
  for (const auto& r : rows) {
    service_spec svc;
    svc.vip = ip(r.vip);
    svc.port = 80;
    svc.mode = r.mode;
    for (int b = 1; b <= 16; ++b)
      svc.backends.push_back(
          {ip(((r.v6 ? "fd00:1::" : "10.0.1.") + std::to_string(b)).c_str()), 8080});
    s.services.push_back(svc);
  }
  return s;
}

void add_neighbors(lb_worker& w) {
  w.neighbors(port_role::wan).add_static(ip("192.0.2.254"), {{0x02, 0xaa, 0, 0, 0, 1}});
  w.neighbors(port_role::wan).add_static(ip("2001:db8::fe"), {{0x02, 0xaa, 0, 0, 0, 1}});
  for (int b = 1; b <= 16; ++b) {
    const rte_ether_addr mac{{0x02, 0xbb, 0, 0, 0, static_cast<uint8_t>(b)}};
    w.neighbors(port_role::lan).add_static(ip(("10.0.1." + std::to_string(b)).c_str()), mac);
    w.neighbors(port_role::lan).add_static(ip(("fd00:1::" + std::to_string(b)).c_str()), mac);
  }
}

// Client frames of `flows` distinct flows to `vip`:80 (64-byte-class TCP packets).
std::vector<std::vector<uint8_t>> templates(const char* vip, bool syn) {
  std::vector<std::vector<uint8_t>> t;
  const bool v6 = std::strchr(vip, ':') != nullptr;
  for (uint32_t i = 0; i < flows; ++i) {
    edge_test::packet_builder b;
    char client[64];
    if (v6)
      std::snprintf(client, sizeof client, "2001:db8:9::%x:%x", i >> 8, i & 0xff);
    else
      std::snprintf(client, sizeof client, "100.64.%u.%u", (i >> 8) & 0xff, i & 0xff);
    b.from(client).to(vip);
    b.proto = IPPROTO_TCP;
    b.sport = static_cast<uint16_t>(1024 + (i * 7) % 60000);
    b.dport = 80;
    b.tcp_flags = syn ? 0x02 : 0x10;
    b.payload.assign(6, 0x42);
    t.push_back(b.bytes());
  }
  return t;
}

struct figures {
  uint64_t pkts = 0, tx = 0, stage_cycles = 0, all_cycles = 0;
  std::vector<uint32_t> burst_cycles;  // per burst: the median is immune to preemption
};

figures run(const lb_config& cfg, const char* vip, bool hit, double seconds, rte_mempool* mp) {
  auto w = lb_worker::create({.index = 0, .conn_capacity = 1u << 19, .hz = 1000});
  if (!w) {
    std::fprintf(stderr, "%s\n", w.error().str().c_str());
    std::exit(1);
  }
  add_neighbors(**w);
  const auto tpl = templates(vip, !hit);
  rte_mbuf* mbufs[burst];
  if (rte_pktmbuf_alloc_bulk(mp, mbufs, burst) != 0) std::exit(1);
  l4::packet parsed[burst];
  l4::drop pv[burst];
  lb_verdict verdicts[burst];
  uint64_t now = 1;
  const uint64_t step = 5000 * burst / flows + 1;
  size_t next = 0;
  auto refill = [&]() {
    for (size_t i = 0; i < burst; ++i) {
      const auto& f = tpl[next];
      next = next + 1 == tpl.size() ? 0 : next + 1;
      rte_mbuf* m = mbufs[i];
      m->data_off = RTE_PKTMBUF_HEADROOM;
      m->data_len = m->pkt_len = static_cast<uint16_t>(f.size());
      std::memcpy(rte_pktmbuf_mtod(m, void*), f.data(), f.size());
    }
  };
  auto one_burst = [&](figures& fig) {
    const uint64_t t0 = rte_rdtsc();
    refill();
    const uint64_t t1 = rte_rdtsc();
    l4::parse_burst(mbufs, parsed, pv);
    forward_burst(cfg, **w, mbufs, parsed, verdicts, now);
    const uint64_t t2 = rte_rdtsc();
    fig.stage_cycles += t2 - t1;
    if (fig.burst_cycles.size() < fig.burst_cycles.capacity())
      fig.burst_cycles.push_back(static_cast<uint32_t>(t2 - t1));
    fig.all_cycles += t2 - t0;
    fig.pkts += burst;
    for (size_t i = 0; i < burst; ++i) fig.tx += verdicts[i].action == lb_action::tx;
    // Miss: advance the clock so a flow's SYN entry (5 s) has expired when the template comes
    // round again (flows / 32 bursts x step ms > 5 s).
    if (!hit) now += step;
  };
  figures warm;
  if (hit)
    for (size_t i = 0; i < tpl.size() / burst; ++i) one_burst(warm);
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
      "lb_bench", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
      "-m",       "512",       "-l",       core,          "--log-level=lib.eal:error"};
  if (rte_eal_init(sizeof(eal) / sizeof(eal[0]), const_cast<char**>(eal)) < 0) {
    std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  rte_mempool* mp = rte_pktmbuf_pool_create("bench", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                            static_cast<int>(rte_socket_id()));
  if (mp == nullptr) return 1;
  auto cfg = lb_config::build(make_spec());
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().str().c_str());
    return 1;
  }
  const struct {
    const char* name;
    const char* vip;
    bool hit;
  } scenarios[] = {
      {"fnat_v4_hit", "198.51.100.1", true},    {"fnat_v4_miss", "198.51.100.1", false},
      {"ipip_v4_hit", "198.51.100.2", true},    {"ipip_v4_miss", "198.51.100.2", false},
      {"gue_v4_hit", "198.51.100.3", true},     {"gue_v4_miss", "198.51.100.3", false},
      {"fnat_v6_hit", "2001:db8:100::1", true}, {"gue_v6_hit", "2001:db8:100::3", true},
  };
  const double ns_per_cycle = 1e9 / static_cast<double>(rte_get_tsc_hz());
  for (const auto& s : scenarios) {
    const figures f = run(**cfg, s.vip, s.hit, seconds, mp);
    const double ns =
        static_cast<double>(f.stage_cycles) * ns_per_cycle / static_cast<double>(f.pkts);
    const double ns_all =
        static_cast<double>(f.all_cycles) * ns_per_cycle / static_cast<double>(f.pkts);
    std::vector<uint32_t> b = f.burst_cycles;
    std::nth_element(b.begin(), b.begin() + b.size() / 2, b.end());
    const double ns_med = b[b.size() / 2] * ns_per_cycle / burst;
    // mean_*: wall clock over the whole run (what testpmd's pps also is); median_*: the typical
    // burst, which excludes time the core spent on other processes.
    std::printf(
        "scenario=%s pkts=%llu forwarded=%.4f mean_ns=%.1f mean_mpps=%.2f median_ns=%.1f "
        "median_mpps=%.2f with_refill_mean_ns=%.1f\n",
        s.name, static_cast<unsigned long long>(f.pkts),
        static_cast<double>(f.tx) / static_cast<double>(f.pkts), ns, 1e3 / ns, ns_med, 1e3 / ns_med,
        ns_all);
    std::fflush(stdout);
  }
  rte_mempool_free(mp);
  rte_eal_cleanup();
  return 0;
}
