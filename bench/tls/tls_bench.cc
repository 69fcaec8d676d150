// In-process TLS bench: server CPU per handshake (TLS 1.3 full with ECDSA P-256 and RSA-2048,
// resumed with a ticket) and bulk throughput through tls::session, async offload on and off.
// The client is plain OpenSSL on the same thread; only server-side calls are timed (thread CPU
// clock) plus the crypto threads' CPU, so the figures are the server's cost. bench/tls/run.sh
// prints them as ratios to `openssl speed` measured in the same run.
//
// Usage: tls_bench CERT_DIR [handshakes]
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "tls/context.hh"
#include "tls/offload.hh"
#include "tls/session.hh"
#include "tls/worker.hh"

namespace {

uint64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "tls_bench: %s\n", why.c_str());
  std::exit(1);
}

struct slot {
  SSL* c = nullptr;
  BIO* crb = nullptr;
  BIO* cwb = nullptr;
  tls::session* s = nullptr;
  bool waiting = false;
};

struct bench {
  std::string dir;
  tls::worker* w = nullptr;
  tls::offload* off = nullptr;
  SSL_CTX* client_ctx = nullptr;
  uint64_t server_ns = 0;
  double last_offload_us = 0;  // crypto-thread share of the last handshakes() figure
  std::vector<uint8_t> buf = std::vector<uint8_t>(1 << 16);

  void new_client(slot& sl, SSL_SESSION* resume) {
    sl.c = SSL_new(client_ctx);
    sl.crb = BIO_new(BIO_s_mem());
    sl.cwb = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(sl.crb, -1);
    BIO_set_mem_eof_return(sl.cwb, -1);
    SSL_set_bio(sl.c, sl.crb, sl.cwb);
    SSL_set_connect_state(sl.c);
    SSL_set_tlsext_host_name(sl.c, "example.test");
    if (resume != nullptr) {
      SSL_SESSION* copy = SSL_SESSION_dup(resume);
      SSL_set_session(sl.c, copy);
      SSL_SESSION_free(copy);
    }
  }
  void c_to_s(slot& sl) {
    for (int n; (n = BIO_read(sl.cwb, buf.data(), static_cast<int>(buf.size()))) > 0;) {
      uint64_t t0 = thread_cpu_ns();
      size_t fed = sl.s->feed({buf.data(), static_cast<size_t>(n)});
      server_ns += thread_cpu_ns() - t0;
      if (fed != static_cast<size_t>(n)) die("input bound hit in handshake");
    }
  }
  void s_to_c(slot& sl) {
    uint64_t t0 = thread_cpu_ns();
    size_t n = sl.s->drain(buf);
    server_ns += thread_cpu_ns() - t0;
    while (n > 0) {
      BIO_write(sl.crb, buf.data(), static_cast<int>(n));
      t0 = thread_cpu_ns();
      n = sl.s->drain(buf);
      server_ns += thread_cpu_ns() - t0;
    }
  }
  // Advances one handshake as far as it goes; true when it completed.
  bool step(slot& sl, const tls::context_set_ptr& cs, SSL_SESSION* resume, SSL_SESSION** keep) {
    if (sl.s == nullptr) {
      new_client(sl, resume);
      uint64_t t0 = thread_cpu_ns();
      sl.s = w->open(cs, &sl);
      server_ns += thread_cpu_ns() - t0;
      if (sl.s == nullptr) die("session pool");
    }
    for (int i = 0; i < 8; ++i) {
      if (SSL_is_init_finished(sl.c) != 1) SSL_do_handshake(sl.c);
      c_to_s(sl);
      uint64_t t0 = thread_cpu_ns();
      tls::io_result r = sl.s->handshake();
      server_ns += thread_cpu_ns() - t0;
      if (r.st == tls::status::want_async) {
        sl.waiting = true;
        return false;
      }
      s_to_c(sl);
      if (r.st == tls::status::error)
        die(std::string("server handshake failed: ") + tls::to_string(r.reason));
      if (r.st == tls::status::ok && SSL_is_init_finished(sl.c) == 1) {
        char tmp[64];
        SSL_read(sl.c, tmp, sizeof tmp);  // NewSessionTicket
        ERR_clear_error();
        if (keep != nullptr) *keep = SSL_get1_session(sl.c);
        t0 = thread_cpu_ns();
        w->close(sl.s);
        server_ns += thread_cpu_ns() - t0;
        SSL_set_shutdown(sl.c,
                         SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);  // keep its session resumable
        SSL_free(sl.c);
        sl = slot{};
        return true;
      }
    }
    die("handshake made no progress");
  }

  // n handshakes, `concurrency` in flight; returns {server CPU µs per handshake, handshakes/s
  // wall}.
  std::pair<double, double> handshakes(const tls::context_set_ptr& cs, int n, int concurrency,
                                       SSL_SESSION* resume) {
    std::vector<slot> slots(concurrency);
    server_ns = 0;
    const uint64_t off0 = off->cpu_ns();
    auto t0 = std::chrono::steady_clock::now();
    int started = 0, done = 0;
    tls::session* ready[256];
    while (done < n) {
      uint64_t p0 = thread_cpu_ns();
      size_t k = w->poll(ready);
      server_ns += thread_cpu_ns() - p0;
      for (size_t i = 0; i < k; ++i) static_cast<slot*>(ready[i]->user)->waiting = false;
      for (auto& sl : slots) {
        if (sl.waiting) continue;
        if (sl.s == nullptr && started >= n) continue;
        if (sl.s == nullptr) ++started;
        if (step(sl, cs, resume, nullptr)) ++done;
      }
    }
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const uint64_t off_ns = off->cpu_ns() - off0;
    last_offload_us = static_cast<double>(off_ns) / n / 1000.0;
    double cpu_ns = static_cast<double>(server_ns + off_ns);
    return {cpu_ns / n / 1000.0, n / wall};
  }

  SSL_SESSION* ticket(const tls::context_set_ptr& cs) {
    slot sl;
    SSL_SESSION* kept = nullptr;
    tls::session* ready[4];
    while (!step(sl, cs, nullptr, &kept)) {
      while (w->poll(ready) == 0) {
      }
      sl.waiting = false;
    }
    return kept;
  }

  // Bulk: `total` bytes each way; returns MB per second of server CPU {encrypt, decrypt}.
  std::pair<double, double> bulk(const tls::context_set_ptr& cs, size_t total) {
    slot sl;
    SSL_SESSION* unused = nullptr;
    tls::session* ready[4];
    // Keep the session open: run the handshake by hand.
    new_client(sl, nullptr);
    sl.s = w->open(cs, &sl);
    for (int i = 0; i < 16 && !(sl.s->handshake_done() && SSL_is_init_finished(sl.c) == 1); ++i) {
      if (SSL_is_init_finished(sl.c) != 1) SSL_do_handshake(sl.c);
      c_to_s(sl);
      tls::io_result r = sl.s->handshake();
      while (r.st == tls::status::want_async) {
        while (w->poll(ready) == 0) {
        }
        r = sl.s->handshake();
      }
      s_to_c(sl);
    }
    (void)unused;
    std::vector<uint8_t> chunk(16384, 0x5a);
    // server → client: encrypt and drain (the ciphertext is dropped; only the server is timed).
    uint64_t t0 = thread_cpu_ns();
    for (size_t sent = 0; sent < total;) {
      tls::io_result r = sl.s->write(chunk);
      if (r.st != tls::status::ok) die("bulk write");
      sent += r.bytes;
      while (sl.s->drain(buf) > 0) {
      }
    }
    const double out_mbs = total / 1e6 / ((thread_cpu_ns() - t0) / 1e9);
    // client → server: the client encrypts everything first, then the server is timed alone.
    std::string wire;
    wire.reserve(total + total / 64);
    for (size_t sent = 0; sent < total; sent += chunk.size()) {
      SSL_write(sl.c, chunk.data(), static_cast<int>(chunk.size()));
      for (int n; (n = BIO_read(sl.cwb, buf.data(), static_cast<int>(buf.size()))) > 0;)
        wire.append(reinterpret_cast<const char*>(buf.data()), static_cast<size_t>(n));
    }
    size_t got = 0;
    t0 = thread_cpu_ns();
    for (size_t off = 0; off < wire.size();) {
      off += sl.s->feed({reinterpret_cast<const uint8_t*>(wire.data()) + off, wire.size() - off});
      tls::io_result r;
      while ((r = sl.s->read(buf)).st == tls::status::ok) got += r.bytes;
      if (r.st != tls::status::want_read) die("bulk read");
    }
    const double in_mbs = total / 1e6 / ((thread_cpu_ns() - t0) / 1e9);
    if (got != total) die("bulk read lost data");
    w->close(sl.s);
    SSL_set_shutdown(sl.c,
                     SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);  // keep its session resumable
    SSL_free(sl.c);
    return {out_mbs, in_mbs};
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: tls_bench CERT_DIR [handshakes]");
  const std::string d = argv[1];
  const int n = argc > 2 ? std::atoi(argv[2]) : 2000;
  auto off = tls::offload::start({.threads = 1});
  auto w = tls::worker::create({.max_sessions = 1024, .async_jobs = 256});
  if (!off || !w) die("offload/worker");
  tls::server_config cfg;
  cfg.certs = {{d + "/ecdsa.pem", d + "/ecdsa.key", {}, {}},
               {d + "/rsa.pem", d + "/rsa.key", {}, {}}};
  cfg.ticket_key_file = d + "/ticket1.key";
  cfg.async = false;
  auto sync_cs = tls::context_set::build(cfg);
  cfg.async = true;
  auto async_cs = tls::context_set::build(cfg, *off);
  if (!sync_cs || !async_cs) die("context_set");

  bench b;
  b.dir = d;
  b.w = w->get();
  b.off = off->get();
  SSL_CTX* ecdsa_client = SSL_CTX_new(TLS_client_method());
  SSL_CTX* rsa_client = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set1_sigalgs_list(rsa_client, "rsa_pss_rsae_sha256");
  for (SSL_CTX* c : {ecdsa_client, rsa_client}) {
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set1_groups_list(c, "X25519");
  }

  struct mode {
    const char* name;
    tls::context_set_ptr cs;
    int concurrency;
  } modes[] = {{"async_off", *sync_cs, 1}, {"async_on", *async_cs, 64}};
  for (const auto& m : modes) {
    b.client_ctx = ecdsa_client;
    b.handshakes(m.cs, 50, m.concurrency, nullptr);  // warm-up
    auto [ecdsa_us, ecdsa_rate] = b.handshakes(m.cs, n, m.concurrency, nullptr);
    std::printf("full_ecdsa_%s_server_us %.1f\nfull_ecdsa_%s_wall_hs_per_s %.0f\n", m.name,
                ecdsa_us, m.name, ecdsa_rate);
    std::printf("full_ecdsa_%s_of_which_offload_us %.1f\n", m.name, b.last_offload_us);
    SSL_SESSION* t = b.ticket(m.cs);
    if (t == nullptr || SSL_SESSION_is_resumable(t) != 1) die("no resumable ticket");
    auto [res_us, res_rate] = b.handshakes(m.cs, n, m.concurrency, t);
    SSL_SESSION_free(t);
    std::printf("resumed_%s_server_us %.1f\nresumed_%s_wall_hs_per_s %.0f\n", m.name, res_us,
                m.name, res_rate);
    b.client_ctx = rsa_client;
    auto [rsa_us, rsa_rate] = b.handshakes(m.cs, n / 4, m.concurrency, nullptr);
    std::printf("full_rsa_%s_server_us %.1f\nfull_rsa_%s_wall_hs_per_s %.0f\n", m.name, rsa_us,
                m.name, rsa_rate);
    std::printf("full_rsa_%s_of_which_offload_us %.1f\n", m.name, b.last_offload_us);
    b.client_ctx = ecdsa_client;
    auto [out_mbs, in_mbs] = b.bulk(m.cs, 128u << 20);
    std::printf("bulk_encrypt_%s_MB_per_cpu_s %.0f\nbulk_decrypt_%s_MB_per_cpu_s %.0f\n", m.name,
                out_mbs, m.name, in_mbs);
  }
  // The cost of TLS 1.3 tickets on a full handshake (issue 4: choose the default by measurement).
  b.client_ctx = ecdsa_client;
  for (int tickets : {0, 1, 2, 4}) {
    cfg.async = false;
    cfg.tls13_tickets = tickets;
    auto cs = tls::context_set::build(cfg);
    if (!cs) die("context_set");
    auto [us, rate] = b.handshakes(*cs, n / 2, 1, nullptr);
    (void)rate;
    std::printf("full_ecdsa_tickets_%d_server_us %.1f\n", tickets, us);
  }
  const auto& st = (*w)->stats();
  std::printf(
      "stats full=%llu resumed=%llu async_pauses=%llu backpressure=%llu failures=%llu "
      "offload_inline=%llu\n",
      static_cast<unsigned long long>(st.handshakes_full.get()),
      static_cast<unsigned long long>(st.handshakes_resumed.get()),
      static_cast<unsigned long long>(st.async_pauses.get()),
      static_cast<unsigned long long>(st.async_job_backpressure.get()),
      static_cast<unsigned long long>(st.handshake_failures.get()),
      static_cast<unsigned long long>((*off)->inline_fallbacks()));
  SSL_CTX_free(ecdsa_client);
  SSL_CTX_free(rsa_client);
  w->reset();
  return 0;
}
