#include "tls/context.hh"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <map>

#include "key_methods.hh"
#include "tls/hostname.hh"
#include "tls/offload.hh"
#include "tls/session.hh"

namespace tls {

namespace {

int ctx_ex_index() {
  static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct loaded_cert {
  x509_ptr leaf;
  std::vector<x509_ptr> chain;
  evp_pkey_ptr key;
  std::vector<std::string> names;
  std::string ocsp;
  std::string cert_file;
  int key_type = 0;  // EVP_PKEY_EC or EVP_PKEY_RSA
};

std::vector<std::string> names_of(X509* x) {
  std::vector<std::string> names;
  auto* gens =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (gens != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
      if (g->type != GEN_DNS) continue;
      const auto* d = ASN1_STRING_get0_data(g->d.dNSName);
      names.emplace_back(reinterpret_cast<const char*>(d), ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(gens);
  }
  if (names.empty()) {
    X509_NAME* subj = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (i >= 0) {
      ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn)),
                         ASN1_STRING_length(cn));
    }
  }
  return names;
}

common::result<loaded_cert> load_cert(const cert_config& cc, offload* off, ENGINE* engine) {
  loaded_cert out;
  out.cert_file = cc.cert_file;
  auto pem = read_file(cc.cert_file);
  if (!pem) return common::unexpected(pem.error());
  bio_ptr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  out.leaf.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!out.leaf) return common::unexpected(ossl_error("no certificate", cc.cert_file));
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr))
    out.chain.emplace_back(x);
  ERR_clear_error();  // the loop ends on "no start line"

  // The PEM is wiped when kpem goes out of scope; the read-only memory BIO does not copy it and
  // OpenSSL decodes private keys in its secure heap, clearing what it frees.
  auto kpem = read_secret_file(cc.key_file, "private key file");
  if (!kpem) return common::unexpected(kpem.error());
  bio_ptr kbio(BIO_new_mem_buf(kpem->data(), static_cast<int>(kpem->size())));
  evp_pkey_ptr key(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
  if (!key) return common::unexpected(ossl_error("no private key", cc.key_file));
  out.key_type = EVP_PKEY_get_base_id(key.get());
  if (out.key_type != EVP_PKEY_EC && out.key_type != EVP_PKEY_RSA)
    return common::fail("key type must be EC or RSA", cc.key_file);
  if (X509_check_private_key(out.leaf.get(), key.get()) != 1)
    return common::unexpected(
        ossl_error("key does not match certificate " + cc.cert_file, cc.key_file));
  if (engine != nullptr) {
    auto k = engine_key(key.get(), engine);
    if (!k) return common::unexpected(common::error{k.error().message, cc.key_file});
    key = std::move(*k);
  } else if (off != nullptr) {
    auto k = offload_key(key.get(), off);
    if (!k) return common::unexpected(common::error{k.error().message, cc.key_file});
    key = std::move(*k);
  }
  out.key = std::move(key);

  out.names = cc.names.empty() ? names_of(out.leaf.get()) : cc.names;
  if (out.names.empty())
    return common::fail("certificate has no DNS name and none is configured", cc.cert_file);
  for (auto& n : out.names) {
    n = lower(n);
    if (n.empty() || n.find('*', n.starts_with("*.") ? 1 : 0) != std::string::npos || n == "*." ||
        (n[0] == '*' && !n.starts_with("*.")))
      return common::fail("bad server name '" + n + "' (wildcards are '*.' + domain)",
                          cc.cert_file);
  }
  std::sort(out.names.begin(), out.names.end());
  out.names.erase(std::unique(out.names.begin(), out.names.end()), out.names.end());

  if (!cc.ocsp_file.empty()) {
    auto der = read_file(cc.ocsp_file);
    if (!der) return common::unexpected(der.error());
    const auto* p = reinterpret_cast<const unsigned char*>(der->data());
    OCSP_RESPONSE* r = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der->size()));
    if (r == nullptr)
      return common::unexpected(ossl_error("not a DER OCSP response", cc.ocsp_file));
    OCSP_RESPONSE_free(r);
    out.ocsp = std::move(*der);
  }
  return out;
}

}  // namespace

// Callbacks installed on every SSL_CTX of a set; each finds the set through the SSL_CTX ex_data,
// which stays right after the SNI callback switched the SSL to another context of the same set.
struct context_callbacks {
  static const context_set* of(SSL* ssl) {
    return static_cast<const context_set*>(
        SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_ex_index()));
  }

  static int servername(SSL* ssl, int* alert, void* arg) {
    const auto* cs = static_cast<const context_set*>(arg);
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == nullptr) return SSL_TLSEXT_ERR_OK;
    // OpenSSL refuses only NUL and names over 255 bytes; CR, LF, spaces, '/' would otherwise reach
    // the PROXY v2 authority TLV and the logs.
    if (!valid_host_name(name)) {
      if (auto* s = static_cast<session*>(SSL_get_app_data(ssl)); s != nullptr)
        s->limit_hit_ = error_reason::bad_sni;
      *alert = SSL_AD_UNRECOGNIZED_NAME;
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    SSL_CTX* ctx = cs->lookup(name);
    if (ctx != nullptr && ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
    return SSL_TLSEXT_ERR_OK;  // unknown names get the default certificate
  }

  static int alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                  const unsigned char* in, unsigned int inlen, void* arg) {
    const auto* cs = static_cast<const context_set*>(arg);
    unsigned char* sel = nullptr;
    if (SSL_select_next_proto(&sel, outlen, cs->alpn_wire_.data(),
                              static_cast<unsigned>(cs->alpn_wire_.size()), in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
      return SSL_TLSEXT_ERR_NOACK;  // no common protocol: carry on without ALPN
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
  }

  static int set_mac_key(EVP_MAC_CTX* hctx, const ticket_key& k) {
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(
        OSSL_MAC_PARAM_KEY, const_cast<uint8_t*>(k.hmac_key.data()), k.hmac_key.size());
    params[1] =
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
  }

  // Return values per SSL_CTX_set_tlsext_ticket_key_evp_cb: 1 ok, 2 ok but re-issue with the
  // current key, 0 unknown/expired key (full handshake), -1 error.
  static int ticket(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                    EVP_MAC_CTX* hctx, int enc) {
    const context_set* cs = of(ssl);
    if (cs == nullptr || cs->keys_.empty()) return enc ? -1 : 0;
    if (enc) {
      const ticket_key& k = cs->keys_.front();
      if (RAND_bytes(iv, 16) != 1) return -1;
      std::memcpy(name, k.name.data(), k.name.size());
      if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes_key.data(), iv) != 1)
        return -1;
      return set_mac_key(hctx, k) == 1 ? 1 : -1;
    }
    const int64_t now = std::time(nullptr);
    for (size_t i = 0; i < cs->keys_.size(); ++i) {
      const ticket_key& k = cs->keys_[i];
      if (std::memcmp(name, k.name.data(), k.name.size()) != 0) continue;
      if (k.expires != 0 && now > k.expires) return 0;
      if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes_key.data(), iv) != 1)
        return -1;
      if (set_mac_key(hctx, k) != 1) return -1;
      return i == 0 ? 1 : 2;
    }
    return 0;
  }

  static int ocsp_status(SSL* ssl, void* arg) {
    const auto* cs = static_cast<const context_set*>(arg);
    X509* cert = SSL_get_certificate(ssl);  // the certificate chosen for this handshake
    auto it = cs->ocsp_.find(cert);
    if (it == cs->ocsp_.end()) return SSL_TLSEXT_ERR_NOACK;
    auto* copy = static_cast<unsigned char*>(OPENSSL_memdup(it->second.data(), it->second.size()));
    if (copy == nullptr) return SSL_TLSEXT_ERR_NOACK;
    SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(it->second.size()));
    return SSL_TLSEXT_ERR_OK;
  }
};

ticket_key::~ticket_key() {
  OPENSSL_cleanse(aes_key.data(), aes_key.size());
  OPENSSL_cleanse(hmac_key.data(), hmac_key.size());
}

common::result<std::vector<ticket_key>> parse_ticket_keys(std::string_view bytes,
                                                          const std::string& path) {
  if (bytes.empty() || bytes.size() % 80 != 0)
    return common::fail("ticket key file must hold a non-empty multiple of 80 bytes, has " +
                            std::to_string(bytes.size()),
                        path);
  std::vector<ticket_key> keys(bytes.size() / 80);
  for (size_t i = 0; i < keys.size(); ++i) {
    const char* p = bytes.data() + i * 80;
    std::memcpy(keys[i].name.data(), p, 16);
    std::memcpy(keys[i].aes_key.data(), p + 16, 32);
    std::memcpy(keys[i].hmac_key.data(), p + 48, 32);
  }
  return keys;
}

struct context_builder {
  // SHA-256 over the service name and its client-auth policy (enabled, required, verify depth, the
  // CA bundle's bytes). The same on every process of a fleet with the same config, so shared
  // ticket keys still resume there; different for any other service or policy.
  static common::result<void> session_scope(const server_config& cfg, context_set& cs) {
    const auto& ca = cfg.client_auth;
    std::string ca_bytes;
    if (ca.enabled && !ca.ca_file.empty()) {
      auto b = read_file(ca.ca_file);
      if (!b) return common::unexpected(b.error());
      ca_bytes = std::move(*b);
    }
    uint8_t ca_md[32] = {};
    if (EVP_Digest(ca_bytes.data(), ca_bytes.size(), ca_md, nullptr, EVP_sha256(), nullptr) != 1)
      return common::unexpected(ossl_error("session scope digest"));
    std::string scope = "edge-tls session scope v1";
    scope.push_back('\0');
    scope += cfg.service;
    scope.push_back('\0');
    scope += ca.enabled ? (ca.required ? "client-auth required" : "client-auth optional")
                        : "no client-auth";
    scope += " depth " + std::to_string(ca.enabled ? ca.verify_depth : 0) + " ca ";
    scope.append(reinterpret_cast<const char*>(ca_md), sizeof ca_md);
    static_assert(sizeof cs.sid_ctx_ <= SSL_MAX_SID_CTX_LENGTH);
    if (EVP_Digest(scope.data(), scope.size(), cs.sid_ctx_.data(), nullptr, EVP_sha256(),
                   nullptr) != 1)
      return common::unexpected(ossl_error("session scope digest"));
    return {};
  }

  static common::result<ssl_ctx_ptr> new_ctx(const server_config& cfg, context_set* cs) {
    ssl_ctx_ptr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) return common::unexpected(ossl_error("SSL_CTX_new"));
    SSL_CTX* c = ctx.get();
    SSL_CTX_set_min_proto_version(c, cfg.allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
    uint64_t opts =
        SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;
    if (!cfg.tickets) opts |= SSL_OP_NO_TICKET;
    SSL_CTX_set_options(c, opts);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (cfg.allow_tls12 && SSL_CTX_set_cipher_list(c, cfg.tls12_ciphers.c_str()) != 1)
      return common::unexpected(ossl_error("tls12_ciphers '" + cfg.tls12_ciphers + "'"));
    if (SSL_CTX_set_ciphersuites(c, cfg.tls13_ciphersuites.c_str()) != 1)
      return common::unexpected(ossl_error("tls13_ciphersuites '" + cfg.tls13_ciphersuites + "'"));
    if (SSL_CTX_set1_groups_list(c, cfg.groups.c_str()) != 1)
      return common::unexpected(ossl_error("groups '" + cfg.groups + "'"));
    // Workers share nothing and a fleet shares ticket keys: stateless tickets only, no cache.
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(c, static_cast<long>(cfg.ticket_lifetime.count()));
    if (SSL_CTX_set_num_tickets(c, static_cast<size_t>(std::max(0, cfg.tls13_tickets))) != 1)
      return common::unexpected(ossl_error("tls13_tickets"));
    // Sessions (TLS 1.2 and 1.3 tickets) carry this and OpenSSL resumes one only where it matches
    // (ssl_get_prev_session, tls_parse_ctos_psk): a ticket is bound to the service and client-auth
    // policy that issued it. Every context of the set has the same one, so the SNI switch keeps it.
    if (SSL_CTX_set_session_id_context(c, cs->sid_ctx_.data(),
                                       static_cast<unsigned>(cs->sid_ctx_.size())) != 1)
      return common::unexpected(ossl_error("session id context"));
    SSL_CTX_set_ex_data(c, ctx_ex_index(), cs);
    SSL_CTX_set_tlsext_servername_callback(c, context_callbacks::servername);
    SSL_CTX_set_tlsext_servername_arg(c, cs);
    if (!cs->alpn_wire_.empty()) SSL_CTX_set_alpn_select_cb(c, context_callbacks::alpn, cs);
    if (cfg.tickets) SSL_CTX_set_tlsext_ticket_key_evp_cb(c, context_callbacks::ticket);
    SSL_CTX_set_tlsext_status_cb(c, context_callbacks::ocsp_status);
    SSL_CTX_set_tlsext_status_arg(c, cs);
    const auto& ca = cfg.client_auth;
    if (ca.enabled) {
      if (ca.ca_file.empty()) return common::fail("client_auth enabled without a CA file");
      if (SSL_CTX_load_verify_file(c, ca.ca_file.c_str()) != 1)
        return common::unexpected(ossl_error("load client CA bundle", ca.ca_file));
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.ca_file.c_str());
      if (names == nullptr)
        return common::unexpected(ossl_error("read client CA names", ca.ca_file));
      SSL_CTX_set_client_CA_list(c, names);
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER | (ca.required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                         nullptr);
      SSL_CTX_set_verify_depth(c, ca.verify_depth);
    }
    return ctx;
  }

  static common::result<void> add_cert(SSL_CTX* c, loaded_cert& lc) {
    if (SSL_CTX_use_certificate(c, lc.leaf.get()) != 1)
      return common::unexpected(ossl_error("use certificate", lc.cert_file));
    for (auto& x : lc.chain)
      if (SSL_CTX_add1_chain_cert(c, x.get()) != 1)
        return common::unexpected(ossl_error("add chain certificate", lc.cert_file));
    if (SSL_CTX_use_PrivateKey(c, lc.key.get()) != 1)
      return common::unexpected(ossl_error("use private key", lc.cert_file));
    if (SSL_CTX_check_private_key(c) != 1)
      return common::unexpected(ossl_error("check private key", lc.cert_file));
    return {};
  }

  static common::result<void> ticket_keys(const server_config& cfg, context_set& cs,
                                          const context_set* prev) {
    if (!cfg.tickets) return {};
    const int64_t now = std::time(nullptr);
    if (!cfg.ticket_key_file.empty()) {
      auto bytes = read_secret_file(cfg.ticket_key_file, "ticket key file");
      if (!bytes) return common::unexpected(bytes.error());
      auto keys = parse_ticket_keys(bytes->view(), cfg.ticket_key_file);
      if (!keys) return common::unexpected(keys.error());
      cs.keys_ = std::move(*keys);
    } else if (prev != nullptr && prev->random_ticket_key_ && !prev->keys_.empty()) {
      cs.keys_.push_back(prev->keys_.front());
      cs.random_ticket_key_ = true;
    } else {
      ticket_key k;
      if (RAND_bytes(k.name.data(), 16) != 1 || RAND_bytes(k.aes_key.data(), 32) != 1 ||
          RAND_bytes(k.hmac_key.data(), 32) != 1)
        return common::unexpected(ossl_error("random ticket key"));
      cs.keys_.push_back(k);
      cs.random_ticket_key_ = true;
    }
    if (prev == nullptr) return {};
    // Keys the new file dropped keep decrypting for the grace period (or until they expire).
    for (const ticket_key& old : prev->keys_) {
      bool kept = std::any_of(cs.keys_.begin(), cs.keys_.end(),
                              [&](const ticket_key& k) { return k.name == old.name; });
      if (kept) continue;
      ticket_key k = old;
      const int64_t until = now + cfg.ticket_key_grace.count();
      k.expires = old.expires == 0 ? until : std::min(old.expires, until);
      if (k.expires > now) cs.keys_.push_back(k);
    }
    return {};
  }
};

common::result<std::shared_ptr<const context_set>> context_set::build(const server_config& cfg,
                                                                      std::shared_ptr<offload> off,
                                                                      const context_set* previous) {
  if (cfg.certs.empty()) return common::fail("a TLS service needs at least one certificate");
  if (cfg.tls13_tickets < 0 || cfg.tls13_tickets > 16)
    return common::fail("tls13_tickets must be 0..16");
  std::shared_ptr<context_set> cs(new context_set());
  cs->cfg_ = cfg;
  ERR_clear_error();
  for (const auto& p : cfg.alpn) {
    if (p.empty() || p.size() > 255) return common::fail("bad ALPN protocol '" + p + "'");
    cs->alpn_wire_.push_back(static_cast<uint8_t>(p.size()));
    cs->alpn_wire_.insert(cs->alpn_wire_.end(), p.begin(), p.end());
  }
  if (auto r = context_builder::session_scope(cfg, *cs); !r) return common::unexpected(r.error());
  if (auto r = context_builder::ticket_keys(cfg, *cs, previous); !r)
    return common::unexpected(r.error());

  offload* route = nullptr;
  if (cfg.async && !cfg.engine.empty()) {
    auto e = load_engine(cfg.engine);
    if (!e) return common::unexpected(e.error());
    cs->engine_ = *e;
  } else if (cfg.async && off != nullptr) {
    route = off.get();
    cs->offload_ = std::move(off);
  }

  // Group certificates by their name set: one SSL_CTX per group holds one key of each type.
  std::map<std::string, size_t> group_of_names;
  std::vector<std::vector<loaded_cert>> groups;
  for (const auto& cc : cfg.certs) {
    auto lc = load_cert(cc, route, cs->engine_);
    if (!lc) return common::unexpected(lc.error());
    std::string key;
    for (const auto& n : lc->names) key += n + ",";
    auto [it, fresh] = group_of_names.emplace(key, groups.size());
    if (fresh) groups.emplace_back();
    auto& g = groups[it->second];
    for (const auto& other : g)
      if (other.key_type == lc->key_type)
        return common::fail("two certificates of the same key type for the same names (other: " +
                                other.cert_file + ")",
                            cc.cert_file);
    g.push_back(std::move(*lc));
  }
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    auto ctx = context_builder::new_ctx(cfg, cs.get());
    if (!ctx) return common::unexpected(ctx.error());
    for (auto& lc : groups[gi]) {
      if (auto r = context_builder::add_cert(ctx->get(), lc); !r)
        return common::unexpected(r.error());
      if (!lc.ocsp.empty()) {
        cs->ocsp_.emplace(lc.leaf.get(), std::move(lc.ocsp));
        cs->leaves_.push_back(std::move(lc.leaf));
      }
      for (const auto& n : lc.names) {
        auto& map = n.starts_with("*.") ? cs->wildcard_ : cs->exact_;
        std::string k = n.starts_with("*.") ? n.substr(2) : n;
        auto [it, fresh] = map.emplace(k, gi);
        if (!fresh && it->second != gi)
          return common::fail(
              "name '" + n + "' is served by two certificate groups with different names",
              lc.cert_file);
      }
    }
    cs->ctxs_.push_back(std::move(*ctx));
  }
  if (!cfg.default_name.empty()) {
    SSL_CTX* d = cs->lookup(cfg.default_name);
    if (d == nullptr)
      return common::fail("default_name '" + cfg.default_name + "' matches no certificate");
    for (size_t i = 0; i < cs->ctxs_.size(); ++i)
      if (cs->ctxs_[i].get() == d) cs->default_ = i;
  }
  return std::shared_ptr<const context_set>(std::move(cs));
}

context_set::~context_set() {
  ctxs_.clear();  // before the engine and offload they may route keys to
  if (engine_ != nullptr) release_engine(engine_);
}

SSL_CTX* context_set::lookup(std::string_view sni) const {
  // SNI is at most 255 bytes; lower-case it on the stack (no allocation per handshake).
  char buf[256];
  if (sni.empty() || sni.size() >= sizeof buf) return nullptr;
  for (size_t i = 0; i < sni.size(); ++i)
    buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(sni[i])));
  std::string_view name(buf, sni.size());
  if (name.back() == '.') name.remove_suffix(1);  // absolute form
  if (auto it = exact_.find(name); it != exact_.end()) return ctxs_[it->second].get();
  auto dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0) return nullptr;
  if (auto it = wildcard_.find(name.substr(dot + 1)); it != wildcard_.end())
    return ctxs_[it->second].get();
  return nullptr;
}

}  // namespace tls
