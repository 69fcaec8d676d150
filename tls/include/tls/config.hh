#pragma once
// What one TLS service (a VIP of kind `tls`) asks for. edge/ fills this from the YAML config; tls/
// turns it into an immutable context_set. Paths are PEM files unless said otherwise.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace tls {

struct cert_config {
  std::string cert_file;  // leaf first, then the chain
  std::string key_file;   // ECDSA or RSA private key, unencrypted
  // SNI names served by this certificate ("example.com", "*.example.com"). Empty: the DNS names of
  // the certificate's subjectAltName (or its CN when it has none). An ECDSA and an RSA certificate
  // with the same names form one group: the handshake picks what the client supports.
  std::vector<std::string> names;
  std::string ocsp_file;  // DER OCSP response stapled for this certificate; empty: none
};

struct client_auth_config {
  bool enabled = false;
  std::string ca_file;  // CA bundle client certificates must chain to
  int verify_depth = 3;
  bool required = true;  // false: a certificate is asked for but a client may send none
};

struct server_config {
  // The service's name. With the client-auth policy it scopes session resumption: a session
  // (ticket) resumes only on the service, and under the CA and required flag, that issued it, even
  // when services share a ticket key file.
  std::string service;
  std::vector<cert_config> certs;
  std::string default_name;  // group used without SNI or for unknown names; empty: the first cert's

  bool allow_tls12 = true;  // TLS 1.3 is always on; 1.0/1.1/SSLv3 never
  std::string tls12_ciphers =
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  std::string tls13_ciphersuites =
      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
  std::string groups = "X25519:P-256:P-384";

  std::vector<std::string> alpn = {"h2", "http/1.1"};  // server preference order; empty: no ALPN

  // Session tickets. ticket_key_file: binary, a multiple of 80 bytes (16 name, 32 AES-256 key,
  // 32 HMAC-SHA256 key); the first key encrypts new tickets, all decrypt. Shared by a fleet.
  // Empty: one random key per process (tickets only resume on the same process).
  bool tickets = true;
  std::string ticket_key_file;
  std::chrono::seconds ticket_lifetime{7200};
  // A key that disappears from the file on reload keeps decrypting this long.
  std::chrono::seconds ticket_key_grace{7200};
  // TLS 1.3 tickets sent after a full handshake. Each costs an encryption and ~200 bytes; one is
  // enough for browsers that resume one connection at a time.
  int tls13_tickets = 1;

  client_auth_config client_auth;

  // Renegotiation is always refused (SSL_OP_NO_RENEGOTIATION); attempts are counted and more than
  // max_renegotiation_attempts closes the connection. Key updates beyond max_key_updates likewise.
  uint32_t max_key_updates = 16;
  uint32_t max_renegotiation_attempts = 1;

  // Private-key operations: async (SSL_MODE_ASYNC during handshakes) through the in-process offload
  // given to context_set::build, or through the external OpenSSL engine named here (e.g.
  // "qatengine"). async = false signs on the worker thread (for comparison and debugging).
  bool async = true;
  std::string engine;
};

}  // namespace tls
