#include "tls/worker.hh"

#include <openssl/async.h>
#include <openssl/err.h>

#include <cassert>
#include <thread>

#include "mpmc_ring.hh"

namespace tls {

// OpenSSL callbacks set per SSL (not per SSL_CTX, so they survive the SNI context switch).
struct session_callbacks {
  static session* of(const SSL* ssl) { return static_cast<session*>(SSL_get_app_data(ssl)); }

  static void info(const SSL* ssl, int where, int ret) {
    if ((where & SSL_CB_ALERT) == 0 || (where & SSL_CB_WRITE) == 0) return;
    session* s = of(ssl);
    if (s == nullptr) return;
    const auto desc = static_cast<uint8_t>(ret & 0xff);
    s->owner_->stats_.alerts_sent[desc].add();
    if (desc == SSL_AD_NO_RENEGOTIATION) {
      s->owner_->stats_.renegotiation_attempts.add();
      if (++s->reneg_attempts_ > s->ctx_->config().max_renegotiation_attempts)
        s->limit_hit_ = error_reason::renegotiation_limit;
    }
  }

  static void msg(int write_p, int /*version*/, int content_type, const void* buf, size_t len,
                  SSL* ssl, void* /*arg*/) {
    if (write_p != 0 || content_type != SSL3_RT_HANDSHAKE || len == 0) return;
    if (static_cast<const uint8_t*>(buf)[0] != SSL3_MT_KEY_UPDATE) return;
    session* s = of(ssl);
    if (s == nullptr) return;
    s->owner_->stats_.key_updates.add();
    if (++s->key_updates_ > s->ctx_->config().max_key_updates)
      s->limit_hit_ = error_reason::key_update_limit;
  }

  // Called by a crypto thread (through the job's ASYNC_WAIT_CTX callback) once the private-key
  // operation finished. Only hands the session to its worker; the worker resumes the job.
  static int async_done(SSL* /*ssl*/, void* arg) {
    auto* s = static_cast<session*>(arg);
    return s->owner_->completions_->push(s) ? 1 : 0;
  }
};

common::result<std::unique_ptr<worker>> worker::create(const worker_config& cfg) {
  if (cfg.max_sessions == 0) return common::fail("tls worker: max_sessions must be > 0");
  if (cfg.async_jobs == 0) return common::fail("tls worker: async_jobs must be > 0");
  if (cfg.max_input < 16 * 1024 + 512)
    return common::fail("tls worker: max_input must hold one TLS record (16 KiB + overhead)");
  std::unique_ptr<worker> w(new worker());
  w->cfg_ = cfg;
  w->sessions_.reset(new session[cfg.max_sessions]);
  w->free_.reserve(cfg.max_sessions);
  for (uint32_t i = cfg.max_sessions; i-- > 0;) {
    w->sessions_[i].index_ = i;
    w->sessions_[i].owner_ = w.get();
    w->free_.push_back(i);
  }
  // Each session owes at most one completion, so the ring can never be full.
  w->completions_ = std::make_unique<detail::mpmc_ring<session*>>(cfg.max_sessions);
  // The job pool is per thread and sized now; beyond it SSL_ERROR_WANT_ASYNC_JOB is back-pressure.
  if (ASYNC_is_capable() != 1)
    return common::fail("tls worker: OpenSSL ASYNC is not supported here");
  if (ASYNC_init_thread(cfg.async_jobs, cfg.async_jobs) != 1)
    return common::unexpected(ossl_error("ASYNC_init_thread"));
  w->async_thread_init_ = true;
  w->thread_ = std::this_thread::get_id();
  return w;
}

worker::~worker() {
  // Crypto threads may still hold sessions: wait for their completions before freeing anything.
  while (async_pending_ > 0) {
    bool got = false;
    session* s = nullptr;
    while (completions_->pop(s)) {
      got = true;
      s->async_wait_ = false;
      --async_pending_;
      s->closing_ = true;
      finish_close(s);
    }
    if (!got) std::this_thread::yield();
  }
  for (uint32_t i = 0; i < cfg_.max_sessions; ++i) {
    session& s = sessions_[i];
    if (s.in_use_ && !s.async_wait_) {
      s.closing_ = true;
      finish_close(&s);
    }
  }
  if (async_thread_init_) ASYNC_cleanup_thread();
}

session* worker::open(context_set_ptr ctx, void* user) {
  assert(std::this_thread::get_id() == thread_ &&
         "tls::worker used from a thread other than its creator");
  if (free_.empty() || !ctx) {
    stats_.sessions_refused.add();
    return nullptr;
  }
  ssl_ptr ssl(SSL_new(ctx->default_ctx()));
  BIO* r = BIO_new(BIO_s_mem());
  BIO* w = BIO_new(BIO_s_mem());
  if (!ssl || r == nullptr || w == nullptr) {
    BIO_free(r);
    BIO_free(w);
    ERR_clear_error();
    stats_.sessions_refused.add();
    return nullptr;
  }
  // An empty memory BIO is "retry later", not EOF.
  BIO_set_mem_eof_return(r, -1);
  BIO_set_mem_eof_return(w, -1);
  SSL_set_bio(ssl.get(), r, w);
  SSL_set_accept_state(ssl.get());

  session* s = &sessions_[free_.back()];
  free_.pop_back();
  SSL_set_app_data(ssl.get(), s);
  SSL_set_info_callback(ssl.get(), session_callbacks::info);
  SSL_set_msg_callback(ssl.get(), session_callbacks::msg);
  if (ctx->async()) {
    SSL_set_mode(ssl.get(), SSL_MODE_ASYNC);
    SSL_set_async_callback(ssl.get(), session_callbacks::async_done);
    SSL_set_async_callback_arg(ssl.get(), s);
  }
  s->ssl_ = std::move(ssl);
  s->rbio_ = r;
  s->wbio_ = w;
  s->ctx_ = std::move(ctx);
  s->user = user;
  s->next_retry_ = nullptr;
  s->key_updates_ = 0;
  s->reneg_attempts_ = 0;
  s->in_use_ = true;
  s->hs_done_ = false;
  s->async_wait_ = false;
  s->in_retry_ = false;
  s->closing_ = false;
  s->peer_closed_ = false;
  s->sent_close_ = false;
  s->failed_ = false;
  s->fail_reason_ = error_reason::none;
  s->limit_hit_ = error_reason::none;
  s->last_err_ = 0;
  s->info_ = peer_info{};
  ++open_;
  stats_.sessions_opened.add();
  return s;
}

void worker::close(session* s) {
  if (s == nullptr || !s->in_use_ || s->closing_) return;
  s->closing_ = true;
  s->user = nullptr;
  // In flight (the crypto thread will touch the SSL and push the session) or queued for retry:
  // poll() finishes the close when it sees the session.
  if (s->async_wait_ || s->in_retry_) {
    stats_.deferred_frees.add();
    return;
  }
  finish_close(s);
}

void worker::finish_close(session* s) {
  SSL* ssl = s->ssl_.get();
  // A job that paused is still parked in this SSL: run it to its end (the operation is done) so
  // its stack returns to the pool; SSL_free would leak it.
  for (int i = 0; ssl != nullptr && SSL_waiting_for_async(ssl) == 1 && i < 4; ++i) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r != 1 && SSL_get_error(ssl, r) == SSL_ERROR_WANT_ASYNC) {
      // Paused on a new operation: wait for its completion too.
      s->async_wait_ = true;
      ++async_pending_;
      ERR_clear_error();
      return;
    }
  }
  ERR_clear_error();
  s->ssl_.reset();
  s->rbio_ = s->wbio_ = nullptr;
  s->ctx_.reset();
  s->info_ = peer_info{};
  s->in_use_ = false;
  s->closing_ = false;
  free_.push_back(s->index_);
  --open_;
}

void worker::add_retry(session* s) {
  if (s->in_retry_) return;
  s->in_retry_ = true;
  s->next_retry_ = nullptr;
  if (retry_tail_ != nullptr)
    retry_tail_->next_retry_ = s;
  else
    retry_head_ = s;
  retry_tail_ = s;
}

size_t worker::poll(std::span<session*> ready) {
  assert(std::this_thread::get_id() == thread_);
  size_t n = 0;
  session* s = nullptr;
  while (n < ready.size() && completions_->pop(s)) {
    stats_.async_completions.add();
    s->async_wait_ = false;
    --async_pending_;
    if (s->closing_) {
      finish_close(s);
      continue;
    }
    ready[n++] = s;
  }
  // Sessions refused a job retry after completions freed some.
  while (n < ready.size() && retry_head_ != nullptr) {
    s = retry_head_;
    retry_head_ = s->next_retry_;
    if (retry_head_ == nullptr) retry_tail_ = nullptr;
    s->next_retry_ = nullptr;
    s->in_retry_ = false;
    if (s->closing_) {
      if (!s->async_wait_) finish_close(s);
      continue;
    }
    ready[n++] = s;
  }
  return n;
}

const char* worker::alert_name(uint8_t desc) {
  return SSL_alert_desc_string_long(desc);
}

}  // namespace tls
