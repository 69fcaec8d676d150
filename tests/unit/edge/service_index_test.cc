// The snapshot's service table (edge/service_index.hh): a packet's service in one bounded probe,
// for the configured services and the balancer's, with misses that differ in one field only.
#include "edge/service_index.hh"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "edge/config.hh"
#include "l4/lb/lb_config.hh"

namespace edge {
namespace {

l4::ip_addr ip(const std::string& s) {
  return *l4::ip_addr::parse(s);
}

service_config svc(const std::string& name, const std::string& vip, uint16_t port, uint8_t proto,
                   service_kind kind = service_kind::tcp) {
  service_config s;
  s.name = name;
  s.vip = ip(vip);
  s.port = port;
  s.protocol = proto;
  s.kind = kind;
  return s;
}

TEST(service_index, hits_and_misses_that_differ_in_one_field) {
  const std::vector<service_config> services = {
      svc("web", "198.51.100.1", 80, IPPROTO_TCP),
      svc("dns", "198.51.100.1", 53, IPPROTO_UDP),
      svc("web6", "2001:db8::1", 80, IPPROTO_TCP),
  };
  service_index idx;
  idx.build(services, nullptr);
  EXPECT_EQ(idx.size(), 3u);
  const struct {
    const char* what;
    std::string vip;
    uint16_t port;
    uint8_t proto;
    const service_config* want;
  } rows[] = {
      {"tcp hit", "198.51.100.1", 80, IPPROTO_TCP, &services[0]},
      {"udp hit", "198.51.100.1", 53, IPPROTO_UDP, &services[1]},
      {"v6 hit", "2001:db8::1", 80, IPPROTO_TCP, &services[2]},
      {"other port", "198.51.100.1", 81, IPPROTO_TCP, nullptr},
      {"other protocol", "198.51.100.1", 80, IPPROTO_UDP, nullptr},
      {"other address", "198.51.100.2", 80, IPPROTO_TCP, nullptr},
      // The IPv4 VIP's bytes as an IPv6 address are another address.
      {"other family", "::c633:6401", 80, IPPROTO_TCP, nullptr},
  };
  for (const auto& r : rows) {
    const service_entry* e = idx.find(ip(r.vip), r.port, r.proto);
    if (r.want == nullptr) {
      EXPECT_EQ(e, nullptr) << r.what;
    } else {
      ASSERT_NE(e, nullptr) << r.what;
      EXPECT_EQ(e->cfg, r.want) << r.what;
      EXPECT_EQ(e->lb, nullptr) << r.what;
    }
  }
}

TEST(service_index, empty_finds_nothing) {
  service_index unbuilt;
  EXPECT_EQ(unbuilt.find(ip("198.51.100.1"), 80, IPPROTO_TCP), nullptr);
  service_index idx;
  idx.build({}, nullptr);
  EXPECT_EQ(idx.size(), 0u);
  EXPECT_EQ(idx.find(ip("198.51.100.1"), 80, IPPROTO_TCP), nullptr);
}

// Many services: every one is found among the collisions a half-full table has, every near
// miss is refused, and no probe is longer than the longest insertion.
TEST(service_index, many_services_with_collisions) {
  std::vector<service_config> services;
  for (int a = 0; a < 16; ++a)
    for (uint16_t port = 1; port <= 128; ++port)
      services.push_back(
          svc("s", "10.1.0." + std::to_string(a), port, port % 2 ? IPPROTO_TCP : IPPROTO_UDP));
  service_index idx;
  idx.build(services, nullptr);
  ASSERT_EQ(idx.size(), services.size());
  EXPECT_GE(idx.capacity(), 2 * services.size());
  EXPECT_GT(idx.max_probe(), 1u) << "the table was meant to have collisions";
  for (const auto& s : services) {
    const service_entry* e = idx.find(s.vip, s.port, s.protocol);
    ASSERT_NE(e, nullptr) << s.vip.str() << ":" << s.port;
    EXPECT_EQ(e->cfg, &s);
    EXPECT_EQ(idx.find(s.vip, s.port, s.protocol == IPPROTO_TCP ? IPPROTO_UDP : IPPROTO_TCP),
              nullptr);
    EXPECT_EQ(idx.find(s.vip, static_cast<uint16_t>(s.port + 1000), s.protocol), nullptr);
  }
}

// Keys that land in the same slot: a table of 4 slots (one service) and candidates hashed until
// two of them collide with it; each is found and a third colliding key is a miss.
TEST(service_index, colliding_keys) {
  const auto home = [](const service_config& s) {
    return service_index::hash(s.vip, s.port, s.protocol) & 7u;  // 3 services: 8 slots
  };
  std::vector<service_config> services = {svc("a", "192.0.2.1", 1, IPPROTO_TCP)};
  service_config miss;
  bool have_miss = false;
  for (uint16_t port = 2; port < 60000 && (services.size() < 3 || !have_miss); ++port) {
    const service_config c = svc("c", "192.0.2.1", port, IPPROTO_TCP);
    if (home(c) != home(services[0])) continue;
    if (services.size() < 3) {
      services.push_back(c);
    } else {
      miss = c;
      have_miss = true;
    }
  }
  ASSERT_EQ(services.size(), 3u);
  ASSERT_TRUE(have_miss);
  service_index idx;
  idx.build(services, nullptr);
  ASSERT_EQ(idx.capacity(), 8u);
  EXPECT_EQ(idx.max_probe(), 3u) << "three keys in one home slot";
  for (const auto& s : services) {
    const service_entry* e = idx.find(s.vip, s.port, s.protocol);
    ASSERT_NE(e, nullptr) << s.port;
    EXPECT_EQ(e->cfg, &s);
  }
  EXPECT_EQ(idx.find(miss.vip, miss.port, miss.protocol), nullptr);
}

TEST(service_index, a_duplicate_key_keeps_the_first) {
  const std::vector<service_config> services = {svc("first", "198.51.100.1", 80, IPPROTO_TCP),
                                                svc("second", "198.51.100.1", 80, IPPROTO_TCP)};
  service_index idx;
  idx.build(services, nullptr);
  EXPECT_EQ(idx.size(), 1u);
  const service_entry* e = idx.find(ip("198.51.100.1"), 80, IPPROTO_TCP);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->cfg->name, "first");
}

// Kind l4: the entry carries the balancer's service of the same key, found in the same probe;
// a balancer service the config does not name is indexed too (no config entry).
TEST(service_index, balancer_services_share_the_entry) {
  l4::lb::lb_spec spec;
  spec.snat_v4 = {ip("10.0.0.100")};
  for (const char* vip : {"198.51.100.1", "198.51.100.2"}) {
    l4::lb::service_spec s;
    s.vip = ip(vip);
    s.port = 80;
    s.backends = {{ip("10.0.1.5"), 8080}};
    spec.services.push_back(s);
  }
  auto lb = l4::lb::lb_config::build(spec);
  ASSERT_TRUE(lb.has_value()) << lb.error().message;
  const std::vector<service_config> services = {
      svc("l4", "198.51.100.1", 80, IPPROTO_TCP, service_kind::l4),
      svc("relay", "198.51.100.1", 443, IPPROTO_TCP)};
  service_index idx;
  idx.build(services, lb->get());
  EXPECT_EQ(idx.size(), 3u);
  const service_entry* a = idx.find(ip("198.51.100.1"), 80, IPPROTO_TCP);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->cfg, &services[0]);
  EXPECT_EQ(a->lb, (*lb)->find(ip("198.51.100.1"), 80, IPPROTO_TCP));
  EXPECT_NE(a->lb, nullptr);
  const service_entry* b = idx.find(ip("198.51.100.1"), 443, IPPROTO_TCP);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->cfg, &services[1]);
  EXPECT_EQ(b->lb, nullptr);
  const service_entry* c = idx.find(ip("198.51.100.2"), 80, IPPROTO_TCP);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->cfg, nullptr);
  EXPECT_EQ(c->lb, (*lb)->find(ip("198.51.100.2"), 80, IPPROTO_TCP));
}

}  // namespace
}  // namespace edge
