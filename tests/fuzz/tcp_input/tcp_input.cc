// Fuzz target for the TCP stack: the input is a program of client actions against a small stack,
// with every option field read straight from the input bytes (MSS 0-65535, any window-scale
// byte, SACK blocks relative to what the server sent or absolute, timestamps relative or raw,
// raw option bytes), so that the fuzzer reaches the option space without guessing checksums or
// layouts. EAL and the mempool are set up once (LLVMFuzzerInitialize); each input gets a fresh
// stack with short timeouts, which costs microseconds. Checks: every emitted frame parses and
// fits the MTU (none was refused as too long), every send MSS is within (0, our MSS], all
// connections end within the timeouts, and every mbuf is back in the pool.
//
// Input: [mode] then ops; each op is [op, client, args...] (see the switch). make_corpus.py
// writes seeds in this format; the dictionary `dict` holds TCP option encodings.
#include <arpa/inet.h>
#include <rte_eal.h>
#include <rte_mbuf.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "l4/parse.hh"
#include "l4/tcp/stack.hh"
#include "packet_builder.hh"

namespace {

rte_mempool* g_pool = nullptr;
constexpr unsigned pool_size = 2047;
constexpr uint16_t mtu = 1500;

struct client {
  const char* addr;
  const char* vip;
  uint16_t port;
  uint32_t next = 0;      // our next sequence number
  uint32_t srv_next = 0;  // server's next sequence number as last seen
  uint32_t srv_ts = 0;
  l4::tcp::conn_handle h;
};
using clients_t = std::array<client, 4>;

struct fuzz_app : l4::tcp::app {
  l4::tcp::stack* st = nullptr;
  clients_t* clients = nullptr;
  bool reading = true;
  bool on_accept(l4::tcp::conn_handle c, const l4::tcp::conn_info& info) override {
    // The payload size we send is positive and never above our own MSS, whatever the peer said.
    if (info.mss == 0 || info.mss > mtu - 40) {
      std::fprintf(stderr, "connection accepted with send MSS %u\n", info.mss);
      std::abort();
    }
    for (auto& cl : *clients)
      if (cl.port == info.remote_port) cl.h = c;
    return info.remote_port != 40003;  // one client is always refused
  }
  void on_readable(l4::tcp::conn_handle c) override {
    if (!reading) return;
    uint8_t buf[2048];
    while (st->recv(c, buf) > 0) {
    }
  }
  void on_writable(l4::tcp::conn_handle c) override {
    static const uint8_t fill[512] = {};
    st->send(c, fill);
  }
  void on_peer_fin(l4::tcp::conn_handle c) override { st->shutdown_write(c); }
  void on_closed(l4::tcp::conn_handle, l4::tcp::close_reason) override {}
};

struct reader {
  const uint8_t* d;
  size_t n, i = 0;
  bool more() const { return i < n; }
  uint8_t u8() { return i < n ? d[i++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() << 8 | u8()); }
  uint32_t u32() { return static_cast<uint32_t>(u16()) << 16 | u16(); }
  void bytes(std::vector<uint8_t>& out, size_t k) {
    for (size_t j = 0; j < k; ++j) out.push_back(u8());
  }
};

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

void drain(l4::tcp::stack& st, clients_t& clients) {
  rte_mbuf* out[64];
  while (uint16_t n = st.drain_tx(out, 64)) {
    for (uint16_t k = 0; k < n; ++k) {
      l4::packet p;
      if (l4::parse(out[k], p) != l4::drop::none || p.proto != IPPROTO_TCP) {
        std::fprintf(stderr, "stack emitted an invalid frame\n");
        std::abort();
      }
      // Nothing we send may exceed the MTU (the peer's MSS is bounded by ours).
      if (rte_pktmbuf_data_len(out[k]) > mtu + 18u || p.l3_len + p.l4_len + p.payload_len > mtu) {
        std::fprintf(stderr, "stack emitted a %u-byte frame\n", rte_pktmbuf_data_len(out[k]));
        std::abort();
      }
      const uint8_t* th = rte_pktmbuf_mtod(out[k], const uint8_t*) + p.l4_off();
      const uint32_t seq = be32(th + 4);
      for (auto& c : clients) {
        if (c.port != p.dport) continue;
        const uint32_t end =
            seq + p.payload_len + ((th[13] & 0x02) ? 1 : 0) + ((th[13] & 0x01) ? 1 : 0);
        // Highest sequence seen (retransmissions go back); a SYN-ACK starts a new connection.
        if ((th[13] & 0x02) || static_cast<int32_t>(end - c.srv_next) > 0) c.srv_next = end;
        for (uint16_t o = 20; o + 10 <= p.l4_len; ++o)
          if (th[o] == 8 && th[o + 1] == 10) {
            c.srv_ts = be32(th + o + 2);
            break;
          }
      }
      rte_pktmbuf_free(out[k]);
    }
  }
  // A segment the stack built too long for the MTU or the mbuf is counted, not sent: still a bug.
  if (st.stats().drops.get(l4::drop::tcp_tx_too_long) != 0) {
    std::fprintf(stderr, "stack built a segment longer than the MTU\n");
    std::abort();
  }
}

void feed(l4::tcp::stack& st, const std::vector<uint8_t>& frame) {
  if (frame.size() < 14) return;
  rte_mbuf* m = edge_test::to_mbuf(g_pool, frame);
  if (m == nullptr) return;
  l4::packet p;
  if (l4::parse(m, p) != l4::drop::none) {
    rte_pktmbuf_free(m);
    return;
  }
  if (p.proto == IPPROTO_ICMP || p.proto == IPPROTO_ICMPV6) {
    st.icmp_error(m, p);  // path MTU: any ICMP the worker would pass on
    return;
  }
  if (p.proto != IPPROTO_TCP) {
    rte_pktmbuf_free(m);
    return;
  }
  st.input(m, p);
}

void put32(std::vector<uint8_t>& o, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) o.push_back(uint8_t(v >> s));
}

// Appends raw option bytes from the input (up to 15), then pads the list to a multiple of 4 with
// NOPs; the whole list is cut at 40 bytes (the builder would otherwise write a bad data offset).
void finish_options(reader& r, bool raw, std::vector<uint8_t>& o) {
  if (raw) r.bytes(o, r.u8() % 16);
  if (o.size() > 40) o.resize(40);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* argv[] = {
      "tcp-fuzz", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
      "-m",       "128",       "-l",       "0",           "--log-level=lib.eal:warning"};
  if (rte_eal_init(sizeof(argv) / sizeof(argv[0]), const_cast<char**>(argv)) < 0) std::abort();
  g_pool = rte_pktmbuf_pool_create("fuzz_pool", pool_size, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   SOCKET_ID_ANY);
  if (g_pool == nullptr) std::abort();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  reader r{data, size};
  clients_t clients{{{"10.0.0.2", "10.0.0.1", 40000},
                     {"10.0.0.3", "10.0.0.1", 40001},
                     {"fd00::2", "fd00::1", 40002},
                     {"10.0.0.4", "10.0.0.1", 40003}}};
  fuzz_app app;
  app.clients = &clients;
  l4::tcp::config cfg;
  cfg.tsc_hz = 1'000'000;
  cfg.mtu = mtu;
  cfg.max_connections = 3;
  cfg.snd_buf = cfg.rcv_buf = 4096;
  cfg.ooo_max_ranges = 3;
  cfg.syn_backlog = 2;
  cfg.challenge_acks_per_s = 50;
  cfg.tx_batch = 256;
  // Short timeouts: the final sweep that checks every connection ends stays cheap.
  cfg.handshake_timeout_ms = 1'000;
  cfg.idle_timeout_ms = 3'000;
  cfg.fin_wait_timeout_ms = 2'000;
  cfg.time_wait_ms = 500;
  cfg.rto_initial_ms = 200;
  cfg.rto_min_ms = 50;
  cfg.rto_max_ms = 1'000;
  cfg.max_retransmits = 4;
  cfg.max_synack_retries = 2;
  for (size_t i = 0; i < cfg.secret.size(); ++i) cfg.secret[i] = static_cast<uint8_t>(i + 1);
  const uint8_t mode = r.u8();
  cfg.cookies = static_cast<l4::tcp::cookie_mode>(mode % 3);
  cfg.on_pool_full = (mode & 4) ? l4::tcp::pool_full_action::drop : l4::tcp::pool_full_action::rst;
  cfg.cc = (mode & 8) ? l4::tcp::congestion::cubic : l4::tcp::congestion::newreno;
  cfg.sack = (mode & 0x10) == 0;
  cfg.timestamps = (mode & 0x20) == 0;
  cfg.window_scale = (mode & 0x40) == 0;
  if (mode & 0x80) cfg.snd_buf = 96 * 1024;  // room for segments that would wrap 16-bit lengths
  auto made = l4::tcp::stack::create(cfg, g_pool, &app);
  if (!made) std::abort();
  auto& st = **made;
  app.st = &st;
  if (!st.add_listener(*l4::ip_addr::parse("10.0.0.1"), 443, 1)) std::abort();
  if (!st.add_listener(*l4::ip_addr::parse("fd00::1"), 443, 2)) std::abort();
  uint64_t now = 1'000'000'000;
  uint32_t tsv = 100;
  st.poll(now);
  for (int steps = 0; r.more() && steps < 500; ++steps) {
    // 255 is the ICMP op (it read as op 7 before; every other byte keeps its meaning).
    const uint8_t op_byte = r.u8();
    const uint8_t op = op_byte == 255 ? 8 : op_byte % 8;
    client& c = clients[r.u8() % 4];
    edge_test::packet_builder b;
    b.proto = IPPROTO_TCP;
    b.from(c.addr).to(c.vip);
    b.sport = c.port;
    b.dport = 443;
    switch (op) {
      case 0: {  // SYN; options as the input spells them
        c.next = 1000u * c.port + r.u8();
        b.tcp_flags = 0x02;
        b.seq = c.next++;
        b.window = r.u16();
        const uint8_t sel = r.u8();
        auto& o = b.tcp_options;
        if (sel & 1) o.insert(o.end(), {2, 4}), r.bytes(o, 2);     // MSS 0-65535
        if (sel & 2) o.insert(o.end(), {1, 3, 3}), r.bytes(o, 1);  // any shift byte
        if (sel & 4) o.insert(o.end(), {1, 1, 4, 2});              // SACK permitted
        if (sel & 8) {                                             // timestamps
          o.insert(o.end(), {1, 1, 8, 10});
          put32(o, (sel & 0x10) ? r.u32() : ++tsv);
          put32(o, (sel & 0x20) ? r.u32() : 0);
        }
        finish_options(r, sel & 0x40, o);
        feed(st, b.bytes());
        break;
      }
      case 1:
      case 7: {  // segment relative to the connection's state (op 7: absolute seq/ack)
        b.tcp_flags = r.u8();
        if (op == 1) {
          b.seq = c.next + static_cast<int16_t>(r.u16());
          b.ack = c.srv_next + static_cast<int16_t>(r.u16());
        } else {
          b.seq = r.u32();
          b.ack = r.u32();
        }
        b.window = r.u16();
        const uint8_t sel = r.u8();
        auto& o = b.tcp_options;
        if (sel & 1) {  // timestamps: TSval ours or raw, TSecr the server's or raw
          o.insert(o.end(), {1, 1, 8, 10});
          put32(o, (sel & 2) ? r.u32() : ++tsv);
          put32(o, (sel & 4) ? r.u32() : c.srv_ts);
        }
        if (sel & 8) {  // 1-4 SACK blocks around what the server sent, or raw
          const uint8_t n = static_cast<uint8_t>(1 + ((sel >> 4) & 3));
          o.insert(o.end(), {1, 1, 5, static_cast<uint8_t>(2 + 8 * n)});
          for (uint8_t k = 0; k < 2 * n; ++k)
            put32(o, (sel & 0x40) ? r.u32() : c.srv_next + static_cast<int16_t>(r.u16()));
        }
        finish_options(r, sel & 0x80, o);
        const size_t len = std::min<size_t>(r.u8() * 6u, 1400);
        b.payload.assign(len, uint8_t(sel));
        if ((b.tcp_flags & 0x04) == 0 && b.seq == c.next)
          c.next += uint32_t(len) + ((b.tcp_flags & 0x01) ? 1 : 0);
        feed(st, b.bytes());
        break;
      }
      case 2: {  // time passes
        const uint8_t k = r.u8();
        now += uint64_t(k) * (r.u8() & 1 ? 1'000'000 : 8'000);
        st.poll(now);
        break;
      }
      case 3: {  // app sends
        static const uint8_t bytes[96 * 1024] = {};
        st.send(c.h, std::span<const uint8_t>(bytes, r.u8() * 384u));
        break;
      }
      case 4: {
        const uint8_t what = r.u8() % 4;
        if (what == 0) st.shutdown_write(c.h);
        if (what == 1) st.close(c.h);
        if (what == 2) st.abort(c.h);
        if (what == 3) app.reading = !app.reading;
        break;
      }
      case 5: {  // raw frame bytes
        const size_t want = r.u8() + 14u;
        const size_t len = std::min<size_t>(want, r.n - r.i);
        std::vector<uint8_t> f(r.d + r.i, r.d + r.i + len);
        r.i += len;
        feed(st, f);
        break;
      }
      case 6: {  // an ACK with raw option bytes, checksum fixed by the builder
        b.tcp_flags = 0x10;
        b.seq = c.next;
        b.ack = c.srv_next;
        r.bytes(b.tcp_options, 4u * (1 + r.u8() % 10));
        feed(st, b.bytes());
        break;
      }
      case 8: {  // frag-needed / packet-too-big quoting one of our segments: MTU, sequence
                 // offset from the last one sent and quote length from the input
        edge_test::packet_builder q;
        q.proto = IPPROTO_TCP;
        q.from(c.vip).to(c.addr);
        q.sport = 443;
        q.dport = c.port;
        q.tcp_flags = 0x10;
        q.seq = c.srv_next - r.u8() * 256u - r.u8();
        q.payload.assign(r.u8() * 8u, 0x5a);
        const auto quoted = q.bytes();
        edge_test::packet_builder e;
        e.from(c.vip).to(c.vip);  // the family of the connection; the source does not matter
        e.proto = e.v6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP};
        e.icmp_type = e.v6 ? 2 : 3;
        e.icmp_code = e.v6 ? 0 : 4;
        e.icmp_id = r.u8() % 2 == 0 ? 0 : static_cast<uint16_t>(r.u8());
        e.icmp_seq = static_cast<uint16_t>(r.u8() << 8 | r.u8());  // the MTU
        const size_t keep = std::min<size_t>(quoted.size() - 14, r.u8());
        e.payload.assign(quoted.begin() + 14, quoted.begin() + 14 + static_cast<long>(keep));
        feed(st, e.bytes());
        break;
      }
    }
    drain(st, clients);
  }
  // Run every timer out: all connections must end within the (short) timeouts.
  for (int i = 0; i < 12; ++i) {
    now += 1'000'000;
    st.poll(now);
    drain(st, clients);
  }
  if (std::getenv("TCP_FUZZ_STATS") != nullptr) {
    const auto& k = st.stats();
    std::printf(
        "opened=%lu refused=%lu cookies=%lu/%lu/%lu rexmit=%lu rto=%lu fast=%lu probes=%lu "
        "ooo=%lu challenge=%lu mss_clamped=%lu closed=%lu pmtu=%lu\n",
        k.opened.get(), k.refused.get(), k.cookies_sent.get(), k.cookies_validated.get(),
        k.cookies_failed.get(), k.retransmits.get(), k.rto_events.get(), k.fast_retransmits.get(),
        k.persist_probes.get(), k.ooo_segments.get(), k.challenge_acks.get(),
        k.peer_mss_clamped.get(), k.closed.get(), k.pmtu_lowered.get());
  }
  if (st.stats().active.get() != 0) {
    std::fprintf(stderr, "%lu connections outlived every timeout\n", st.stats().active.get());
    std::abort();
  }
  made->reset();
  if (rte_mempool_avail_count(g_pool) != pool_size) {
    std::fprintf(stderr, "mbuf leak: %u of %u back\n", rte_mempool_avail_count(g_pool), pool_size);
    std::abort();
  }
  return 0;
}
