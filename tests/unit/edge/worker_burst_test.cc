// The worker's burst path (edge/worker.cc process_burst): a mixed burst, the balancer's packets
// forwarded together by forward_burst, gives per packet what parse + forward_one gives (same
// frames out on the same ports, same drops), and the rest still reaches the local stage and the
// service dispatch.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "edge/worker.hh"
#include "lb_fixture.hh"

namespace edge {
namespace {

using lbt::bytes;

struct worker_path {
  std::shared_ptr<config> cfg = std::make_shared<config>();
  snapshot snap;
  worker_context w;

  worker_path() {
    auto lb = l4::lb::lb_config::build(lbt::base_spec());
    EXPECT_TRUE(lb.has_value());
    // A tcp service beside the balancer's (no relay in this worker: counted as no_service).
    service_config relay;
    relay.name = "relay";
    relay.vip = lbt::ip("198.51.100.50");
    relay.port = 443;
    relay.protocol = IPPROTO_TCP;
    relay.kind = service_kind::tcp;
    cfg->services.push_back(relay);
    service_config l4svc;
    l4svc.name = "l4";
    l4svc.vip = lbt::ip("198.51.100.1");
    l4svc.port = 80;
    l4svc.kind = service_kind::l4;
    cfg->services.push_back(l4svc);
    snap.cfg = cfg;
    snap.lb = *lb;
    snap.local.resize(2);
    snap.local[0].mac = lbt::wan_mac;
    snap.local[0].addrs = {lbt::ip("198.51.100.1"), lbt::ip("198.51.100.50")};
    snap.local[1].mac = lbt::lan_mac;
    snap.local[1].addrs = {lbt::ip("10.0.0.100")};
    snap.index_services();
    w.ports.resize(2);
    w.ports[0].id = 0;
    w.ports[0].role = port_role::wan;
    w.ports[1].id = 1;
    w.ports[1].role = port_role::lan;
    w.lb = lbt::make_worker();
  }
  ~worker_path() {
    for (auto& b : w.tx) {
      rte_pktmbuf_free_bulk(b.pkts, b.n);
      b.n = 0;
    }
  }
};

std::vector<bytes> frames() {
  std::vector<bytes> f;
  for (uint16_t sport = 40000; sport < 40008; ++sport) {
    auto b = lbt::pkt("203.0.113.7", "198.51.100.1", IPPROTO_TCP, sport, 80);  // full NAT
    b.tcp_flags = 0x02;
    f.push_back(b.bytes());
    // Not the balancer's: a closed UDP port of a local VIP, and the tcp service.
    f.push_back(lbt::pkt("203.0.113.7", "198.51.100.1", IPPROTO_UDP, sport, 9).bytes());
    f.push_back(lbt::pkt("203.0.113.7", "198.51.100.50", IPPROTO_UDP, sport, 443).bytes());
    f.push_back(lbt::pkt("203.0.113.8", "198.51.100.2", IPPROTO_UDP, sport, 53).bytes());  // IPIP
    auto g = lbt::pkt("203.0.113.9", "198.51.100.3", IPPROTO_TCP, sport, 80);              // GUE
    g.tcp_flags = 0x02;
    f.push_back(g.bytes());
    auto v6 = lbt::pkt("2001:db8:1::7", "2001:db8:100::1", IPPROTO_TCP, sport, 80);
    v6.tcp_flags = 0x02;
    f.push_back(v6.bytes());
  }
  // The first flow again: a connection-table hit.
  auto again = lbt::pkt("203.0.113.7", "198.51.100.1", IPPROTO_TCP, 40000, 80);
  again.tcp_flags = 0x10;
  f.push_back(again.bytes());
  f.push_back(lbt::pkt("203.0.113.7", "198.51.100.1", IPPROTO_ICMP, 0, 0).bytes());  // echo
  f.push_back(bytes(10, 0));                                                         // runt
  return f;
}

TEST(worker_burst, verdicts_match_forward_one_per_packet) {
  const auto in = frames();
  ASSERT_LE(in.size(), max_burst);
  worker_path t;

  // Reference: parse + forward_one, one packet at a time, on a balancer worker of its own.
  auto ref = lbt::make_worker();
  std::vector<bytes> want[2];
  unsigned ref_lb = 0;
  // One time for the burst, as the worker takes (its table's hz is 1000: TSC ticks age entries).
  const uint64_t now = rte_rdtsc();
  for (const auto& f : in) {
    rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), f);
    ASSERT_NE(m, nullptr);
    l4::packet p;
    if (l4::parse(m, p) != l4::drop::none || !l4::lb::is_lb_packet(*t.snap.lb, p)) {
      rte_pktmbuf_free(m);
      continue;
    }
    ++ref_lb;
    const auto v = l4::lb::forward_one(*t.snap.lb, *ref, m, p, now);
    if (v.action == l4::lb::lb_action::tx) {
      ASSERT_LT(v.port_id, 2u);
      want[v.port_id].push_back(edge_test::from_mbuf(m));
    }
    rte_pktmbuf_free(m);
  }
  ASSERT_EQ(ref_lb, 8u * 4 + 1);

  std::vector<rte_mbuf*> burst;
  for (const auto& f : in) burst.push_back(edge_test::to_mbuf(edge_test::mempool(), f));
  process_burst(t.w, t.snap, 0, burst);

  // The balancer's frames leave in the order forward_one gave them; the echo reply leaves on
  // the wan port too (before them: the local stage answers during the classifying pass).
  for (unsigned port = 0; port < 2; ++port) {
    std::vector<bytes> got, replies;
    for (uint16_t i = 0; i < t.w.tx[port].n; ++i) {
      bytes f = edge_test::from_mbuf(t.w.tx[port].pkts[i]);
      l4::packet p;
      ASSERT_EQ(l4::parse(t.w.tx[port].pkts[i], p), l4::drop::none);
      (p.proto == IPPROTO_ICMP ? replies : got).push_back(std::move(f));
    }
    ASSERT_EQ(got.size(), want[port].size()) << "port " << port;
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i], want[port][i]) << "port " << port << ", frame " << i;
    EXPECT_EQ(replies.size(), port == 0 ? 1u : 0u) << "port " << port;
  }
  EXPECT_EQ(t.w.stats.replies.get(), 1u);
  for (size_t d = 0; d < l4::drop_count; ++d)
    EXPECT_EQ(t.w.lb->drops.get(static_cast<l4::drop>(d)), ref->drops.get(static_cast<l4::drop>(d)))
        << l4::drop_table[d].name;
  EXPECT_EQ(t.w.lb->counters.nat_forward.get(), ref->counters.nat_forward.get());
  EXPECT_EQ(t.w.lb->counters.conn_hit.get(), ref->counters.conn_hit.get());
  EXPECT_EQ(t.w.lb->counters.conn_hit.get(), 1u);
  // Closed UDP port and the tcp service without a relay: no_service; the runt: its parse reason.
  EXPECT_EQ(t.w.stats.drops.get(l4::drop::no_service), 16u);
  uint64_t worker_drops = 0;
  for (size_t d = 0; d < l4::drop_count; ++d)
    worker_drops += t.w.stats.drops.get(static_cast<l4::drop>(d));
  EXPECT_EQ(worker_drops, 17u);
}

}  // namespace
}  // namespace edge

EDGE_TEST_MAIN_WITH_EAL()
