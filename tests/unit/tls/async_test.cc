// The async private-key offload: handshakes pause in OpenSSL ASYNC jobs while crypto threads sign,
// and resume through worker::poll. The worker thread never waits for a signature.
#include <chrono>

#include "skip_exit.hh"
#include "tls/offload.hh"
#include "tls_test_util.hh"

using namespace tls_test;

namespace {

struct async_fixture : ::testing::Test {
  std::shared_ptr<tls::offload> off;
  std::unique_ptr<tls::worker> w;
  tls::context_set_ptr cs;

  void make(uint32_t jobs, bool async = true) {
    auto o = tls::offload::start({.threads = 1, .queue_capacity = 1024});
    ASSERT_TRUE(o) << o.error().str();
    off = *o;
    auto wr = tls::worker::create({.max_sessions = 512, .async_jobs = jobs});
    ASSERT_TRUE(wr) << wr.error().str();
    w = std::move(*wr);
    auto cfg = standard_config();
    cfg.async = async;
    auto r = tls::context_set::build(cfg, off);
    ASSERT_TRUE(r) << r.error().str();
    cs = *r;
  }
  void TearDown() override {
    if (off) off->hold(false);
    w.reset();  // before the offload: the worker waits for in-flight completions
    cs.reset();
  }
};

TEST_F(async_fixture, ecdsa_and_rsa_handshakes_sign_on_the_offload) {
  make(16);
  {
    client c({}, "example.test");
    tls::session* s = w->open(cs);
    ASSERT_EQ(handshake(c, *s, *w).st, tls::status::ok);
    EXPECT_EQ(c.peer_key_type(), EVP_PKEY_EC);
    w->close(s);
  }
  EXPECT_EQ(off->completed(), 1u);
  {
    client_opts o;
    o.sigalgs = "rsa_pss_rsae_sha256";
    client c(o, "example.test");
    tls::session* s = w->open(cs);
    ASSERT_EQ(handshake(c, *s, *w).st, tls::status::ok);
    EXPECT_EQ(c.peer_key_type(), EVP_PKEY_RSA);
    w->close(s);
  }
  {  // TLS 1.2 ECDHE-RSA signs ServerKeyExchange through the same hook
    client_opts o;
    o.max_version = TLS1_2_VERSION;
    o.ciphers = "ECDHE-RSA-AES128-GCM-SHA256";
    client c(o, "example.test");
    tls::session* s = w->open(cs);
    ASSERT_EQ(handshake(c, *s, *w).st, tls::status::ok);
    w->close(s);
  }
  EXPECT_EQ(off->completed(), 3u);
  EXPECT_EQ(w->stats().async_pauses.get(), 3u);
  EXPECT_EQ(w->stats().async_completions.get(), 3u);
  EXPECT_EQ(off->inline_fallbacks(), 0u);
  EXPECT_EQ(w->open_sessions(), 0u);
}

TEST_F(async_fixture, async_off_signs_in_place) {
  make(16, false);
  client c({}, "example.test");
  tls::session* s = w->open(cs);
  ASSERT_EQ(handshake(c, *s, *w).st, tls::status::ok);
  EXPECT_EQ(off->completed(), 0u);
  EXPECT_EQ(w->stats().async_pauses.get(), 0u);
  w->close(s);
}

// Many handshakes in flight on one thread: while the offload holds 200+ signatures, the loop keeps
// iterating (each iteration is a poll that returns at once); released, every handshake completes.
TEST_F(async_fixture, hundreds_of_concurrent_handshakes_on_one_thread) {
  constexpr int n = 256;
  make(n);
  // An established connection that must keep moving while the handshakes wait on the offload.
  client bulk_c({}, "example.test");
  tls::session* bulk_s = w->open(cs);
  ASSERT_EQ(handshake(bulk_c, *bulk_s, *w).st, tls::status::ok);
  off->hold(true);
  std::vector<std::unique_ptr<client>> clients;
  std::vector<tls::session*> sessions;
  for (int i = 0; i < n; ++i) {
    clients.push_back(
        std::make_unique<client>(client_opts{}, i % 2 ? "example.test" : "a.wild.test"));
    sessions.push_back(w->open(cs));
    ASSERT_NE(sessions.back(), nullptr);
    SSL_do_handshake(clients[i]->ssl.get());
    to_server(*clients[i], *sessions[i]);
    EXPECT_EQ(sessions[i]->handshake().st, tls::status::want_async);
  }
  EXPECT_EQ(off->in_flight(), static_cast<uint64_t>(n));
  EXPECT_EQ(w->async_pending(), static_cast<size_t>(n));

  // The driving loop is not blocked: 10000 iterations while every signature is pending, and the
  // established connection echoes 1 MiB through the server session meanwhile.
  tls::session* ready[64];
  auto t0 = std::chrono::steady_clock::now();
  size_t iterations = 0;
  for (; iterations < 10000; ++iterations) EXPECT_EQ(w->poll(ready), 0u);
  auto spent = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(spent, std::chrono::milliseconds(500)) << "poll must not wait";
  std::string chunk(16384, 'q'), echoed;
  uint8_t buf[16384];
  for (int i = 0; i < 64; ++i) {
    size_t wn = 0;
    ASSERT_EQ(SSL_write_ex(bulk_c.ssl.get(), chunk.data(), chunk.size(), &wn), 1);
    to_server(bulk_c, *bulk_s);
    tls::io_result r;
    while ((r = bulk_s->read(buf)).st == tls::status::ok) {
      auto wr = bulk_s->write({buf, r.bytes});
      ASSERT_EQ(wr.st, tls::status::ok);
      ASSERT_EQ(wr.bytes, r.bytes);
    }
    ASSERT_EQ(r.st, tls::status::want_read);
    to_client(*bulk_s, bulk_c);
    echoed += bulk_c.read_all();
  }
  EXPECT_EQ(echoed.size(), 64u * 16384u);
  EXPECT_EQ(off->in_flight(), static_cast<uint64_t>(n)) << "all handshakes still waiting";

  off->hold(false);
  int done = 0;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<bool> finished(n, false);
  while (done < n && std::chrono::steady_clock::now() < until) {
    size_t k = w->poll(ready);
    ++iterations;
    for (size_t j = 0; j < k; ++j) {
      tls::session* s = ready[j];
      size_t i = std::find(sessions.begin(), sessions.end(), s) - sessions.begin();
      ASSERT_LT(i, sessions.size());
      // Resume: the job finishes the signature and writes the server flight.
      ASSERT_EQ(s->handshake().st, tls::status::want_read);
      to_client(*s, *clients[i]);
      SSL_do_handshake(clients[i]->ssl.get());
      to_server(*clients[i], *s);
      ASSERT_EQ(s->handshake().st, tls::status::ok);
      EXPECT_TRUE(clients[i]->done());
      finished[i] = true;
      ++done;
    }
  }
  EXPECT_EQ(done, n);
  EXPECT_EQ(w->stats().handshakes_full.get(), static_cast<uint64_t>(n) + 1)
      << "+1: the bulk connection";
  EXPECT_EQ(off->completed(), static_cast<uint64_t>(n) + 1);
  for (auto* s : sessions) w->close(s);
  w->close(bulk_s);
  EXPECT_EQ(w->open_sessions(), 0u);
}

TEST_F(async_fixture, close_while_in_flight_is_deferred_until_completion) {
  make(16);
  off->hold(true);
  client c({}, "example.test");
  tls::session* s = w->open(cs);
  SSL_do_handshake(c.ssl.get());
  to_server(c, *s);
  ASSERT_EQ(s->handshake().st, tls::status::want_async);
  w->close(s);
  EXPECT_EQ(w->open_sessions(), 1u) << "SSL must not be freed while the job is in flight";
  EXPECT_EQ(w->stats().deferred_frees.get(), 1u);
  off->hold(false);
  tls::session* ready[8];
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (w->open_sessions() != 0 && std::chrono::steady_clock::now() < until)
    EXPECT_EQ(w->poll(ready), 0u);
  EXPECT_EQ(w->open_sessions(), 0u);
  EXPECT_EQ(w->async_pending(), 0u);
  // The job went back to the pool: another handshake still gets one.
  client c2({}, "example.test");
  tls::session* s2 = w->open(cs);
  EXPECT_EQ(handshake(c2, *s2, *w).st, tls::status::ok);
  w->close(s2);
}

TEST_F(async_fixture, spurious_resumes_pause_again) {
  make(16);
  off->hold(true);
  client c({}, "example.test");
  tls::session* s = w->open(cs);
  SSL_do_handshake(c.ssl.get());
  to_server(c, *s);
  ASSERT_EQ(s->handshake().st, tls::status::want_async);
  // Resume the paused job behind the session's back: the key method sees no result and re-pauses.
  for (int i = 0; i < 5; ++i) {
    int r = SSL_do_handshake(s->native_handle());
    EXPECT_EQ(r, -1);
    EXPECT_EQ(SSL_get_error(s->native_handle(), r), SSL_ERROR_WANT_ASYNC);
  }
  EXPECT_EQ(s->handshake().st, tls::status::want_async) << "session waits for the completion";
  EXPECT_EQ(off->in_flight(), 1u);
  off->hold(false);
  ASSERT_TRUE(wait_async(*w, s));
  EXPECT_EQ(handshake(c, *s, *w).st, tls::status::ok);
  EXPECT_EQ(off->completed(), 1u);
  w->close(s);
}

TEST_F(async_fixture, exhausted_job_pool_is_back_pressure_not_failure) {
  make(4);
  off->hold(true);
  constexpr int n = 10;
  std::vector<std::unique_ptr<client>> clients;
  std::vector<tls::session*> sessions;
  for (int i = 0; i < n; ++i) {
    clients.push_back(std::make_unique<client>(client_opts{}, "example.test"));
    sessions.push_back(w->open(cs));
    SSL_do_handshake(clients[i]->ssl.get());
    to_server(*clients[i], *sessions[i]);
    EXPECT_EQ(sessions[i]->handshake().st, tls::status::want_async);
  }
  EXPECT_EQ(off->in_flight(), 4u);
  EXPECT_EQ(w->stats().async_job_backpressure.get(), 6u);
  off->hold(false);
  int done = 0;
  tls::session* ready[16];
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (done < n && std::chrono::steady_clock::now() < until) {
    size_t k = w->poll(ready);
    for (size_t j = 0; j < k; ++j) {
      tls::session* s = ready[j];
      size_t i = std::find(sessions.begin(), sessions.end(), s) - sessions.begin();
      auto r = s->handshake();
      if (r.st == tls::status::want_async) continue;  // retried, still no job or paused again
      ASSERT_EQ(r.st, tls::status::want_read) << "session " << i << " done=" << s->handshake_done();
      to_client(*s, *clients[i]);
      SSL_do_handshake(clients[i]->ssl.get());
      to_server(*clients[i], *s);
      ASSERT_EQ(s->handshake().st, tls::status::ok);
      ++done;
    }
  }
  EXPECT_EQ(done, n);
  for (auto* s : sessions) w->close(s);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return edge_test::run_all_tests();
}
