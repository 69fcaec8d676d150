#pragma once
// Shared set-up of the forwarding-stage tests: one lb_spec with full NAT, IPIP and GUE services
// for IPv4 and IPv6, static neighbours, frame helpers (client/backend packets, expected
// encapsulations), and a runner that feeds a frame through parse + forward_one.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "l4/lb/forward.hh"
#include "l4/parse.hh"
#include "packet_builder.hh"
#include "test_eal.hh"

namespace lbt {

using namespace l4::lb;
using bytes = std::vector<uint8_t>;

inline l4::ip_addr ip(const char* s) {
  return *l4::ip_addr::parse(s);
}
inline rte_ether_addr mac(uint8_t a, uint8_t last) {
  return {{0x02, a, 0, 0, 0, last}};
}

const rte_ether_addr wan_mac = mac(0, 1), lan_mac = mac(0, 2);
const rte_ether_addr router_mac = mac(0xaa, 1);  // the wan gateway
inline rte_ether_addr backend_mac(uint8_t n) {
  return mac(0xbb, n);
}

// Services: .1 full NAT, .2 IPIP, .3 GUE; each on tcp/80 and udp/53 with one backend, and .9 with
// two backends for Maglev-change tests.
inline lb_spec base_spec() {
  lb_spec s;
  s.wan.port_id = 0;
  s.wan.mac = wan_mac;
  s.wan.gw_v4 = ip("192.0.2.254");
  s.wan.gw_v6 = ip("2001:db8::fe");
  s.lan.port_id = 1;
  s.lan.mac = lan_mac;
  s.lan.addr_v4 = ip("10.0.0.1");
  s.lan.addr_v6 = ip("fd00::1");
  s.snat_v4 = {ip("10.0.0.100")};
  s.snat_v6 = {ip("fd00::100")};
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
    for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
      service_spec svc;
      svc.vip = ip(r.vip);
      svc.port = proto == IPPROTO_TCP ? 80 : 53;
      svc.proto = proto;
      svc.mode = r.mode;
      svc.backends = {{ip(r.backend), static_cast<uint16_t>(proto == IPPROTO_TCP ? 8080 : 5353)}};
      s.services.push_back(svc);
    }
  for (const char* vip : {"198.51.100.4", "2001:db8:100::4"}) {  // full NAT + client option
    service_spec toa;
    toa.vip = ip(vip);
    toa.port = 80;
    toa.client_addr_option = true;
    toa.backends = {{ip(toa.vip.v6 ? "fd00:1::5" : "10.0.1.5"), 8080}};
    s.services.push_back(toa);
  }
  service_spec two;
  two.vip = ip("198.51.100.9");
  two.port = 80;
  two.mode = fwd_mode::ipip;
  two.backends = {{ip("10.0.1.8")}, {ip("10.0.1.9")}};
  s.services.push_back(two);
  return s;
}

inline void add_neighbors(lb_worker& w) {
  auto& wan = w.neighbors(port_role::wan);
  wan.add_static(ip("192.0.2.254"), router_mac);
  wan.add_static(ip("2001:db8::fe"), router_mac);
  auto& lan = w.neighbors(port_role::lan);
  for (uint8_t n : {5, 6, 7, 8, 9}) {
    lan.add_static(ip(("10.0.1." + std::to_string(n)).c_str()), backend_mac(n));
    lan.add_static(ip(("fd00:1::" + std::to_string(n)).c_str()), backend_mac(n));
  }
}

inline std::unique_ptr<lb_worker> make_worker(uint32_t conn_capacity = 4096) {
  auto w = lb_worker::create({.index = 0, .conn_capacity = conn_capacity, .hz = 1000});
  EXPECT_TRUE(w.has_value());
  add_neighbors(**w);
  return std::move(*w);
}

// A frame between two endpoints; MACs default to "arrived from the router on wan".
inline edge_test::packet_builder pkt(const char* from, const char* to, uint8_t proto,
                                     uint16_t sport, uint16_t dport) {
  edge_test::packet_builder b;
  b.from(from).to(to);
  b.proto = b.v6 && proto == IPPROTO_ICMP ? static_cast<uint8_t>(IPPROTO_ICMPV6) : proto;
  b.sport = sport;
  b.dport = dport;
  std::memcpy(b.src_mac, router_mac.addr_bytes, 6);
  std::memcpy(b.dst_mac, wan_mac.addr_bytes, 6);
  return b;
}
inline void set_macs(edge_test::packet_builder& b, const rte_ether_addr& src,
                     const rte_ether_addr& dst) {
  std::memcpy(b.src_mac, src.addr_bytes, 6);
  std::memcpy(b.dst_mac, dst.addr_bytes, 6);
}

// IPv4 DF bit set, header checksum fixed.
inline bytes with_df(bytes f) {
  f[14 + 6] |= 0x40;
  f[14 + 10] = f[14 + 11] = 0;
  const uint16_t ck = edge_test::fold(edge_test::sum16(&f[14], 20));
  f[14 + 10] = static_cast<uint8_t>(ck >> 8);
  f[14 + 11] = static_cast<uint8_t>(ck);
  return f;
}

// The expected output of IPIP/GUE: `inner` frame's IP packet behind a new Ethernet + outer header.
inline bytes encap_expect(const bytes& inner_frame, const char* outer_src, const char* outer_dst,
                          uint8_t backend_n, bool gue, uint16_t gue_sport, uint32_t flow_label) {
  bytes inner(inner_frame.begin() + 14, inner_frame.end());
  const bool v6 = std::strchr(outer_src, ':') != nullptr;
  const rte_ether_addr bm = backend_mac(backend_n);
  bytes f(bm.addr_bytes, bm.addr_bytes + 6);
  f.insert(f.end(), lan_mac.addr_bytes, lan_mac.addr_bytes + 6);
  f.push_back(v6 ? 0x86 : 0x08), f.push_back(v6 ? 0xdd : 0x00);
  uint8_t s[16] = {}, d[16] = {};
  inet_pton(v6 ? AF_INET6 : AF_INET, outer_src, s);
  inet_pton(v6 ? AF_INET6 : AF_INET, outer_dst, d);
  const size_t udp_len = gue ? 8 + inner.size() : 0;
  const size_t l3 = f.size();
  using pb = edge_test::packet_builder;
  if (!v6) {
    f.resize(l3 + 20);
    uint8_t* h = &f[l3];
    h[0] = 0x45;
    pb::put16(h + 2, static_cast<uint16_t>(20 + (gue ? udp_len : inner.size())));
    h[6] = 0x40;  // DF
    h[8] = 64;
    h[9] = gue ? IPPROTO_UDP : IPPROTO_IPIP;
    std::memcpy(h + 12, s, 4);
    std::memcpy(h + 16, d, 4);
    pb::put16(h + 10, edge_test::fold(edge_test::sum16(h, 20)));
  } else {
    f.resize(l3 + 40);
    uint8_t* h = &f[l3];
    pb::put32(h, 6u << 28 | (flow_label & 0xfffff));
    pb::put16(h + 4, static_cast<uint16_t>(gue ? udp_len : inner.size()));
    h[6] = gue ? IPPROTO_UDP : IPPROTO_IPV6;
    h[7] = 64;
    std::memcpy(h + 8, s, 16);
    std::memcpy(h + 24, d, 16);
  }
  if (gue) {
    bytes u(8);
    pb::put16(&u[0], gue_sport);
    pb::put16(&u[2], 6080);
    pb::put16(&u[4], static_cast<uint16_t>(udp_len));
    u.insert(u.end(), inner.begin(), inner.end());
    if (v6) {
      uint32_t sum = edge_test::sum16(s, 16);
      sum = edge_test::sum16(d, 16, sum);
      sum += IPPROTO_UDP + static_cast<uint32_t>(u.size());
      sum = edge_test::sum16(u.data(), u.size(), sum);
      uint16_t ck = edge_test::fold(sum);
      pb::put16(&u[6], ck == 0 ? 0xffff : ck);
    }
    f.insert(f.end(), u.begin(), u.end());
  } else {
    f.insert(f.end(), inner.begin(), inner.end());
  }
  return f;
}

// The flow hash of a client frame (for the GUE source port and the IPv6 flow label).
inline uint64_t hash_of(const bytes& frame) {
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), frame);
  l4::packet p;
  EXPECT_EQ(l4::parse(m, p), l4::drop::none);
  rte_pktmbuf_free(m);
  return flow_hash(flow_key::of(p));
}
inline uint16_t gue_sport(const bytes& f) {
  return static_cast<uint16_t>(0xc000 | (hash_of(f) & 0x3fff));
}

struct result {
  lb_verdict v;
  bytes out;
};

// parse + forward_one on a fresh mbuf; the output frame is read back and the mbuf freed.
inline result run(const lb_config& cfg, lb_worker& w, const bytes& frame, uint64_t now) {
  rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), frame);
  EXPECT_NE(m, nullptr);
  l4::packet p;
  const l4::drop d = l4::parse(m, p);
  EXPECT_EQ(d, l4::drop::none) << "test frame does not parse: " << l4::info(d).name;
  EXPECT_TRUE(is_lb_packet(cfg, p));
  result r;
  r.v = forward_one(cfg, w, m, p, now);
  r.out = edge_test::from_mbuf(m);
  rte_pktmbuf_free(m);
  return r;
}

inline std::string hex(const bytes& b) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < b.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%02x", b[i]);
    s += buf;
    if (i % 16 == 15)
      s += '\n';
    else if (i % 2 == 1)
      s += ' ';
  }
  return s;
}

}  // namespace lbt
