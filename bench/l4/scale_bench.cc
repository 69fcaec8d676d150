// In-process scaling of the L4 pipeline over workers, and the cost of one hand-off.
//
// scaling: each worker (one lcore each) runs parse_burst + forward_burst (full NAT, connection
// hits) on its own lb_worker over the flows the ownership rule gives it, for --seconds; printed:
// Mpps per worker with 1 and with 2 workers (from the median burst time, so that preemption
// on a shared machine does not count), and ratio = 2-worker total / 1-worker total.
//
// hand-off: worker A parses a burst, computes flow_owner for every packet and enqueues the burst
// on B's ring (rte_ring_mp_enqueue_burst); worker B dequeues bursts (rte_ring_sc_dequeue_burst)
// and touches each packet's first cache line, as the owner's parse would. Printed: ns per packet
// on each side (owner computation + enqueue on A, dequeue + first touch on B); their sum is what a
// hand-off adds to a packet's path, compared with the stage's own ns per packet.
//
// Usage: l4_scale_bench [--seconds S] [--flows N] [--cores A,B]
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "l4/lb/forward.hh"
#include "l4/lb/owner.hh"
#include "l4/parse.hh"
#include "packet_builder.hh"

using namespace l4::lb;

namespace {

constexpr size_t burst = 32;
uint32_t flows = 65536;
double seconds = 2.0;

l4::ip_addr ip(const char* s) {
  return *l4::ip_addr::parse(s);
}

lb_spec make_spec(uint16_t workers) {
  lb_spec s;
  s.workers = workers;
  s.wan.port_id = 0;
  s.wan.mac = {{0x02, 0, 0, 0, 0, 1}};
  s.wan.gw_v4 = ip("192.0.2.254");
  s.lan.port_id = 1;
  s.lan.mac = {{0x02, 0, 0, 0, 0, 2}};
  s.lan.addr_v4 = ip("10.0.0.1");
  s.snat_v4 = {ip("10.0.0.100"), ip("10.0.0.101")};
  service_spec svc;
  svc.vip = ip("198.51.100.1");
  svc.port = 80;
  svc.mode = fwd_mode::fnat;
  for (int b = 1; b <= 16; ++b)
    svc.backends.push_back({ip(("10.0.1." + std::to_string(b)).c_str()), 8080});
  s.services.push_back(svc);
  return s;
}

// Client frames of the flows `owner` owns among `flows` (all of them when workers == 1).
std::vector<std::vector<uint8_t>> templates(const lb_config& cfg, uint16_t workers, uint16_t owner,
                                            rte_mempool* mp) {
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
    auto f = b.bytes();
    rte_mbuf* m = edge_test::to_mbuf(mp, f);
    l4::packet p;
    if (m == nullptr || l4::parse(m, p) != l4::drop::none) std::exit(1);
    if (flow_owner(&cfg, m, p, workers, 0) == owner) t.push_back(std::move(f));
    rte_pktmbuf_free(m);
  }
  return t;
}

struct job {
  const lb_config* cfg = nullptr;
  uint16_t index = 0, workers = 1;
  rte_mempool* mp = nullptr;
  std::vector<std::vector<uint8_t>> tpl;
  std::atomic<bool>* go = nullptr;
  uint64_t pkts = 0, cycles = 0;
  std::vector<uint32_t> per_burst;  // stage cycles of each burst: the median ignores preemption
};

double median(std::vector<uint32_t>& v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

void refill(rte_mbuf** mbufs, const std::vector<std::vector<uint8_t>>& tpl, size_t& next) {
  for (size_t i = 0; i < burst; ++i) {
    const auto& f = tpl[next];
    next = next + 1 == tpl.size() ? 0 : next + 1;
    rte_mbuf* m = mbufs[i];
    m->data_off = RTE_PKTMBUF_HEADROOM;
    m->data_len = m->pkt_len = static_cast<uint16_t>(f.size());
    std::memcpy(rte_pktmbuf_mtod(m, void*), f.data(), f.size());
  }
}

int forward_job(void* arg) {
  auto& j = *static_cast<job*>(arg);
  auto w = lb_worker::create({.index = j.index, .conn_capacity = 1u << 19, .hz = 1000});
  if (!w) std::exit(1);
  (*w)->neighbors(port_role::wan).add_static(ip("192.0.2.254"), {{0x02, 0xaa, 0, 0, 0, 1}});
  for (int b = 1; b <= 16; ++b)
    (*w)->neighbors(port_role::lan)
        .add_static(ip(("10.0.1." + std::to_string(b)).c_str()),
                    {{0x02, 0xbb, 0, 0, 0, static_cast<uint8_t>(b)}});
  rte_mbuf* mbufs[burst];
  if (rte_pktmbuf_alloc_bulk(j.mp, mbufs, burst) != 0) std::exit(1);
  l4::packet parsed[burst];
  l4::drop pv[burst];
  lb_verdict verdicts[burst];
  size_t next = 0;
  for (size_t i = 0; i < j.tpl.size() / burst + 1; ++i) {  // warm: every flow has its entry
    refill(mbufs, j.tpl, next);
    l4::parse_burst(mbufs, parsed, pv);
    forward_burst(*j.cfg, **w, mbufs, parsed, verdicts, 1);
  }
  j.per_burst.reserve(1u << 21);
  while (!j.go->load(std::memory_order_acquire)) rte_pause();
  const uint64_t budget = static_cast<uint64_t>(seconds * static_cast<double>(rte_get_tsc_hz()));
  const uint64_t start = rte_rdtsc();
  uint64_t stage = 0;
  while (rte_rdtsc() - start < budget)
    for (int k = 0; k < 64; ++k) {
      refill(mbufs, j.tpl, next);
      const uint64_t t0 = rte_rdtsc();
      l4::parse_burst(mbufs, parsed, pv);
      forward_burst(*j.cfg, **w, mbufs, parsed, verdicts, 1);
      const uint64_t d = rte_rdtsc() - t0;
      stage += d;
      if (j.per_burst.size() < j.per_burst.capacity())
        j.per_burst.push_back(static_cast<uint32_t>(d));
      j.pkts += burst;
    }
  j.cycles = stage;
  rte_pktmbuf_free_bulk(mbufs, burst);
  return 0;
}

// Mpps of each worker (stage time only; from the median burst) with `n` workers on `lcores`.
std::vector<double> scaling(uint16_t n, const std::vector<unsigned>& lcores) {
  auto cfg = lb_config::build(make_spec(n));
  if (!cfg) std::exit(1);
  std::atomic<bool> go{false};
  std::vector<job> jobs(n);
  for (uint16_t i = 0; i < n; ++i) {
    const std::string name = "scale_" + std::to_string(n) + "_" + std::to_string(i);
    jobs[i].mp = rte_pktmbuf_pool_create(name.c_str(), 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                         static_cast<int>(rte_socket_id()));
    if (jobs[i].mp == nullptr) std::exit(1);
    jobs[i] = {cfg->get(), i, n, jobs[i].mp, templates(**cfg, n, i, jobs[i].mp), &go};
  }
  for (uint16_t i = 1; i < n; ++i) rte_eal_remote_launch(forward_job, &jobs[i], lcores[i]);
  go.store(true, std::memory_order_release);
  forward_job(&jobs[0]);
  rte_eal_mp_wait_lcore();
  std::vector<double> mpps;
  for (auto& j : jobs) {
    mpps.push_back(static_cast<double>(j.pkts) /
                   (static_cast<double>(j.cycles) / static_cast<double>(rte_get_tsc_hz())) / 1e6);
    rte_mempool_free(j.mp);
  }
  return mpps;
}

struct handoff_job {
  rte_ring* ring = nullptr;
  rte_mempool* mp = nullptr;
  const lb_config* cfg = nullptr;
  std::vector<std::vector<uint8_t>> tpl;
  std::atomic<bool>* done = nullptr;
  uint64_t pkts = 0, cycles = 0, full = 0;
  std::vector<uint32_t> per_pkt;  // receiver: cycles per packet of each non-empty dequeue
};

int handoff_consumer(void* arg) {
  auto& j = *static_cast<handoff_job*>(arg);
  rte_mbuf* got[burst];
  volatile uint8_t sink = 0;
  while (!j.done->load(std::memory_order_acquire) || rte_ring_count(j.ring) != 0) {
    const uint64_t t0 = rte_rdtsc();
    const unsigned n =
        rte_ring_sc_dequeue_burst(j.ring, reinterpret_cast<void**>(got), burst, nullptr);
    for (unsigned i = 0; i < n; ++i) sink = sink + rte_pktmbuf_mtod(got[i], const uint8_t*)[12];
    const uint64_t t1 = rte_rdtsc();
    if (n == 0) continue;
    j.cycles += t1 - t0;
    j.pkts += n;
    if (j.per_pkt.size() < j.per_pkt.capacity())
      j.per_pkt.push_back(static_cast<uint32_t>((t1 - t0) / n));
    rte_pktmbuf_free_bulk(got, n);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cores = "0,1";
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--flows") == 0) flows = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--cores") == 0) cores = argv[i + 1];
  }
  const char* eal[] = {"l4_scale_bench", "--no-huge",
                       "--no-pci",       "--no-shconf",
                       "--no-telemetry", "-m",
                       "1024",           "-l",
                       cores.c_str(),    "--log-level=lib.eal:error"};
  if (rte_eal_init(sizeof(eal) / sizeof(eal[0]), const_cast<char**>(eal)) < 0) {
    std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  std::vector<unsigned> lcores;
  unsigned l;
  RTE_LCORE_FOREACH(l) lcores.push_back(l);
  if (lcores.size() < 2) {
    std::fprintf(stderr, "need two lcores (--cores A,B)\n");
    return 1;
  }
  const auto one = scaling(1, lcores);
  const auto two = scaling(2, lcores);
  std::printf(
      "scaling fnat_v4_hit flows=%u: 1 worker %.2f Mpps; 2 workers %.2f + %.2f Mpps; ratio %.2f\n",
      flows, one[0], two[0], two[1], (two[0] + two[1]) / one[0]);

  // Hand-off: A (main lcore) → ring → B.
  auto cfg = lb_config::build(make_spec(2));
  handoff_job hj;
  std::atomic<bool> done{false};
  hj.ring =
      rte_ring_create("scale_handoff", 4096, static_cast<int>(rte_socket_id()), RING_F_SC_DEQ);
  hj.mp = rte_pktmbuf_pool_create("scale_h", 16383, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                  static_cast<int>(rte_socket_id()));
  if (hj.ring == nullptr || hj.mp == nullptr || !cfg) return 1;
  hj.cfg = cfg->get();
  hj.tpl = templates(**cfg, 1, 0, hj.mp);
  hj.done = &done;
  hj.per_pkt.reserve(1u << 21);
  std::vector<uint32_t> a_per_pkt;
  a_per_pkt.reserve(1u << 21);
  rte_eal_remote_launch(handoff_consumer, &hj, lcores[1]);
  rte_mbuf* mbufs[burst];
  l4::packet parsed[burst];
  l4::drop pv[burst];
  size_t next = 0;
  uint64_t a_cycles = 0, a_pkts = 0, owners = 0;
  const uint64_t budget = static_cast<uint64_t>(seconds * static_cast<double>(rte_get_tsc_hz()));
  const uint64_t start = rte_rdtsc();
  while (rte_rdtsc() - start < budget) {
    if (rte_pktmbuf_alloc_bulk(hj.mp, mbufs, burst) != 0) continue;
    refill(mbufs, hj.tpl, next);
    l4::parse_burst(mbufs, parsed, pv);
    const uint64_t t0 = rte_rdtsc();
    for (size_t i = 0; i < burst; ++i) owners += flow_owner(hj.cfg, mbufs[i], parsed[i], 2, 0);
    const unsigned sent =
        rte_ring_mp_enqueue_burst(hj.ring, reinterpret_cast<void**>(mbufs), burst, nullptr);
    const uint64_t d = rte_rdtsc() - t0;
    a_cycles += d;
    if (a_per_pkt.size() < a_per_pkt.capacity())
      a_per_pkt.push_back(static_cast<uint32_t>(d / burst));
    a_pkts += sent;
    if (sent < burst) {
      hj.full += burst - sent;
      rte_pktmbuf_free_bulk(mbufs + sent, burst - sent);
    }
  }
  done.store(true, std::memory_order_release);
  rte_eal_mp_wait_lcore();
  const double ns = 1e9 / static_cast<double>(rte_get_tsc_hz());
  // Medians (per burst, per packet): the means are printed too, but include preemption.
  const double a = median(a_per_pkt) * ns, b = median(hj.per_pkt) * ns;
  std::printf("handoff means (with preemption): sender %.1f, receiver %.1f ns/pkt\n",
              static_cast<double>(a_cycles) * ns / static_cast<double>(a_pkts),
              static_cast<double>(hj.cycles) * ns / static_cast<double>(hj.pkts));
  std::printf(
      "handoff: sender %.1f ns/pkt (owner + burst enqueue), receiver %.1f ns/pkt (burst dequeue + "
      "first touch), "
      "total %.1f ns/pkt; %lu packets, %lu refused by a full ring (owners sum %lu)\n",
      a, b, a + b, static_cast<unsigned long>(hj.pkts), static_cast<unsigned long>(hj.full),
      static_cast<unsigned long>(owners));
  return 0;
}
