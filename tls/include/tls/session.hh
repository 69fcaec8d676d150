#pragma once
// One TLS connection over memory BIOs: the caller feeds ciphertext from its TCP stream in, reads
// plaintext out, writes plaintext and drains ciphertext to send. It never blocks and never touches
// a socket. Sessions come from a tls::worker (one per worker thread) and go back to it with
// worker::close, which defers the free while a private-key operation is in flight.
#include <openssl/ssl.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "tls/context.hh"

namespace tls {

class worker;

enum class status : uint8_t {
  ok,          // done (bytes says how many, for read/write)
  want_read,   // feed more ciphertext (and drain what is pending first)
  want_write,  // drain ciphertext first: the output bound is reached
  want_async,  // a private-key operation is in flight: worker::poll hands the session back
  closed,      // close_notify received (ours is queued: drain it, then close the stream)
  error,       // fatal: `reason` says why; drain (an alert may be queued) and close
};

// Why a session failed. Named once; counted per worker in worker_stats::errors.
#define TLS_ERROR_REASONS(X)                                                   \
  X(none, "none")                                                              \
  X(handshake_failed, "handshake failed (bad ClientHello, no shared cipher…)") \
  X(client_cert_rejected, "client certificate missing or not verified")        \
  X(bad_sni, "SNI is not a valid host name (refused: unrecognized_name)")      \
  X(protocol, "protocol error after the handshake")                            \
  X(key_update_limit, "too many key updates")                                  \
  X(renegotiation_limit, "too many renegotiation attempts")                    \
  X(internal, "internal error")

enum class error_reason : uint8_t {
#define TLS_X(name, text) name,
  TLS_ERROR_REASONS(TLS_X)
#undef TLS_X
      count
};
inline constexpr size_t error_reason_count = static_cast<size_t>(error_reason::count);
const char* to_string(error_reason r);
const char* describe(error_reason r);
const char* to_string(status s);

struct io_result {
  status st = status::ok;
  error_reason reason = error_reason::none;
  size_t bytes = 0;
};

// What the PROXY v2 encoder needs (PP2_TYPE_AUTHORITY, PP2_TYPE_ALPN, PP2_TYPE_SSL with
// PP2_SUBTYPE_SSL_VERSION/CIPHER/CN...). Filled once when the handshake completes.
struct peer_info {
  std::string sni;           // a valid host name (tls::valid_host_name) or empty
  std::string alpn;          // one of the service's configured protocols or empty
  const char* version = "";  // "TLSv1.3"
  const char* cipher = "";   // OpenSSL name, e.g. "TLS_AES_128_GCM_SHA256"
  bool resumed = false;
  bool client_cert = false;                 // a client certificate was presented
  bool client_cert_verified = false;        // and it chained to the configured CA
  std::string client_subject;               // RFC 2253
  std::string client_cn;                    // printable UTF-8 or empty (client_cn_omitted)
  std::array<uint8_t, 32> client_sha256{};  // SHA-256 of the DER certificate
};

class session {
 public:
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // Buffers ciphertext from the peer; returns the bytes taken (fewer when the input bound is
  // reached: call read()/handshake() and feed the rest later).
  size_t feed(std::span<const uint8_t> ciphertext);
  // Drives the handshake. ok once it has completed (peer_info is then valid).
  io_result handshake();
  // Plaintext from the peer; drives the handshake first when needed.
  io_result read(std::span<uint8_t> plaintext);
  // Encrypts plaintext for the peer (partial writes: bytes says how much was taken).
  io_result write(std::span<const uint8_t> plaintext);
  // Ciphertext to send to the peer; returns bytes copied.
  size_t drain(std::span<uint8_t> out);
  size_t pending_output() const;
  // Queues our close_notify.
  io_result shutdown();

  bool handshake_done() const { return hs_done_; }
  bool async_pending() const { return async_wait_; }
  bool peer_closed() const { return peer_closed_; }
  bool failed() const { return failed_; }
  error_reason failure() const { return fail_reason_; }
  const peer_info& info() const { return info_; }
  // The last OpenSSL error code of a failure (ERR_GET_REASON etc.), for logs off the fast path.
  unsigned long last_ssl_error() const { return last_err_; }
  SSL* native_handle() const { return ssl_.get(); }

  void* user = nullptr;  // the caller's connection

 private:
  friend class worker;
  friend struct session_callbacks;
  friend struct context_callbacks;
  session() = default;
  io_result map_error(int r, bool in_handshake);
  io_result fail(error_reason why);
  void on_handshake_done();

  ssl_ptr ssl_;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;
  context_set_ptr ctx_;
  worker* owner_ = nullptr;
  session* next_retry_ = nullptr;
  uint32_t index_ = 0;
  uint32_t key_updates_ = 0;
  uint32_t reneg_attempts_ = 0;
  bool in_use_ = false;
  bool hs_done_ = false;
  bool async_wait_ = false;  // a completion is owed by the offload: never free before it arrives
  bool in_retry_ = false;
  bool closing_ = false;
  bool peer_closed_ = false;
  bool sent_close_ = false;
  bool failed_ = false;
  error_reason fail_reason_ = error_reason::none;
  error_reason limit_hit_ = error_reason::none;
  unsigned long last_err_ = 0;
  peer_info info_;
};

}  // namespace tls
