// Hostile-input regressions (issue 10): session resumption scoped to the service and client-auth
// policy that issued the session, SNI and client-certificate CN checked before they travel
// upstream, key and ticket-key files that others can read refused.
#include <sys/stat.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <new>

#include "tls/hostname.hh"
#include "tls/ossl.hh"
#include "tls_test_util.hh"

using namespace tls_test;

namespace {

struct hostile : ::testing::Test {
  std::unique_ptr<tls::worker> w;
  void SetUp() override {
    auto r = tls::worker::create({.max_sessions = 16, .async_jobs = 16});
    ASSERT_TRUE(r) << r.error().str();
    w = std::move(*r);
  }
  tls::context_set_ptr build(const tls::server_config& c) {
    auto r = tls::context_set::build(c);
    EXPECT_TRUE(r) << r.error().str();
    return r ? *r : nullptr;
  }
  struct conn {
    tls::worker* w;
    tls::session* s;
    ~conn() { w->close(s); }
    tls::session* operator->() { return s; }
  };
  conn open(const tls::context_set_ptr& cs) {
    tls::session* s = w->open(cs);
    EXPECT_NE(s, nullptr);
    return {w.get(), s};
  }
};

// --- Defect 2: resumption across services -------------------------------------------------------

tls::server_config service(const char* name, const char* ca, bool required) {
  auto c = standard_config();
  c.service = name;
  c.ticket_key_file = cert("ticket1.key");  // one file for the fleet, as the README recommends
  if (ca != nullptr)
    c.client_auth = {.enabled = true, .ca_file = cert(ca), .verify_depth = 2, .required = required};
  return c;
}

client_opts with_cert(const char* pem, const char* key, int version) {
  client_opts o;
  o.min_version = o.max_version = version;
  if (pem != nullptr) {
    o.cert = cert(pem);
    o.key = cert(key);
  }
  return o;
}

struct outcome {
  tls::status st;
  bool resumed;
  tls::error_reason reason;
  std::string cn;
};

// A full handshake on `cs` with `o`; the client's session (ticket) for later resumption.
SSL_SESSION* session_from(hostile& f, const tls::context_set_ptr& cs, const client_opts& o) {
  client c(o, "example.test");
  auto s = f.open(cs);
  EXPECT_EQ(handshake(c, *s.s, *f.w).st, tls::status::ok);
  EXPECT_FALSE(s->info().resumed);
  SSL_SESSION* sess = SSL_get1_session(c.ssl.get());
  EXPECT_EQ(SSL_SESSION_is_resumable(sess), 1) << "the client holds a ticket";
  return sess;
}

outcome resume_on(hostile& f, const tls::context_set_ptr& cs, const client_opts& o,
                  SSL_SESSION* sess) {
  SSL_SESSION* copy = SSL_SESSION_dup(sess);
  client c(o, "example.test", copy);
  SSL_SESSION_free(copy);
  auto s = f.open(cs);
  auto r = handshake(c, *s.s, *f.w);
  return {r.st, s->info().resumed || SSL_session_reused(c.ssl.get()) == 1, r.reason,
          s->info().client_cn};
}

TEST_F(hostile, a_session_resumes_only_on_the_service_and_client_auth_policy_that_issued_it) {
  auto open_svc = build(service("open", nullptr, false));
  auto mtls = build(service("mtls", "client-ca.pem", true));
  auto other_ca = build(service("other-ca", "rogue-ca.pem", true));
  auto mtls_optional = build(service("mtls", "client-ca.pem", false));
  auto mtls_renamed = build(service("mtls2", "client-ca.pem", true));
  ASSERT_TRUE(open_svc && mtls && other_ca && mtls_optional && mtls_renamed);

  struct row {
    const char* what;
    const tls::context_set_ptr* issuer;
    const char *issue_cert, *issue_key;
    const tls::context_set_ptr* target;
    const char *resume_cert, *resume_key;
    tls::status st;
    bool resumed;
    tls::error_reason reason;
    const char* cn;
  };
  const row rows[] = {
      {"same service without client auth resumes", &open_svc, nullptr, nullptr, &open_svc, nullptr,
       nullptr, tls::status::ok, true, tls::error_reason::none, ""},
      {"same mTLS service resumes and keeps the CN", &mtls, "client.pem", "client.key", &mtls,
       nullptr, nullptr, tls::status::ok, true, tls::error_reason::none, "client1"},
      {"no-client-auth ticket on a required-cert service: full handshake, no certificate, refused",
       &open_svc, nullptr, nullptr, &mtls, nullptr, nullptr, tls::status::error, false,
       tls::error_reason::client_cert_rejected, ""},
      {"no-client-auth ticket, then a good certificate: full handshake that verifies it", &open_svc,
       nullptr, nullptr, &mtls, "client.pem", "client.key", tls::status::ok, false,
       tls::error_reason::none, "client1"},
      {"another CA's verified session on this service: full handshake, its certificate refused",
       &other_ca, "rogue-client.pem", "rogue-client.key", &mtls, "rogue-client.pem",
       "rogue-client.key", tls::status::error, false, tls::error_reason::client_cert_rejected, ""},
      {"optional-cert session (no certificate) on the required policy: refused", &mtls_optional,
       nullptr, nullptr, &mtls, nullptr, nullptr, tls::status::error, false,
       tls::error_reason::client_cert_rejected, ""},
      {"same policy, another service name: full handshake", &mtls, "client.pem", "client.key",
       &mtls_renamed, "client.pem", "client.key", tls::status::ok, false, tls::error_reason::none,
       "client1"},
  };
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    for (const auto& r : rows) {
      SCOPED_TRACE(std::string(r.what) + (version == TLS1_3_VERSION ? " (TLS 1.3)" : " (TLS 1.2)"));
      SSL_SESSION* sess =
          session_from(*this, *r.issuer, with_cert(r.issue_cert, r.issue_key, version));
      auto got = resume_on(*this, *r.target, with_cert(r.resume_cert, r.resume_key, version), sess);
      SSL_SESSION_free(sess);
      EXPECT_EQ(got.st, r.st);
      EXPECT_EQ(got.resumed, r.resumed);
      EXPECT_EQ(got.reason, r.reason);
      if (got.st == tls::status::ok) {
        EXPECT_EQ(got.cn, r.cn);
      }
    }
  }
}

TEST_F(hostile, the_session_scope_follows_the_ca_bundle_content_and_is_stable_across_builds) {
  // A fleet (or a reload) with the same service and CA content resumes; a CA file with other
  // content under the same path does not.
  const std::string ca = cert_dir() + "/scope-ca.pem";
  std::ofstream(ca, std::ios::trunc) << std::ifstream(cert("client-ca.pem")).rdbuf();
  auto cfg = service("svc", nullptr, true);
  cfg.client_auth = {.enabled = true, .ca_file = ca, .verify_depth = 2, .required = true};
  auto first = build(cfg);
  auto again = build(cfg);
  const auto o = with_cert("client.pem", "client.key", TLS1_3_VERSION);
  SSL_SESSION* sess = session_from(*this, first, o);
  EXPECT_TRUE(resume_on(*this, again, o, sess).resumed);
  {
    std::ofstream out(ca, std::ios::trunc);
    out << std::ifstream(cert("client-ca.pem")).rdbuf()
        << std::ifstream(cert("rogue-ca.pem")).rdbuf();
  }
  auto widened = build(cfg);
  EXPECT_FALSE(resume_on(*this, widened, o, sess).resumed);
  SSL_SESSION_free(sess);
}

}  // namespace

namespace {

// --- Defect 7: values passed upstream -----------------------------------------------------------

TEST(hostname, host_names_are_ldh_labels_with_underscores) {
  const std::string label63(63, 'a');
  std::string name253;  // 3 x 63 + 61 + 3 dots = 253
  name253 = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
  ASSERT_EQ(name253.size(), 253u);
  struct row {
    std::string name;
    bool ok;
  };
  const row rows[] = {
      {"example.test", true},
      {"Example.TEST.", true},
      {"my_host.example.test", true},
      {"xn--bcher-kva.example", true},
      {"a", true},
      {"1.2.3.4", true},
      {label63 + ".test", true},
      {name253, true},
      {name253 + ".", true},
      {"", false},
      {".", false},
      {"..", false},
      {".example.test", false},
      {"example..test", false},
      {"example.test..", false},
      {"-lead.test", false},
      {"trail-.test", false},
      {"trail.test-", false},
      {std::string(64, 'a') + ".test", false},
      {name253 + "c", false},
      {"example.test\r\nX-Injected: 1", false},
      {"example.test\n", false},
      {std::string("exa\0mple.test", 13), false},
      {"exa mple.test", false},
      {"example.test/", false},
      {"example.test:443", false},
      {"user@example.test", false},
      {"*.example.test", false},
      {"caf\xc3\xa9.test", false},
  };
  for (const auto& r : rows) EXPECT_EQ(tls::valid_host_name(r.name), r.ok) << '"' << r.name << '"';
}

TEST(hostname, printable_utf8_refuses_controls_and_malformed_sequences) {
  struct row {
    std::string s;
    bool ok;
  };
  const row rows[] = {
      {"client1", true},
      {"Zo\xc3\xab M\xc3\xbcller", true},
      {"\xe2\x82\xac \xf0\x9f\x94\x91", true},  // U+20AC, U+1F511
      {"", false},
      {"a\r\nb", false},
      {std::string("a\0b", 3), false},
      {"tab\there", false},
      {"del\x7f", false},
      {"\xc2\x85", false},          // U+0085 (C1 NEL)
      {"\xc0\xaf", false},          // overlong '/'
      {"\xe0\x80\xaf", false},      // overlong
      {"\xed\xa0\x80", false},      // surrogate
      {"\xf4\x90\x80\x80", false},  // above U+10FFFF
      {"\xc3", false},              // truncated
      {"\xe2\x82", false},
      {"\x80", false},
      {"\xff", false},
  };
  for (const auto& r : rows) EXPECT_EQ(tls::printable_utf8(r.s), r.ok) << r.s;
}

// The first flight of a client offering `sni` (set as is: OpenSSL's client takes any bytes but
// NUL).
std::string client_hello(const std::string& sni) {
  client c({}, nullptr);
  SSL_set_tlsext_host_name(c.ssl.get(), sni.c_str());
  SSL_do_handshake(c.ssl.get());
  ERR_clear_error();
  std::string out;
  char buf[4096];
  for (int n; (n = BIO_read(c.wbio, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  return out;
}

TEST_F(hostile, an_sni_that_is_not_a_host_name_is_refused_with_an_alert_and_counted) {
  auto cs = build(standard_config());
  struct row {
    const char* what;
    std::string sni;
    tls::error_reason reason;  // none: the handshake goes on
  };
  const row rows[] = {
      {"a host name", "www.example.test", tls::error_reason::none},
      {"underscore (accepted)", "my_host.wild.test", tls::error_reason::none},
      {"CR LF header injection", "example.test\r\nX-Forwarded-For: 10.0.0.1",
       tls::error_reason::bad_sni},
      {"LF", "example.test\n", tls::error_reason::bad_sni},
      {"space", "example.test evil", tls::error_reason::bad_sni},
      {"slash", "example.test/admin", tls::error_reason::bad_sni},
      {"254 bytes",
       std::string(63, 'a') + "." + std::string(63, 'a') + "." + std::string(63, 'a') + "." +
           std::string(62, 'a'),
       tls::error_reason::bad_sni},
      {"64-byte label", std::string(64, 'a') + ".test", tls::error_reason::bad_sni},
      {"empty label", "example..test", tls::error_reason::bad_sni},
      {"raw UTF-8", "caf\xc3\xa9.test", tls::error_reason::bad_sni},
      // OpenSSL itself refuses a NUL (same alert; counted as a failed handshake before our check).
      {"NUL", "example.test@nul", tls::error_reason::handshake_failed},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    std::string hello = client_hello(r.sni);
    if (r.sni.ends_with("@nul")) {  // the client API stops at NUL: patch it into the record
      const auto at = hello.find("@nul");
      ASSERT_NE(at, std::string::npos);
      hello[at] = '\0';
    }
    const uint64_t alerts = w->stats().alerts_sent[SSL_AD_UNRECOGNIZED_NAME].get();
    const uint64_t bad = w->stats().errors[static_cast<size_t>(tls::error_reason::bad_sni)].get();
    auto s = open(cs);
    s->feed({reinterpret_cast<const uint8_t*>(hello.data()), hello.size()});
    auto res = s->handshake();
    uint8_t out[8192];
    const size_t n = s->drain(out);
    if (r.reason == tls::error_reason::none) {
      EXPECT_EQ(res.st, tls::status::want_read);
      EXPECT_GT(n, 100u) << "ServerHello and the rest of the flight";
      continue;
    }
    EXPECT_EQ(res.st, tls::status::error);
    EXPECT_EQ(res.reason, r.reason);
    ASSERT_EQ(n, 7u) << "one alert record";
    EXPECT_EQ(out[0], 0x15);
    EXPECT_EQ(out[5], SSL3_AL_FATAL);
    EXPECT_EQ(out[6], SSL_AD_UNRECOGNIZED_NAME);
    EXPECT_EQ(w->stats().alerts_sent[SSL_AD_UNRECOGNIZED_NAME].get(), alerts + 1);
    EXPECT_EQ(w->stats().errors[static_cast<size_t>(tls::error_reason::bad_sni)].get(),
              bad + (r.reason == tls::error_reason::bad_sni ? 1 : 0));
    EXPECT_TRUE(s->info().sni.empty());
  }
}

// A client certificate from client-ca with `cn` of ASN.1 string `type`, written next to the PKI.
std::pair<std::string, std::string> client_cert_with_cn(const std::string& stem,
                                                        const std::string& cn, int type) {
  tls::bio_ptr cb(BIO_new_file(cert("client-ca.pem").c_str(), "r"));
  tls::x509_ptr ca(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
  tls::bio_ptr kb(BIO_new_file(cert("client-ca.key").c_str(), "r"));
  tls::evp_pkey_ptr ca_key(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
  tls::evp_pkey_ptr key(EVP_EC_gen("P-256"));
  tls::x509_ptr x(X509_new());
  EXPECT_TRUE(ca && ca_key && key && x);
  X509_set_version(x.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 4242);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400);
  X509_NAME* name = X509_get_subject_name(x.get());
  ASN1_STRING* s = ASN1_STRING_type_new(type);
  ASN1_STRING_set(s, cn.data(), static_cast<int>(cn.size()));
  X509_NAME_ENTRY* e = X509_NAME_ENTRY_create_by_NID(nullptr, NID_commonName, type, nullptr, 0);
  X509_NAME_ENTRY_set_data(e, type, ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
  X509_NAME_add_entry(name, e, -1, 0);
  X509_NAME_ENTRY_free(e);
  ASN1_STRING_free(s);
  X509_set_issuer_name(x.get(), X509_get_subject_name(ca.get()));
  X509_set_pubkey(x.get(), key.get());
  EXPECT_GT(X509_sign(x.get(), ca_key.get(), EVP_sha256()), 0);
  const std::string pem = cert_dir() + "/" + stem + ".pem", kpem = cert_dir() + "/" + stem + ".key";
  tls::bio_ptr out(BIO_new_file(pem.c_str(), "w"));
  PEM_write_bio_X509(out.get(), x.get());
  tls::bio_ptr kout(BIO_new_file(kpem.c_str(), "w"));
  PEM_write_bio_PrivateKey(kout.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  return {pem, kpem};
}

TEST_F(hostile, a_client_certificate_cn_goes_upstream_only_as_printable_utf8) {
  auto cfg = standard_config();
  cfg.client_auth = {
      .enabled = true, .ca_file = cert("client-ca.pem"), .verify_depth = 2, .required = true};
  auto cs = build(cfg);
  // UTF-8 "Zoë" as a BMPString: big-endian UTF-16.
  const std::string bmp("\0Z\0o\0\xeb", 6);
  struct row {
    const char* what;
    std::string cn;
    int type;
    std::string want;  // empty: omitted and counted
  };
  const row rows[] = {
      {"plain", "client7", V_ASN1_UTF8STRING, "client7"},
      {"UTF-8", "Zo\xc3\xab", V_ASN1_UTF8STRING, "Zo\xc3\xab"},
      {"BMPString, converted", bmp, V_ASN1_BMPSTRING, "Zo\xc3\xab"},
      {"CR LF", "client7\r\nX-Admin: 1", V_ASN1_UTF8STRING, ""},
      {"NUL", std::string("client7\0admin", 13), V_ASN1_UTF8STRING, ""},
      {"ESC sequence", "client7\x1b[2J", V_ASN1_UTF8STRING, ""},
      {"C1 control", "client7\xc2\x9b", V_ASN1_UTF8STRING, ""},
      {"T61String with BEL, converted then refused", "client7\x07", V_ASN1_T61STRING, ""},
      {"IA5String with DEL", "client7\x7f", V_ASN1_IA5STRING, ""},
  };
  int i = 0;
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    auto [pem, key] = client_cert_with_cn("cn-" + std::to_string(i++), r.cn, r.type);
    client_opts o;
    o.cert = pem;
    o.key = key;
    client c(o, "example.test");
    const uint64_t omitted = w->stats().client_cn_omitted.get();
    auto s = open(cs);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    EXPECT_TRUE(s->info().client_cert_verified);
    EXPECT_EQ(s->info().client_cn, r.want);
    EXPECT_EQ(w->stats().client_cn_omitted.get(), omitted + (r.want.empty() ? 1 : 0));
  }
}

}  // namespace

namespace {

// --- Defect 8: key files others can read ---------------------------------------------------------

std::string copy_with_mode(const std::string& from, const std::string& name, mode_t mode) {
  const std::string to = cert_dir() + "/" + name;
  unlink(to.c_str());
  std::ofstream(to, std::ios::binary) << std::ifstream(from, std::ios::binary).rdbuf();
  EXPECT_EQ(chmod(to.c_str(), mode), 0);
  return to;
}

TEST(secrets, key_and_ticket_key_files_that_group_or_others_can_access_are_refused) {
  struct row {
    const char* what;
    bool ticket;  // the ticket key file, else the private key file
    mode_t mode;
    bool ok;
  };
  const row rows[] = {
      {"key 0600", false, 0600, true},         {"key 0400", false, 0400, true},
      {"key 0644", false, 0644, false},        {"key 0640", false, 0640, false},
      {"key 0604", false, 0604, false},        {"key 0620 (group write)", false, 0620, false},
      {"ticket keys 0600", true, 0600, true},  {"ticket keys 0644", true, 0644, false},
      {"ticket keys 0660", true, 0660, false}, {"ticket keys 0606", true, 0606, false},
  };
  int i = 0;
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    auto cfg = standard_config();
    const std::string name = "perm-" + std::to_string(i++);
    std::string path;
    if (r.ticket) {
      path = copy_with_mode(cert("ticket1.key"), name + ".tickets", r.mode);
      cfg.ticket_key_file = path;
    } else {
      path = copy_with_mode(cert("ecdsa.key"), name + ".key", r.mode);
      cfg.certs[0].key_file = path;
    }
    auto cs = tls::context_set::build(cfg);
    EXPECT_EQ(static_cast<bool>(cs), r.ok) << (cs ? "" : cs.error().str());
    if (r.ok || cs) continue;
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(r.mode));
    EXPECT_EQ(cs.error().where, path);
    EXPECT_NE(cs.error().message.find(path), std::string::npos) << cs.error().message;
    EXPECT_NE(cs.error().message.find(std::string("mode ") + mode), std::string::npos)
        << cs.error().message;
    EXPECT_NE(cs.error().message.find(r.ticket ? "ticket key file" : "private key file"),
              std::string::npos);
  }
}

TEST_F(hostile, a_reload_with_a_readable_key_file_fails_and_the_running_set_keeps_serving) {
  auto cfg = standard_config();
  cfg.ticket_key_file = copy_with_mode(cert("ticket1.key"), "reload.tickets", 0600);
  auto running = build(cfg);
  ASSERT_TRUE(running);
  chmod(cfg.ticket_key_file.c_str(), 0644);
  auto reload = tls::context_set::build(cfg, nullptr, running.get());
  ASSERT_FALSE(reload);
  EXPECT_NE(reload.error().message.find("mode 0644"), std::string::npos) << reload.error().str();
  client c({}, "example.test");
  auto s = open(running);
  EXPECT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
}

TEST(secrets, ticket_keys_are_wiped_when_destroyed) {
  alignas(tls::ticket_key) unsigned char raw[sizeof(tls::ticket_key)];
  auto* k = new (raw) tls::ticket_key();
  k->aes_key.fill(0xa5);
  k->hmac_key.fill(0x5a);
  const size_t aes_at = offsetof(tls::ticket_key, aes_key),
               hmac_at = offsetof(tls::ticket_key, hmac_key);
  k->~ticket_key();
  for (size_t i = 0; i < 32; ++i) {
    EXPECT_EQ(raw[aes_at + i], 0) << i;
    EXPECT_EQ(raw[hmac_at + i], 0) << i;
  }
}

}  // namespace
