// Hand-off between workers (edge/worker.cc): a packet that reaches a worker other than its owner
// goes to the owner's ring in one burst; a full ring is a counted drop (handoff_ring_full), never a
// stall or a leak; the owner processes what it dequeues and never hands it back.
#include <gtest/gtest.h>
#include <rte_ring.h>

#include <vector>

#include "edge/worker.hh"
#include "l4/lb/owner.hh"
#include "l4/parse.hh"
#include "packet_builder.hh"
#include "test_eal.hh"

namespace edge {
namespace {

rte_mbuf* udp_frame(uint16_t sport) {
  edge_test::packet_builder b;
  b.from("203.0.113.7").to("198.51.100.1");
  b.proto = IPPROTO_UDP;
  b.sport = sport;
  b.dport = 53;
  return edge_test::to_mbuf(edge_test::mempool(), b.bytes());
}

uint16_t owner(rte_mbuf* m) {
  l4::packet p;
  EXPECT_EQ(l4::parse(m, p), l4::drop::none);
  return l4::lb::flow_owner(nullptr, m, p, 2, 0);
}

struct two_workers {
  rte_ring* ring[2];
  worker_context w[2];
  std::shared_ptr<config> cfg = std::make_shared<config>();
  snapshot snap;

  explicit two_workers(unsigned ring1_slots) {
    ring[0] = rte_ring_create("test_handoff_0", 1024, SOCKET_ID_ANY, RING_F_SC_DEQ);
    ring[1] = rte_ring_create("test_handoff_1", ring1_slots, SOCKET_ID_ANY, RING_F_SC_DEQ);
    EXPECT_NE(ring[0], nullptr);
    EXPECT_NE(ring[1], nullptr);
    for (unsigned i = 0; i < 2; ++i) {
      w[i].id = i;
      w[i].ports.resize(1);
      w[i].handoff = {ring[0], ring[1]};
    }
    snap.cfg = cfg;
    snap.local.resize(1);  // no local address: what is processed is counted as not_local
  }
  ~two_workers() {
    for (rte_ring* r : ring) rte_ring_free(r);
  }
};

TEST(handoff, a_full_ring_is_a_counted_drop_and_the_owner_processes_the_rest) {
  const unsigned free_before = rte_mempool_avail_count(edge_test::mempool());
  two_workers t(8);  // worker 1's ring holds 7
  // A burst on worker 0: 12 packets worker 1 owns, 4 its own.
  std::vector<rte_mbuf*> burst;
  unsigned mine = 0, theirs = 0;
  for (uint16_t sport = 1000; mine < 4 || theirs < 12; ++sport) {
    rte_mbuf* m = udp_frame(sport);
    unsigned& n = owner(m) == 1 ? theirs : mine;
    if ((owner(m) == 1 && n == 12) || (owner(m) == 0 && n == 4)) {
      rte_pktmbuf_free(m);
      continue;
    }
    ++n;
    burst.push_back(m);
  }
  process_burst(t.w[0], t.snap, 0, burst);
  EXPECT_EQ(t.w[0].stats.handoff_out.get(), 7u) << "one burst enqueue, as many as fit";
  EXPECT_EQ(t.w[0].stats.drops.get(l4::drop::handoff_ring_full), 5u);
  EXPECT_EQ(t.w[0].stats.drops.get(l4::drop::not_local), 4u) << "its own packets went on";
  EXPECT_EQ(rte_ring_count(t.ring[1]), 7u);
  EXPECT_EQ(rte_ring_count(t.ring[0]), 0u);

  // A packet worker 0 owns that reached worker 1's ring anyway (an owner that moved): worker 1
  // processes it rather than bouncing it back.
  rte_mbuf* stray = nullptr;
  for (uint16_t sport = 5000; stray == nullptr; ++sport) {
    rte_mbuf* m = udp_frame(sport);
    if (owner(m) == 0)
      stray = m;
    else
      rte_pktmbuf_free(m);
  }
  // Not yet: the ring is full, and the enqueue must fail rather than wait.
  EXPECT_NE(rte_ring_mp_enqueue(t.ring[1], stray), 0);
  EXPECT_EQ(process_handoff(t.w[1], t.snap, 4), 4u);
  stray->port = 0;
  ASSERT_EQ(rte_ring_mp_enqueue(t.ring[1], stray), 0);
  EXPECT_EQ(process_handoff(t.w[1], t.snap, 32), 4u);
  EXPECT_EQ(process_handoff(t.w[1], t.snap, 32), 0u);
  EXPECT_EQ(t.w[1].stats.handoff_in.get(), 8u);
  EXPECT_EQ(t.w[1].stats.handoff_out.get(), 0u) << "nothing handed back";
  EXPECT_EQ(rte_ring_count(t.ring[0]), 0u);
  EXPECT_EQ(t.w[1].stats.drops.get(l4::drop::not_local), 8u);
  // Every mbuf came back to the pool: none leaked on either path.
  EXPECT_EQ(rte_mempool_avail_count(edge_test::mempool()), free_before);
}

TEST(handoff, a_handed_packet_naming_no_port_of_the_owner_is_dropped_by_name) {
  const unsigned free_before = rte_mempool_avail_count(edge_test::mempool());
  two_workers t(64);
  rte_mbuf* m = udp_frame(7);
  m->port = 5;  // the sender writes the port index; this one does not exist here
  ASSERT_EQ(rte_ring_mp_enqueue(t.ring[1], m), 0);
  EXPECT_EQ(process_handoff(t.w[1], t.snap, 32), 1u);
  EXPECT_EQ(t.w[1].stats.drops.get(l4::drop::handoff_bad_port), 1u);
  EXPECT_EQ(rte_mempool_avail_count(edge_test::mempool()), free_before);
}

TEST(handoff, one_worker_hands_nothing_over) {
  two_workers t(64);
  t.w[0].handoff.clear();
  std::vector<rte_mbuf*> burst;
  for (uint16_t sport = 1000; sport < 1032; ++sport) burst.push_back(udp_frame(sport));
  process_burst(t.w[0], t.snap, 0, burst);
  EXPECT_EQ(t.w[0].stats.handoff_out.get(), 0u);
  EXPECT_EQ(t.w[0].stats.drops.get(l4::drop::not_local), 32u);
  EXPECT_EQ(rte_ring_count(t.ring[1]), 0u);
}

}  // namespace
}  // namespace edge

EDGE_TEST_MAIN_WITH_EAL()
