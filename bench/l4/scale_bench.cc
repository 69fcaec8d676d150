// In-process scaling of the L4 pipeline over workers, and the cost of one hand-off.
//
// scaling: each worker (one lcore each) runs parse_burst + forward_burst (full NAT, connection
// hits) on its own lb_worker over the flows the ownership rule gives it, for --seconds; printed:
// Mpps per worker with 1 and with 2 workers (from the median burst time, so that preemption
// on a shared machine does not count), and ratio = 2-worker total / 1-worker total.
//
// tcp: each worker runs its own userspace TCP stack (l4::tcp::stack, one per worker as in edged)
// and a scripted client opens and closes connections to it: SYN → SYN-ACK, ACK (accepted), FIN
// from the client → the app closes → the stack's FIN, the client's last ACK frees the TCB. Only
// the stack's own work is timed (input, timers, drain of what it sends, freeing those frames),
// not the client's frame building. Connections overlap: 256 are opened, then those are closed.
// Printed: connections/s per worker with 1 and with 2 workers (from the median batch) and the
// ratio. No upstream: this is the TCP part of a relayed
// connection (bench/tcp measures the whole relay against HAProxy).
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
#include "l4/tcp/stack.hh"
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

// ---- TCP connections per second ----

struct tcp_job {
  uint16_t index = 0;
  std::atomic<bool>* go = nullptr;
  uint64_t conns = 0, cycles = 0, failed = 0;
  std::vector<uint32_t> per_conn;  // stack cycles per connection, of each batch
};

// The app of the bench: accepts every connection and closes it when the client does.
class closing_app : public l4::tcp::app {
 public:
  l4::tcp::stack* st = nullptr;
  uint64_t accepted = 0;
  bool on_accept(l4::tcp::conn_handle, const l4::tcp::conn_info&) override {
    ++accepted;
    return true;
  }
  void on_readable(l4::tcp::conn_handle) override {}
  void on_writable(l4::tcp::conn_handle) override {}
  void on_peer_fin(l4::tcp::conn_handle c) override { st->close(c); }
  void on_closed(l4::tcp::conn_handle, l4::tcp::close_reason) override {}
};

uint32_t be32_at(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

int tcp_conn_job(void* arg) {
  auto& j = *static_cast<tcp_job*>(arg);
  const std::string name = "tcp_tx_" + std::to_string(j.index) + "_" + std::to_string(rte_rdtsc());
  rte_mempool* tx = rte_pktmbuf_pool_create(name.c_str(), 2047, 64, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                            static_cast<int>(rte_socket_id()));
  const std::string cname = "tcp_cl_" + std::to_string(j.index) + "_" + std::to_string(rte_rdtsc());
  rte_mempool* cl = rte_pktmbuf_pool_create(cname.c_str(), 255, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                            static_cast<int>(rte_socket_id()));
  if (tx == nullptr || cl == nullptr) std::exit(1);
  l4::tcp::config cfg;
  cfg.max_connections = 4096;
  cfg.cookies = l4::tcp::cookie_mode::off;
  closing_app app;
  auto st = l4::tcp::stack::create(cfg, tx, &app);
  if (!st) std::exit(1);
  app.st = st->get();
  if (!(*st)->add_listener(ip("198.51.100.1"), 80, 1)) std::exit(1);
  edge_test::packet_builder b;
  b.proto = IPPROTO_TCP;
  b.to("198.51.100.1");
  b.dport = 80;
  rte_mbuf* out[64];
  // One client segment in, everything the stack sends out; returns the server's sequence number
  // of the last segment it sent (the SYN-ACK's ISN after a SYN), and adds the stack's cycles.
  uint64_t cycles = 0;
  auto exchange = [&](uint8_t flags, uint32_t seq, uint32_t ack) {
    b.tcp_flags = flags;
    b.seq = seq;
    b.ack = ack;
    rte_mbuf* m = edge_test::to_mbuf(cl, b.bytes());
    l4::packet p;
    if (m == nullptr || l4::parse(m, p) != l4::drop::none) std::exit(1);
    const uint64_t t0 = rte_rdtsc();
    (*st)->poll(t0);
    const l4::drop d = (*st)->input(m, p);
    const uint16_t n = (*st)->drain_tx(out, 64);
    const uint64_t t1 = rte_rdtsc();
    // The client reads the server's sequence number (not the stack's work: untimed).
    uint32_t server_seq = 0;
    if (n > 0) {
      l4::packet q;
      if (l4::parse(out[n - 1], q) == l4::drop::none)
        server_seq = be32_at(rte_pktmbuf_mtod(out[n - 1], const uint8_t*) + q.l4_off() + 4);
    }
    const uint64_t t2 = rte_rdtsc();
    rte_pktmbuf_free_bulk(out, n);  // what TX completion does with sent frames
    cycles += (t1 - t0) + (rte_rdtsc() - t2);
    if (d != l4::drop::none) ++j.failed;
    return server_seq;
  };
  j.per_conn.reserve(1u << 21);
  while (!j.go->load(std::memory_order_acquire)) rte_pause();
  const uint64_t budget = static_cast<uint64_t>(seconds * static_cast<double>(rte_get_tsc_hz()));
  const uint64_t start = rte_rdtsc();
  // Connections overlap as they would under load: a batch of `open_at_once` is opened, then the
  // batch is closed, so the stack holds that many TCBs (and their flow-table entries) at once.
  constexpr uint32_t open_at_once = 256;
  std::vector<uint32_t> cisn(open_at_once), siss(open_at_once);
  auto client_of = [&](uint32_t i) {
    char client[64];
    std::snprintf(client, sizeof client, "100.%u.%u.%u", 64 + j.index, (i >> 8) & 0xff, i & 0xff);
    b.from(client);
    b.sport = static_cast<uint16_t>(1024 + (i >> 16));
  };
  uint32_t first = 0;
  while (rte_rdtsc() - start < budget) {
    const uint64_t before = cycles;
    const uint64_t opened = app.accepted;
    for (uint32_t k = 0; k < open_at_once; ++k) {  // distinct clients, as many would be
      client_of(first + k);
      cisn[k] = (first + k) * 2654435761u;
      siss[k] = exchange(0x02, cisn[k], 0);      // SYN → SYN-ACK
      exchange(0x10, cisn[k] + 1, siss[k] + 1);  // ACK: accepted
    }
    for (uint32_t k = 0; k < open_at_once; ++k) {
      client_of(first + k);
      exchange(0x11, cisn[k] + 1, siss[k] + 1);  // FIN → ACK + FIN (the app closes on it)
      exchange(0x10, cisn[k] + 2, siss[k] + 2);  // the last ACK frees the TCB
    }
    first += open_at_once;
    if (app.accepted != opened + open_at_once) j.failed += open_at_once;
    if (j.per_conn.size() < j.per_conn.capacity())
      j.per_conn.push_back(static_cast<uint32_t>((cycles - before) / open_at_once));
    j.conns += open_at_once;
  }
  j.cycles = cycles;
  // Every connection must have been closed and freed, or the figure measures something else.
  if ((*st)->stats().active.get() != 0) j.failed += (*st)->stats().active.get();
  st->reset();
  rte_mempool_free(tx);
  rte_mempool_free(cl);
  return 0;
}

// Connections/s of each worker (stack time, from the median batch) with `n` workers.
std::vector<double> tcp_scaling(uint16_t n, const std::vector<unsigned>& lcores) {
  std::atomic<bool> go{false};
  std::vector<tcp_job> jobs(n);
  for (uint16_t i = 0; i < n; ++i) jobs[i] = {i, &go};
  for (uint16_t i = 1; i < n; ++i) rte_eal_remote_launch(tcp_conn_job, &jobs[i], lcores[i]);
  go.store(true, std::memory_order_release);
  tcp_conn_job(&jobs[0]);
  rte_eal_mp_wait_lcore();
  std::vector<double> rate;
  for (auto& j : jobs) {
    if (j.failed != 0 || j.conns == 0) {
      std::fprintf(stderr, "tcp worker %u: %lu of %lu connections did not open and close cleanly\n",
                   j.index, static_cast<unsigned long>(j.failed),
                   static_cast<unsigned long>(j.conns));
      std::exit(1);
    }
    rate.push_back(static_cast<double>(rte_get_tsc_hz()) / median(j.per_conn));
  }
  return rate;
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
  const auto t1 = tcp_scaling(1, lcores);
  const auto t2 = tcp_scaling(2, lcores);
  std::printf("scaling tcp_conn: 1 worker %.0f conn/s; 2 workers %.0f + %.0f conn/s; ratio %.2f\n",
              t1[0], t2[0], t2[1], (t2[0] + t2[1]) / t1[0]);

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
