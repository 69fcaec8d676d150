// Packet fixtures through the real stage: {description, input frame, expected verdict, expected
// output frame}, for full NAT (both directions), IPIP and GUE, IPv4 and IPv6, TCP and UDP, ICMP
// errors, MSS clamping, frag-needed/packet-too-big generation and the named drops. A fixture is a
// sequence of steps through one fresh worker, so a reply step sees the connection the first made.
#include "lb_fixture.hh"

using namespace lbt;
using l4::drop;

namespace {

struct step {
  bytes in;
  lb_action action;
  uint16_t port = 0;
  drop reason = drop::none;
  bytes expect;  // empty: output not compared
};

struct fixture {
  std::string description;
  std::vector<step> steps;
};

constexpr uint16_t wan = 0, lan = 1;

bytes quote(edge_test::packet_builder b, size_t n = SIZE_MAX) {
  bytes f = b.bytes();
  bytes q(f.begin() + 14, f.end());
  if (q.size() > n) q.resize(n);
  return q;
}

edge_test::packet_builder icmp_error(const char* from, const char* to, const bytes& quoted,
                                     uint16_t mtu) {
  auto b = pkt(from, to, IPPROTO_ICMP, 0, 0);
  const bool v6 = b.v6;
  b.icmp_type = v6 ? 2 : 3;
  b.icmp_code = v6 ? 0 : 4;
  b.icmp_id = 0;
  b.icmp_seq = mtu;
  b.payload = quoted;
  return b;
}

void nat_cases(std::vector<fixture>& out) {
  struct row {
    const char *client, *vip, *backend, *snat;
    uint8_t proto;
  } rows[] = {
      {"203.0.113.7", "198.51.100.1", "10.0.1.5", "10.0.0.100", IPPROTO_TCP},
      {"203.0.113.7", "198.51.100.1", "10.0.1.5", "10.0.0.100", IPPROTO_UDP},
      {"2001:db8:9::7", "2001:db8:100::1", "fd00:1::5", "fd00::100", IPPROTO_TCP},
      {"2001:db8:9::7", "2001:db8:100::1", "fd00:1::5", "fd00::100", IPPROTO_UDP},
  };
  for (const auto& r : rows) {
    const bool tcp = r.proto == IPPROTO_TCP;
    const uint16_t vport = tcp ? 80 : 53, bport = tcp ? 8080 : 5353;
    const std::string name = std::string("full NAT ") + (std::strchr(r.vip, ':') ? "v6 " : "v4 ") +
                             (tcp ? "tcp" : "udp");
    auto in = pkt(r.client, r.vip, r.proto, 40000, vport);
    in.payload = {'h', 'e', 'l', 'l', 'o'};
    auto fwd = pkt(r.snat, r.backend, r.proto, 1024, bport);  // first port of worker 0's range
    fwd.payload = in.payload;
    fwd.ttl = 63;
    set_macs(fwd, lan_mac, backend_mac(5));
    // The backend answers; the reply is translated back to VIP -> client.
    auto reply = pkt(r.backend, r.snat, r.proto, bport, 1024);
    reply.tcp_flags = 0x12;
    reply.payload = {'w', 'o', 'r', 'l', 'd', '!'};
    set_macs(reply, backend_mac(5), lan_mac);
    auto back = pkt(r.vip, r.client, r.proto, vport, 40000);
    back.tcp_flags = 0x12;
    back.payload = reply.payload;
    back.ttl = 63;
    set_macs(back, wan_mac, router_mac);
    // The client's next packet hits the connection (same SNAT port).
    auto again = in;
    again.tcp_flags = 0x10;
    auto fwd2 = fwd;
    fwd2.tcp_flags = 0x10;
    out.push_back({name + ": miss, reply translated back, hit",
                   {{in.bytes(), lb_action::tx, lan, drop::none, fwd.bytes()},
                    {reply.bytes(), lb_action::tx, wan, drop::none, back.bytes()},
                    {again.bytes(), lb_action::tx, lan, drop::none, fwd2.bytes()}}});
  }
}

void client_option_cases(std::vector<fixture>& out) {
  struct row {
    const char *client, *vip, *backend, *snat;
    bytes option;
  } rows[] = {
      {"203.0.113.7",
       "198.51.100.4",
       "10.0.1.5",
       "10.0.0.100",
       {254, 8, 0x9c, 0x40, 203, 0, 113, 7}},
      {"2001:db8:9::7", "2001:db8:100::4", "fd00:1::5", "fd00::100", {254,  20,   0x9c, 0x40, 0x20,
                                                                      0x01, 0x0d, 0xb8, 0,    9,
                                                                      0,    0,    0,    0,    0,
                                                                      0,    0,    0,    0,    7}},
  };
  for (const auto& r : rows) {
    auto syn = pkt(r.client, r.vip, IPPROTO_TCP, 40000, 80);
    syn.tcp_options = {2, 4, 0x05, 0xb4};
    auto fwd = pkt(r.snat, r.backend, IPPROTO_TCP, 1024, 8080);
    fwd.tcp_options = syn.tcp_options;
    fwd.tcp_options.insert(fwd.tcp_options.end(), r.option.begin(), r.option.end());
    fwd.ttl = 63;
    set_macs(fwd, lan_mac, backend_mac(5));
    // Only the SYN carries it.
    auto ack = pkt(r.client, r.vip, IPPROTO_TCP, 40000, 80);
    ack.tcp_flags = 0x10;
    auto fwd_ack = pkt(r.snat, r.backend, IPPROTO_TCP, 1024, 8080);
    fwd_ack.tcp_flags = 0x10;
    fwd_ack.ttl = 63;
    set_macs(fwd_ack, lan_mac, backend_mac(5));
    out.push_back(
        {std::string("full NAT + client address option (kind 254) ") + (syn.v6 ? "v6" : "v4"),
         {{syn.bytes(), lb_action::tx, lan, drop::none, fwd.bytes()},
          {ack.bytes(), lb_action::tx, lan, drop::none, fwd_ack.bytes()}}});
  }
}

void encap_cases(std::vector<fixture>& out) {
  struct row {
    const char *client, *vip, *backend, *outer_src;
    uint8_t n;
    bool gue;
  } rows[] = {
      {"203.0.113.7", "198.51.100.2", "10.0.1.6", "10.0.0.1", 6, false},
      {"203.0.113.7", "198.51.100.3", "10.0.1.7", "10.0.0.1", 7, true},
      {"2001:db8:9::7", "2001:db8:100::2", "fd00:1::6", "fd00::1", 6, false},
      {"2001:db8:9::7", "2001:db8:100::3", "fd00:1::7", "fd00::1", 7, true},
  };
  for (const auto& r : rows)
    for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
      const bool tcp = proto == IPPROTO_TCP;
      auto in = pkt(r.client, r.vip, proto, 40001, tcp ? 80 : 53);
      in.payload = bytes(100, 0x5a);
      const bytes f = in.bytes();
      const uint64_t h = hash_of(f);
      const std::string name = std::string(r.gue ? "GUE " : "IPIP ") +
                               (std::strchr(r.vip, ':') ? "v6 " : "v4 ") + (tcp ? "tcp" : "udp");
      auto next = in;
      next.tcp_flags = 0x10;
      out.push_back({name + ": inner packet unchanged, outer to the backend, then a hit",
                     {{f, lb_action::tx, lan, drop::none,
                       encap_expect(f, r.outer_src, r.backend, r.n, r.gue, gue_sport(f),
                                    static_cast<uint32_t>(h))},
                      {next.bytes(), lb_action::tx, lan, drop::none,
                       encap_expect(next.bytes(), r.outer_src, r.backend, r.n, r.gue, gue_sport(f),
                                    static_cast<uint32_t>(h))}}});
    }
}

void mtu_cases(std::vector<fixture>& out) {
  {  // SYN through GUE v4: MSS 1460 clamped to 1500 - 28 - 20 - 20.
    auto in = pkt("203.0.113.7", "198.51.100.3", IPPROTO_TCP, 40002, 80);
    in.tcp_options = {2, 4, 0x05, 0xb4};
    auto inner = in;
    inner.tcp_options = {2, 4, 0x05, 0x98};  // 1432
    out.push_back({"GUE v4 SYN: MSS clamped for the encapsulation",
                   {{in.bytes(), lb_action::tx, lan, drop::none,
                     encap_expect(inner.bytes(), "10.0.0.1", "10.0.1.7", 7, true,
                                  gue_sport(in.bytes()), 0)}}});
  }
  {  // IPIP v6: 1500 - 40 - 40 - 20 = 1400.
    auto in = pkt("2001:db8:9::7", "2001:db8:100::2", IPPROTO_TCP, 40002, 80);
    in.tcp_options = {1, 1, 2, 4, 0x05, 0xa0};  // NOPs before the option
    auto inner = in;
    inner.tcp_options = {1, 1, 2, 4, 0x05, 0x78};
    out.push_back({"IPIP v6 SYN: MSS clamped after NOPs",
                   {{in.bytes(), lb_action::tx, lan, drop::none,
                     encap_expect(inner.bytes(), "fd00::1", "fd00:1::6", 6, false, 0,
                                  static_cast<uint32_t>(hash_of(in.bytes())))}}});
  }
  {  // 1500-byte IPv4 packet with DF + 28 bytes of GUE: frag-needed with MTU 1472 to the client.
    auto in = pkt("203.0.113.7", "198.51.100.3", IPPROTO_TCP, 40003, 80);
    in.tcp_flags = 0x10;
    in.payload = bytes(1460, 0x11);
    const bytes f = with_df(in.bytes());
    auto icmp = icmp_error("198.51.100.3", "203.0.113.7", quote(in, 548), 1472);
    bytes q(f.begin() + 14, f.begin() + 14 + 548);
    icmp.payload = q;
    set_macs(icmp, wan_mac, router_mac);
    out.push_back({"GUE v4 too big with DF: ICMP frag-needed to the client",
                   {{f, lb_action::tx, wan, drop::lb_packet_too_big, icmp.bytes()}}});
    out.push_back({"GUE v4 too big without DF: dropped, no fragmentation",
                   {{in.bytes(), lb_action::drop, 0, drop::lb_too_big_no_df, {}}}});
  }
  {  // IPv6 1480-byte packet + 40 of IPIP: packet-too-big with MTU 1460, quote up to 1280 total.
    auto in = pkt("2001:db8:9::7", "2001:db8:100::2", IPPROTO_TCP, 40003, 80);
    in.tcp_flags = 0x10;
    in.payload = bytes(1420, 0x22);
    auto icmp = icmp_error("2001:db8:100::2", "2001:db8:9::7", quote(in, 1232), 1460);
    set_macs(icmp, wan_mac, router_mac);
    out.push_back({"IPIP v6 too big: ICMPv6 packet-too-big to the client",
                   {{in.bytes(), lb_action::tx, wan, drop::lb_packet_too_big, icmp.bytes()}}});
  }
}

void icmp_cases(std::vector<fixture>& out) {
  {  // Direct return: a router reports frag-needed about VIP -> client; it goes to the backend.
    auto sent = pkt("198.51.100.2", "203.0.113.7", IPPROTO_TCP, 80, 40004);
    auto in = icmp_error("192.0.2.1", "198.51.100.2", quote(sent), 1400);
    out.push_back({"IPIP v4: frag-needed about a flow routed to its backend (no conn: Maglev)",
                   {{in.bytes(), lb_action::tx, lan, drop::none,
                     encap_expect(in.bytes(), "10.0.0.1", "10.0.1.6", 6, false, 0, 0)}}});
  }
  {
    auto client = pkt("2001:db8:9::7", "2001:db8:100::3", IPPROTO_TCP, 40004, 80);
    auto sent = pkt("2001:db8:100::3", "2001:db8:9::7", IPPROTO_TCP, 80, 40004);
    auto in = icmp_error("2001:db8::1", "2001:db8:100::3", quote(sent), 1400);
    const uint64_t h = hash_of(client.bytes());
    out.push_back(
        {"GUE v6: packet-too-big routed by the inner tuple to the flow's backend",
         {{client.bytes(), lb_action::tx, lan, drop::none, {}},
          {in.bytes(), lb_action::tx, lan, drop::none,
           encap_expect(in.bytes(), "fd00::1", "fd00:1::7", 7, true,
                        static_cast<uint16_t>(0xc000 | (h & 0x3fff)), static_cast<uint32_t>(h))}}});
  }
  struct row {
    const char *client, *vip, *backend, *snat, *router;
  } rows[] = {{"203.0.113.7", "198.51.100.1", "10.0.1.5", "10.0.0.100", "10.0.0.254"},
              {"2001:db8:9::7", "2001:db8:100::1", "fd00:1::5", "fd00::100", "fd00::fe"}};
  for (const auto& r : rows) {
    const bool v6 = std::strchr(r.vip, ':') != nullptr;
    auto syn = pkt(r.client, r.vip, IPPROTO_TCP, 40005, 80);
    // What we sent to the backend, quoted by a router on the lan side.
    auto sent = pkt(r.snat, r.backend, IPPROTO_TCP, 1024, 8080);
    sent.ttl = 63;
    auto in = icmp_error(r.router, r.snat, quote(sent), 1400);
    set_macs(in, backend_mac(5), lan_mac);
    // The client sees the error about its own packet, from the VIP.
    auto orig = pkt(r.client, r.vip, IPPROTO_TCP, 40005, 80);
    orig.ttl = 63;
    auto expect = icmp_error(r.vip, r.client, quote(orig), 1400);
    expect.ttl = 63;
    set_macs(expect, wan_mac, router_mac);
    out.push_back({std::string("full NAT ") + (v6 ? "v6" : "v4") +
                       ": ICMP error from the backend side translated back to the client",
                   {{syn.bytes(), lb_action::tx, lan, drop::none, {}},
                    {in.bytes(), lb_action::tx, wan, drop::none, expect.bytes()}}});
    // And from the client side (about our replies VIP -> client): on to the backend.
    auto reply_sent = pkt(r.vip, r.client, IPPROTO_TCP, 80, 40005);
    auto in2 = icmp_error(v6 ? "2001:db8::1" : "192.0.2.1", r.vip, quote(reply_sent), 1300);
    auto as_backend_sent = pkt(r.backend, r.snat, IPPROTO_TCP, 8080, 1024);
    auto expect2 = icmp_error(r.snat, r.backend, quote(as_backend_sent), 1300);
    expect2.ttl = 63;
    set_macs(expect2, lan_mac, backend_mac(5));
    out.push_back({std::string("full NAT ") + (v6 ? "v6" : "v4") +
                       ": ICMP error from the client side translated to the backend",
                   {{syn.bytes(), lb_action::tx, lan, drop::none, {}},
                    {in2.bytes(), lb_action::tx, lan, drop::none, expect2.bytes()}}});
  }
}

void drop_cases(std::vector<fixture>& out) {
  auto stray = pkt("10.0.1.5", "10.0.0.100", IPPROTO_TCP, 8080, 2000);
  out.push_back({"packet to a SNAT address with no connection",
                 {{stray.bytes(), lb_action::drop, 0, drop::lb_no_conn_for_reply, {}}}});
  auto ttl1 = pkt("203.0.113.7", "198.51.100.1", IPPROTO_TCP, 40006, 80);
  ttl1.ttl = 1;
  out.push_back(
      {"full NAT with TTL 1", {{ttl1.bytes(), lb_action::drop, 0, drop::lb_ttl_expired, {}}}});
  auto sent = pkt("198.51.100.1", "203.0.113.7", IPPROTO_TCP, 80, 40007);
  auto nf = icmp_error("192.0.2.1", "198.51.100.1", quote(sent), 1400);
  out.push_back({"ICMP error about an unknown full NAT flow",
                 {{nf.bytes(), lb_action::drop, 0, drop::lb_icmp_no_flow, {}}}});
  auto bad = icmp_error("192.0.2.1", "198.51.100.2", quote(sent, 22), 1400);
  out.push_back({"ICMP error quoting a truncated packet",
                 {{bad.bytes(), lb_action::drop, 0, drop::lb_icmp_inner_bad, {}}}});
}

std::vector<fixture> all_fixtures() {
  std::vector<fixture> f;
  nat_cases(f);
  client_option_cases(f);
  encap_cases(f);
  mtu_cases(f);
  icmp_cases(f);
  drop_cases(f);
  return f;
}

}  // namespace

TEST(lb_forward, fixtures) {
  auto cfg = lb_config::build(base_spec());
  ASSERT_TRUE(cfg) << cfg.error().str();
  int n = 0;
  for (const auto& fx : all_fixtures()) {
    if (fx.steps.empty()) continue;
    SCOPED_TRACE(fx.description);
    auto w = make_worker();
    uint64_t now = 1000;
    for (size_t i = 0; i < fx.steps.size(); ++i) {
      const step& s = fx.steps[i];
      SCOPED_TRACE("step " + std::to_string(i));
      auto r = run(**cfg, *w, s.in, now++);
      EXPECT_EQ(r.v.action, s.action);
      EXPECT_EQ(l4::info(r.v.reason).name, l4::info(s.reason).name);
      if (s.action == lb_action::tx) {
        EXPECT_EQ(r.v.port_id, s.port);
      }
      if (s.action == lb_action::drop) {
        EXPECT_EQ(w->drops.get(s.reason), 1u) << "drop not counted";
      }
      if (!s.expect.empty()) {
        EXPECT_EQ(r.out, s.expect) << "got\n" << hex(r.out) << "\nwant\n" << hex(s.expect);
      }
    }
    ++n;
  }
  EXPECT_GE(n, 25);
}
