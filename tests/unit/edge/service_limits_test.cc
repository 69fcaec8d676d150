// Per-service connection limits: the config keys, and the shared counters across a reload (a
// connection opened under the old snapshot releases against the same count; a new limit applies to
// the next connection).
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "edge/config.hh"
#include "edge/service_limits.hh"

namespace {

edge::config parse(const std::string& services, const std::string& tcp = "") {
  const std::string text = R"(
ports: [{name: wan0, role: wan, device: net_ring0}, {name: lan0, role: lan, device: net_ring1}]
workers: {lcores: [1]}
l4: {snat_addresses: [10.0.1.100]}
)" + tcp + R"(
pools: [{name: p, backends: [{address: 10.0.1.1, port: 80}]}]
services:
)" + services;
  auto c = edge::parse_config(text, "limits.yaml");
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().str());
  return c ? *c : edge::config{};
}

TEST(service_limits_config, keys_default_to_no_limit_and_parse) {
  auto c = parse(
      "  - {name: a, vip: 10.0.0.1, port: 80, kind: tcp, pool: p}\n"
      "  - {name: b, vip: 10.0.0.1, port: 81, kind: tcp, pool: p, max_connections: 3}\n",
      "tcp: {max_connections: 64, syn_backlog: 64, max_active_per_worker: 32}\n");
  ASSERT_EQ(c.services.size(), 2u);
  EXPECT_EQ(c.services[0].max_connections, 0u);
  EXPECT_EQ(c.services[1].max_connections, 3u);
  EXPECT_EQ(c.tcp.max_active_per_worker, 32u);
  EXPECT_EQ(parse("  - {name: a, vip: 10.0.0.1, port: 80, kind: tcp, pool: p}\n")
                .tcp.max_active_per_worker,
            0u);
}

TEST(service_limits, limit_is_enforced_and_released) {
  edge::service_registry reg;
  auto c = parse(
      "  - {name: web, vip: 10.0.0.1, port: 80, kind: tcp, pool: p, max_connections: 2}\n"
      "  - {name: lb, vip: 10.0.0.1, port: 81, kind: l4, pool: p}\n");
  ASSERT_TRUE(reg.apply(c).has_value());
  EXPECT_EQ(reg.size(), 1u) << "kind l4 has no per-service connection count";
  EXPECT_EQ(reg.find("lb"), nullptr);
  edge::service_counters* web = reg.find("web");
  ASSERT_NE(web, nullptr);
  EXPECT_TRUE(web->try_acquire());
  EXPECT_TRUE(web->try_acquire());
  EXPECT_FALSE(web->try_acquire()) << "a third connection is over max_connections: 2";
  EXPECT_EQ(web->active.load(), 2u);
  web->release();
  EXPECT_TRUE(web->try_acquire()) << "a released connection frees its place";
  EXPECT_EQ(web->active.load(), 2u);
}

TEST(service_limits, a_reload_keeps_the_counts_and_changes_the_limit) {
  edge::service_registry reg;
  ASSERT_TRUE(reg.apply(
      parse("  - {name: web, vip: 10.0.0.1, port: 80, kind: tcp, pool: p, max_connections: 2}\n")));
  edge::service_counters* held = reg.find("web");  // what a connection of the old snapshot keeps
  ASSERT_TRUE(held->try_acquire());
  ASSERT_TRUE(held->try_acquire());
  // Reload: the limit rises to 3, a service is added, the VIP changes: same counters by name.
  ASSERT_TRUE(reg.apply(
      parse("  - {name: web, vip: 10.0.0.2, port: 80, kind: tcp, pool: p, max_connections: 3}\n"
            "  - {name: api, vip: 10.0.0.1, port: 81, kind: tcp, pool: p}\n")));
  EXPECT_EQ(reg.find("web"), held);
  EXPECT_EQ(reg.size(), 2u);
  EXPECT_EQ(held->active.load(), 2u) << "connections opened before the reload still count";
  EXPECT_TRUE(held->try_acquire());
  EXPECT_FALSE(held->try_acquire()) << "the new limit (3) counts the held connections";
  // Reload down to 1 and drop the limit's service: held connections release against the same
  // counters and nothing leaks.
  ASSERT_TRUE(reg.apply(
      parse("  - {name: api, vip: 10.0.0.1, port: 81, kind: tcp, pool: p, max_connections: 1}\n")));
  for (int i = 0; i < 3; ++i) held->release();
  EXPECT_EQ(held->active.load(), 0u);
  EXPECT_EQ(reg.find("api")->limit.load(), 1u);
  EXPECT_EQ(reg.find("web")->limit.load(), 3u)
      << "a service that left keeps its last limit (no new connections)";
  // No limit: every connection is taken, and counted.
  edge::service_counters* api = reg.find("api");
  ASSERT_TRUE(reg.apply(parse("  - {name: api, vip: 10.0.0.1, port: 81, kind: tcp, pool: p}\n")));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(api->try_acquire());
  EXPECT_EQ(api->active.load(), 100u);
}

TEST(service_limits, concurrent_workers_never_exceed_the_limit) {
  edge::service_registry reg;
  ASSERT_TRUE(reg.apply(parse(
      "  - {name: web, vip: 10.0.0.1, port: 80, kind: tcp, pool: p, max_connections: 50}\n")));
  edge::service_counters* web = reg.find("web");
  std::atomic<uint32_t> peak{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (!web->try_acquire()) {
          web->refuse(edge::relay_end::service_limit);
          continue;
        }
        uint32_t now = web->active.load();
        uint32_t p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        web->release();
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_LE(peak.load(), 50u);
  EXPECT_EQ(web->active.load(), 0u);
}

TEST(service_limits, too_many_names_is_an_error_that_changes_nothing) {
  edge::service_registry reg;
  std::string many;
  for (size_t i = 0; i < edge::service_registry::capacity; ++i)
    many += "  - {name: s" + std::to_string(i) +
            ", vip: 10.0.0.1, port: " + std::to_string(1000 + i) + ", kind: tcp, pool: p}\n";
  ASSERT_TRUE(reg.apply(parse(many)));
  auto r = reg.apply(parse(
      "  - {name: one-more, vip: 10.0.0.1, port: 80, kind: tcp, pool: p, max_connections: 5}\n"));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("distinct tcp/tls service names"), std::string::npos)
      << r.error().str();
  EXPECT_EQ(reg.size(), edge::service_registry::capacity);
  EXPECT_EQ(reg.find("one-more"), nullptr);
}

}  // namespace
