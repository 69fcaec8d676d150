// Private-key hooks for the async offload. OpenSSL 3.0 still routes a key whose RSA_METHOD or
// EC_KEY_METHOD is not the built-in one ("foreign" key) through the legacy code path, where the
// method runs inside the handshake's ASYNC job and may call ASYNC_pause_job(). This is how
// engines/e_dasync.c and the QAT engine do it; a provider cannot pause the job the same way in 3.0.
// The APIs are deprecated in 3.0, so the warning is silenced for this file only.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#include "key_methods.hh"

#include <openssl/async.h>
#include <openssl/ec.h>
#include <openssl/engine.h>
#include <openssl/rsa.h>

#include <thread>

#include "tls/offload.hh"

namespace tls {

namespace {

using detail::offload_op;

int ec_ex_index() {
  static const int idx = EC_KEY_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}
int rsa_ex_index() {
  static const int idx = RSA_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

// Runs `op` on the offload when called inside an ASYNC job whose wait context has a callback
// (libssl sets one when SSL_set_async_callback was used), else in place.
int dispatch(offload_op& op, offload* off) {
  ASYNC_JOB* job = ASYNC_get_current_job();
  if (job == nullptr || off == nullptr) return op.run(&op);
  ASYNC_WAIT_CTX* w = ASYNC_get_wait_ctx(job);
  ASYNC_callback_fn cb = nullptr;
  void* arg = nullptr;
  if (w == nullptr || ASYNC_WAIT_CTX_get_callback(w, &cb, &arg) != 1 || cb == nullptr)
    return op.run(&op);
  op.notify = cb;
  op.notify_arg = arg;
  if (!off->submit(&op)) {
    off->note_inline();  // back-pressure from a full request queue: sign here rather than fail
    return op.run(&op);
  }
  // Always pause at least once, even if the crypto thread already finished: the completion it
  // pushes to the worker's ring must find the session waiting (one WANT_ASYNC per completion).
  // A resume before `done` is spurious: pause again.
  do {
    if (ASYNC_pause_job() != 1) {
      // Cannot pause (should not happen inside a job): the op lives on this stack, so wait for it.
      while (!op.done.load(std::memory_order_acquire)) std::this_thread::yield();
    }
  } while (!op.done.load(std::memory_order_acquire));
  return op.result;
}

// ---- ECDSA ----
using ec_sign_fn = int (*)(int, const unsigned char*, int, unsigned char*, unsigned int*,
                           const BIGNUM*, const BIGNUM*, EC_KEY*);

ec_sign_fn default_ec_sign() {
  static const ec_sign_fn fn = [] {
    int (*sign)(int, const unsigned char*, int, unsigned char*, unsigned int*, const BIGNUM*,
                const BIGNUM*, EC_KEY*) = nullptr;
    EC_KEY_METHOD_get_sign(EC_KEY_OpenSSL(), &sign, nullptr, nullptr);
    return sign;
  }();
  return fn;
}

struct ec_sign_op : offload_op {
  int type;
  const unsigned char* dgst;
  int dlen;
  unsigned char* sig;
  unsigned int* siglen;
  const BIGNUM* kinv;
  const BIGNUM* r;
  EC_KEY* key;
};

int run_ec_sign(offload_op* o) {
  auto* op = static_cast<ec_sign_op*>(o);
  return default_ec_sign()(op->type, op->dgst, op->dlen, op->sig, op->siglen, op->kinv, op->r,
                           op->key);
}

int offload_ec_sign(int type, const unsigned char* dgst, int dlen, unsigned char* sig,
                    unsigned int* siglen, const BIGNUM* kinv, const BIGNUM* r, EC_KEY* key) {
  ec_sign_op op;
  op.run = run_ec_sign;
  op.type = type;
  op.dgst = dgst;
  op.dlen = dlen;
  op.sig = sig;
  op.siglen = siglen;
  op.kinv = kinv;
  op.r = r;
  op.key = key;
  return dispatch(op, static_cast<offload*>(EC_KEY_get_ex_data(key, ec_ex_index())));
}

const EC_KEY_METHOD* ec_method() {
  static EC_KEY_METHOD* m = [] {
    EC_KEY_METHOD* meth = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
    int (*sign)(int, const unsigned char*, int, unsigned char*, unsigned int*, const BIGNUM*,
                const BIGNUM*, EC_KEY*) = nullptr;
    int (*setup)(EC_KEY*, BN_CTX*, BIGNUM**, BIGNUM**) = nullptr;
    ECDSA_SIG* (*sign_sig)(const unsigned char*, int, const BIGNUM*, const BIGNUM*, EC_KEY*) =
        nullptr;
    EC_KEY_METHOD_get_sign(EC_KEY_OpenSSL(), &sign, &setup, &sign_sig);
    EC_KEY_METHOD_set_sign(meth, offload_ec_sign, setup, sign_sig);
    return meth;
  }();
  return m;
}

// ---- RSA (TLS 1.3/1.2 signatures use priv_enc, TLS 1.2 RSA key exchange would use priv_dec) ----
using rsa_fn = int (*)(int, const unsigned char*, unsigned char*, RSA*, int);

struct rsa_op : offload_op {
  rsa_fn fn;
  int flen;
  const unsigned char* from;
  unsigned char* to;
  RSA* rsa;
  int padding;
};

int run_rsa(offload_op* o) {
  auto* op = static_cast<rsa_op*>(o);
  return op->fn(op->flen, op->from, op->to, op->rsa, op->padding);
}

int offload_rsa(rsa_fn fn, int flen, const unsigned char* from, unsigned char* to, RSA* rsa,
                int padding) {
  rsa_op op;
  op.run = run_rsa;
  op.fn = fn;
  op.flen = flen;
  op.from = from;
  op.to = to;
  op.rsa = rsa;
  op.padding = padding;
  return dispatch(op, static_cast<offload*>(RSA_get_ex_data(rsa, rsa_ex_index())));
}

int offload_rsa_priv_enc(int flen, const unsigned char* from, unsigned char* to, RSA* rsa,
                         int padding) {
  return offload_rsa(RSA_meth_get_priv_enc(RSA_PKCS1_OpenSSL()), flen, from, to, rsa, padding);
}
int offload_rsa_priv_dec(int flen, const unsigned char* from, unsigned char* to, RSA* rsa,
                         int padding) {
  return offload_rsa(RSA_meth_get_priv_dec(RSA_PKCS1_OpenSSL()), flen, from, to, rsa, padding);
}

const RSA_METHOD* rsa_method() {
  static RSA_METHOD* m = [] {
    RSA_METHOD* meth = RSA_meth_dup(RSA_PKCS1_OpenSSL());
    RSA_meth_set1_name(meth, "edge async offload");
    RSA_meth_set_priv_enc(meth, offload_rsa_priv_enc);
    RSA_meth_set_priv_dec(meth, offload_rsa_priv_dec);
    return meth;
  }();
  return m;
}

// A legacy copy of an EC or RSA key (the provider key from the PEM decoder cannot carry a method).
common::result<evp_pkey_ptr> legacy_copy(EVP_PKEY* key, const EC_KEY_METHOD* ecm,
                                         const RSA_METHOD* rsam, void* ex) {
  evp_pkey_ptr out(EVP_PKEY_new());
  if (!out) return common::unexpected(ossl_error("EVP_PKEY_new"));
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
    EC_KEY* src = EVP_PKEY_get1_EC_KEY(key);
    if (src == nullptr) return common::unexpected(ossl_error("EC key to legacy"));
    EC_KEY* ec = EC_KEY_dup(src);
    EC_KEY_free(src);
    if (ec == nullptr) return common::unexpected(ossl_error("EC_KEY_dup"));
    if ((ecm != nullptr && EC_KEY_set_method(ec, ecm) != 1) ||
        (ex != nullptr && EC_KEY_set_ex_data(ec, ec_ex_index(), ex) != 1) ||
        EVP_PKEY_assign_EC_KEY(out.get(), ec) != 1) {
      EC_KEY_free(ec);
      return common::unexpected(ossl_error("install EC key method"));
    }
    return out;
  }
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
    RSA* src = EVP_PKEY_get1_RSA(key);
    if (src == nullptr) return common::unexpected(ossl_error("RSA key to legacy"));
    RSA* rsa = RSAPrivateKey_dup(src);
    RSA_free(src);
    if (rsa == nullptr) return common::unexpected(ossl_error("RSAPrivateKey_dup"));
    if ((rsam != nullptr && RSA_set_method(rsa, rsam) != 1) ||
        (ex != nullptr && RSA_set_ex_data(rsa, rsa_ex_index(), ex) != 1) ||
        EVP_PKEY_assign_RSA(out.get(), rsa) != 1) {
      RSA_free(rsa);
      return common::unexpected(ossl_error("install RSA key method"));
    }
    return out;
  }
  return common::fail("only EC and RSA keys can be offloaded");
}

}  // namespace

common::result<evp_pkey_ptr> offload_key(EVP_PKEY* key, offload* off) {
  return legacy_copy(key, ec_method(), rsa_method(), off);
}

common::result<ENGINE*> load_engine(const std::string& id) {
  ENGINE* e = ENGINE_by_id(id.c_str());
  if (e == nullptr) return common::unexpected(ossl_error("engine '" + id + "' not found"));
  if (ENGINE_init(e) != 1) {
    ENGINE_free(e);
    return common::unexpected(ossl_error("engine '" + id + "' init"));
  }
  ENGINE_free(e);  // the functional reference from ENGINE_init keeps it
  if (ENGINE_set_default(e, ENGINE_METHOD_ALL) != 1) {
    ENGINE_finish(e);
    return common::unexpected(ossl_error("engine '" + id + "' set default"));
  }
  return e;
}

void release_engine(ENGINE* e) {
  ENGINE_finish(e);
}

common::result<evp_pkey_ptr> engine_key(EVP_PKEY* key, ENGINE* e) {
  return legacy_copy(key, ENGINE_get_EC(e), ENGINE_get_RSA(e), nullptr);
}

}  // namespace tls
