// Interop driver (not a unit test): runs the TCP stack on a DPDK port (e.g. net_af_packet on a
// veth) as an echo server, so a real Linux client can be checked against it. See interop.sh.
//   interop_echo <EAL args> -- <vip> <port> <seconds>
// Echoes every byte back, honouring back-pressure (reads only what fits in the send buffer), and
// half-closes after the peer's FIN once everything is echoed. Prints the counters at exit.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "l4/local.hh"
#include "l4/parse.hh"
#include "l4/tcp/stack.hh"

namespace {

volatile std::sig_atomic_t g_stop = 0;

struct echo_app : l4::tcp::app {
  l4::tcp::stack* st = nullptr;
  std::vector<l4::tcp::conn_handle> fin_pending;
  uint64_t echoed = 0;

  void pump(l4::tcp::conn_handle c) {
    for (;;) {
      auto chunk = st->peek(c);
      if (chunk.empty()) break;
      const size_t n = st->send(c, chunk);
      st->consume(c, n);
      echoed += n;
      if (n < chunk.size()) return;  // send buffer full: leave the rest, the window closes
    }
    for (auto it = fin_pending.begin(); it != fin_pending.end(); ++it)
      if (*it == c && st->readable(c) == 0) {
        st->shutdown_write(c);
        fin_pending.erase(it);
        break;
      }
  }
  bool on_accept(l4::tcp::conn_handle, const l4::tcp::conn_info&) override { return true; }
  void on_readable(l4::tcp::conn_handle c) override { pump(c); }
  void on_writable(l4::tcp::conn_handle c) override { pump(c); }
  void on_peer_fin(l4::tcp::conn_handle c) override {
    fin_pending.push_back(c);
    pump(c);
  }
  void on_closed(l4::tcp::conn_handle c, l4::tcp::close_reason) override {
    std::erase(fin_pending, c);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const int used = rte_eal_init(argc, argv);
  if (used < 0) return 1;
  argc -= used, argv += used;
  if (argc < 4) {
    std::fprintf(stderr, "usage: interop_echo <EAL args> -- <vip> <port> <seconds>\n");
    return 2;
  }
  const auto vip = l4::ip_addr::parse(argv[1]);
  if (!vip) return 2;
  const auto port = static_cast<uint16_t>(std::atoi(argv[2]));
  const uint64_t seconds = std::strtoull(argv[3], nullptr, 10);

  rte_mempool* pool =
      rte_pktmbuf_pool_create("pool", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  rte_eth_conf conf{};
  if (pool == nullptr || rte_eth_dev_configure(0, 1, 1, &conf) != 0 ||
      rte_eth_rx_queue_setup(0, 0, 1024, SOCKET_ID_ANY, nullptr, pool) != 0 ||
      rte_eth_tx_queue_setup(0, 0, 1024, SOCKET_ID_ANY, nullptr) != 0 ||
      rte_eth_dev_start(0) != 0) {
    std::fprintf(stderr, "port setup failed\n");
    return 1;
  }
  rte_eth_promiscuous_enable(0);
  l4::local_addrs local;
  rte_eth_macaddr_get(0, &local.mac);
  local.addrs.push_back(*vip);

  echo_app app;
  l4::tcp::config cfg;
  cfg.max_connections = 4096;
  cfg.snd_buf = cfg.rcv_buf = 256 * 1024;
  cfg.time_wait_ms = 1000;
  for (size_t i = 0; i < cfg.secret.size(); ++i)
    cfg.secret[i] = static_cast<uint8_t>(rte_rdtsc() >> (i % 8));
  if (const char* c = std::getenv("TCP_COOKIES"))
    cfg.cookies = l4::tcp::cookie_mode::always, (void)c;
  auto made = l4::tcp::stack::create(cfg, pool, &app);
  if (!made) {
    std::fprintf(stderr, "%s\n", made.error().message.c_str());
    return 1;
  }
  auto& st = **made;
  app.st = &st;
  if (!st.add_listener(*vip, port, 1)) return 1;

  const uint64_t end = rte_rdtsc() + seconds * rte_get_tsc_hz();
  rte_mbuf* rx[32];
  rte_mbuf* tx[256];
  std::printf("listening on %s:%u\n", argv[1], port);
  std::fflush(stdout);
  std::signal(SIGINT, [](int) { g_stop = 1; });
  while (rte_rdtsc() < end && g_stop == 0) {
    st.poll(rte_rdtsc());
    uint16_t ntx = 0;
    const uint16_t n = rte_eth_rx_burst(0, 0, rx, 32);
    for (uint16_t i = 0; i < n; ++i) {
      l4::packet p;
      if (l4::parse(rx[i], p) != l4::drop::none) {
        rte_pktmbuf_free(rx[i]);
        continue;
      }
      const auto v = l4::local_input(rx[i], p, local);
      if (v.action == l4::local_action::reply && ntx < 256) {
        tx[ntx++] = rx[i];
      } else if (v.action == l4::local_action::deliver && p.proto == IPPROTO_TCP) {
        st.input(rx[i], p);
      } else {
        rte_pktmbuf_free(rx[i]);
      }
    }
    ntx = static_cast<uint16_t>(ntx + st.drain_tx(tx + ntx, static_cast<uint16_t>(256 - ntx)));
    uint16_t sent = 0;
    for (int tries = 0; sent < ntx && tries < 1000; ++tries)
      sent = static_cast<uint16_t>(
          sent + rte_eth_tx_burst(0, 0, tx + sent, static_cast<uint16_t>(ntx - sent)));
    if (sent < ntx) rte_pktmbuf_free_bulk(tx + sent, ntx - sent);
  }
  const auto& k = st.stats();
  std::printf(
      "opened=%lu active=%lu echoed=%lu segs_in=%lu segs_out=%lu retransmits=%lu rto=%lu "
      "fast=%lu recoveries=%lu ooo=%lu cookies=%lu/%lu challenge=%lu\n",
      k.opened.get(), k.active.get(), app.echoed, k.segments_in.get(), k.segments_out.get(),
      k.retransmits.get(), k.rto_events.get(), k.fast_retransmits.get(), k.recoveries.get(),
      k.ooo_segments.get(), k.cookies_sent.get(), k.cookies_validated.get(),
      k.challenge_acks.get());
  for (size_t i = 0; i < l4::drop_count; ++i)
    if (k.drops.by_reason[i].get() != 0)
      std::printf("drop %s=%lu\n", std::string(l4::drop_table[i].name).c_str(),
                  k.drops.by_reason[i].get());
  made->reset();
  rte_eth_dev_stop(0);
  rte_eth_dev_close(0);
  rte_eal_cleanup();
  return 0;
}
