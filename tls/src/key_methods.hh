#pragma once
// Private: routes a private key's operations through the in-process offload or an external
// engine. Lives apart because it uses OpenSSL's deprecated RSA_METHOD / EC_KEY_METHOD / ENGINE
// APIs (still the only key hook that ASYNC_pause_job works from in OpenSSL 3.0).
#include <string>

#include "common/result.hh"
#include "tls/ossl.hh"

namespace tls {

class offload;

// A copy of `key` (EC or RSA) whose sign/decrypt operations go to `off` when they run inside an
// ASYNC job whose wait context has a callback, and run in place otherwise.
common::result<evp_pkey_ptr> offload_key(EVP_PKEY* key, offload* off);

// An external engine by id (ENGINE_by_id + ENGINE_init), set as default for RSA/EC/pkey methods.
common::result<ENGINE*> load_engine(const std::string& id);
void release_engine(ENGINE* e);
// A copy of `key` whose RSA/EC method is the engine's.
common::result<evp_pkey_ptr> engine_key(EVP_PKEY* key, ENGINE* e);

}  // namespace tls
