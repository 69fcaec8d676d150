#pragma once
// RAII owners for the OpenSSL handles tls/ uses, and the one place where OpenSSL's per-thread error
// queue is turned into a common::error. Every OpenSSL failure on the control path goes through
// ossl_error() so that the message carries OpenSSL's reason strings, not just "failed".
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/result.hh"

namespace tls {

template <auto Free>
struct ossl_deleter {
  template <class T>
  void operator()(T* p) const noexcept {
    Free(p);
  }
};

using ssl_ptr = std::unique_ptr<SSL, ossl_deleter<SSL_free>>;
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, ossl_deleter<SSL_CTX_free>>;
using evp_pkey_ptr = std::unique_ptr<EVP_PKEY, ossl_deleter<EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, ossl_deleter<X509_free>>;
using x509_store_ptr = std::unique_ptr<X509_STORE, ossl_deleter<X509_STORE_free>>;
using bio_ptr = std::unique_ptr<BIO, ossl_deleter<BIO_free_all>>;

// Drains this thread's OpenSSL error queue into "reason: reason (detail)"; empty when it was empty.
std::string drain_ossl_errors();

// `what` followed by the drained OpenSSL reasons, e.g.
// "load key /etc/k.pem: PEM routines::no start line".
common::error ossl_error(std::string_view what, std::string where = {});

// Reads a whole file (certificates, keys, ticket keys, OCSP responses); errors name the path.
common::result<std::string> read_file(const std::string& path);

}  // namespace tls
