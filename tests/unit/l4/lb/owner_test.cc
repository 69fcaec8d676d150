// The ownership rule (l4/lb/owner.hh), one row per packet class: the worker that must see a packet
// is the one that holds its flow's state, whatever queue the port put it on.
#include "l4/lb/owner.hh"

#include <gtest/gtest.h>

#include <string>

#include "lb_fixture.hh"

namespace {

using namespace lbt;

constexpr uint16_t workers = 4;

uint16_t owner_of(const lb_config* cfg, const bytes& frame, uint16_t self = 99) {
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), frame);
  EXPECT_NE(m, nullptr);
  l4::packet p;
  EXPECT_EQ(l4::parse(m, p), l4::drop::none);
  const uint16_t o = flow_owner(cfg, m, p, workers, self);
  rte_pktmbuf_free(m);
  return o;
}

bytes quoted(const edge_test::packet_builder& b, size_t n = SIZE_MAX) {
  bytes f = b.bytes();
  bytes q(f.begin() + 14, f.end());
  if (q.size() > n) q.resize(n);
  return q;
}

edge_test::packet_builder icmp_error_about(const char* from, const char* to, const bytes& q) {
  auto b = pkt(from, to, IPPROTO_ICMP, 0, 0);
  b.icmp_type = b.v6 ? 2 : 3;  // packet too big / unreachable
  b.icmp_code = b.v6 ? 0 : 4;  // - / fragmentation needed
  b.icmp_id = 0;
  b.icmp_seq = 1400;
  b.payload = q;
  return b;
}

std::shared_ptr<const lb_config> four_worker_config() {
  lb_spec s = base_spec();
  s.workers = workers;
  auto cfg = lb_config::build(s);
  EXPECT_TRUE(cfg);
  return *cfg;
}

TEST(owner, full_nat_replies_belong_to_the_owner_of_their_snat_port_range) {
  auto cfg = four_worker_config();
  for (uint16_t w = 0; w < workers; ++w) {
    const auto [lo, hi] = cfg->snat_range(w);
    for (uint16_t port : {lo, static_cast<uint16_t>(lo + (hi - lo) / 2), hi}) {
      for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
        // Whatever the backend's address and port: the SNAT port decides.
        for (const char* backend : {"10.0.1.5", "10.0.1.6"})
          EXPECT_EQ(owner_of(cfg.get(), pkt(backend, "10.0.0.100", proto, 8080, port).bytes()), w)
              << backend << " -> snat port " << port;
        EXPECT_EQ(owner_of(cfg.get(), pkt("fd00:1::5", "fd00::100", proto, 8080, port).bytes()), w)
            << "v6 snat port " << port;
      }
    }
  }
}

TEST(owner, both_directions_of_a_flow_meet_on_one_worker) {
  // The software hash is symmetric: a tcp/tls connection's segments from the client and the
  // ICMP errors about what we sent to it land with the TCB, and so do both legs of any flow.
  auto cfg = four_worker_config();
  for (uint16_t cport = 1000; cport < 1400; ++cport)
    for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
      const auto in = pkt("203.0.113.7", "198.51.100.200", proto, cport, 443);
      const auto out = pkt("198.51.100.200", "203.0.113.7", proto, 443, cport);
      ASSERT_EQ(owner_of(cfg.get(), in.bytes()), owner_of(cfg.get(), out.bytes())) << cport;
      const auto in6 = pkt("2001:db8:9::7", "2001:db8:100::1", proto, cport, 443);
      const auto out6 = pkt("2001:db8:100::1", "2001:db8:9::7", proto, 443, cport);
      ASSERT_EQ(owner_of(cfg.get(), in6.bytes()), owner_of(cfg.get(), out6.bytes())) << cport;
    }
}

TEST(owner, the_hash_spreads_flows_over_every_worker) {
  uint32_t count[workers] = {};
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::string client =
        "203.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    ++count[owner_of(nullptr, pkt(client.c_str(), "198.51.100.1", IPPROTO_TCP,
                                  static_cast<uint16_t>(32768 + i % 1000), 80)
                                  .bytes())];
  }
  for (uint16_t w = 0; w < workers; ++w)
    EXPECT_NEAR(count[w], n / workers, n / workers / 10) << "worker " << w;
}

TEST(owner, icmp_errors_belong_to_the_owner_of_the_quoted_flow) {
  auto cfg = four_worker_config();
  struct row {
    std::string description;
    edge_test::packet_builder error;
    uint16_t owner;
  };
  std::vector<row> rows;
  // About what we sent to a backend from a SNAT address: the SNAT port's owner.
  for (uint16_t w = 0; w < workers; ++w) {
    const uint16_t port = cfg->snat_range(w).first;
    rows.push_back(
        {"frag needed from the backend path, snat port of worker " + std::to_string(w),
         icmp_error_about("10.0.1.1", "10.0.0.100",
                          quoted(pkt("10.0.0.100", "10.0.1.5", IPPROTO_TCP, port, 8080))),
         w});
    rows.push_back(
        {"packet too big (v6), snat port of worker " + std::to_string(w),
         icmp_error_about("fd00:1::1", "fd00::100",
                          quoted(pkt("fd00::100", "fd00:1::5", IPPROTO_TCP, port, 8080))),
         w});
  }
  // About what we sent to a client from a VIP (tcp/tls segments, full-NAT replies): the owner
  // of the client's flow, as the hash places it.
  for (uint16_t cport : {40000, 40001, 40002, 40003, 40004, 40005, 40006, 40007}) {
    const auto client = pkt("203.0.113.7", "198.51.100.200", IPPROTO_TCP, cport, 443);
    const uint16_t flow = owner_of(cfg.get(), client.bytes());
    rows.push_back(
        {"frag needed quoting VIP -> client port " + std::to_string(cport),
         icmp_error_about("192.0.2.254", "198.51.100.200",
                          quoted(pkt("198.51.100.200", "203.0.113.7", IPPROTO_TCP, 443, cport),
                                 28)),  // IP header + 8 bytes, as RFC 792 asks
         flow});
    const auto client6 = pkt("2001:db8:9::7", "2001:db8:100::1", IPPROTO_TCP, cport, 443);
    rows.push_back(
        {"packet too big quoting VIP -> client port " + std::to_string(cport),
         icmp_error_about("2001:db8::fe", "2001:db8:100::1",
                          quoted(pkt("2001:db8:100::1", "2001:db8:9::7", IPPROTO_TCP, 443, cport))),
         owner_of(cfg.get(), client6.bytes())});
  }
  for (const auto& r : rows)
    EXPECT_EQ(owner_of(cfg.get(), r.error.bytes()), r.owner) << r.description;
}

TEST(owner, packets_without_a_known_flow_stay_where_they_are) {
  auto cfg = four_worker_config();
  constexpr uint16_t self = 3;
  // ARP: any worker answers it, and the neighbour table is shared.
  const bytes arp = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xcc, 0,    0,    0,  1, 0x08, 0x06,
                     0,    1,    0x08, 0,    6,    4,    0,    1,    0x02, 0xcc, 0,  0, 0,    1,
                     10,   9,    9,    9,    0,    0,    0,    0,    0,    0,    10, 0, 0,    1};
  EXPECT_EQ(owner_of(cfg.get(), arp, self), self);
  // An ICMP error quoting too little to name a flow: the local stage counts it where it is.
  auto error =
      icmp_error_about("192.0.2.254", "198.51.100.200",
                       quoted(pkt("198.51.100.200", "203.0.113.7", IPPROTO_TCP, 443, 5), 12));
  EXPECT_EQ(owner_of(cfg.get(), error.bytes(), self), self);
  error = icmp_error_about("192.0.2.254", "198.51.100.200",
                           quoted(pkt("198.51.100.200", "203.0.113.7", IPPROTO_TCP, 443, 5), 22));
  EXPECT_EQ(owner_of(cfg.get(), error.bytes(), self), self) << "IP header without the ports";
}

TEST(owner, echo_requests_are_placed_by_address_and_one_worker_owns_everything) {
  auto cfg = four_worker_config();
  auto echo = pkt("203.0.113.7", "198.51.100.1", IPPROTO_ICMP, 0, 0);
  const uint16_t o = owner_of(cfg.get(), echo.bytes());
  for (uint16_t id = 2; id < 50; ++id) {
    echo.icmp_id = id;
    EXPECT_EQ(owner_of(cfg.get(), echo.bytes()), o);
  }
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(),
                                   pkt("10.0.1.5", "10.0.0.100", IPPROTO_TCP, 80, 60000).bytes());
  l4::packet p;
  ASSERT_EQ(l4::parse(m, p), l4::drop::none);
  EXPECT_EQ(flow_owner(cfg.get(), m, p, 1, 0), 0);
  // A SNAT split made for another worker count is not trusted: the hash decides, in range.
  EXPECT_LT(flow_owner(cfg.get(), m, p, 3, 0), 3);
  rte_pktmbuf_free(m);
}

}  // namespace

// NIC steering (rte_flow, edge/flow_steer.hh) matches a masked port, so each worker's SNAT range
// is written as aligned blocks: they must cover the range exactly, no port twice, few of them.
TEST(owner, port_blocks_cover_a_range_exactly) {
  auto check = [](uint16_t lo, uint16_t hi) {
    const auto blocks = port_blocks(lo, hi);
    EXPECT_LE(blocks.size(), 30u) << lo << ".." << hi;
    for (uint32_t p = 0; p <= 0xffff; ++p) {
      int matches = 0;
      for (const auto& b : blocks) matches += (p & b.mask) == b.value;
      ASSERT_EQ(matches, p >= lo && p <= hi ? 1 : 0) << "port " << p << " in " << lo << ".." << hi;
    }
  };
  check(1024, 65535);
  check(0, 65535);
  check(1, 65534);
  check(7, 7);
  check(32768, 32769);
  check(1024, 33279);
  uint32_t x = 12345;
  for (int i = 0; i < 40; ++i) {
    x = x * 1103515245u + 12345u;
    const auto a = static_cast<uint16_t>(x >> 8), b = static_cast<uint16_t>(x >> 20);
    check(std::min(a, b), std::max(a, b));
  }
  EXPECT_TRUE(port_blocks(10, 9).empty());
  EXPECT_EQ(port_blocks(1024, 2047), (std::vector<port_block>{{1024, 0xfc00}}));
}

TEST(owner, the_blocks_of_each_workers_snat_range_match_exactly_the_ports_it_owns) {
  for (uint16_t n : {2, 3, 4, 16}) {
    lb_spec s = base_spec();
    s.workers = n;
    s.snat_port_lo = 1024 + n;
    auto cfg = lb_config::build(s);
    ASSERT_TRUE(cfg);
    std::vector<std::vector<port_block>> blocks;
    for (uint16_t w = 0; w < n; ++w) {
      const auto [lo, hi] = (*cfg)->snat_range(w);
      blocks.push_back(port_blocks(lo, hi));
    }
    for (uint32_t p = s.snat_port_lo; p <= s.snat_port_hi; ++p) {
      int steered_to = -1, matches = 0;
      for (uint16_t w = 0; w < n; ++w)
        for (const auto& b : blocks[w])
          if ((p & b.mask) == b.value) steered_to = w, ++matches;
      ASSERT_EQ(matches, 1) << "port " << p << ", " << n << " workers";
      ASSERT_EQ(steered_to, (*cfg)->snat_port_owner(static_cast<uint16_t>(p)))
          << "port " << p << ", " << n << " workers";
    }
  }
}
