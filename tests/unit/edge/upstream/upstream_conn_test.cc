// upstream_conn against real loopback sockets: connect, fall-over on refusal and timeout, PROXY v2
// header byte-exact at the server, 1 MB each way through small buffers, half-close, resets.
#include "upstream_conn.hh"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_util.hh"

namespace edge::upstream {
namespace {

using namespace test;

// The relay side as a recorder.
struct relay final : upstream_events {
  int connected = 0, data = 0, fin = 0, writable = 0, errors = 0;
  upstream_error last_error{};
  int last_errno = 0;
  fnv received;
  bool consume_all = true;
  bool abort_on_error = true;
  std::function<void(upstream_conn&)> on_write;  // called on connect and writable

  void on_upstream_connected(upstream_conn& c) override {
    ++connected;
    if (on_write) on_write(c);
  }
  void on_upstream_data(upstream_conn& c) override {
    ++data;
    if (!consume_all) return;
    drain(c);
  }
  void drain(upstream_conn& c) {
    while (c.readable()) {
      auto s = c.peek();
      received.add(s.data(), s.size());
      c.consume(s.size());
    }
  }
  void on_upstream_fin(upstream_conn&) override { ++fin; }
  void on_upstream_writable(upstream_conn& c) override {
    ++writable;
    if (on_write) on_write(c);
  }
  void on_upstream_error(upstream_conn& c, upstream_error e, int err) override {
    ++errors;
    last_error = e;
    last_errno = err;
    if (abort_on_error) c.abort();
  }
};

class upstream_conn_test : public ::testing::Test {
 protected:
  void make(std::vector<backend_spec> backends, unsigned timeout_ms = 300, size_t buf = 65536,
            unsigned nconns = 8, unsigned drain_ms = 5000) {
    ring = std::move(*uring::create({.sq_entries = 64, .max_ops = 256}));
    pool_spec s;
    s.name = "gw";
    s.backends = std::move(backends);
    s.connect_timeout_ms = timeout_ms;
    auto p = upstream_pool::create(s);
    ASSERT_TRUE(p) << p.error().str();
    pool = std::move(*p);
    auto c = upstream_conns::create(
        *ring, {.conns = nconns, .tx_buffer = buf, .rx_buffer = buf, .drain_timeout_ms = drain_ms});
    ASSERT_TRUE(c) << c.error().str();
    conns = std::move(*c);
  }
  upstream_conn* open(relay& r, const proxy_v2_info* proxy = nullptr) {
    auto c = conns->open({.pool = pool.get(), .events = &r, .proxy = proxy});
    EXPECT_TRUE(c) << (c ? "" : to_string(c.error()));
    return c.value_or(nullptr);
  }
  template <class Pred>
  bool until(Pred p, int ms = 5000) {
    return run_until([&] { return ring->poll(); }, p, ms);
  }
  // SQEs go to the kernel from poll(), as on a worker: keep polling while waiting for the peer.
  int accept(const listener& l, int ms = 3000) {
    int s = -1;
    until([&] { return (s = l.accept(1)) >= 0; }, ms);
    return s;
  }
  bool all_free() {
    return until([&] { return conns->free_count() == conns->capacity(); });
  }

  void TearDown() override {
    conns.reset();  // before the ring it uses
    if (!ring) return;
    EXPECT_EQ(ring->counters().stale_completions.get(), 0u);
    EXPECT_EQ(ring->counters().submit_errors.get(), 0u);
  }

  std::unique_ptr<uring> ring;
  std::unique_ptr<upstream_pool> pool;
  std::unique_ptr<upstream_conns> conns;
};

TEST_F(upstream_conn_test, proxy_v2_header_arrives_byte_exact_before_data) {
  listener l;
  make({{l.address(), l.port}});
  const uint8_t id[] = {1, 2, 3, 4};
  proxy_v2_info info;
  info.src = addr("203.0.113.9");
  info.dst = addr("198.51.100.1");
  info.src_port = 51000;
  info.dst_port = 443;
  info.unique_id = id;
  info.authority = "shop.example";
  std::vector<uint8_t> want(pp2_max_header);
  want.resize(*encode_proxy_v2(info, want));
  const std::string body = "GET / HTTP/1.1\r\n\r\n";
  for (char ch : body) want.push_back(static_cast<uint8_t>(ch));

  relay r;
  upstream_conn* c = open(r, &info);
  ASSERT_TRUE(c);
  // Sent before the connection is up: queued behind the header.
  EXPECT_EQ(c->send(std::as_bytes(std::span(body))), body.size());
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  std::vector<uint8_t> got(want.size());
  std::thread reader([&] { EXPECT_TRUE(read_exact(s, got.data(), got.size())); });
  until([&] { return pool->counters().bytes_to_upstream.get() == want.size(); });
  reader.join();
  EXPECT_EQ(got, want);
  EXPECT_EQ(pool->counters().connects.get(), 1u);
  EXPECT_EQ(pool->at(0).counters.active.get(), 1u);
  c->close();
  char x;
  ASSERT_TRUE(until([&] { return conns->free_count() == conns->capacity(); }));
  EXPECT_EQ(::recv(s, &x, 1, 0), 0);  // FIN
  EXPECT_EQ(pool->at(0).counters.active.get(), 0u);
  EXPECT_EQ(pool->counters().bytes_to_upstream.get(), want.size());
  ::close(s);
}

TEST_F(upstream_conn_test, refused_falls_over_to_next_backend) {
  closed_port dead;
  listener l;
  make({{addr("127.0.0.1"), dead.port}, {l.address(), l.port}});
  relay r;
  upstream_conn* c = open(r);  // least connections picks backend 0 first (both idle, index order)
  ASSERT_TRUE(c);
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  EXPECT_EQ(c->backend_index(), 1u);
  EXPECT_EQ(c->attempts(), 2u);
  EXPECT_EQ(pool->at(0).counters.connect_failures.get(), 1u);
  EXPECT_EQ(pool->counters().retries.get(), 1u);
  EXPECT_EQ(pool->at(0).counters.active.get(), 0u);
  c->abort();
  EXPECT_TRUE(all_free());
  ::close(s);
}

TEST_F(upstream_conn_test, all_refused_gives_up_with_error) {
  closed_port a, b;
  make({{addr("127.0.0.1"), a.port}, {addr("127.0.0.1"), b.port}});
  relay r;
  ASSERT_TRUE(open(r));
  ASSERT_TRUE(until([&] { return r.errors == 1; }));
  EXPECT_EQ(r.last_error, upstream_error::connect_failed);
  EXPECT_EQ(r.last_errno, ECONNREFUSED);
  EXPECT_EQ(r.connected, 0);
  EXPECT_EQ(pool->counters().gave_up.get(), 1u);
  EXPECT_EQ(pool->counters().connect_failures.get(), 2u);
  EXPECT_TRUE(all_free());
  EXPECT_EQ(pool->counters().active.get(), 0u);
}

TEST_F(upstream_conn_test, connect_timeout_then_next_backend) {
  blackhole bh;
  listener l;
  make({{addr("127.0.0.1"), bh.port()}, {l.address(), l.port}}, 200);
  relay r;
  auto t0 = std::chrono::steady_clock::now();
  upstream_conn* c = open(r);
  ASSERT_TRUE(c);
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_GE(ms, 190);
  EXPECT_LT(ms, 2000);
  EXPECT_EQ(pool->at(0).counters.connect_timeouts.get(), 1u);
  EXPECT_EQ(c->backend_index(), 1u);
  c->abort();
  EXPECT_TRUE(all_free());
  ::close(s);
}

TEST_F(upstream_conn_test, only_timeouts_report_connect_timeout) {
  blackhole bh;
  make({{addr("127.0.0.1"), bh.port()}}, 100);
  relay r;
  ASSERT_TRUE(open(r));
  ASSERT_TRUE(until([&] { return r.errors == 1; }));
  EXPECT_EQ(r.last_error, upstream_error::connect_timeout);
  EXPECT_EQ(pool->counters().gave_up.get(), 1u);
  EXPECT_TRUE(all_free());
}

TEST_F(upstream_conn_test, no_healthy_backend_and_exhausted_objects_are_refused) {
  listener l;
  make({{l.address(), l.port}}, 300, 65536, 1);
  pool->set_healthy(0, false);
  relay r;
  auto c = conns->open({.pool = pool.get(), .events = &r});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), upstream_error::no_backend);
  EXPECT_EQ(pool->counters().no_backend.get(), 1u);
  pool->set_healthy(0, true);
  upstream_conn* first = open(r);
  ASSERT_TRUE(first);
  auto second = conns->open({.pool = pool.get(), .events = &r});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error(), upstream_error::no_resources);
  EXPECT_EQ(conns->counters().exhausted.get(), 1u);
  first->abort();  // while still connecting: the connect is cancelled
  EXPECT_TRUE(all_free());
  EXPECT_EQ(r.connected + r.errors, 0);  // no events after abort
}

// 1 MB each way at once through 4 KiB buffers: back-pressure both ways, half-close both ways.
TEST_F(upstream_conn_test, relays_one_megabyte_each_way_with_half_close) {
  listener l;
  make({{l.address(), l.port}}, 1000, 4096);
  const auto up = pattern(1 << 20, 1), down = pattern(1 << 20, 2);
  fnv want_up, want_down;
  want_up.add(up.data(), up.size());
  want_down.add(down.data(), down.size());

  std::atomic<uint64_t> server_hash{0}, server_n{0};
  std::thread server([&] {
    int s = l.accept();
    if (s < 0) return;
    std::thread writer([&] {
      write_all(s, down.data(), down.size());
      ::shutdown(s, SHUT_WR);
    });
    fnv h;
    uint8_t buf[16384];
    ssize_t n;
    while ((n = ::recv(s, buf, sizeof buf, 0)) > 0) h.add(buf, static_cast<size_t>(n));
    writer.join();
    server_hash = h.h;
    server_n = h.n;
    ::close(s);
  });

  relay r;
  size_t off = 0;
  r.on_write = [&](upstream_conn& c) {
    while (off < up.size()) {
      size_t n = c.send(std::as_bytes(std::span(up.data() + off, up.size() - off)));
      off += n;
      if (n == 0) return;  // wait for on_upstream_writable
    }
    c.shutdown_write();
  };
  upstream_conn* c = open(r);
  ASSERT_TRUE(c);
  ASSERT_TRUE(until([&] { return r.fin == 1 && server_n.load() == up.size(); }, 20000))
      << "sent " << off << " received " << r.received.n << " server got " << server_n.load();
  server.join();
  EXPECT_EQ(server_hash.load(), want_up.h);
  EXPECT_EQ(r.received.n, down.size());
  EXPECT_EQ(r.received.h, want_down.h);
  EXPECT_GT(r.writable, 10);  // the 4 KiB tx buffer filled many times
  EXPECT_EQ(pool->counters().bytes_to_upstream.get(), up.size());
  EXPECT_EQ(pool->counters().bytes_from_upstream.get(), down.size());
  EXPECT_EQ(r.errors, 0);
  c->close();
  EXPECT_TRUE(all_free());
}

// A relay that stops consuming stops the upstream: the rx buffer fills and no recv is posted.
TEST_F(upstream_conn_test, slow_consumer_holds_back_upstream) {
  listener l;
  make({{l.address(), l.port}}, 1000, 4096);
  relay r;
  r.consume_all = false;
  upstream_conn* c = open(r);
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  const auto big = pattern(8 << 20, 3);
  ::fcntl(s, F_SETFL, O_NONBLOCK);
  size_t pushed = 0;
  for (int k = 0; k < 200; ++k) {
    ssize_t n = ::send(s, big.data() + pushed, big.size() - pushed, MSG_NOSIGNAL);
    if (n > 0) pushed += static_cast<size_t>(n);
    ring->poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(c->readable(), 4096u);  // buffer full, no more taken
  EXPECT_LT(pushed, big.size());    // the server is blocked by TCP flow control
  EXPECT_EQ(pool->counters().bytes_from_upstream.get(), 4096u);
  r.drain(*c);  // consuming re-arms recv
  ASSERT_TRUE(until([&] { return pool->counters().bytes_from_upstream.get() > 4096u; }));
  c->abort();
  EXPECT_TRUE(all_free());
  ::close(s);
}

TEST_F(upstream_conn_test, upstream_reset_is_propagated) {
  listener l;
  make({{l.address(), l.port}});
  relay r;
  r.abort_on_error = false;
  upstream_conn* c = open(r);
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  linger lg{1, 0};
  ::setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(s);  // RST
  ASSERT_TRUE(until([&] { return r.errors == 1; }));
  EXPECT_EQ(r.last_error, upstream_error::reset);
  EXPECT_EQ(r.last_errno, ECONNRESET);
  EXPECT_EQ(r.fin, 0);
  EXPECT_EQ(pool->at(0).counters.resets.get(), 1u);
  c->abort();
  EXPECT_TRUE(all_free());
}

TEST_F(upstream_conn_test, abort_sends_reset_to_upstream) {
  listener l;
  make({{l.address(), l.port}});
  relay r;
  upstream_conn* c = open(r);
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  c->abort();  // a recv is in flight: it is cancelled, then the socket closes with RST
  EXPECT_TRUE(all_free());
  char buf[8];
  pollfd p{s, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  EXPECT_EQ(::recv(s, buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, ECONNRESET);
  EXPECT_EQ(conns->counters().aborted.get(), 1u);
  ::close(s);
}

TEST_F(upstream_conn_test, close_flushes_queued_bytes_then_fin) {
  listener l;
  make({{l.address(), l.port}}, 1000, 65536);
  relay r;
  upstream_conn* c = open(r);
  const auto data = pattern(60000, 9);
  EXPECT_EQ(c->send(std::as_bytes(std::span(data))), data.size());
  // Closed before it is connected: the connect is cancelled and the queue dropped; no events.
  c->close();
  EXPECT_TRUE(all_free());
  int s = l.accept(50);  // the connect may or may not have reached the listener first
  if (s >= 0) {
    char x;
    EXPECT_LE(::recv(s, &x, 1, 0), 0);  // nothing of the queue arrives
    ::close(s);
  }
  EXPECT_EQ(r.connected, 0);

  upstream_conn* c2 = open(r);
  int s2 = accept(l);
  ASSERT_GE(s2, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  EXPECT_EQ(c2->send(std::as_bytes(std::span(data))), data.size());
  c2->close();  // connected: drains 60 KB, then FIN
  std::vector<uint8_t> got(data.size());
  std::thread reader([&] { EXPECT_TRUE(read_exact(s2, got.data(), got.size())); });
  EXPECT_TRUE(all_free());
  reader.join();
  EXPECT_EQ(got, data);
  char x;
  EXPECT_EQ(::recv(s2, &x, 1, 0), 0);
  ::close(s2);
}

// close() with bytes an upstream never reads: the drain timer resets it and the object comes back.
TEST_F(upstream_conn_test, drain_is_bounded_when_upstream_stops_reading) {
  listener l;
  int small = 4096;  // inherited by the accepted socket, so the advertised window stays small
  ::setsockopt(l.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  make({{l.address(), l.port}}, 1000, 8 << 20, 1, 150);
  relay r;
  upstream_conn* c = open(r);
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  const auto data = pattern(8 << 20, 5);
  EXPECT_EQ(c->send(std::as_bytes(std::span(data))), data.size());
  for (int k = 0; k < 20; ++k) ring->poll();
  auto t0 = std::chrono::steady_clock::now();
  c->close();
  EXPECT_TRUE(all_free());
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_GE(ms, 140);
  EXPECT_LT(ms, 2000);
  EXPECT_EQ(conns->counters().drain_timeouts.get(), 1u);
  EXPECT_LT(pool->counters().bytes_to_upstream.get(), data.size());
  ::close(s);
}

// A drain that finishes early removes its timer: the object is back at once, not after the timeout.
TEST_F(upstream_conn_test, finished_drain_cancels_its_timer) {
  listener l;
  make({{l.address(), l.port}}, 1000, 65536, 8, 10000);
  relay r;
  upstream_conn* c = open(r);
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  const auto data = pattern(30000, 6);
  c->send(std::as_bytes(std::span(data)));
  c->close();
  std::vector<uint8_t> got(data.size());
  std::thread reader([&] { EXPECT_TRUE(read_exact(s, got.data(), got.size())); });
  EXPECT_TRUE(until([&] { return conns->free_count() == conns->capacity(); }, 2000));
  reader.join();
  EXPECT_EQ(got, data);
  EXPECT_EQ(conns->counters().drain_timeouts.get(), 0u);
  EXPECT_EQ(ring->ops_in_flight(), 0u);
  ::close(s);
}

// The client half-closes before the upstream connection is even up, with nothing to send.
TEST_F(upstream_conn_test, early_half_close_reaches_upstream) {
  listener l;
  make({{l.address(), l.port}});
  relay r;
  upstream_conn* c = open(r);
  c->shutdown_write();
  EXPECT_EQ(c->send(std::as_bytes(std::span("x", 1))), 0u);  // nothing after a half-close
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  char x;
  std::thread reader([&] { EXPECT_EQ(::recv(s, &x, 1, 0), 0); });  // FIN, no data
  until([] { return false; }, 50);
  reader.join();
  write_all(s, "late", 4);  // the other direction stays open
  ASSERT_TRUE(until([&] { return r.received.n == 4; }));
  c->close();
  EXPECT_TRUE(all_free());
  ::close(s);
}

TEST_F(upstream_conn_test, oversized_proxy_header_is_refused_and_counted) {
  listener l;
  make({{l.address(), l.port}});
  std::vector<uint8_t> id(200, 1);
  proxy_v2_info info;
  info.src = addr("10.0.0.1");
  info.dst = addr("10.0.0.2");
  info.unique_id = id;
  relay r;
  auto c = conns->open({.pool = pool.get(), .events = &r, .proxy = &info});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), upstream_error::proxy_header);
  EXPECT_EQ(conns->counters().proxy_header_errors.get(), 1u);
  EXPECT_EQ(conns->free_count(), conns->capacity());
  EXPECT_EQ(pool->counters().active.get(), 0u);
}

// 64 connections through a ring with 4 operation slots and an 8-entry SQ: every stage (connect,
// send, recv, close) meets back-pressure and resumes from on_room(); all bytes still arrive.
TEST_F(upstream_conn_test, many_connections_through_a_starved_ring) {
  listener l(false, 128);
  make({{l.address(), l.port}}, 3000, 16384, 64);
  conns.reset();  // before its ring
  ring = std::move(*uring::create({.sq_entries = 8, .max_ops = 4}));
  conns = std::move(
      *upstream_conns::create(*ring, {.conns = 64, .tx_buffer = 16384, .rx_buffer = 16384}));
  std::atomic<bool> stop{false};
  std::vector<std::thread> echoes;
  std::thread acceptor([&] {
    while (!stop) {
      int s = l.accept(10);
      if (s < 0) continue;
      echoes.emplace_back([s] {
        uint8_t buf[8192];
        ssize_t n;
        while ((n = ::recv(s, buf, sizeof buf, 0)) > 0) write_all(s, buf, static_cast<size_t>(n));
        ::close(s);
      });
    }
  });
  const size_t each = 48 * 1024;
  struct flow {
    relay r;
    upstream_conn* c = nullptr;
    std::vector<uint8_t> data;
    size_t off = 0;
  };
  std::vector<flow> flows(64);
  for (size_t k = 0; k < flows.size(); ++k) {
    flow& f = flows[k];
    f.data = pattern(each, static_cast<uint32_t>(k + 10));
    f.r.on_write = [&f](upstream_conn& c) {
      while (f.off < f.data.size()) {
        size_t n = c.send(std::as_bytes(std::span(f.data.data() + f.off, f.data.size() - f.off)));
        f.off += n;
        if (n == 0) return;
      }
      c.shutdown_write();
    };
    f.c = open(f.r);
    ASSERT_TRUE(f.c);
  }
  bool done = until(
      [&] {
        for (auto& f : flows)
          if (f.r.fin == 0 && f.r.errors == 0) return false;
        return true;
      },
      20000);
  stop = true;
  acceptor.join();
  for (auto& t : echoes) t.join();
  ASSERT_TRUE(done);
  for (size_t k = 0; k < flows.size(); ++k) {
    fnv want;
    want.add(flows[k].data.data(), each);
    EXPECT_EQ(flows[k].r.errors, 0) << k;
    EXPECT_EQ(flows[k].r.received.n, each) << k;
    EXPECT_EQ(flows[k].r.received.h, want.h) << k;
    flows[k].c->close();
  }
  EXPECT_TRUE(all_free());
  EXPECT_GT(ring->counters().slots_exhausted.get(), 0u);  // the starvation did happen
  EXPECT_EQ(pool->counters().connects.get(), 64u);
  EXPECT_EQ(pool->counters().bytes_to_upstream.get(), 64 * each);
}

// Tearing down a worker with live connections: the pool resets them and waits for the kernel.
TEST_F(upstream_conn_test, destroying_the_pool_resets_open_connections) {
  listener l;
  make({{l.address(), l.port}});
  relay r;
  upstream_conn* c = open(r);
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  (void)c;
  EXPECT_EQ(ring->ops_in_flight(), 1u);  // the recv
  conns.reset();
  EXPECT_EQ(ring->ops_in_flight(), 0u);
  char buf[4];
  pollfd p{s, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  EXPECT_EQ(::recv(s, buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, ECONNRESET);
  EXPECT_EQ(r.errors + r.fin, 0);  // no events during teardown
  ::close(s);
}

TEST_F(upstream_conn_test, ipv6_backend) {
  listener l(true);
  if (l.fd < 0) GTEST_SKIP() << "no IPv6 loopback";
  make({{l.address(), l.port}});
  relay r;
  upstream_conn* c = open(r);
  int s = accept(l);
  ASSERT_GE(s, 0);
  ASSERT_TRUE(until([&] { return r.connected == 1; }));
  write_all(s, "pong", 4);
  ::shutdown(s, SHUT_WR);
  ASSERT_TRUE(until([&] { return r.fin == 1; }));
  EXPECT_EQ(r.received.n, 4u);
  c->close();
  EXPECT_TRUE(all_free());
  ::close(s);
}

}  // namespace
}  // namespace edge::upstream
