#pragma once
// Test helpers: the test PKI (tests/certs/gen.sh run once per process into a temp dir), an OpenSSL
// client over memory BIOs, and a pump that moves bytes between that client and a tls::session.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tls/context.hh"
#include "tls/session.hh"
#include "tls/worker.hh"

namespace tls_test {

inline const std::string& cert_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/edge-tls-certs-XXXXXX";
    const char* d = mkdtemp(tmpl);
    if (d == nullptr) std::abort();
    std::string cmd = std::string("sh ") + EDGE_TLS_CERTS_SCRIPT + " " + d;
    if (std::system(cmd.c_str()) != 0) std::abort();
    return std::string(d);
  }();
  return dir;
}
inline std::string cert(const char* f) {
  return cert_dir() + "/" + f;
}

// example.test (ECDSA + RSA), *.wild.test, rsa.test (RSA only), default.test as default.
inline tls::server_config standard_config() {
  tls::server_config c;
  c.certs = {
      {cert("ecdsa.pem"), cert("ecdsa.key"), {}, cert("ecdsa.ocsp")},
      {cert("rsa.pem"), cert("rsa.key"), {}, {}},
      {cert("wild.pem"), cert("wild.key"), {}, {}},
      {cert("rsaonly.pem"), cert("rsaonly.key"), {}, {}},
      {cert("default.pem"), cert("default.key"), {}, {}},
  };
  c.default_name = "default.test";
  return c;
}

struct client_opts {
  int max_version = TLS1_3_VERSION;
  int min_version = TLS1_VERSION;
  const char* sigalgs = nullptr;
  const char* ciphers = nullptr;  // TLS 1.2 list
  std::vector<std::string> alpn;
  std::string cert, key;
  bool ocsp = false;
};

struct client {
  tls::ssl_ctx_ptr ctx;
  tls::ssl_ptr ssl;
  BIO* rbio = nullptr;
  BIO* wbio = nullptr;
  int tickets = 0;
  tls::ssl_ptr dummy;

  client(const client_opts& o, const char* sni, SSL_SESSION* resume = nullptr) {
    ctx.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_min_proto_version(ctx.get(), o.min_version);
    SSL_CTX_set_max_proto_version(ctx.get(), o.max_version);
    if (o.min_version < TLS1_2_VERSION) SSL_CTX_set_security_level(ctx.get(), 0);
    SSL_CTX_load_verify_file(ctx.get(), cert("ca.pem").c_str());
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (o.sigalgs != nullptr) SSL_CTX_set1_sigalgs_list(ctx.get(), o.sigalgs);
    if (o.ciphers != nullptr) SSL_CTX_set_cipher_list(ctx.get(), o.ciphers);
    if (!o.alpn.empty()) {
      std::vector<unsigned char> wire;
      for (auto& p : o.alpn) {
        wire.push_back(static_cast<unsigned char>(p.size()));
        wire.insert(wire.end(), p.begin(), p.end());
      }
      SSL_CTX_set_alpn_protos(ctx.get(), wire.data(), static_cast<unsigned>(wire.size()));
    }
    if (!o.cert.empty()) {
      SSL_CTX_use_certificate_file(ctx.get(), o.cert.c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx.get(), o.key.c_str(), SSL_FILETYPE_PEM);
    }
    SSL_CTX_set_session_cache_mode(ctx.get(),
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx.get(), [](SSL* s, SSL_SESSION*) {
      static_cast<client*>(SSL_get_app_data(s))->tickets++;
      return 0;
    });
    ssl.reset(SSL_new(ctx.get()));
    SSL_set_app_data(ssl.get(), this);
    rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rbio, -1);
    BIO_set_mem_eof_return(wbio, -1);
    SSL_set_bio(ssl.get(), rbio, wbio);
    SSL_set_connect_state(ssl.get());
    if (sni != nullptr) {
      SSL_set_tlsext_host_name(ssl.get(), sni);
      SSL_set1_host(ssl.get(), sni);
    }
    if (o.ocsp) SSL_set_tlsext_status_type(ssl.get(), TLSEXT_STATUSTYPE_ocsp);
    if (resume != nullptr) SSL_set_session(ssl.get(), resume);
  }

  // A client freed without a close_notify marks its session not resumable; tests keep sessions.
  ~client() {
    if (ssl) SSL_set_shutdown(ssl.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  }
  std::string backlog;  // ciphertext the server's input bound did not take yet

  bool done() const { return SSL_is_init_finished(ssl.get()) == 1; }
  std::string peer_cn() const {
    X509* x = SSL_get0_peer_certificate(ssl.get());
    if (x == nullptr) return "";
    char buf[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof buf);
    return buf;
  }
  int peer_key_type() const {
    X509* x = SSL_get0_peer_certificate(ssl.get());
    return x == nullptr ? 0 : EVP_PKEY_get_base_id(X509_get0_pubkey(x));
  }
  // Reads whatever application data / tickets are pending; returns plaintext.
  std::string read_all() {
    std::string out;
    char buf[16384];
    for (;;) {
      size_t n = 0;
      if (SSL_read_ex(ssl.get(), buf, sizeof buf, &n) != 1) break;
      out.append(buf, n);
    }
    ERR_clear_error();
    return out;
  }
};

// client → server ciphertext
inline size_t to_server(client& c, tls::session& s) {
  unsigned char buf[16384];
  for (;;) {
    int n = BIO_read(c.wbio, buf, sizeof buf);
    if (n <= 0) break;
    c.backlog.append(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
  }
  size_t fed = s.feed({reinterpret_cast<const uint8_t*>(c.backlog.data()), c.backlog.size()});
  c.backlog.erase(0, fed);
  return fed;
}

// server → client ciphertext
inline size_t to_client(tls::session& s, client& c) {
  size_t moved = 0;
  unsigned char buf[16384];
  for (;;) {
    size_t n = s.drain(buf);
    if (n == 0) break;
    BIO_write(c.rbio, buf, static_cast<int>(n));
    moved += n;
  }
  return moved;
}

// Waits (bounded) for the worker to hand `s` back after an async completion.
inline bool wait_async(tls::worker& w, tls::session* s) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  tls::session* ready[64];
  while (std::chrono::steady_clock::now() < until) {
    size_t n = w.poll(ready);
    for (size_t i = 0; i < n; ++i)
      if (ready[i] == s) return true;
    if (!s->async_pending()) return true;
    std::this_thread::yield();
  }
  return false;
}

// Runs the handshake to its end; returns the server's final status (ok or error).
inline tls::io_result handshake(client& c, tls::session& s, tls::worker& w) {
  tls::io_result r{};
  for (int round = 0; round < 50; ++round) {
    if (!c.done()) {
      ERR_clear_error();
      SSL_do_handshake(c.ssl.get());
    }
    to_server(c, s);
    r = s.handshake();
    while (r.st == tls::status::want_async) {
      if (!wait_async(w, &s)) return r;
      r = s.handshake();
    }
    to_client(s, c);
    if (r.st == tls::status::error) {
      ERR_clear_error();
      SSL_do_handshake(c.ssl.get());  // let the client see the alert
      ERR_clear_error();
      return r;
    }
    if (r.st == tls::status::ok && c.done()) {
      c.read_all();  // NewSessionTicket
      return r;
    }
  }
  return r;
}

}  // namespace tls_test
