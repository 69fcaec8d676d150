// Fuzz target: arbitrary bytes as the first flight of a TLS client into a server session (once with
// private keys signed in place, once through the async offload). Invariants checked on every input:
// no crash or hang, a failure is a counted error with a reason (and what is sent back is a TLS
// record), the session pool returns to empty.
#include <openssl/err.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <thread>

#include "tls/context.hh"
#include "tls/offload.hh"
#include "tls/session.hh"
#include "tls/worker.hh"

namespace {

struct state {
  std::shared_ptr<tls::offload> off;
  tls::context_set_ptr sync_cs, async_cs;
  std::unique_ptr<tls::worker> w;
};

state* g = nullptr;

[[noreturn]] void die(const char* why) {
  std::fprintf(stderr, "tls_record invariant violated: %s\n", why);
  std::abort();
}

uint64_t errors_total(const tls::worker_stats& s) {
  uint64_t n = 0;
  for (const auto& e : s.errors) n += e.get();
  return n;
}

void run_one(const tls::context_set_ptr& cs, std::span<const uint8_t> in) {
  tls::worker& w = *g->w;
  const uint64_t errors_before = errors_total(w.stats());
  tls::session* s = w.open(cs);
  if (s == nullptr) die("session pool exhausted");
  tls::io_result r{};
  uint8_t out[4096];
  size_t off = 0;
  bool wrote_first = false;
  for (int rounds = 0; rounds < 1000; ++rounds) {
    off += s->feed(in.subspan(off));
    r = s->handshake();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (r.st == tls::status::want_async) {
      tls::session* ready[4];
      if (w.poll(ready) == 0) {
        if (std::chrono::steady_clock::now() > deadline) die("async completion never arrived");
        std::this_thread::yield();
        continue;
      }
      r = s->handshake();
    }
    for (size_t n; (n = s->drain(out)) > 0;) {
      // Whatever goes back is TLS: handshake records or an alert.
      if (!wrote_first && out[0] != 0x16 && out[0] != 0x15) die("non-TLS output");
      wrote_first = true;
    }
    if (r.st != tls::status::want_read || off == in.size()) break;
  }
  if (r.st == tls::status::error) {
    if (r.reason == tls::error_reason::none) die("error without a reason");
    if (errors_total(w.stats()) != errors_before + 1) die("error not counted exactly once");
  } else if (r.st != tls::status::want_read && r.st != tls::status::ok) {
    die("unexpected status");
  }
  w.close(s);
  // A close while the offload owes a completion is deferred: drain it.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (w.open_sessions() != 0) {
    tls::session* ready[4];
    w.poll(ready);
    if (std::chrono::steady_clock::now() > deadline) die("session never returned to the pool");
  }
  if (ERR_peek_error() != 0) die("OpenSSL error queue left non-empty");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  char tmpl[] = "/tmp/edge-tls-fuzz-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (dir == nullptr) die("mkdtemp");
  std::string cmd = std::string("sh ") + EDGE_TLS_CERTS_SCRIPT + " " + dir;
  if (std::system(cmd.c_str()) != 0) die("certificate script failed");
  std::string d(dir);
  tls::server_config cfg;
  cfg.certs = {{d + "/ecdsa.pem", d + "/ecdsa.key", {}, d + "/ecdsa.ocsp"},
               {d + "/rsa.pem", d + "/rsa.key", {}, {}},
               {d + "/wild.pem", d + "/wild.key", {}, {}}};
  g = new state();
  auto off = tls::offload::start({.threads = 1});
  if (!off) die("offload");
  g->off = *off;
  cfg.async = false;
  auto a = tls::context_set::build(cfg);
  cfg.async = true;
  auto b = tls::context_set::build(cfg, g->off);
  auto w = tls::worker::create({.max_sessions = 4, .async_jobs = 4});
  if (!a || !b || !w) die("context/worker set-up");
  g->sync_cs = *a;
  g->async_cs = *b;
  g->w = std::move(*w);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  run_one(g->sync_cs, in);
  run_one(g->async_cs, in);
  return 0;
}
