#include "tls/session.hh"

#include <openssl/err.h>

#include <algorithm>

#include "tls/hostname.hh"
#include "tls/worker.hh"

namespace tls {

const char* to_string(error_reason r) {
  switch (r) {
#define TLS_X(name, text)  \
  case error_reason::name: \
    return #name;
    TLS_ERROR_REASONS(TLS_X)
#undef TLS_X
    case error_reason::count:
      break;
  }
  return "unknown";
}

const char* describe(error_reason r) {
  switch (r) {
#define TLS_X(name, text)  \
  case error_reason::name: \
    return text;
    TLS_ERROR_REASONS(TLS_X)
#undef TLS_X
    case error_reason::count:
      break;
  }
  return "unknown";
}

const char* to_string(status s) {
  switch (s) {
    case status::ok:
      return "ok";
    case status::want_read:
      return "want_read";
    case status::want_write:
      return "want_write";
    case status::want_async:
      return "want_async";
    case status::closed:
      return "closed";
    case status::error:
      return "error";
  }
  return "unknown";
}

size_t session::feed(std::span<const uint8_t> ciphertext) {
  const size_t pending = BIO_ctrl_pending(rbio_);
  const size_t room = pending >= owner_->cfg_.max_input ? 0 : owner_->cfg_.max_input - pending;
  const size_t n = std::min(room, ciphertext.size());
  if (n < ciphertext.size()) owner_->stats_.input_bounded.add();
  if (n == 0) return 0;
  int w = BIO_write(rbio_, ciphertext.data(), static_cast<int>(n));
  return w > 0 ? static_cast<size_t>(w) : 0;
}

io_result session::fail(error_reason why) {
  if (!failed_) {
    failed_ = true;
    fail_reason_ = why;
    owner_->stats_.errors[static_cast<size_t>(why)].add();
    if (!hs_done_) owner_->stats_.handshake_failures.add();
    // OpenSSL sends no alert when the first bytes are not a TLS record at all (an HTTP request,
    // garbage): the peer still gets a fatal alert, in a TLS 1.0 record layer as before a version is
    // agreed, so that every refused handshake is answered the same way.
    if (!hs_done_ && BIO_ctrl_pending(wbio_) == 0) {
      const int r = ERR_GET_REASON(last_err_);
      const uint8_t desc = r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_HTTP_REQUEST ||
                                   r == SSL_R_HTTPS_PROXY_REQUEST || r == SSL_R_UNSUPPORTED_PROTOCOL
                               ? SSL_AD_PROTOCOL_VERSION
                               : SSL_AD_DECODE_ERROR;
      const uint8_t alert[7] = {SSL3_RT_ALERT, 3, 1, 0, 2, SSL3_AL_FATAL, desc};
      if (BIO_write(wbio_, alert, sizeof alert) == static_cast<int>(sizeof alert))
        owner_->stats_.alerts_sent[desc].add();
    }
  }
  return {status::error, fail_reason_, 0};
}

io_result session::map_error(int r, bool in_handshake) {
  const int e = SSL_get_error(ssl_.get(), r);
  switch (e) {
    case SSL_ERROR_WANT_READ:
      return {status::want_read};
    case SSL_ERROR_WANT_WRITE:
      return {status::want_write};
    case SSL_ERROR_WANT_ASYNC:
      if (!async_wait_) {
        async_wait_ = true;
        ++owner_->async_pending_;
        owner_->stats_.async_pauses.add();
      }
      return {status::want_async};
    case SSL_ERROR_WANT_ASYNC_JOB:
      // Job pool exhausted: back-pressure, not failure. poll() hands the session back to retry.
      owner_->stats_.async_job_backpressure.add();
      owner_->add_retry(this);
      return {status::want_async};
    case SSL_ERROR_ZERO_RETURN:
      peer_closed_ = true;
      owner_->stats_.close_notify_received.add();
      if (!sent_close_) {
        sent_close_ = true;
        ERR_clear_error();
        SSL_shutdown(ssl_.get());  // our close_notify, queued in the write BIO
        ERR_clear_error();
      }
      return {status::closed};
    default:
      break;
  }
  last_err_ = ERR_peek_last_error();
  ERR_clear_error();
  if (limit_hit_ != error_reason::none) return fail(limit_hit_);
  if (in_handshake) {
    const bool cert = ERR_GET_REASON(last_err_) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE ||
                      ERR_GET_REASON(last_err_) == SSL_R_CERTIFICATE_VERIFY_FAILED ||
                      SSL_get_verify_result(ssl_.get()) != X509_V_OK;
    return fail(cert ? error_reason::client_cert_rejected : error_reason::handshake_failed);
  }
  return fail(error_reason::protocol);
}

void session::on_handshake_done() {
  hs_done_ = true;
  SSL* s = ssl_.get();
  // Async only pays off for the private-key operation; bulk reads and writes outside an ASYNC job
  // avoid a context switch per call.
  SSL_clear_mode(s, SSL_MODE_ASYNC);
  const bool resumed = SSL_session_reused(s) == 1;
  (resumed ? owner_->stats_.handshakes_resumed : owner_->stats_.handshakes_full).add();
  info_.resumed = resumed;
  // The servername callback refused invalid names; a resumed TLS 1.2 session reports the name of
  // its first handshake, which passed the same check (sessions are scoped to the service).
  const char* sni = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
  info_.sni = sni != nullptr && valid_host_name(sni) ? sni : "";
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(s, &alpn, &alpn_len);
  info_.alpn.assign(reinterpret_cast<const char*>(alpn), alpn != nullptr ? alpn_len : 0);
  info_.version = SSL_get_version(s);
  info_.cipher = SSL_get_cipher_name(s);
  X509* peer = SSL_get0_peer_certificate(s);
  info_.client_cert = peer != nullptr;
  if (peer != nullptr) {
    info_.client_cert_verified = SSL_get_verify_result(s) == X509_V_OK;
    bio_ptr mem(BIO_new(BIO_s_mem()));
    if (mem &&
        X509_NAME_print_ex(mem.get(), X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
      char* data = nullptr;
      long len = BIO_get_mem_data(mem.get(), &data);
      info_.client_subject.assign(data, static_cast<size_t>(len));
    }
    X509_NAME* subj = X509_get_subject_name(peer);
    int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (i >= 0) {
      // Whatever string type the certificate used, as UTF-8; passed upstream only when printable.
      unsigned char* utf8 = nullptr;
      const int n =
          ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
      const std::string_view cn(reinterpret_cast<const char*>(utf8),
                                n > 0 ? static_cast<size_t>(n) : 0);
      if (n > 0 && printable_utf8(cn))
        info_.client_cn.assign(cn);
      else if (n != 0)
        owner_->stats_.client_cn_omitted.add();
      OPENSSL_free(utf8);
    }
    unsigned md_len = 0;
    X509_digest(peer, EVP_sha256(), info_.client_sha256.data(), &md_len);
  }
  ERR_clear_error();
}

io_result session::handshake() {
  if (failed_) return {status::error, fail_reason_};
  if (hs_done_) return {status::ok};
  // While the offload owes a completion, resuming the job would only pause it again.
  if (async_wait_ || in_retry_) return {status::want_async};
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_.get());
  if (r == 1) {
    on_handshake_done();
    return {status::ok};
  }
  return map_error(r, true);
}

io_result session::read(std::span<uint8_t> plaintext) {
  if (!hs_done_) {
    io_result h = handshake();
    if (h.st != status::ok) return h;
  }
  if (failed_) return {status::error, fail_reason_};
  if (peer_closed_) return {status::closed};
  ERR_clear_error();
  size_t n = 0;
  int r = SSL_read_ex(ssl_.get(), plaintext.data(), plaintext.size(), &n);
  if (limit_hit_ != error_reason::none) return fail(limit_hit_);
  if (r == 1) return {status::ok, error_reason::none, n};
  return map_error(r, false);
}

io_result session::write(std::span<const uint8_t> plaintext) {
  if (!hs_done_) {
    io_result h = handshake();
    if (h.st != status::ok) return h;
  }
  if (failed_) return {status::error, fail_reason_};
  if (sent_close_) return {status::closed};
  if (plaintext.empty()) return {status::ok};
  if (BIO_ctrl_pending(wbio_) >= owner_->cfg_.max_output) return {status::want_write};
  ERR_clear_error();
  size_t n = 0;
  int r = SSL_write_ex(ssl_.get(), plaintext.data(), plaintext.size(), &n);
  if (r == 1) return {status::ok, error_reason::none, n};
  return map_error(r, false);
}

size_t session::drain(std::span<uint8_t> out) {
  if (out.empty()) return 0;
  int n = BIO_read(wbio_, out.data(), static_cast<int>(std::min<size_t>(out.size(), 1u << 30)));
  return n > 0 ? static_cast<size_t>(n) : 0;
}

size_t session::pending_output() const {
  return BIO_ctrl_pending(wbio_);
}

io_result session::shutdown() {
  if (async_wait_) return {status::want_async};
  if (!sent_close_) {
    sent_close_ = true;
    ERR_clear_error();
    if (hs_done_) SSL_shutdown(ssl_.get());
    ERR_clear_error();
  }
  return {status::closed};
}

}  // namespace tls
