// Fuzz target for the L4 load-balancer data path: arbitrary frames through the real l4::parse,
// is_lb_packet and forward_one (full NAT both ways, IPIP, GUE, client-address option, ICMP errors,
// MSS clamping, frag-needed / packet-too-big, ARP/NS for unresolved next hops) with a small
// config of the shape tests/unit/l4/lb/lb_fixture.hh uses. EAL, mempool and the two configs are
// built once; each input gets a fresh worker (small connection table), so inputs replay alone.
// Checks: every frame sent is one segment within the mbuf and parses again; no mbuf is lost.
//
// Input: [config byte] then frames, each [tick delta, length (2 bytes, big endian), bytes].
#include <arpa/inet.h>
#include <rte_eal.h>
#include <rte_mbuf.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "l4/lb/forward.hh"
#include "l4/parse.hh"
#include "packet_builder.hh"

namespace {

using namespace l4::lb;

rte_mempool* g_pool = nullptr;
constexpr unsigned pool_size = 511;
std::shared_ptr<const lb_config> g_cfg[2];

l4::ip_addr ip(const char* s) {
  return *l4::ip_addr::parse(s);
}
rte_ether_addr mac(uint8_t a, uint8_t last) {
  return {{0x02, a, 0, 0, 0, last}};
}

// As lb_fixture.hh: .1 full NAT, .2 IPIP, .3 GUE (tcp/80, udp/53), .4 full NAT + client option;
// config 1 has a 1280-byte lan MTU so that encapsulation overhead meets the MTU sooner.
std::shared_ptr<const lb_config> make_config(uint16_t lan_mtu) {
  lb_spec s;
  s.wan.port_id = 0;
  s.wan.mac = mac(0, 1);
  s.wan.gw_v4 = ip("192.0.2.254");
  s.wan.gw_v6 = ip("2001:db8::fe");
  s.wan.static_neighbors = {{ip("192.0.2.254"), mac(0xaa, 1)}, {ip("2001:db8::fe"), mac(0xaa, 1)}};
  s.lan.port_id = 1;
  s.lan.mac = mac(0, 2);
  s.lan.mtu = lan_mtu;
  s.lan.addr_v4 = ip("10.0.0.1");
  s.lan.addr_v6 = ip("fd00::1");
  s.lan.static_neighbors = {{ip("10.0.1.5"), mac(0xbb, 5)},
                            {ip("fd00:1::5"), mac(0xbb, 5)},
                            {ip("10.0.1.6"), mac(0xbb, 6)}};  // .7 / fd00:1::6-7 left unresolved
  s.snat_v4 = {ip("10.0.0.100")};
  s.snat_v6 = {ip("fd00::100")};
  s.snat_port_lo = 1024;
  s.snat_port_hi = 1100;  // a small range, so port exhaustion is reachable
  const struct {
    const char* vip;
    fwd_mode mode;
    const char* backend;
  } rows[] = {
      {"198.51.100.1", fwd_mode::fnat, "10.0.1.5"},
      {"198.51.100.2", fwd_mode::ipip, "10.0.1.6"},
      {"198.51.100.3", fwd_mode::gue, "10.0.1.7"},
      {"2001:db8:100::1", fwd_mode::fnat, "fd00:1::5"},
      {"2001:db8:100::2", fwd_mode::ipip, "fd00:1::6"},
      {"2001:db8:100::3", fwd_mode::gue, "fd00:1::7"},
  };
  for (const auto& r : rows)
    for (uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}}) {
      service_spec svc;
      svc.vip = ip(r.vip);
      svc.port = proto == IPPROTO_TCP ? 80 : 53;
      svc.proto = proto;
      svc.mode = r.mode;
      svc.maglev_size = 251;
      svc.backends = {{ip(r.backend), static_cast<uint16_t>(proto == IPPROTO_TCP ? 8080 : 5353)}};
      s.services.push_back(svc);
    }
  for (const char* vip : {"198.51.100.4", "2001:db8:100::4"}) {
    service_spec toa;
    toa.vip = ip(vip);
    toa.port = 80;
    toa.client_addr_option = true;
    toa.maglev_size = 251;
    toa.backends = {{ip(toa.vip.v6 ? "fd00:1::5" : "10.0.1.5"), 8080}};
    s.services.push_back(toa);
  }
  auto c = lb_config::build(s);
  if (!c) {
    std::fprintf(stderr, "l4_forward config: %s\n", c.error().message.c_str());
    std::abort();
  }
  return *c;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* argv[] = {
      "l4-fuzz", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
      "-m",      "64",        "-l",       "0",           "--log-level=lib.eal:warning"};
  if (rte_eal_init(sizeof(argv) / sizeof(argv[0]), const_cast<char**>(argv)) < 0) std::abort();
  g_pool = rte_pktmbuf_pool_create("fuzz_pool", pool_size, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   SOCKET_ID_ANY);
  if (g_pool == nullptr) std::abort();
  g_cfg[0] = make_config(1500);
  g_cfg[1] = make_config(1280);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const lb_config& cfg = *g_cfg[data[0] & 1];
  auto made =
      lb_worker::create({.index = 0, .conn_capacity = 64, .hz = 1000, .neighbor_capacity = 16});
  if (!made) std::abort();
  lb_worker& w = **made;
  if (!w.add_static_neighbors(cfg)) std::abort();
  uint64_t now = 1'000'000;
  size_t i = 1;
  while (i + 3 <= size) {
    now += uint64_t(data[i]) * (data[i] >= 0xf0 ? 60'000 : 1);  // up to minutes: expiry paths
    const size_t len = std::min<size_t>(size_t(data[i + 1]) << 8 | data[i + 2], size - i - 3);
    i += 3;
    std::vector<uint8_t> frame(data + i, data + i + len);
    i += len;
    if (frame.empty()) continue;
    rte_mbuf* m = edge_test::to_mbuf(g_pool, frame);
    if (m == nullptr) continue;  // longer than the data room
    l4::packet p;
    if (l4::parse(m, p) == l4::drop::none && is_lb_packet(cfg, p)) {
      const lb_verdict v = forward_one(cfg, w, m, p, now);
      if (v.action == lb_action::tx) {
        l4::packet q;
        if (m->nb_segs != 1 || rte_pktmbuf_data_len(m) > m->buf_len ||
            l4::parse(m, q) != l4::drop::none) {
          std::fprintf(stderr, "forward_one sent an unparsable frame (%u bytes, reason %s)\n",
                       rte_pktmbuf_data_len(m), std::string(l4::info(v.reason).name).c_str());
          std::abort();
        }
      }
    }
    rte_pktmbuf_free(m);
  }
  made->reset();
  if (rte_mempool_avail_count(g_pool) != pool_size) {
    std::fprintf(stderr, "mbuf leak: %u of %u back\n", rte_mempool_avail_count(g_pool), pool_size);
    std::abort();
  }
  return 0;
}
