// Bad input of any kind: valid frames of every mode with random bytes flipped, truncated or
// extended, through parse + the real stage. Whatever parses must come out as a verdict (tx on a
// known port or a counted, named drop) with a sane frame; never a crash or an out-of-bounds write.
#include <random>

#include "lb_fixture.hh"

using namespace lbt;

TEST(lb_robust, mutated_frames_always_get_a_named_verdict) {
  lb_spec spec = base_spec();
  spec.wan.static_neighbors = {{ip("192.0.2.254"), router_mac}};
  auto cfg = lb_config::build(spec);
  ASSERT_TRUE(cfg);
  auto w = make_worker(256);
  ASSERT_TRUE(w->add_static_neighbors(**cfg));
  // Seeds: one frame per path.
  std::vector<bytes> seeds;
  for (const char* vip : {"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"})
    for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
      auto b = pkt("203.0.113.7", vip, proto, 40000, proto == IPPROTO_TCP ? 80 : 53);
      b.tcp_options = {2, 4, 5, 0xb4};
      b.payload = bytes(40, 1);
      seeds.push_back(b.bytes());
    }
  for (const char* vip : {"2001:db8:100::1", "2001:db8:100::2", "2001:db8:100::3"}) {
    auto b = pkt("2001:db8:9::7", vip, IPPROTO_TCP, 40000, 80);
    seeds.push_back(b.bytes());
  }
  auto sent = pkt("198.51.100.2", "203.0.113.7", IPPROTO_TCP, 80, 40000).bytes();
  auto icmp = pkt("192.0.2.1", "198.51.100.2", IPPROTO_ICMP, 0, 0);
  icmp.icmp_type = 3;
  icmp.icmp_code = 4;
  icmp.payload.assign(sent.begin() + 14, sent.end());
  seeds.push_back(icmp.bytes());
  auto reply = pkt("10.0.1.5", "10.0.0.100", IPPROTO_TCP, 8080, 1024);
  seeds.push_back(reply.bytes());

  std::mt19937 rng(7);
  uint64_t forwarded = 0, dropped = 0, unparsed = 0;
  for (int iter = 0; iter < 40000; ++iter) {
    bytes f = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0:
          f[14 + rng() % (f.size() - 14)] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 1:
          f[14 + rng() % (f.size() - 14)] = static_cast<uint8_t>(rng());
          break;
        case 2:
          f.resize(14 + rng() % (f.size() - 14));
          break;
        default:
          f.resize(f.size() + rng() % 64, static_cast<uint8_t>(rng()));
          break;
      }
      if (f.size() < 15) f.resize(15);
    }
    rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), f);
    ASSERT_NE(m, nullptr);
    // Half the time, as if the NIC had verified checksums: mutations then reach the stage.
    if (iter % 2 == 0) m->ol_flags |= RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_GOOD;
    l4::packet p;
    if (l4::parse(m, p) != l4::drop::none || !is_lb_packet(**cfg, p)) {
      ++unparsed;
      rte_pktmbuf_free(m);
      continue;
    }
    const lb_verdict v = forward_one(**cfg, *w, m, p, static_cast<uint64_t>(iter));
    if (v.action == lb_action::tx) {
      ++forwarded;
      EXPECT_TRUE(v.port_id == 0 || v.port_id == 1);
      EXPECT_GE(rte_pktmbuf_data_len(m), 42);
      EXPECT_LE(rte_pktmbuf_data_len(m), f.size() + 48 + 20);
    } else {
      ++dropped;
      EXPECT_NE(v.reason, l4::drop::none);
    }
    rte_pktmbuf_free(m);
  }
  uint64_t counted = 0;
  for (size_t i = 1; i < l4::drop_count; ++i) counted += w->drops.by_reason[i].get();
  EXPECT_GE(counted, dropped);  // every drop counted (tx-with-reason replacements count too)
  EXPECT_GT(forwarded, 0u);
  EXPECT_GT(dropped, 0u);
  std::printf("mutated frames: %llu forwarded, %llu dropped by the stage, %llu refused by parse\n",
              static_cast<unsigned long long>(forwarded), static_cast<unsigned long long>(dropped),
              static_cast<unsigned long long>(unparsed));
}
