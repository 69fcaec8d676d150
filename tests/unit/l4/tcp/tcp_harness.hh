#pragma once
// Test driver for the TCP stack: a scripted client builds segments with packet_builder, feeds them
// through l4::parse into stack::input, and parses what the stack emits (checksums verified by
// l4::parse again). Time is microseconds: config.tsc_hz = 1'000'000.
#include <gtest/gtest.h>

#include <cstring>
#include <utility>
#include <vector>

#include "l4/parse.hh"
#include "l4/tcp/stack.hh"
#include "packet_builder.hh"
#include "test_eal.hh"

namespace tcp_test {

using l4::tcp::close_reason;
using l4::tcp::conn_handle;
using l4::tcp::conn_info;

inline constexpr uint8_t FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10;

// Option encoders for client segments.
inline std::vector<uint8_t> opt_mss(uint16_t v) {
  return {2, 4, uint8_t(v >> 8), uint8_t(v)};
}
inline std::vector<uint8_t> opt_ws(uint8_t s) {
  return {1, 3, 3, s};
}
inline std::vector<uint8_t> opt_sack_ok() {
  return {1, 1, 4, 2};
}
inline std::vector<uint8_t> opt_ts(uint32_t val, uint32_t ecr) {
  std::vector<uint8_t> o{1, 1, 8, 10};
  for (uint32_t v : {val, ecr})
    for (int s = 24; s >= 0; s -= 8) o.push_back(uint8_t(v >> s));
  return o;
}
inline std::vector<uint8_t> opt_sack(std::vector<std::pair<uint32_t, uint32_t>> blocks) {
  std::vector<uint8_t> o{1, 1, 5, uint8_t(2 + 8 * blocks.size())};
  for (auto [s, e] : blocks)
    for (uint32_t v : {s, e})
      for (int k = 24; k >= 0; k -= 8) o.push_back(uint8_t(v >> k));
  return o;
}
inline std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> r;
  for (const auto& p : parts) r.insert(r.end(), p.begin(), p.end());
  return r;
}

// A segment the stack sent, decoded independently of the stack's own option code.
struct seg_out {
  uint8_t flags = 0;
  uint32_t seq = 0, ack = 0;
  uint16_t win = 0;
  std::vector<uint8_t> payload;
  int mss = -1, wscale = -1;
  bool sack_ok = false, has_ts = false;
  uint32_t tsval = 0, tsecr = 0;
  std::vector<std::pair<uint32_t, uint32_t>> sack;
  l4::packet p;
  std::vector<uint8_t> frame;
};

inline uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

inline seg_out decode(rte_mbuf* m) {
  seg_out s;
  EXPECT_EQ(l4::parse(m, s.p), l4::drop::none) << "stack emitted an invalid frame";
  s.frame = edge_test::from_mbuf(m);
  const uint8_t* th = s.frame.data() + s.p.l4_off();
  s.seq = be32(th + 4);
  s.ack = be32(th + 8);
  s.flags = th[13];
  s.win = uint16_t(th[14] << 8 | th[15]);
  const uint8_t* o = th + 20;
  const size_t olen = s.p.l4_len - 20u;
  for (size_t i = 0; i < olen;) {
    if (o[i] == 0) break;
    if (o[i] == 1) {
      ++i;
      continue;
    }
    const uint8_t k = o[i], l = o[i + 1];
    if (k == 2) s.mss = o[i + 2] << 8 | o[i + 3];
    if (k == 3) s.wscale = o[i + 2];
    if (k == 4) s.sack_ok = true;
    if (k == 8) s.has_ts = true, s.tsval = be32(o + i + 2), s.tsecr = be32(o + i + 6);
    if (k == 5)
      for (int b = 0; b < (l - 2) / 8; ++b)
        s.sack.push_back({be32(o + i + 2 + 8 * b), be32(o + i + 6 + 8 * b)});
    i += l;
  }
  s.payload.assign(s.frame.begin() + s.p.payload_off(),
                   s.frame.begin() + s.p.payload_off() + s.p.payload_len);
  return s;
}

class recorder : public l4::tcp::app {
 public:
  l4::tcp::stack* st = nullptr;
  bool refuse = false;
  bool auto_read = false;  // read everything on on_readable
  std::vector<conn_handle> accepted;
  conn_info last_info;
  std::vector<std::pair<conn_handle, close_reason>> closed;
  int readable = 0, writable = 0, peer_fin = 0;
  std::vector<uint8_t> data;

  bool on_accept(conn_handle c, const conn_info& info) override {
    last_info = info;
    if (refuse) return false;
    accepted.push_back(c);
    return true;
  }
  void on_readable(conn_handle c) override {
    ++readable;
    if (auto_read) read_all(c);
  }
  void read_all(conn_handle c) {
    uint8_t buf[4096];
    while (size_t n = st->recv(c, buf)) data.insert(data.end(), buf, buf + n);
  }
  void on_writable(conn_handle) override { ++writable; }
  void on_peer_fin(conn_handle) override { ++peer_fin; }
  void on_closed(conn_handle c, close_reason why) override { closed.push_back({c, why}); }
};

class harness : public ::testing::Test {
 protected:
  l4::tcp::config cfg;
  std::unique_ptr<l4::tcp::stack> st;
  recorder app;
  uint64_t now = 10'000'000;  // µs
  edge_test::packet_builder b;
  uint32_t cisn = 1000;  // client's ISN
  uint32_t siss = 0;     // server's ISN, learned from the SYN-ACK
  uint32_t tsv = 5000;   // client's timestamp clock
  uint32_t srv_ts = 0;   // last TSval the server sent (echoed by the client)

  harness() {
    cfg.tsc_hz = 1'000'000;
    cfg.max_connections = 64;
    cfg.snd_buf = 16384;
    cfg.rcv_buf = 16384;
    cfg.cookies = l4::tcp::cookie_mode::off;
    for (int i = 0; i < 16; ++i) cfg.secret[i] = uint8_t(i * 7 + 1);
    b.proto = IPPROTO_TCP;
    b.from("10.0.0.2").to("10.0.0.1");
    b.sport = 40000;
    b.dport = 443;
  }
  ~harness() override { drain(); }

  void start() {
    auto r = l4::tcp::stack::create(cfg, edge_test::mempool(), &app);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    st = std::move(*r);
    app.st = st.get();
    ASSERT_TRUE(
        st->add_listener(*l4::ip_addr::parse(b.v6 ? "fd00::1" : "10.0.0.1"), 443, 7).has_value());
    st->poll(now);
  }

  void advance_ms(uint64_t ms) {
    now += ms * 1000;
    st->poll(now);
  }

  l4::drop inject(uint8_t flags, uint32_t seq, uint32_t ack, std::vector<uint8_t> payload = {},
                  std::vector<uint8_t> opts = {}, uint16_t win = 65535) {
    b.tcp_flags = flags;
    b.seq = seq;
    b.ack = ack;
    b.payload = std::move(payload);
    b.tcp_options = std::move(opts);
    b.window = win;
    rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), b.bytes());
    EXPECT_NE(m, nullptr);
    l4::packet p;
    EXPECT_EQ(l4::parse(m, p), l4::drop::none);
    return st->input(m, p);
  }

  std::vector<seg_out> drain() {
    std::vector<seg_out> out;
    if (!st) return out;
    rte_mbuf* m[256];
    while (uint16_t n = st->drain_tx(m, 256)) {
      for (uint16_t i = 0; i < n; ++i) {
        out.push_back(decode(m[i]));
        if (out.back().has_ts) srv_ts = out.back().tsval;
        rte_pktmbuf_free(m[i]);
      }
    }
    return out;
  }

  seg_out one() {
    auto v = drain();
    EXPECT_EQ(v.size(), 1u);
    return v.empty() ? seg_out{} : v[0];
  }

  // Handshake with all options (or none); returns the accepted handle.
  conn_handle establish(bool options = true, uint8_t ws = 7) {
    auto syn_opts = options ? cat({opt_mss(1460), opt_sack_ok(), opt_ts(tsv, 0), opt_ws(ws)})
                            : std::vector<uint8_t>{};
    EXPECT_EQ(inject(SYN, cisn, 0, {}, syn_opts), l4::drop::none);
    auto sa = one();
    EXPECT_EQ(sa.flags, SYN | ACK);
    siss = sa.seq;
    EXPECT_EQ(inject(ACK, cisn + 1, siss + 1, {},
                     options ? opt_ts(++tsv, sa.tsval) : std::vector<uint8_t>{}),
              l4::drop::none);
    EXPECT_FALSE(app.accepted.empty());
    return app.accepted.empty() ? conn_handle{} : app.accepted.back();
  }

  // Client segment in an established connection with timestamps.
  l4::drop cseg(uint8_t flags, uint32_t seq_off, uint32_t ack_off,
                std::vector<uint8_t> payload = {}, uint16_t win = 65535,
                std::vector<uint8_t> extra = {}) {
    return inject(flags, cisn + 1 + seq_off, siss + 1 + ack_off, std::move(payload),
                  cat({opt_ts(++tsv, srv_ts), extra}), win);
  }

  static std::vector<uint8_t> bytes(size_t n, uint8_t seed = 0) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 31 + (i >> 8));
    return v;
  }

  uint64_t drops(l4::drop d) const { return st->stats().drops.get(d); }
};

}  // namespace tcp_test
