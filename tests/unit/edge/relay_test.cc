// The relay (service kind tcp) on its real parts: the userspace TCP stack fed test frames from a
// scripted client, and the worker's io_uring connecting to a scripted upstream, a kernel TCP
// listener on 127.0.0.1. Each test drives one connection through a transition and checks what the
// client's side sees (segments), what the upstream's side sees (bytes, EOF, reset) and how the
// relay counts the end.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rte_cycles.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "edge/inspection/waf_audit.hh"
#include "edge/inspection/waf_control.hh"
#include "edge/relay.hh"
#include "edge/snapshot.hh"
#include "l4/parse.hh"
#include "packet_builder.hh"
#include "rules/loader.hh"
#include "test_eal.hh"
#include "tls/context.hh"

namespace edge {
namespace {

constexpr uint8_t fin = 0x01, syn = 0x02, rst = 0x04, ack = 0x10;

// A kernel TCP listener on 127.0.0.1, on a port of its own: the scripted upstream.
struct upstream_server {
  int fd = -1;
  uint16_t port = 0;
  upstream_server() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd, 16), 0);
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = ntohs(a.sin_port);
  }
  ~upstream_server() { close(fd); }
};

// A loopback port that refuses connections: bound, never listening, held for the test (so no
// other test's bind can take it meanwhile).
struct refusing_port {
  int fd = -1;
  uint16_t port = 0;
  refusing_port() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = ntohs(a.sin_port);
  }
  ~refusing_port() { close(fd); }
};

// What upstream_read saw at the end: EOF, or the errno of a failed recv (ECONNRESET: a reset).
constexpr int got_eof = -1;

struct segment {
  uint8_t flags = 0;
  uint16_t window = 0;  // as sent (the handshake has no window scale: bytes)
  uint32_t seq = 0, ack = 0;
  std::string payload;
};

class relay_test : public ::testing::Test {
 protected:
  std::shared_ptr<config> cfg = std::make_shared<config>();
  snapshot snap;
  waf_audit_ring audit{4096};  // outlives the relay, whose WAF worker writes to it
  std::unique_ptr<relay> r;
  edge_test::packet_builder b;
  uint32_t cseq = 7000;       // the client's next sequence number
  uint32_t sack = 0;          // what the client acknowledges (the relay's next sequence number)
  std::vector<segment> seen;  // every segment the relay sent to the client, in order

  relay_test() {
    b.proto = IPPROTO_TCP;
    b.from("192.0.2.7").to("10.0.0.1");
    b.sport = 40000;
    b.dport = 80;
  }

  // The service gets the WAF: the shipped rules, the default (enforcing) policy. HTTP: the relay
  // opens the upstream once the first request head has passed.
  void with_waf() {
    auto rules = rules::compile_rules_dir(RULES_SHIPPED_DIR);
    ASSERT_TRUE(rules.has_value()) << rules.error().str();
    auto pol = waf::bound_policy::bind(*rules, waf::policy{});
    ASSERT_TRUE(pol.has_value()) << pol.error().str();
    auto ws = std::make_shared<waf_rules_snapshot>();
    ws->rules = *rules;
    ws->policies["svc"] = *pol;
    ws->generation = 1;
    snap.waf = ws;
  }

  // The service is kind tls, with the test PKI's ECDSA certificate (keys sign in place).
  bool tls = false;
  void with_tls() {
    const std::string dir = tls_cert_dir();
    tls::server_config tc;
    tc.certs = {{dir + "/ecdsa.pem", dir + "/ecdsa.key", {}, {}}};
    auto set = tls::context_set::build(tc);
    ASSERT_TRUE(set.has_value()) << set.error().message;
    snap.tls["svc"] = *set;
    tls = true;
  }
  static std::string tls_cert_dir() {
    static const std::string dir = [] {
      char tmpl[] = "/tmp/edge-relay-certs-XXXXXX";
      const char* d = mkdtemp(tmpl);
      if (d == nullptr) std::abort();
      const std::string cmd = std::string("sh ") + EDGE_TLS_CERTS_SCRIPT + " " + d + " >/dev/null";
      if (std::system(cmd.c_str()) != 0) std::abort();
      return std::string(d);
    }();
    return dir;
  }

  void start(const std::vector<uint16_t>& backend_ports) {
    pool_config pc;
    pc.name = "p";
    pc.proxy_protocol = false;
    pc.connect_timeout_ms = 500;
    pc.max_connect_attempts = 3;
    for (uint16_t port : backend_ports)
      pc.backends.push_back({*l4::ip_addr::parse("127.0.0.1"), port, 1});
    cfg->pools.push_back(pc);
    service_config s;
    s.name = "svc";
    s.vip = *l4::ip_addr::parse("10.0.0.1");
    s.port = 80;
    s.kind = tls ? service_kind::tls : service_kind::tcp;
    s.pool = "p";
    cfg->services.push_back(s);
    cfg->tcp.max_connections = 64;
    snap.cfg = cfg;
    relay_setup rs;
    rs.tcp = cfg->tcp;
    rs.tx_pool = edge_test::mempool();
    rs.tls = tls;
    auto made = relay::create(rs);
    ASSERT_TRUE(made.has_value()) << made.error().message;
    r = std::move(*made);
    if (tls) {
      auto attached = r->attach_thread();
      ASSERT_TRUE(attached.has_value()) << attached.error().message;
    }
    if (snap.waf) {
      auto ww = waf_worker::create(0, *snap.waf->rules, &audit);
      ASSERT_TRUE(ww.has_value()) << ww.error().message;
      r->set_waf(std::move(*ww));
    }
    ASSERT_TRUE(r->sync(snap));
  }

  void send(uint8_t flags, const std::string& payload = {}) {
    b.tcp_flags = flags;
    b.seq = cseq;
    b.ack = (flags & ack) ? sack : 0;
    b.payload.assign(payload.begin(), payload.end());
    rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), b.bytes());
    ASSERT_NE(m, nullptr);
    l4::packet p;
    ASSERT_EQ(l4::parse(m, p), l4::drop::none);
    r->poll(rte_rdtsc());  // the worker sets the clock before it feeds a burst
    r->input(m, p);
    cseq += static_cast<uint32_t>(payload.size()) + ((flags & (syn | fin)) ? 1 : 0);
  }

  // One round of the worker loop: timers, io_uring completions, the segments to the client.
  void pump_once() {
    r->poll(rte_rdtsc());
    while (r->poll_upstream(16) == 16) {
    }
    rte_mbuf* out[64];
    const uint16_t n = r->drain_tx(out, 64);
    for (uint16_t i = 0; i < n; ++i) {
      l4::packet p;
      if (l4::parse(out[i], p) == l4::drop::none) {
        const uint8_t* th = rte_pktmbuf_mtod(out[i], const uint8_t*) + p.l4_off();
        segment s;
        s.seq = uint32_t{th[4]} << 24 | uint32_t{th[5]} << 16 | uint32_t{th[6]} << 8 | th[7];
        s.ack = uint32_t{th[8]} << 24 | uint32_t{th[9]} << 16 | uint32_t{th[10]} << 8 | th[11];
        const uint16_t dport = static_cast<uint16_t>(th[2] << 8 | th[3]);
        s.flags = th[13];
        s.window = static_cast<uint16_t>(th[14] << 8 | th[15]);
        s.payload.assign(rte_pktmbuf_mtod(out[i], const char*) + p.payload_off(),
                         out[i]->data_len - p.payload_off());
        if (dport == b.sport) seen.push_back(s);  // this client's (not an earlier one's)
      }
      rte_pktmbuf_free(out[i]);
    }
  }

  // Pumps until `done` holds (true) or `secs` seconds pass (false).
  bool pump_until(const std::function<bool()>& done, int secs = 2) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(secs);
    while (std::chrono::steady_clock::now() < end) {
      pump_once();
      if (done()) return true;
      usleep(200);
    }
    return false;
  }

  // Bytes and flags the client received since `from` (an index into seen); the client's ACK
  // point advances over them, as a client that read them would.
  std::string client_bytes(size_t from = 0) {
    std::string s;
    for (size_t i = from; i < seen.size(); ++i) s += seen[i].payload;
    return s;
  }
  bool client_got(uint8_t flag) const {
    for (const auto& s : seen)
      if (s.flags & flag) return true;
    return false;
  }
  void advance_ack() {
    for (const auto& s : seen) {
      const uint32_t end =
          s.seq + static_cast<uint32_t>(s.payload.size()) + ((s.flags & (syn | fin)) ? 1 : 0);
      if (static_cast<int32_t>(end - sack) > 0) sack = end;
    }
  }

  // The handshake: SYN, SYN-ACK, ACK. The relay then opens the upstream (no WAF, not HTTP).
  void handshake() {
    seen.clear();
    send(syn);
    ASSERT_TRUE(pump_until([&] { return client_got(syn); })) << "no SYN-ACK";
    for (const auto& s : seen)
      if (s.flags & syn) sack = s.seq + 1;
    send(ack);
    pump_once();
  }

  // Accepts the relay's upstream connection on `srv` (pumping meanwhile); -1 if none came.
  int accept_upstream(upstream_server& srv) {
    int fd = -1;
    pump_until([&] {
      fd = accept4(srv.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      return fd >= 0;
    });
    return fd;
  }

  // Reads what the upstream has received until `want` bytes, its end or `secs` seconds, pumping
  // meanwhile. *end: 0 (still open), got_eof, or the errno of a failed recv (ECONNRESET: reset).
  std::string upstream_read(int fd, size_t want, int* end = nullptr, int secs = 2) {
    std::string got;
    int e = 0;
    pump_until(
        [&] {
          char buf[65536];
          const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
          if (n > 0) got.append(buf, static_cast<size_t>(n));
          if (n == 0) e = got_eof;
          if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) e = errno;
          return got.size() >= want || e != 0;
        },
        secs);
    if (end != nullptr) *end = e;
    return got;
  }

  // Every test: the connection moved only along relay_state_moves, and between events no slot
  // waits for its release.
  void TearDown() override {
    if (!r) return;
    EXPECT_EQ(r->stats().bad_moves.get(), 0u) << "a state move outside relay_state_moves";
    EXPECT_EQ(r->ending(), 0u);
    EXPECT_EQ(r->stats().states[static_cast<size_t>(relay_state::ended)].get(), 0u);
    r->detach_thread();
  }

  uint64_t ends(relay_end e) const { return r->stats().ends[static_cast<size_t>(e)].get(); }
  // What the relay and its stack counted, for a failure's message.
  std::string counted() const {
    std::string s;
    for (size_t i = 0; i < relay_end_count; ++i)
      if (r->stats().ends[i].get() != 0)
        s += std::string(relay_end_names[i]) + "=" + std::to_string(r->stats().ends[i].get()) + " ";
    for (size_t i = 0; i < l4::tcp::reset_reason_count; ++i)
      if (r->tcp_stats().resets_sent[i].get() != 0)
        s += "rst:" + std::string(l4::tcp::reset_reason_names[i]) + "=" +
             std::to_string(r->tcp_stats().resets_sent[i].get()) + " ";
    return s;
  }
};

TEST_F(relay_test, bytes_cross_both_ways_and_a_client_half_close_reaches_the_upstream) {
  upstream_server srv;
  ASSERT_NO_FATAL_FAILURE(start({srv.port}));
  ASSERT_NO_FATAL_FAILURE(handshake());
  const int up = accept_upstream(srv);
  ASSERT_GE(up, 0) << "the relay never connected upstream";
  send(ack, "ping");
  EXPECT_EQ(upstream_read(up, 4), "ping");
  // The client closes its direction; the upstream sees EOF and may still answer.
  send(ack | fin);
  int end = 0;
  upstream_read(up, 1, &end);
  EXPECT_EQ(end, got_eof) << "the client's FIN did not reach the upstream as a FIN";
  const size_t mark = seen.size();
  ASSERT_EQ(write(up, "pong", 4), 4);
  EXPECT_TRUE(pump_until([&] { return client_bytes(mark).find("pong") != std::string::npos; }))
      << "the upstream's answer after the client's FIN did not reach the client";
  close(up);
  EXPECT_TRUE(pump_until([&] { return client_got(fin); })) << "the upstream's FIN never came";
  EXPECT_FALSE(client_got(rst));
  advance_ack();
  send(ack);
  EXPECT_TRUE(pump_until([&] { return ends(relay_end::completed) == 1; }));
  EXPECT_EQ(r->stats().bytes_from_client.get(), 4u);
  EXPECT_EQ(r->stats().bytes_to_client.get(), 4u);
}

TEST_F(relay_test, a_refused_backend_falls_over_to_the_next) {
  upstream_server srv;
  refusing_port dead;
  ASSERT_NO_FATAL_FAILURE(start({dead.port, srv.port}));
  // Least-connections picks either first; over a few connections the refused one is tried.
  for (int i = 0; i < 4; ++i) {
    b.sport = static_cast<uint16_t>(41000 + i);
    ASSERT_NO_FATAL_FAILURE(handshake());
    const int up = accept_upstream(srv);
    ASSERT_GE(up, 0) << "connection " << i << " never reached the live backend";
    send(ack, "x");
    EXPECT_EQ(upstream_read(up, 1), "x");
    EXPECT_FALSE(client_got(rst)) << "connection " << i;
    close(up);
  }
  const auto& pc = r->pool(0).counters();
  EXPECT_GE(pc.connect_failures.get(), 1u) << "the refused backend was never tried";
  EXPECT_GE(pc.retries.get(), 1u);
  EXPECT_EQ(ends(relay_end::connect_failed), 0u);
}

TEST_F(relay_test, every_backend_refused_resets_the_client) {
  refusing_port dead1, dead2;
  ASSERT_NO_FATAL_FAILURE(start({dead1.port, dead2.port}));
  ASSERT_NO_FATAL_FAILURE(handshake());
  EXPECT_TRUE(pump_until([&] { return client_got(rst); })) << "the client was never reset";
  EXPECT_EQ(ends(relay_end::connect_failed), 1u) << counted();
  EXPECT_GE(r->pool(0).counters().gave_up.get(), 1u);
}

TEST_F(relay_test, an_upstream_reset_mid_body_resets_the_client) {
  upstream_server srv;
  ASSERT_NO_FATAL_FAILURE(start({srv.port}));
  ASSERT_NO_FATAL_FAILURE(handshake());
  const int up = accept_upstream(srv);
  ASSERT_GE(up, 0);
  send(ack, "part of a body");
  EXPECT_EQ(upstream_read(up, 14), "part of a body");
  const linger l{1, 0};  // close with a RST
  ASSERT_EQ(setsockopt(up, SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  close(up);
  EXPECT_TRUE(pump_until([&] { return client_got(rst); })) << "the client was never reset";
  EXPECT_EQ(ends(relay_end::upstream_reset), 1u);
}

TEST_F(relay_test, a_client_reset_resets_the_upstream) {
  upstream_server srv;
  ASSERT_NO_FATAL_FAILURE(start({srv.port}));
  ASSERT_NO_FATAL_FAILURE(handshake());
  const int up = accept_upstream(srv);
  ASSERT_GE(up, 0);
  send(ack, "abc");
  EXPECT_EQ(upstream_read(up, 3), "abc");
  send(rst);
  int end = 0;
  upstream_read(up, SIZE_MAX, &end);
  EXPECT_EQ(end, ECONNRESET) << "the upstream connection was not reset";
  EXPECT_EQ(ends(relay_end::client_reset), 1u);
  close(up);
}

// A WAF'd HTTP service: the head passes and the upstream opens; the attack in the body is blocked
// mid-body: the client gets 403 and the upstream is reset without ever seeing the attack.
TEST_F(relay_test, a_waf_block_during_a_body_answers_403_and_resets_the_upstream) {
  upstream_server srv;
  ASSERT_NO_FATAL_FAILURE(with_waf());
  ASSERT_NO_FATAL_FAILURE(start({srv.port}));
  ASSERT_NO_FATAL_FAILURE(handshake());
  const std::string body = "comment=nice%20product%27%20union%20select%20card%20from%20payments";
  send(ack,
       "POST /review HTTP/1.1\r\nHost: shop.example\r\nContent-Type: "
       "application/x-www-form-urlencoded\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n");
  const int up = accept_upstream(srv);
  ASSERT_GE(up, 0) << "the clean head did not open the upstream";
  std::string head = upstream_read(up, 1);
  send(ack, body.substr(0, 20));  // harmless so far
  send(ack, body.substr(20));     // the attack
  EXPECT_TRUE(pump_until([&] { return client_bytes().find("HTTP/1.1 403") == 0; }))
      << "the client got: " << client_bytes().substr(0, 80);
  int end = 0;
  const std::string rest = upstream_read(up, SIZE_MAX, &end);
  EXPECT_EQ(end, ECONNRESET) << "the upstream connection was not reset";
  EXPECT_EQ((head + rest).find("union%20select"), std::string::npos)
      << "the attack reached the upstream";
  EXPECT_TRUE(pump_until([&] { return ends(relay_end::waf_blocked) == 1; })) << counted();
  close(up);
}

// A TLS alert: a client whose ClientHello does not parse gets a fatal alert record and a FIN, and
// no upstream connection is opened for it (kind tls opens the upstream after the handshake).
TEST_F(relay_test, a_malformed_client_hello_gets_an_alert_and_no_upstream) {
  upstream_server srv;
  ASSERT_NO_FATAL_FAILURE(with_tls());
  ASSERT_NO_FATAL_FAILURE(start({srv.port}));
  ASSERT_NO_FATAL_FAILURE(handshake());
  // A handshake record holding a ClientHello whose body is one byte long.
  send(ack, std::string("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03", 10));
  EXPECT_TRUE(pump_until([&] { return client_got(fin); })) << counted();
  const std::string got = client_bytes();
  ASSERT_EQ(got.size(), 7u) << "one alert record (5-byte header, level, description)";
  EXPECT_EQ(static_cast<uint8_t>(got[0]), 0x15) << "not an alert record";
  EXPECT_EQ(static_cast<uint8_t>(got[5]), 2) << "not a fatal alert";
  EXPECT_TRUE(pump_until([&] { return ends(relay_end::tls_handshake_failed) == 1; })) << counted();
  EXPECT_LT(accept4(srv.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC), 0)
      << "an upstream was opened for a failed handshake";
  EXPECT_FALSE(client_got(rst));
}

// The highest sequence number the relay has sent this client up to (data, SYN and FIN count).
uint32_t highest_sent(const std::vector<segment>& seen) {
  uint32_t hi = 0;
  for (const auto& s : seen) {
    const uint32_t end =
        s.seq + static_cast<uint32_t>(s.payload.size()) + ((s.flags & (syn | fin)) ? 1 : 0);
    if (hi == 0 || static_cast<int32_t>(end - hi) > 0) hi = end;
  }
  return hi;
}

// Back-pressure towards the client: a client that acknowledges nothing gets at most its window
// (here the initial congestion window), the relay's buffers fill and it stops reading the upstream,
// so the upstream's writes stop being taken: bounded memory whatever the upstream sends.
TEST_F(relay_test, a_client_that_reads_nothing_holds_back_the_upstream) {
  upstream_server srv;
  ASSERT_NO_FATAL_FAILURE(start({srv.port}));
  ASSERT_NO_FATAL_FAILURE(handshake());
  const int up = accept_upstream(srv);
  ASSERT_GE(up, 0);
  int small = 65536;
  setsockopt(up, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  const std::string chunk(65536, 'z');
  size_t taken = 0;
  int refused_in_a_row = 0;
  for (int round = 0; round < 1000 && refused_in_a_row < 50; ++round) {  // up to 64 MB offered
    const ssize_t n = ::send(up, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    ASSERT_TRUE(n > 0 || errno == EAGAIN || errno == EWOULDBLOCK) << strerror(errno);
    if (n > 0) taken += static_cast<size_t>(n);
    refused_in_a_row = n > 0 ? 0 : refused_in_a_row + 1;
    pump_once();
    usleep(100);
  }
  EXPECT_EQ(refused_in_a_row, 50) << "the upstream's writes were never held back (" << taken
                                  << " bytes taken)";
  // What is held: both kernel socket buffers (about 64 KB each way here, the relay does not read)
  // and the relay's own upstream buffer (64 KB); far below what was offered.
  EXPECT_LT(taken, size_t{4} << 20);
  const uint32_t sent_before = highest_sent(seen) - sack;
  EXPECT_GT(sent_before, 0u) << "nothing reached the client";
  EXPECT_LE(sent_before, 65535u) << "more than the client's window is in flight";
  EXPECT_GT(taken, sent_before) << "the upstream could not write at all";
  // The client acknowledges: new data (beyond what was in flight) flows again.
  advance_ack();
  const uint32_t acked = sack;
  send(ack);
  EXPECT_TRUE(pump_until([&] { return static_cast<int32_t>(highest_sent(seen) - acked) > 0; }))
      << "no new data after the client's ACK";
  close(up);
}

// Back-pressure towards the upstream: an upstream that reads nothing fills the relay's buffer and
// then the client's receive window, which the relay closes (zero window) instead of taking more.
// When the upstream reads again the relay opens the window, and every byte arrives in order.
TEST_F(relay_test, an_upstream_that_reads_nothing_closes_the_clients_window) {
  upstream_server srv;
  ASSERT_NO_FATAL_FAILURE(start({srv.port}));
  ASSERT_NO_FATAL_FAILURE(handshake());
  const int up = accept_upstream(srv);
  ASSERT_GE(up, 0);
  int rcv = 65536;  // the upstream's own buffer, so what the kernel holds does not grow
  setsockopt(up, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  // Byte k of the stream is 'a' + k % 26: order and loss both show.
  auto byte_at = [](size_t k) { return static_cast<char>('a' + k % 26); };
  bool zero = false;
  size_t sent = 0;
  for (int i = 0; i < 30000 && !zero; ++i) {
    // Send only inside the window the relay last advertised, as a TCP client would.
    const uint32_t right = seen.back().ack + seen.back().window;
    const int32_t room = static_cast<int32_t>(right - cseq);
    if (room > 0) {
      std::string part(std::min<size_t>(1400, static_cast<size_t>(room)), ' ');
      for (size_t k = 0; k < part.size(); ++k) part[k] = byte_at(sent + k);
      send(ack, part);
      sent += part.size();
    }
    pump_once();
    zero = seen.back().window == 0 && seen.back().ack == cseq;
    if (!zero) usleep(50);
  }
  EXPECT_TRUE(zero) << "the relay kept its window open after taking " << sent << " bytes";
  // The relay's socket send buffer (tcp_wmem, up to 4 MB), the upstream's 64 KB and the relay's
  // own buffers: a few MB at most.
  EXPECT_LT(sent, size_t{8} << 20);
  const std::string got = upstream_read(up, sent, nullptr, 30);
  EXPECT_EQ(got.size(), sent) << "bytes lost on the way";
  size_t wrong = 0;
  for (size_t k = 0; k < got.size(); ++k) wrong += got[k] != byte_at(k);
  EXPECT_EQ(wrong, 0u) << "bytes changed or out of order";
  EXPECT_TRUE(pump_until([&] { return seen.back().window > 0; }))
      << "the relay never opened the window again";
  close(up);
}

// The move table: each phase ends; a connection only moves forward; nothing leaves ended but the
// release, and nothing comes back from a half-close but the end.
TEST(relay_state, moves) {
  using st = relay_state;
  for (size_t i = 0; i < relay_state_count; ++i) {
    const auto s = static_cast<st>(i);
    EXPECT_FALSE(relay_state_move_ok(s, s)) << relay_state_names[i];
    if (s == st::ended) continue;
    EXPECT_TRUE(relay_state_move_ok(s, st::ended)) << relay_state_names[i];
    EXPECT_FALSE(relay_state_move_ok(s, st::free)) << relay_state_names[i];
  }
  EXPECT_TRUE(relay_state_move_ok(st::ended, st::free));
  EXPECT_TRUE(relay_state_move_ok(st::handshake, st::awaiting_request));
  EXPECT_TRUE(relay_state_move_ok(st::awaiting_request, st::streaming));
  EXPECT_FALSE(relay_state_move_ok(st::streaming, st::awaiting_request));
  EXPECT_FALSE(relay_state_move_ok(st::streaming, st::handshake));
  EXPECT_FALSE(relay_state_move_ok(st::client_closed, st::upstream_closed));
  EXPECT_FALSE(relay_state_move_ok(st::upstream_closed, st::streaming));
  EXPECT_FALSE(relay_state_move_ok(st::ended, st::streaming));
}

}  // namespace
}  // namespace edge

EDGE_TEST_MAIN_WITH_EAL()
