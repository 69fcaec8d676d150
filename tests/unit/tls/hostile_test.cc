// Hostile-input regressions (issue 10): session resumption scoped to the service and client-auth
// policy that issued the session, SNI and client-certificate CN checked before they travel
// upstream, key and ticket-key files that others can read refused.
#include <sys/stat.h>

#include <cstring>
#include <fstream>

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
