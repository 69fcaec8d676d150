// Connection table: hits and misses, timeouts per state, lazy expiry, bounded inserts with
// half-open eviction, and linked forward/reply entries.
#include <gtest/gtest.h>
#include <rte_tcp.h>

#include "l4/lb/conn_table.hh"

using namespace l4::lb;

namespace {

flow_key key(uint32_t client, uint16_t sport, uint8_t proto = 6) {
  flow_key k;
  std::memcpy(k.src.data(), &client, 4);
  k.dst = {198, 51, 100, 1};
  k.sport = sport;
  k.dport = 80;
  k.proto = proto;
  return k;
}

// Timeouts in "ms" with hz = 1000.
const conn_timeouts t = conn_timeouts::defaults(1000);

}  // namespace

TEST(conn_table, miss_then_hit) {
  auto c = conn_table::create(1024, t);
  ASSERT_TRUE(c);
  auto& tab = **c;
  const auto k = key(1, 1000);
  const uint64_t h = flow_hash(k);
  EXPECT_EQ(tab.find(k, h, 0), nullptr);
  conn_entry* e = tab.insert(k, h, conn_state::tcp_syn, 0);
  ASSERT_NE(e, nullptr);
  e->to_addr = {10, 0, 1, 5};
  conn_entry* f = tab.find(k, h, 100);
  ASSERT_EQ(f, e);
  EXPECT_EQ(f->to_addr[3], 5);
  EXPECT_EQ(tab.find(key(1, 1001), flow_hash(key(1, 1001)), 100), nullptr);
}

TEST(conn_table, timeouts_follow_tcp_state) {
  auto c = conn_table::create(64, t);
  auto& tab = **c;
  const auto k = key(2, 2000);
  const uint64_t h = flow_hash(k);
  conn_entry* e = tab.insert(k, h, conn_state::tcp_syn, 0);
  ASSERT_NE(e, nullptr);
  // Half-open: gone after the SYN timeout.
  EXPECT_NE(tab.find(k, h, t.tcp_syn - 1), nullptr);
  EXPECT_EQ(tab.find(k, h, t.tcp_syn), nullptr);
  // Established lives for the established timeout.
  e = tab.insert(k, h, conn_state::tcp_syn, 10000);
  tab.touch(*e, RTE_TCP_ACK_FLAG, true, 10001);
  EXPECT_EQ(e->state, conn_state::tcp_established);
  EXPECT_NE(tab.find(k, h, 10001 + t.tcp_established - 1), nullptr);
  // A FIN moves it to closing with the short timeout.
  tab.touch(*e, RTE_TCP_FIN_FLAG | RTE_TCP_ACK_FLAG, true, 20000);
  EXPECT_EQ(e->state, conn_state::tcp_closing);
  EXPECT_EQ(tab.find(k, h, 20000 + t.tcp_closing), nullptr);
}

TEST(conn_table, udp_timeout) {
  auto c = conn_table::create(64, t);
  auto& tab = **c;
  const auto k = key(3, 53, 17);
  const uint64_t h = flow_hash(k);
  conn_entry* e = tab.insert(k, h, conn_state::udp, 0);
  tab.touch(*e, 0, true, 1000);
  EXPECT_NE(tab.find(k, h, 1000 + t.udp - 1), nullptr);
  EXPECT_EQ(tab.find(k, h, 1000 + t.udp), nullptr);
}

TEST(conn_table, full_table_refuses_new_flows_and_keeps_old_ones) {
  auto c = conn_table::create(64, t);
  auto& tab = **c;
  std::vector<flow_key> in;
  uint32_t refused = 0;
  for (uint32_t i = 0; i < 1000; ++i) {
    const auto k = key(100 + i, 1, 17);
    conn_entry* e = tab.insert(k, flow_hash(k), conn_state::udp, 0);
    if (e == nullptr) {
      ++refused;
      continue;
    }
    in.push_back(k);
  }
  EXPECT_LE(in.size(), tab.capacity());
  EXPECT_GE(in.size(), tab.capacity() * 3 / 4);  // two-choice buckets fill well
  EXPECT_EQ(refused, 1000 - in.size());
  EXPECT_EQ(tab.stats().refused_full, refused);
  for (const auto& k : in) EXPECT_NE(tab.find(k, flow_hash(k), 1), nullptr);
  // After they expire the room comes back without any sweep.
  const auto k = key(5000, 1, 17);
  EXPECT_NE(tab.insert(k, flow_hash(k), conn_state::udp, t.udp + 1), nullptr);
  EXPECT_EQ(tab.stats().reused_expired, 1u);
}

TEST(conn_table, syn_flood_evicts_half_open_not_established) {
  auto c = conn_table::create(64, t);
  auto& tab = **c;
  std::vector<flow_key> est;
  for (uint32_t i = 0; i < 1000; ++i) {
    const auto k = key(100 + i, 1);
    conn_entry* e = tab.insert(k, flow_hash(k), conn_state::tcp_syn, 0);
    if (e == nullptr) break;
    tab.touch(*e, RTE_TCP_ACK_FLAG, true, 0);
    est.push_back(k);
    if (est.size() == 32) break;
  }
  ASSERT_EQ(est.size(), 32u);
  // A flood of SYNs: they evict each other, never an established flow.
  for (uint32_t i = 0; i < 5000; ++i) {
    const auto k = key(900000 + i, 2);
    tab.insert(k, flow_hash(k), conn_state::tcp_syn, 1 + i);
  }
  for (const auto& k : est) EXPECT_NE(tab.find(k, flow_hash(k), 6000), nullptr);
  EXPECT_GT(tab.stats().evicted_half_open, 0u);
}

TEST(conn_table, linked_entries_share_state_and_the_reply_outlives_the_forward) {
  auto c = conn_table::create(64, t);
  auto& tab = **c;
  const auto k = key(7, 7000);
  flow_key r = key(0x0501000a, 40000);  // backend 10.0.1.5 -> SNAT
  conn_entry* f = tab.insert(k, flow_hash(k), conn_state::tcp_syn, 0);
  conn_entry* b = tab.insert(r, flow_hash(r), conn_state::tcp_syn, 0);
  ASSERT_TRUE(f && b);
  f->kind = conn_kind::nat_forward;
  b->kind = conn_kind::nat_reply;
  tab.link(*f, *b);
  // The backend's SYN-ACK establishes both.
  tab.touch(*b, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, false, 10);
  EXPECT_EQ(f->state, conn_state::tcp_established);
  EXPECT_GE(b->expires, f->expires);
  // Client traffic only, for a long time: the reply entry (the SNAT port) is never the first to
  // expire, though the forward entry writes it only now and then.
  for (uint64_t now = 20; now < 3 * t.tcp_established; now += 997) {
    tab.touch(*f, RTE_TCP_ACK_FLAG, true, now);
    ASSERT_GE(b->expires, f->expires) << now;
    ASSERT_NE(tab.find(r, flow_hash(r), now), nullptr) << now;
  }
  // Backend traffic only (one-way UDP-like): the forward entry stays alive too.
  const uint64_t start = 3 * t.tcp_established;
  for (uint64_t now = start; now < start + 3 * t.tcp_established; now += 997) {
    tab.touch(*b, RTE_TCP_ACK_FLAG, false, now);
    ASSERT_NE(tab.find(k, flow_hash(k), now), nullptr) << now;
    ASSERT_GE(b->expires, f->expires) << now;
  }
  // A FIN shortens both at once.
  const uint64_t fin = start + 3 * t.tcp_established;
  tab.touch(*f, RTE_TCP_FIN_FLAG | RTE_TCP_ACK_FLAG, true, fin);
  EXPECT_EQ(b->state, conn_state::tcp_closing);
  EXPECT_EQ(tab.find(r, flow_hash(r), fin + t.tcp_closing + t.tcp_closing / 4), nullptr);
  tab.erase(*f);
  EXPECT_EQ(tab.find(r, flow_hash(r), fin + 1), nullptr);
}

TEST(conn_table, refuses_bad_parameters) {
  EXPECT_FALSE(conn_table::create(0, t));
  EXPECT_FALSE(conn_table::create(64, conn_timeouts{}));
}
