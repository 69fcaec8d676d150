// Backend selection: weighted least connections among healthy backends, exclusion of tried ones,
// drain, and hash selection that is stable and moves only the leaving backend's share.
#include "upstream_pool.hh"

#include <gtest/gtest.h>

#include <array>
#include <map>
#include <string>
#include <vector>

#include "test_util.hh"

namespace edge::upstream {
namespace {

using test::addr;

pool_spec three(uint32_t w0 = 1, uint32_t w1 = 1, uint32_t w2 = 1) {
  pool_spec s;
  s.name = "gw";
  s.backends = {
      {addr("10.0.0.1"), 8080, w0}, {addr("10.0.0.2"), 8080, w1}, {addr("10.0.0.3"), 8080, w2}};
  return s;
}

TEST(upstream_pool, rejects_bad_specs) {
  pool_spec s;
  s.name = "empty";
  auto r = upstream_pool::create(s);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no backends"), std::string::npos);
  s = three();
  s.max_connect_attempts = 9;
  EXPECT_FALSE(upstream_pool::create(s));
  s = three();
  s.backends[1].port = 0;
  EXPECT_FALSE(upstream_pool::create(s));
}

TEST(upstream_pool, counters_are_visited_by_name) {
  auto p = *upstream_pool::create(three());
  p->on_attempt(1);
  p->counters().gave_up.add(2);
  std::map<std::string, uint64_t> m;
  visit(p->counters(), [&](std::string_view k, uint64_t v) { m[std::string(k)] = v; });
  EXPECT_EQ(m.size(), 11u);
  EXPECT_EQ(m["active"], 1u);
  EXPECT_EQ(m["gave_up"], 2u);
  m.clear();
  visit(p->at(1).counters, [&](std::string_view k, uint64_t v) { m[std::string(k)] = v; });
  EXPECT_EQ(m.size(), 8u);
  EXPECT_EQ(m["active"], 1u);
}

TEST(upstream_pool, least_connections_spreads_evenly) {
  auto p = *upstream_pool::create(three());
  std::array<int, 3> n{};
  for (int k = 0; k < 30; ++k) {
    size_t b = p->select_least_conn();
    ASSERT_LT(b, 3u);
    p->on_attempt(b);
    ++n[b];
  }
  EXPECT_EQ(n, (std::array<int, 3>{10, 10, 10}));
  EXPECT_EQ(p->counters().active.get(), 30u);
  // Ending connections on backend 2 makes it the least loaded.
  for (int k = 0; k < 5; ++k) p->on_finished(2);
  EXPECT_EQ(p->at(2).counters.active.get(), 5u);
  EXPECT_EQ(p->select_least_conn(), 2u);
}

TEST(upstream_pool, weights_skew_least_connections) {
  auto p = *upstream_pool::create(three(1, 3, 0));  // backend 2 drained
  std::array<int, 3> n{};
  for (int k = 0; k < 40; ++k) {
    size_t b = p->select_least_conn();
    p->on_attempt(b);
    ++n[b];
  }
  EXPECT_EQ(n, (std::array<int, 3>{10, 30, 0}));
}

TEST(upstream_pool, unhealthy_and_excluded_are_skipped) {
  auto p = *upstream_pool::create(three());
  p->set_healthy(0, false);
  EXPECT_EQ(p->healthy_count(), 2u);
  const size_t tried[] = {1};
  EXPECT_EQ(p->select_least_conn(tried), 2u);
  const size_t tried2[] = {1, 2};
  EXPECT_EQ(p->select_least_conn(tried2), no_backend);
  p->set_healthy(0, true);
  EXPECT_EQ(p->select_least_conn(tried2), 0u);
  for (size_t i = 0; i < 3; ++i) p->set_healthy(i, false);
  EXPECT_EQ(p->select_least_conn(), no_backend);
  EXPECT_EQ(p->select_by_hash(42), no_backend);
}

TEST(upstream_pool, hash_is_stable_and_moves_only_the_leaving_share) {
  pool_spec s;
  s.name = "gw";
  for (int i = 0; i < 5; ++i)
    s.backends.push_back({addr(("10.0.1." + std::to_string(i + 1)).c_str()), 80, 1});
  auto p = *upstream_pool::create(s);
  const int flows = 20000;
  std::vector<size_t> before(flows);
  std::array<int, 5> n{};
  for (int f = 0; f < flows; ++f) {
    uint64_t h = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(f + 1);
    before[f] = p->select_by_hash(h);
    ASSERT_EQ(before[f], p->select_by_hash(h));
    ++n[before[f]];
  }
  for (int c : n) EXPECT_NEAR(c, flows / 5, flows / 5 * 0.1) << "share off by more than 10%";
  p->set_healthy(3, false);
  int moved = 0;
  for (int f = 0; f < flows; ++f) {
    size_t now = p->select_by_hash(0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(f + 1));
    EXPECT_NE(now, 3u);
    if (before[f] != 3) {
      EXPECT_EQ(now, before[f]) << "flow " << f << " moved although its backend stayed";
    }
    moved += now != before[f];
  }
  EXPECT_EQ(moved, n[3]);
}

TEST(upstream_pool, hash_selector_hook_wins_when_eligible) {
  auto p = *upstream_pool::create(three());
  struct ctx {
    size_t pick;
  } c{1};
  p->set_hash_selector([](void* x, uint64_t) { return static_cast<ctx*>(x)->pick; }, &c);
  EXPECT_EQ(p->select_by_hash(7), 1u);
  p->set_healthy(1, false);  // the table still names 1: fall back to least connections
  size_t b = p->select_by_hash(7);
  EXPECT_TRUE(b == 0 || b == 2);
  c.pick = 99;  // out of range: ignored
  EXPECT_LT(p->select_by_hash(7), 3u);
}

TEST(upstream_pool, maglev_table_drives_hash_selection) {
  pool_spec s;
  s.name = "gw";
  for (int i = 0; i < 4; ++i)
    s.backends.push_back({addr(("10.0.2." + std::to_string(i + 1)).c_str()), 80, 1});
  s.backends.push_back({addr("2001:db8::5"), 80, 2});
  auto p = *upstream_pool::create(s);
  auto mb = maglev_backends(*p);
  ASSERT_EQ(mb.size(), 5u);
  EXPECT_EQ(mb[0].key, "10.0.2.1:80");
  EXPECT_EQ(mb[4].key, "[2001:db8::5]:80");
  EXPECT_EQ(mb[4].weight, 2u);
  auto table = l4::lb::maglev_table::build(mb, 1009);
  ASSERT_TRUE(table) << table.error().str();
  p->set_hash_selector(&maglev_select, &*table);
  std::array<int, 5> n{};
  for (uint64_t f = 1; f <= 10000; ++f) {
    uint64_t h = f * 0x9e3779b97f4a7c15ULL;
    size_t b = p->select_by_hash(h);
    ASSERT_EQ(b, table->lookup(h));
    ++n[b];
  }
  EXPECT_GT(n[4], n[0] * 3 / 2);  // weight 2 gets about twice the flows of weight 1
  // Down before the table is rebuilt: never picked, the others keep their flows.
  p->set_healthy(2, false);
  for (uint64_t f = 1; f <= 2000; ++f) {
    uint64_t h = f * 0x9e3779b97f4a7c15ULL;
    size_t b = p->select_by_hash(h);
    EXPECT_NE(b, 2u);
    if (table->lookup(h) != 2) {
      EXPECT_EQ(b, table->lookup(h));
    }
  }
  // Rebuilt from the health state: the down backend has weight 0 and no slots.
  mb = maglev_backends(*p);
  EXPECT_EQ(mb[2].weight, 0u);
  auto t2 = l4::lb::maglev_table::build(mb, 1009);
  ASSERT_TRUE(t2);
  for (uint16_t e : t2->entries()) EXPECT_NE(e, 2);
}

}  // namespace
}  // namespace edge::upstream
