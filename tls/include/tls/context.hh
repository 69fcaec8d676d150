#pragma once
// An immutable set of SSL_CTX for one TLS service, built on the control thread and shared by every
// worker through shared_ptr. A session keeps its context_set alive, so a reload (new certificates,
// rotated ticket keys) swaps the pointer for new connections while old ones finish on the old set.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.hh"
#include "tls/config.hh"
#include "tls/ossl.hh"

namespace tls {

class offload;

struct name_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using name_map = std::unordered_map<std::string, size_t, name_hash, std::equal_to<>>;

struct ticket_key {
  std::array<uint8_t, 16> name{};
  std::array<uint8_t, 32> aes_key{};
  std::array<uint8_t, 32> hmac_key{};
  int64_t expires = 0;  // unix seconds after which it no longer decrypts; 0: while in the file

  ticket_key() = default;
  ticket_key(const ticket_key&) = default;
  ticket_key& operator=(const ticket_key&) = default;
  ~ticket_key();  // OPENSSL_cleanse of both keys (every copy: vector growth, reload carry-over)
};

// Parses a ticket key file: a non-empty multiple of 80 bytes; the first key encrypts.
common::result<std::vector<ticket_key>> parse_ticket_keys(std::string_view bytes,
                                                          const std::string& path);

class context_set {
 public:
  // Builds every SSL_CTX. `off` is the in-process offload the private keys are routed through when
  // cfg.async is set and cfg.engine is empty (nullptr: keys sign in place). `previous` is the set
  // being replaced: ticket keys it had that the new file lacks keep decrypting for
  // cfg.ticket_key_grace, and a random per-process key is carried over.
  static common::result<std::shared_ptr<const context_set>> build(
      const server_config& cfg, std::shared_ptr<offload> off = nullptr,
      const context_set* previous = nullptr);

  ~context_set();
  context_set(const context_set&) = delete;
  context_set& operator=(const context_set&) = delete;

  const server_config& config() const { return cfg_; }
  SSL_CTX* default_ctx() const { return ctxs_[default_].get(); }
  // The context for an SNI name (exact, then one-label wildcard), nullptr when none matches.
  SSL_CTX* lookup(std::string_view sni) const;
  const std::vector<ticket_key>& ticket_keys() const { return keys_; }
  // The session id context every SSL_CTX of the set has: a digest of the service name and its
  // client-auth policy (CA bundle content, required, depth). Sessions resume only where it matches.
  std::span<const uint8_t> session_scope() const { return sid_ctx_; }
  bool async() const { return cfg_.async; }
  size_t ctx_count() const { return ctxs_.size(); }

 private:
  context_set() = default;
  friend struct context_builder;
  friend struct context_callbacks;

  server_config cfg_;
  std::vector<ssl_ctx_ptr> ctxs_;
  size_t default_ = 0;
  name_map exact_;
  name_map wildcard_;  // "example.com" for "*.example.com"
  std::vector<uint8_t> alpn_wire_;
  std::vector<ticket_key> keys_;
  std::array<uint8_t, 32> sid_ctx_{};  // session scope: service + client-auth policy
  bool random_ticket_key_ = false;
  std::unordered_map<const X509*, std::string> ocsp_;  // leaf → DER response
  std::vector<x509_ptr> leaves_;                       // keeps ocsp_ keys alive
  std::shared_ptr<offload> offload_;
  ENGINE* engine_ = nullptr;
};

using context_set_ptr = std::shared_ptr<const context_set>;

}  // namespace tls
