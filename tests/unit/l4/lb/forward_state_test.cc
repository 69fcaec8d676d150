// Stage behaviour across packets and config changes: connection hits/misses, flows keeping their
// backend through a Maglev change, drain, health, table full, SNAT port ranges per worker,
// neighbour resolution, and the config builder's refusals.
#include <algorithm>
#include <set>

#include "lb_fixture.hh"

using namespace lbt;
using l4::drop;

namespace {

std::shared_ptr<const lb_config> build(const lb_spec& s, const lb_config* prev = nullptr) {
  auto c = lb_config::build(s, prev);
  EXPECT_TRUE(c) << (c ? "" : c.error().str());
  return c ? *c : nullptr;
}

// Last byte of the outer IPv4 destination of an IPIP output = the backend's last octet.
uint8_t backend_of(const result& r) {
  return r.out.size() > 33 ? r.out[33] : 0;
}

}  // namespace

TEST(lb_state, conntrack_miss_then_hit_counted) {
  auto cfg = build(base_spec());
  auto w = make_worker();
  auto syn = pkt("203.0.113.7", "198.51.100.2", IPPROTO_TCP, 41000, 80);
  auto ack = syn;
  ack.tcp_flags = 0x10;
  EXPECT_EQ(run(*cfg, *w, syn.bytes(), 1).v.action, lb_action::tx);
  EXPECT_EQ(run(*cfg, *w, ack.bytes(), 2).v.action, lb_action::tx);
  EXPECT_EQ(w->counters.conn_miss.get(), 1u);
  EXPECT_EQ(w->counters.conn_hit.get(), 1u);
  EXPECT_EQ(w->counters.encap_ipip.get(), 2u);
  uint64_t named = 0;
  for_each_counter(w->counters, [&](std::string_view name, uint64_t v) {
    EXPECT_TRUE(name.starts_with("lb_"));
    named += v;
  });
  EXPECT_EQ(named, 4u);  // miss + hit + 2 encapsulations
}

TEST(lb_state, established_flows_keep_backend_across_maglev_change_and_drain) {
  lb_spec spec = base_spec();
  auto cfg = build(spec);
  auto w = make_worker();
  std::vector<std::pair<uint16_t, uint8_t>> flows;  // client port -> backend octet
  for (uint16_t port = 42000; port < 42200; ++port) {
    auto syn = pkt("203.0.113.7", "198.51.100.9", IPPROTO_TCP, port, 80);
    auto r = run(*cfg, *w, syn.bytes(), 10);
    ASSERT_EQ(r.v.action, lb_action::tx);
    flows.push_back({port, backend_of(r)});
  }
  std::set<uint8_t> used;
  for (auto& f : flows) used.insert(f.second);
  ASSERT_EQ(used, (std::set<uint8_t>{8, 9})) << "both backends should get flows";

  // Drain backend .8 (weight 0) and publish a new config.
  spec.services.back().backends[0].weight = 0;
  auto cfg2 = build(spec, cfg.get());
  // Unchanged services share their Maglev table with the previous config.
  EXPECT_EQ(cfg2->services()[0].maglev, cfg->services()[0].maglev);
  EXPECT_NE(cfg2->services().back().maglev, cfg->services().back().maglev);
  for (auto& [port, b] : flows) {
    auto ack = pkt("203.0.113.7", "198.51.100.9", IPPROTO_TCP, port, 80);
    ack.tcp_flags = 0x10;
    auto r = run(*cfg2, *w, ack.bytes(), 20);
    ASSERT_EQ(r.v.action, lb_action::tx);
    EXPECT_EQ(backend_of(r), b) << "flow " << port << " moved";
  }
  // New flows avoid the drained backend.
  for (uint16_t port = 43000; port < 43100; ++port) {
    auto syn = pkt("203.0.113.7", "198.51.100.9", IPPROTO_TCP, port, 80);
    auto r = run(*cfg2, *w, syn.bytes(), 30);
    ASSERT_EQ(r.v.action, lb_action::tx);
    EXPECT_EQ(backend_of(r), 9);
  }
}

TEST(lb_state, unhealthy_backends_leave_and_none_left_is_a_named_drop) {
  lb_spec spec = base_spec();
  for (auto& b : spec.services.back().backends) b.healthy = false;
  auto cfg = build(spec);
  auto w = make_worker();
  auto syn = pkt("203.0.113.7", "198.51.100.9", IPPROTO_TCP, 44000, 80);
  auto r = run(*cfg, *w, syn.bytes(), 1);
  EXPECT_EQ(r.v.action, lb_action::drop);
  EXPECT_EQ(r.v.reason, drop::lb_no_backend);
  EXPECT_EQ(w->drops.get(drop::lb_no_backend), 1u);
}

TEST(lb_state, full_table_refuses_new_flows_but_existing_ones_forward) {
  auto cfg = build(base_spec());
  auto w = make_worker(16);
  std::vector<uint16_t> admitted;
  uint32_t refused = 0;
  for (uint16_t port = 45000; port < 45100; ++port) {
    auto u = pkt("203.0.113.7", "198.51.100.2", IPPROTO_UDP, port, 53);
    auto r = run(*cfg, *w, u.bytes(), 1);
    if (r.v.action == lb_action::tx) {
      admitted.push_back(port);
    } else {
      EXPECT_EQ(r.v.reason, drop::lb_conn_table_full);
      ++refused;
    }
  }
  EXPECT_EQ(admitted.size(), 16u);
  EXPECT_EQ(refused, 84u);
  EXPECT_EQ(w->drops.get(drop::lb_conn_table_full), 84u);
  for (uint16_t port : admitted) {
    auto u = pkt("203.0.113.7", "198.51.100.2", IPPROTO_UDP, port, 53);
    EXPECT_EQ(run(*cfg, *w, u.bytes(), 2).v.action, lb_action::tx);
  }
}

TEST(lb_state, snat_ports_come_from_the_workers_range_and_run_out_cleanly) {
  lb_spec spec = base_spec();
  spec.workers = 4;
  spec.snat_port_lo = 10000;
  spec.snat_port_hi = 10000 + 4 * 64 - 1;
  auto cfg = build(spec);
  for (uint16_t wi = 0; wi < 4; ++wi) {
    auto [lo, hi] = cfg->snat_range(wi);
    EXPECT_EQ(hi - lo + 1, 64);
    EXPECT_EQ(cfg->snat_port_owner(lo), wi);
    EXPECT_EQ(cfg->snat_port_owner(hi), wi);
  }
  auto w = lb_worker::create({.index = 2, .conn_capacity = 4096, .hz = 1000});
  ASSERT_TRUE(w);
  add_neighbors(**w);
  uint32_t ok = 0, exhausted = 0;
  for (uint16_t port = 46000; port < 46070; ++port) {
    auto syn = pkt("203.0.113.7", "198.51.100.1", IPPROTO_TCP, port, 80);
    auto r = run(*cfg, **w, syn.bytes(), 1);
    if (r.v.action == lb_action::tx) {
      ++ok;
      const uint16_t sport = static_cast<uint16_t>(r.out[34] << 8 | r.out[35]);
      EXPECT_EQ(cfg->snat_port_owner(sport), 2) << sport;
    } else {
      EXPECT_EQ(r.v.reason, drop::lb_snat_ports_exhausted);
      ++exhausted;
    }
  }
  EXPECT_EQ(ok, 64u);
  EXPECT_EQ(exhausted, 6u);
}

TEST(lb_state, vlan_tagged_input_leaves_untagged) {
  auto cfg = build(base_spec());
  auto w = make_worker();
  auto in = pkt("203.0.113.7", "198.51.100.1", IPPROTO_UDP, 47000, 53);
  in.vlan = 5;
  auto out = pkt("10.0.0.100", "10.0.1.5", IPPROTO_UDP, 1024, 5353);
  out.ttl = 63;
  set_macs(out, lan_mac, backend_mac(5));
  auto r = run(*cfg, *w, in.bytes(), 1);
  EXPECT_EQ(r.v.action, lb_action::tx);
  EXPECT_EQ(r.out, out.bytes());
}

TEST(lb_state, unresolved_next_hop_sends_arp_then_learns_the_reply) {
  auto cfg = build(base_spec());
  auto w = lb_worker::create({.index = 0, .conn_capacity = 64, .hz = 1000});
  ASSERT_TRUE(w);
  auto& lan = (*w)->neighbors(port_role::lan);
  auto in = pkt("203.0.113.7", "198.51.100.2", IPPROTO_UDP, 48000, 53);
  auto r = run(*cfg, **w, in.bytes(), 1);
  // The packet became an ARP request for the backend, sent on the lan port.
  EXPECT_EQ(r.v.action, lb_action::tx);
  EXPECT_EQ(r.v.port_id, 1);
  EXPECT_EQ(r.v.reason, drop::lb_neighbor_unresolved);
  ASSERT_EQ(r.out.size(), 42u);
  EXPECT_EQ(r.out[12], 0x08);
  EXPECT_EQ(r.out[13], 0x06);
  EXPECT_EQ(r.out[21], 1);  // request
  EXPECT_EQ(bytes(r.out.begin() + 38, r.out.end()), (bytes{10, 0, 1, 6}));
  // Within the request interval: dropped, not another request.
  r = run(*cfg, **w, in.bytes(), 2);
  EXPECT_EQ(r.v.action, lb_action::drop);
  EXPECT_EQ((*w)->drops.get(drop::lb_neighbor_unresolved), 2u);
  // The backend's ARP reply resolves it.
  bytes arp = {0x02, 0, 0,    0, 0,    2, 0x02, 0xbb, 0,    0,    0,  6, 0x08, 0x06,
               0,    1, 0x08, 0, 6,    4, 0,    2,    0x02, 0xbb, 0,  0, 0,    6,
               10,   0, 1,    6, 0x02, 0, 0,    0,    0,    2,    10, 0, 0,    1};
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), arp);
  l4::packet p;
  ASSERT_EQ(l4::parse(m, p), drop::none);
  EXPECT_TRUE(lan.learn(m, p));
  rte_pktmbuf_free(m);
  r = run(*cfg, **w, in.bytes(), 3);
  EXPECT_EQ(r.v.action, lb_action::tx);
  EXPECT_EQ(r.v.reason, drop::none);
  EXPECT_EQ(bytes(r.out.begin(), r.out.begin() + 6), (bytes{0x02, 0xbb, 0, 0, 0, 6}));
}

TEST(lb_state, unresolved_ipv6_next_hop_sends_ns_then_learns_the_na) {
  auto cfg = build(base_spec());
  auto w = lb_worker::create({.index = 0, .conn_capacity = 64, .hz = 1000});
  ASSERT_TRUE(w);
  auto in = pkt("2001:db8:9::7", "2001:db8:100::2", IPPROTO_UDP, 48000, 53);
  auto r = run(*cfg, **w, in.bytes(), 1);
  ASSERT_EQ(r.v.action, lb_action::tx);
  EXPECT_EQ(r.v.reason, drop::lb_neighbor_unresolved);
  // The NS parses as valid ICMPv6 (checksum right) to the solicited-node address.
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), r.out);
  l4::packet p;
  ASSERT_EQ(l4::parse(m, p), drop::none);
  rte_pktmbuf_free(m);
  EXPECT_EQ(p.sport >> 8, 135);
  EXPECT_EQ(p.dst, ip("ff02::1:ff00:6"));
  // A neighbour advertisement from the backend resolves it.
  auto na = pkt("fd00:1::6", "fd00::1", IPPROTO_ICMP, 0, 0);
  na.icmp_type = 136;
  na.icmp_id = 0x6000;
  na.icmp_seq = 0;
  na.ttl = 255;
  const l4::ip_addr target = ip("fd00:1::6");
  na.payload.assign(target.b.begin(), target.b.end());
  na.payload.insert(na.payload.end(), {2, 1, 0x02, 0xbb, 0, 0, 0, 6});
  m = edge_test::to_mbuf(edge_test::mempool(), na.bytes());
  ASSERT_EQ(l4::parse(m, p), drop::none);
  EXPECT_TRUE((*w)->neighbors(port_role::lan).learn(m, p));
  rte_pktmbuf_free(m);
  r = run(*cfg, **w, in.bytes(), 2000);
  EXPECT_EQ(r.v.reason, drop::none);
  EXPECT_EQ(bytes(r.out.begin(), r.out.begin() + 6), (bytes{0x02, 0xbb, 0, 0, 0, 6}));
}

TEST(lb_state, neighbor_learning_ignores_addresses_never_asked_for) {
  auto t = neighbor_table::create(4, 1000);
  ASSERT_TRUE(t);
  bytes arp = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xcc, 0,    0,    0,  1, 0x08, 0x06,
               0,    1,    0x08, 0,    6,    4,    0,    1,    0x02, 0xcc, 0,  0, 0,    1,
               10,   9,    9,    9,    0,    0,    0,    0,    0,    0,    10, 0, 0,    1};
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), arp);
  l4::packet p;
  ASSERT_EQ(l4::parse(m, p), drop::none);
  EXPECT_FALSE((*t)->learn(m, p));
  rte_ether_addr unused;
  EXPECT_FALSE((*t)->lookup(ip("10.9.9.9"), unused, 0));
  rte_pktmbuf_free(m);
  // Bounded: a full table refuses further static entries instead of growing.
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE((*t)->add_static(ip(("10.0.0." + std::to_string(i + 1)).c_str()), mac(1, 1)));
  EXPECT_FALSE((*t)->add_static(ip("10.0.0.99"), mac(1, 1)));
  EXPECT_FALSE((*t)->request_due(ip("10.0.0.98"), 5));
}

TEST(lb_state, config_builder_refuses_bad_specs) {
  auto expect_fail = [](lb_spec s, const char* what) {
    auto c = lb_config::build(s);
    ASSERT_FALSE(c) << what;
    EXPECT_NE(c.error().str().find(what), std::string::npos) << c.error().str();
  };
  lb_spec s = base_spec();
  s.snat_v4.clear();
  expect_fail(s, "SNAT address");
  s = base_spec();
  s.services[0].backends[0].addr = ip("fd00::9");
  expect_fail(s, "not of the VIP's family");
  s = base_spec();
  s.services.push_back(s.services[0]);
  expect_fail(s, "duplicate service");
  s = base_spec();
  s.services[0].proto = 1;
  expect_fail(s, "tcp or udp");
  s = base_spec();
  s.services[0].maglev_size = 101;
  s.services[0].backends.push_back({ip("10.0.1.10")});
  expect_fail(s, "below 100");
  s = base_spec();
  s.lan.addr_v4 = {};
  expect_fail(s, "lan port's address");
  s = base_spec();
  s.workers = 2000;
  expect_fail(s, "64 ports per worker");
}

TEST(lb_state, packets_not_for_the_stage_are_named_drops) {
  auto cfg = build(base_spec());
  auto w = make_worker();
  auto other = pkt("203.0.113.7", "198.51.100.1", IPPROTO_TCP, 40000, 8443);
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), other.bytes());
  l4::packet p;
  ASSERT_EQ(l4::parse(m, p), drop::none);
  EXPECT_FALSE(is_lb_packet(*cfg, p));
  auto v = forward_one(*cfg, *w, m, p, 1);
  EXPECT_EQ(v.reason, drop::lb_not_for_lb);
  rte_pktmbuf_free(m);
  auto echo = pkt("203.0.113.7", "198.51.100.2", IPPROTO_ICMP, 0, 0);  // echo: local_input's job
  m = edge_test::to_mbuf(edge_test::mempool(), echo.bytes());
  ASSERT_EQ(l4::parse(m, p), drop::none);
  EXPECT_FALSE(is_lb_packet(*cfg, p));
  EXPECT_EQ(forward_one(*cfg, *w, m, p, 1).reason, drop::lb_icmp_unhandled);
  rte_pktmbuf_free(m);
}

TEST(lb_state, another_node_sends_a_mid_flow_packet_to_the_same_backend) {
  // Node A saw the SYN; ECMP moves the flow to node B, whose config lists the backends in
  // another order and which has no connection entry: B must still pick A's backend.
  lb_spec a = base_spec();
  auto& svc = a.services.back();
  for (int i = 10; i < 20; ++i)
    svc.backends.push_back({ip(("10.0.1." + std::to_string(i)).c_str())});
  lb_spec b = a;
  std::reverse(b.services.back().backends.begin(), b.services.back().backends.end());
  auto cfg_a = build(a), cfg_b = build(b);
  auto wa = make_worker(), wb = make_worker();
  for (int n = 10; n < 20; ++n) {
    const rte_ether_addr m = backend_mac(static_cast<uint8_t>(n));
    wa->neighbors(port_role::lan).add_static(ip(("10.0.1." + std::to_string(n)).c_str()), m);
    wb->neighbors(port_role::lan).add_static(ip(("10.0.1." + std::to_string(n)).c_str()), m);
  }
  std::set<uint8_t> used;
  for (uint16_t port = 50000; port < 50200; ++port) {
    auto syn = pkt("203.0.113.9", "198.51.100.9", IPPROTO_TCP, port, 80);
    auto ra = run(*cfg_a, *wa, syn.bytes(), 1);
    auto ack = syn;
    ack.tcp_flags = 0x10;
    auto rb = run(*cfg_b, *wb, ack.bytes(), 1);
    ASSERT_EQ(ra.v.action, lb_action::tx);
    ASSERT_EQ(rb.v.action, lb_action::tx);
    EXPECT_EQ(backend_of(ra), backend_of(rb)) << "flow " << port;
    used.insert(backend_of(ra));
  }
  EXPECT_EQ(used.size(), 12u);
}

TEST(lb_state, replies_to_another_workers_snat_port_find_no_connection) {
  lb_spec spec = base_spec();
  spec.workers = 2;
  auto cfg = build(spec);
  auto w0 = lb_worker::create({.index = 0, .conn_capacity = 256, .hz = 1000});
  auto w1 = lb_worker::create({.index = 1, .conn_capacity = 256, .hz = 1000});
  ASSERT_TRUE(w0 && w1);
  add_neighbors(**w0);
  add_neighbors(**w1);
  auto syn = pkt("203.0.113.7", "198.51.100.1", IPPROTO_TCP, 51000, 80);
  auto r = run(*cfg, **w1, syn.bytes(), 1);
  ASSERT_EQ(r.v.action, lb_action::tx);
  const uint16_t sport = static_cast<uint16_t>(r.out[34] << 8 | r.out[35]);
  EXPECT_EQ(cfg->snat_port_owner(sport), 1);
  EXPECT_EQ(sport, cfg->snat_range(1).first);
  auto reply = pkt("10.0.1.5", "10.0.0.100", IPPROTO_TCP, 8080, sport);
  reply.tcp_flags = 0x12;
  // On the wrong worker: a named drop (dispatch by snat_port_owner() avoids it) ...
  EXPECT_EQ(run(*cfg, **w0, reply.bytes(), 2).v.reason, drop::lb_no_conn_for_reply);
  // ... on the owner: translated back to the client.
  auto back = run(*cfg, **w1, reply.bytes(), 2);
  EXPECT_EQ(back.v.action, lb_action::tx);
  EXPECT_EQ(back.v.port_id, 0);
}

TEST(lb_state, syn_reusing_a_closing_flows_tuple_is_placed_anew) {
  lb_spec spec = base_spec();
  auto cfg = build(spec);
  auto w = make_worker();
  // A flow on backend .8 that the client closes (FIN): its entry lingers in the closing state.
  uint16_t port = 45000;
  for (;; ++port) {
    ASSERT_LT(port, 45200) << "no flow landed on backend .8";
    auto syn = pkt("203.0.113.7", "198.51.100.9", IPPROTO_TCP, port, 80);
    if (backend_of(run(*cfg, *w, syn.bytes(), 1)) == 8) break;
  }
  auto fin = pkt("203.0.113.7", "198.51.100.9", IPPROTO_TCP, port, 80);
  fin.tcp_flags = 0x11;  // FIN|ACK
  ASSERT_EQ(backend_of(run(*cfg, *w, fin.bytes(), 2)), 8);
  // .8 is drained; the client reuses its port for a new connection: the SYN must not follow the
  // old entry to the drained backend.
  spec.services.back().backends[0].weight = 0;
  auto cfg2 = build(spec, cfg.get());
  auto syn = pkt("203.0.113.7", "198.51.100.9", IPPROTO_TCP, port, 80);
  auto r = run(*cfg2, *w, syn.bytes(), 3);
  ASSERT_EQ(r.v.action, lb_action::tx);
  EXPECT_EQ(backend_of(r), 9);
  EXPECT_EQ(w->counters.conn_reused.get(), 1u);
  // A retransmitted FIN of a live flow is no SYN: it keeps its entry.
  EXPECT_EQ(backend_of(run(*cfg2, *w, fin.bytes(), 4)), 9);
}
