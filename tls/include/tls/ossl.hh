#pragma once
// RAII owners for the OpenSSL handles tls/ uses, and the one place where OpenSSL's per-thread error
// queue is turned into a common::error. Every OpenSSL failure on the control path goes through
// ossl_error() so that the message carries OpenSSL's reason strings, not just "failed".
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

// Reads a whole file (certificates, CA bundles, OCSP responses); errors name the path.
common::result<std::string> read_file(const std::string& path);

// Key material in memory: wiped with OPENSSL_cleanse when it goes away. Never reallocates (a
// vector moves its buffer), so no copy of the bytes is left behind in freed memory.
class secret_bytes {
 public:
  explicit secret_bytes(size_t n) : bytes_(n) {}
  secret_bytes(secret_bytes&&) noexcept = default;
  secret_bytes& operator=(secret_bytes&&) = delete;
  ~secret_bytes();
  char* data() { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  std::string_view view() const { return {bytes_.data(), bytes_.size()}; }
  void shrink(size_t n) { bytes_.resize(std::min(n, bytes_.size())); }  // no reallocation

 private:
  std::vector<char> bytes_;
};

// Reads a private key or ticket key file (`what` names it in errors). Like sshd, refuses a file
// that group or others may access (mode & 077), a file that is not a regular file, and one over
// 1 MiB; the error names the path and the mode.
common::result<secret_bytes> read_secret_file(const std::string& path, std::string_view what);

}  // namespace tls
