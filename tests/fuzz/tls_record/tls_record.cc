// Fuzz target: TLS records and handshakes into a server tls::session. Contexts, the worker, the
// offload and the client SSL_CTX are built once (LLVMFuzzerInitialize); an input costs at most one
// handshake. Two input shapes:
//
//  - raw (first byte is not 0xED): the bytes are the client's first flight, fed as they are (in
//    chunks chosen by the input length) to a server session; libFuzzer mutates them byte by byte,
//    and the committed ClientHellos, truncations and malformed records keep their meaning.
//  - scripted (first byte 0xED): a real OpenSSL client in memory, configured by the next bytes
//    (server context: plain / mTLS optional / async offload; client version, certificate, SNI,
//    ALPN, groups, resumption), talks to the session; then a script of operations runs after the
//    handshake (application data both ways, KeyUpdate, renegotiation, close_notify, raw bytes and
//    corrupted ciphertext), or, in the ClientHello mode, the fuzzer's XOR edits are applied to the
//    client's real ClientHello before the server sees it.
//
// Invariants on every input: no crash, leak or hang; a failure is counted exactly once with a
// reason; the first bytes sent back are a TLS record; a session that completed a handshake holds a
// host-name SNI and a printable CN; the session pool returns to empty; no OpenSSL error is left
// queued.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <thread>

#include "tls/context.hh"
#include "tls/hostname.hh"
#include "tls/offload.hh"
#include "tls/session.hh"
#include "tls/worker.hh"

namespace {

struct state {
  std::shared_ptr<tls::offload> off;
  tls::context_set_ptr sync_cs, mtls_cs, async_cs;
  std::unique_ptr<tls::worker> w;
  tls::ssl_ctx_ptr client_ctx, client_cert_ctx;
  SSL_SESSION* saved = nullptr;  // the last session a scripted client got, for resumption
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

// Reads the input front to back; past the end it yields zeros.
struct reader {
  std::span<const uint8_t> in;
  size_t pos = 0;
  bool empty() const { return pos >= in.size(); }
  uint8_t u8() { return pos < in.size() ? in[pos++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() << 8 | u8()); }
  std::span<const uint8_t> bytes(size_t n) {
    n = std::min(n, in.size() - std::min(pos, in.size()));
    auto s = in.subspan(pos, n);
    pos += n;
    return s;
  }
};

// Runs handshake() to a status other than want_async (waiting for the offload, bounded).
tls::io_result settle(tls::session* s, tls::io_result r) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (r.st == tls::status::want_async) {
    tls::session* ready[4];
    if (g->w->poll(ready) == 0) {
      if (std::chrono::steady_clock::now() > deadline) die("async completion never arrived");
      std::this_thread::yield();
      continue;
    }
    r = s->handshake();
  }
  return r;
}

struct server_out {
  bool first = true;
  uint8_t buf[16384];
  // Drains the session; checks the first byte; hands the bytes to `sink` (a client BIO or nothing).
  void drain(tls::session* s, BIO* sink) {
    for (size_t n; (n = s->drain(buf)) > 0;) {
      if (first && buf[0] != 0x16 && buf[0] != 0x15) die("non-TLS output");
      first = false;
      if (sink != nullptr) BIO_write(sink, buf, static_cast<int>(n));
    }
  }
};

void check_end(tls::session* s, tls::io_result r, uint64_t errors_before) {
  if (s->failed()) {
    if (s->failure() == tls::error_reason::none) die("error without a reason");
    if (errors_total(g->w->stats()) != errors_before + 1) die("error not counted exactly once");
  } else {
    if (r.st == tls::status::error) die("error status without a failure");
    if (errors_total(g->w->stats()) != errors_before) die("error counted without a failure");
  }
  if (s->handshake_done()) {
    const auto& i = s->info();
    if (!i.sni.empty() && !tls::valid_host_name(i.sni)) die("invalid SNI passed on");
    if (!i.client_cn.empty() && !tls::printable_utf8(i.client_cn)) die("unprintable CN passed on");
  }
}

void close_and_drain(tls::session* s) {
  tls::worker& w = *g->w;
  w.close(s);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (w.open_sessions() != 0) {
    tls::session* ready[4];
    w.poll(ready);
    if (std::chrono::steady_clock::now() > deadline) die("session never returned to the pool");
  }
  if (ERR_peek_error() != 0) die("OpenSSL error queue left non-empty");
}

void run_raw(const tls::context_set_ptr& cs, std::span<const uint8_t> in) {
  tls::worker& w = *g->w;
  const uint64_t errors_before = errors_total(w.stats());
  tls::session* s = w.open(cs);
  if (s == nullptr) die("session pool exhausted");
  tls::io_result r{};
  server_out out;
  // Feed in chunks (the length's low bits pick the chunk size) so record reassembly is exercised.
  const size_t chunk = in.size() % 7 == 0 ? 1 : in.size() % 3 == 0 ? 5 : in.size();
  size_t off = 0;
  for (int rounds = 0; rounds < 20000; ++rounds) {
    off += s->feed(in.subspan(off, std::min(chunk, in.size() - off)));
    r = settle(s, s->handshake());
    out.drain(s, nullptr);
    if (r.st != tls::status::want_read || off == in.size()) break;
  }
  if (r.st != tls::status::error && r.st != tls::status::want_read && r.st != tls::status::ok)
    die("unexpected status");
  check_end(s, r, errors_before);
  close_and_drain(s);
}

// --- scripted client -----------------------------------------------------------------------------

const char* const kSni[] = {
    nullptr,        "example.test",  "www.example.test",  "a.wild.test",
    "unknown.test", "EXAMPLE.TEST.", "my_host.wild.test", "example.test\r\nX-Injected: 1",
    "a..b",         "-x.test",       "caf\xc3\xa9.test"};
constexpr size_t kSniCount = sizeof kSni / sizeof kSni[0];

struct client {
  tls::ssl_ptr ssl;
  BIO* rbio = nullptr;  // server -> client
  BIO* wbio = nullptr;  // client -> server
  std::string sni;
};

// Configures a client from the input: version, certificate, SNI, ALPN, groups, resumption.
bool make_client(client& c, reader& rd, uint8_t flags) {
  SSL_CTX* ctx = (flags & 0x08) ? g->client_cert_ctx.get() : g->client_ctx.get();
  c.ssl.reset(SSL_new(ctx));
  if (!c.ssl) return false;
  SSL* s = c.ssl.get();
  c.rbio = BIO_new(BIO_s_mem());
  c.wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(c.rbio, -1);
  BIO_set_mem_eof_return(c.wbio, -1);
  SSL_set_bio(s, c.rbio, c.wbio);
  SSL_set_connect_state(s);
  const uint8_t v = rd.u8();
  if (v & 1) SSL_set_max_proto_version(s, TLS1_2_VERSION);
  if (v & 2) SSL_set_min_proto_version(s, TLS1_3_VERSION);
  if (v & 4) SSL_set1_groups_list(s, "P-256:P-384");
  if (v & 8) SSL_set1_sigalgs_list(s, "RSA-PSS+SHA256:RSA+SHA256");
  if (v & 16) SSL_set_tlsext_status_type(s, TLSEXT_STATUSTYPE_ocsp);
  if (v & 32) SSL_set_cipher_list(s, "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA");
  // SNI: a table entry, or bytes from the input (any byte but NUL; the client API stops there).
  const uint8_t sn = rd.u8();
  if (sn < kSniCount) {
    if (kSni[sn] != nullptr) c.sni = kSni[sn];
  } else if (sn >= 0x80) {
    auto b = rd.bytes(rd.u8());
    c.sni.assign(reinterpret_cast<const char*>(b.data()), b.size());
    c.sni = c.sni.substr(0, c.sni.find('\0'));
  }
  if (!c.sni.empty()) SSL_set_tlsext_host_name(s, c.sni.c_str());
  // ALPN: a bitmask of protocols, or a raw protocol-list from the input.
  const uint8_t al = rd.u8();
  std::string wire;
  if (al & 0x80) {
    auto b = rd.bytes(rd.u8());
    wire.assign(reinterpret_cast<const char*>(b.data()), b.size());
  } else {
    const char* const protos[] = {"h2", "http/1.1", "h3", "spdy/3.1", "x"};
    for (int i = 0; i < 5; ++i)
      if (al & (1 << i)) wire += static_cast<char>(std::strlen(protos[i])) + std::string(protos[i]);
  }
  if (!wire.empty())
    SSL_set_alpn_protos(s, reinterpret_cast<const unsigned char*>(wire.data()),
                        static_cast<unsigned>(wire.size()));
  if ((v & 64) && g->saved != nullptr) SSL_set_session(s, g->saved);
  ERR_clear_error();
  return true;
}

// Moves bytes both ways and lets both ends run until neither makes progress.
tls::io_result pump(client& c, tls::session* s, server_out& out, tls::io_result r) {
  uint8_t buf[16384];
  for (int round = 0; round < 64; ++round) {
    bool moved = false;
    if (!SSL_is_init_finished(c.ssl.get())) SSL_do_handshake(c.ssl.get());
    for (int n; (n = BIO_read(c.wbio, buf, sizeof buf)) > 0;) {
      if (s->feed({buf, static_cast<size_t>(n)}) != 0) moved = true;
    }
    if (s->failed()) {
      r = {tls::status::error, s->failure()};
    } else if (!s->handshake_done()) {
      r = settle(s, s->handshake());
    } else {
      for (int i = 0; i < 8; ++i) {
        r = s->read(buf);
        if (r.st != tls::status::ok || r.bytes == 0) break;
        moved = true;
      }
    }
    const size_t before = BIO_ctrl_pending(c.rbio);
    out.drain(s, c.rbio);
    if (BIO_ctrl_pending(c.rbio) != before) moved = true;
    if (SSL_is_init_finished(c.ssl.get())) {
      size_t n = 0;
      while (SSL_read_ex(c.ssl.get(), buf, sizeof buf, &n) == 1) moved = true;
    }
    ERR_clear_error();
    if (!moved || r.st == tls::status::error || r.st == tls::status::closed) break;
  }
  return r;
}

void run_scripted(std::span<const uint8_t> in) {
  reader rd{in};
  const uint8_t flags = rd.u8();
  const tls::context_set_ptr& cs = (flags & 3) == 1   ? g->mtls_cs
                                   : (flags & 3) == 2 ? g->async_cs
                                                      : g->sync_cs;
  tls::worker& w = *g->w;
  const uint64_t errors_before = errors_total(w.stats());
  client c;
  if (!make_client(c, rd, flags)) {
    ERR_clear_error();
    return;
  }
  tls::session* s = w.open(cs);
  if (s == nullptr) die("session pool exhausted");
  server_out out;
  tls::io_result r{tls::status::want_read};

  if (flags & 0x04) {
    // ClientHello mode: the client's real first flight with the fuzzer's XOR edits.
    SSL_do_handshake(c.ssl.get());
    ERR_clear_error();
    std::string hello;
    uint8_t buf[4096];
    for (int n; (n = BIO_read(c.wbio, buf, sizeof buf)) > 0;)
      hello.append(reinterpret_cast<char*>(buf), n);
    for (int edits = rd.u8() % 16; edits > 0 && !hello.empty(); --edits) {
      const uint16_t at = rd.u16();
      hello[at % hello.size()] ^= static_cast<char>(rd.u8());
    }
    s->feed({reinterpret_cast<const uint8_t*>(hello.data()), hello.size()});
    r = settle(s, s->handshake());
    out.drain(s, c.rbio);
  }
  r = pump(c, s, out, r);
  if (s->handshake_done() && SSL_is_init_finished(c.ssl.get()) && (flags & 0x10)) {
    if (g->saved != nullptr) SSL_SESSION_free(g->saved);
    g->saved = SSL_get1_session(c.ssl.get());
  }

  // Post-handshake script.
  for (int ops = 0; ops < 32 && !rd.empty() && r.st != tls::status::error; ++ops) {
    const uint8_t op = rd.u8();
    SSL* cl = c.ssl.get();
    switch (op % 8) {
      case 0: {  // client application data
        auto b = rd.bytes(rd.u16() % 20000);
        size_t n = 0;
        if (!b.empty()) SSL_write_ex(cl, b.data(), b.size(), &n);
        break;
      }
      case 1: {
        SSL_key_update(cl, (op & 8) ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED);
        size_t n = 0;
        SSL_write_ex(cl, "k", 1, &n);
        break;
      }
      case 2:
        SSL_renegotiate(cl);
        SSL_do_handshake(cl);
        break;
      case 3: {  // raw bytes after the handshake: forged records, alerts, truncated headers
        auto b = rd.bytes(rd.u16() % 4096);
        s->feed(b);
        break;
      }
      case 4: {  // server application data
        uint8_t data[2048];
        std::memset(data, op, sizeof data);
        s->write({data, static_cast<size_t>(1 + rd.u8() * 8)});
        break;
      }
      case 5:
        SSL_shutdown(cl);
        break;
      case 6:
        s->shutdown();
        break;
      case 7: {  // corrupt one byte of the client's next record (header, ciphertext or tag)
        size_t n = 0;
        SSL_write_ex(cl, "corrupt me", 10, &n);
        uint8_t buf[512];
        const int got = BIO_read(c.wbio, buf, sizeof buf);
        if (got > 0) {
          buf[rd.u8() % got] ^= static_cast<uint8_t>(rd.u8() | 1);
          s->feed({buf, static_cast<size_t>(got)});
        }
        break;
      }
    }
    ERR_clear_error();
    r = pump(c, s, out, r);
  }
  check_end(s, r, errors_before);
  c.ssl.reset();
  ERR_clear_error();
  close_and_drain(s);
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
  cfg.service = "fuzz";
  cfg.certs = {{d + "/ecdsa.pem", d + "/ecdsa.key", {}, d + "/ecdsa.ocsp"},
               {d + "/rsa.pem", d + "/rsa.key", {}, {}},
               {d + "/wild.pem", d + "/wild.key", {}, {}}};
  cfg.ticket_key_file = d + "/ticket1.key";
  cfg.max_key_updates = 4;
  g = new state();
  auto off = tls::offload::start({.threads = 1});
  if (!off) die("offload");
  g->off = *off;
  cfg.async = false;
  auto a = tls::context_set::build(cfg);
  auto m = [&] {
    auto c = cfg;
    c.client_auth = {
        .enabled = true, .ca_file = d + "/client-ca.pem", .verify_depth = 2, .required = false};
    return tls::context_set::build(c);
  }();
  cfg.async = true;
  auto b = tls::context_set::build(cfg, g->off);
  auto w = tls::worker::create({.max_sessions = 4, .async_jobs = 4});
  if (!a || !m || !b || !w) die("context/worker set-up");
  g->sync_cs = *a;
  g->mtls_cs = *m;
  g->async_cs = *b;
  g->w = std::move(*w);
  for (int with_cert = 0; with_cert < 2; ++with_cert) {
    tls::ssl_ctx_ptr c(SSL_CTX_new(TLS_client_method()));
    if (!c) die("client SSL_CTX");
    SSL_CTX_set_verify(c.get(), SSL_VERIFY_NONE, nullptr);  // fast: the fuzzer is the peer
    SSL_CTX_set_session_cache_mode(c.get(),
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (with_cert &&
        (SSL_CTX_use_certificate_file(c.get(), (d + "/client.pem").c_str(), SSL_FILETYPE_PEM) !=
             1 ||
         SSL_CTX_use_PrivateKey_file(c.get(), (d + "/client.key").c_str(), SSL_FILETYPE_PEM) != 1))
      die("client certificate");
    (with_cert ? g->client_cert_ctx : g->client_ctx) = std::move(c);
  }
  ERR_clear_error();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  if (size > 0 && data[0] == 0xED) {
    run_scripted(in.subspan(1));
  } else {
    run_raw(g->sync_cs, in);
    // The async path only differs until the private-key operation: worth it for ClientHellos.
    if (size > 5 && data[0] == 0x16) run_raw(g->async_cs, in);
  }
  return 0;
}
