// context_set and session behaviour over memory BIOs with a real OpenSSL client: SNI and
// certificate type selection, ALPN, versions, tickets and key rotation, mTLS, OCSP stapling,
// close_notify, alerts, limits. Async offload is in async_test.cc.
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>

#include "tls/ossl.hh"
#include "tls_test_util.hh"

using namespace tls_test;

namespace {

struct fixture : ::testing::Test {
  std::unique_ptr<tls::worker> w;
  void SetUp() override {
    auto r = tls::worker::create({.max_sessions = 64, .async_jobs = 64});
    ASSERT_TRUE(r) << r.error().str();
    w = std::move(*r);
  }
  tls::context_set_ptr build(const tls::server_config& c, const tls::context_set* prev = nullptr) {
    auto r = tls::context_set::build(c, nullptr, prev);
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

TEST(ossl, errors_carry_reason_strings_and_paths) {
  tls::server_config c;
  c.certs = {{"/nonexistent/cert.pem", "/nonexistent/key.pem", {}, {}}};
  auto r = tls::context_set::build(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().where, "/nonexistent/cert.pem");

  std::string garbage = cert_dir() + "/garbage.pem";
  std::ofstream(garbage) << "not a certificate\n";
  c.certs = {{garbage, cert("ecdsa.key"), {}, {}}};
  r = tls::context_set::build(c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no start line"), std::string::npos) << r.error().message;
  EXPECT_EQ(ERR_peek_error(), 0u) << "error queue drained";
}

TEST(context, refuses_bad_configs_with_a_location) {
  tls::server_config c;
  auto r = tls::context_set::build(c);
  ASSERT_FALSE(r);

  c.certs = {{cert("ecdsa.pem"), cert("rsa.key"), {}, {}}};
  r = tls::context_set::build(c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("does not match"), std::string::npos) << r.error().str();

  c = standard_config();
  c.tls13_ciphersuites = "TLS_NOPE";
  r = tls::context_set::build(c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("tls13_ciphersuites"), std::string::npos);

  c = standard_config();
  std::string bad_keys = cert_dir() + "/bad.keys";
  std::ofstream(bad_keys) << "short";
  chmod(bad_keys.c_str(), 0600);  // key files others can read are refused first (hostile_test.cc)
  c.ticket_key_file = bad_keys;
  r = tls::context_set::build(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().where, bad_keys);
  EXPECT_NE(r.error().message.find("multiple of 80"), std::string::npos);

  c = standard_config();
  c.certs.push_back({cert("ecdsa.pem"), cert("ecdsa.key"), {}, {}});
  r = tls::context_set::build(c);
  ASSERT_FALSE(r) << "two ECDSA certificates for the same names";

  c = standard_config();
  c.default_name = "nowhere.test";
  EXPECT_FALSE(tls::context_set::build(c));

  c = standard_config();
  c.engine = "no-such-engine";
  r = tls::context_set::build(c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("engine 'no-such-engine' not found"), std::string::npos)
      << r.error().str();

  c = standard_config();
  c.alpn = {""};
  EXPECT_FALSE(tls::context_set::build(c));
  c = standard_config();
  c.certs[2].names = {"*bad.wild.test"};
  r = tls::context_set::build(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().where, cert("wild.pem"));
}

TEST(context, names_from_config_override_the_certificate) {
  auto c = standard_config();
  c.certs[4].names = {"Alias.Test", "*.alias.test"};
  c.default_name = "alias.test";
  auto r = tls::context_set::build(c);
  ASSERT_TRUE(r) << r.error().str();
  const auto& cs = *r;
  EXPECT_EQ(cs->lookup("alias.test"), cs->default_ctx());
  EXPECT_EQ(cs->lookup("x.alias.test"), cs->default_ctx());
  EXPECT_EQ(cs->lookup("default.test"), nullptr) << "configured names replace the SAN names";
  EXPECT_NE(cs->lookup("example.test"), nullptr);
  EXPECT_EQ(cs->lookup("example.test."), cs->lookup("example.test"));
  EXPECT_EQ(cs->lookup(std::string(300, 'a')), nullptr);
  EXPECT_EQ(cs->lookup(""), nullptr);
  EXPECT_EQ(cs->ctx_count(), 4u) << "example.test ECDSA+RSA share one context";
}

TEST_F(fixture, sni_selects_certificate_exact_wildcard_and_default) {
  auto cs = build(standard_config());
  ASSERT_TRUE(cs);
  struct row {
    const char* sni;
    const char* cn;
  } rows[] = {
      {"example.test", "example.test"},
      {"www.example.test", "example.test"},
      {"WWW.Example.TEST", "example.test"},
      {"a.wild.test", "*.wild.test"},
      {"a.b.wild.test", "default.test"},  // wildcards cover one label
      {"wild.test", "default.test"},
      {"unknown.test", "default.test"},
      {nullptr, "default.test"},
      {"rsa.test", "rsa.test"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.sni ? row.sni : "(no SNI)");
    client c({}, row.sni);
    SSL_set_verify(c.ssl.get(), SSL_VERIFY_NONE, nullptr);  // default cert does not match the name
    auto s = open(cs);
    auto r = handshake(c, *s.s, *w);
    ASSERT_EQ(r.st, tls::status::ok) << tls::to_string(r.reason);
    EXPECT_EQ(c.peer_cn(), row.cn);
    if (row.sni != nullptr) {
      EXPECT_EQ(s->info().sni, row.sni);
    }
  }
}

TEST_F(fixture, ecdsa_preferred_rsa_for_clients_without_ecdsa) {
  auto cs = build(standard_config());
  {
    client c({}, "example.test");
    auto s = open(cs);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    EXPECT_EQ(c.peer_key_type(), EVP_PKEY_EC);
    EXPECT_STREQ(s->info().version, "TLSv1.3");
  }
  {  // TLS 1.3 client that only signs with RSA-PSS
    client_opts o;
    o.sigalgs = "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384";
    client c(o, "example.test");
    auto s = open(cs);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    EXPECT_EQ(c.peer_key_type(), EVP_PKEY_RSA);
    EXPECT_EQ(c.peer_cn(), "example.test");
  }
  {  // TLS 1.2 client with RSA suites only
    client_opts o;
    o.max_version = TLS1_2_VERSION;
    o.ciphers = "ECDHE-RSA-AES128-GCM-SHA256";
    client c(o, "www.example.test");
    auto s = open(cs);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    EXPECT_EQ(c.peer_key_type(), EVP_PKEY_RSA);
    EXPECT_STREQ(s->info().version, "TLSv1.2");
    EXPECT_STREQ(s->info().cipher, "ECDHE-RSA-AES128-GCM-SHA256");
  }
  {  // TLS 1.2 client with both: server preference puts ECDSA first
    client_opts o;
    o.max_version = TLS1_2_VERSION;
    client c(o, "example.test");
    auto s = open(cs);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    EXPECT_EQ(c.peer_key_type(), EVP_PKEY_EC);
  }
}

TEST_F(fixture, old_versions_and_weak_ciphers_are_refused_with_an_alert) {
  auto cs = build(standard_config());
  {
    client_opts o;
    o.max_version = TLS1_1_VERSION;
    client c(o, "example.test");
    auto s = open(cs);
    auto r = handshake(c, *s.s, *w);
    EXPECT_EQ(r.st, tls::status::error);
    EXPECT_EQ(r.reason, tls::error_reason::handshake_failed);
    EXPECT_EQ(w->stats().alerts_sent[SSL_AD_PROTOCOL_VERSION].get(), 1u);
  }
  {
    client_opts o;
    o.max_version = TLS1_2_VERSION;
    o.ciphers = "AES128-SHA:DES-CBC3-SHA";  // no forward secrecy
    client c(o, "example.test");
    auto s = open(cs);
    EXPECT_EQ(handshake(c, *s.s, *w).st, tls::status::error);
    EXPECT_EQ(w->stats().alerts_sent[SSL_AD_HANDSHAKE_FAILURE].get(), 1u);
  }
  EXPECT_EQ(w->stats().handshake_failures.get(), 2u);
  EXPECT_EQ(w->stats().errors[static_cast<size_t>(tls::error_reason::handshake_failed)].get(), 2u);
}

TEST_F(fixture, alpn_follows_server_preference) {
  auto cs = build(standard_config());
  struct row {
    std::vector<std::string> offer;
    const char* want;
  } rows[] = {{{"http/1.1", "h2"}, "h2"}, {{"http/1.1"}, "http/1.1"}, {{"spdy/3"}, ""}, {{}, ""}};
  for (const auto& row : rows) {
    client_opts o;
    o.alpn = row.offer;
    client c(o, "example.test");
    auto s = open(cs);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    EXPECT_EQ(s->info().alpn, row.want);
    const unsigned char* p = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(c.ssl.get(), &p, &n);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(p), p ? n : 0), row.want);
  }
}

// Full handshake on `cs`, returns the client's session for resumption.
SSL_SESSION* ticket_from(fixture& f, const tls::context_set_ptr& cs, int* tickets = nullptr) {
  client c({}, "example.test");
  auto s = f.open(cs);
  EXPECT_EQ(handshake(c, *s.s, *f.w).st, tls::status::ok);
  EXPECT_FALSE(s->info().resumed);
  if (tickets != nullptr) *tickets = c.tickets;
  return SSL_get1_session(c.ssl.get());
}

bool resumes(fixture& f, const tls::context_set_ptr& cs, SSL_SESSION* sess) {
  // A client uses a TLS 1.3 ticket once; each attempt gets its own copy of the session.
  SSL_SESSION* copy = SSL_SESSION_dup(sess);
  client c({}, "example.test", copy);
  SSL_SESSION_free(copy);
  auto s = f.open(cs);
  EXPECT_EQ(handshake(c, *s.s, *f.w).st, tls::status::ok);
  EXPECT_EQ(SSL_session_reused(c.ssl.get()) == 1, s->info().resumed);
  return s->info().resumed;
}

TEST_F(fixture, tickets_resume_and_survive_key_rotation) {
  auto cfg = standard_config();
  cfg.ticket_key_file = cert("ticket1.key");
  auto cs1 = build(cfg);
  int tickets = 0;
  SSL_SESSION* t1 = ticket_from(*this, cs1, &tickets);
  EXPECT_EQ(tickets, 1) << "one TLS 1.3 ticket by default";
  EXPECT_TRUE(resumes(*this, cs1, t1));
  EXPECT_EQ(w->stats().handshakes_resumed.get(), 1u);

  // Another process of the fleet with the same file decrypts it.
  auto fleet = build(cfg);
  EXPECT_TRUE(resumes(*this, fleet, t1));

  // Rotation: the new file lists key 2 first (encrypts) and key 1 (still decrypts).
  cfg.ticket_key_file = cert("ticket21.key");
  auto cs2 = build(cfg, cs1.get());
  EXPECT_TRUE(resumes(*this, cs2, t1));
  SSL_SESSION* t2 = ticket_from(*this, cs2);

  // Key 1 leaves the file: it decrypts during the grace period only.
  cfg.ticket_key_file = cert("ticket2.key");
  auto cs3 = build(cfg, cs2.get());
  EXPECT_EQ(cs3->ticket_keys().size(), 2u);
  EXPECT_NE(cs3->ticket_keys()[1].expires, 0);
  EXPECT_TRUE(resumes(*this, cs3, t1));
  EXPECT_TRUE(resumes(*this, cs3, t2));
  cfg.ticket_key_grace = std::chrono::seconds(0);
  auto cs4 = build(cfg, cs2.get());
  EXPECT_FALSE(resumes(*this, cs4, t1)) << "no grace: full handshake";
  EXPECT_TRUE(resumes(*this, cs4, t2));
  SSL_SESSION_free(t1);
  SSL_SESSION_free(t2);
}

TEST_F(fixture, tls13_ticket_count_is_configurable) {
  auto cfg = standard_config();
  cfg.tls13_tickets = 3;
  int n = 0;
  SSL_SESSION_free(ticket_from(*this, build(cfg), &n));
  EXPECT_EQ(n, 3);
  cfg.tls13_tickets = 0;
  SSL_SESSION_free(ticket_from(*this, build(cfg), &n));
  EXPECT_EQ(n, 0);
}

std::array<uint8_t, 32> sha256_of(const std::string& pem) {
  tls::bio_ptr b(BIO_new_file(pem.c_str(), "r"));
  tls::x509_ptr x(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
  std::array<uint8_t, 32> md{};
  unsigned n = 0;
  X509_digest(x.get(), EVP_sha256(), md.data(), &n);
  return md;
}

TEST_F(fixture, mtls_required_optional_and_untrusted) {
  auto cfg = standard_config();
  cfg.client_auth = {
      .enabled = true, .ca_file = cert("client-ca.pem"), .verify_depth = 2, .required = true};
  auto cs = build(cfg);
  {
    client c({}, "example.test");
    auto s = open(cs);
    auto r = handshake(c, *s.s, *w);
    EXPECT_EQ(r.st, tls::status::error);
    EXPECT_EQ(r.reason, tls::error_reason::client_cert_rejected);
    EXPECT_EQ(w->stats().alerts_sent[SSL_AD_CERTIFICATE_REQUIRED].get(), 1u);
  }
  {
    client_opts o;
    o.cert = cert("rogue-client.pem");
    o.key = cert("rogue-client.key");
    client c(o, "example.test");
    auto s = open(cs);
    auto r = handshake(c, *s.s, *w);
    EXPECT_EQ(r.st, tls::status::error);
    EXPECT_EQ(r.reason, tls::error_reason::client_cert_rejected);
    EXPECT_EQ(w->stats().alerts_sent[SSL_AD_UNKNOWN_CA].get(), 1u);
  }
  {
    client_opts o;
    o.cert = cert("client.pem");
    o.key = cert("client.key");
    client c(o, "example.test");
    auto s = open(cs);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    EXPECT_TRUE(s->info().client_cert);
    EXPECT_TRUE(s->info().client_cert_verified);
    EXPECT_EQ(s->info().client_subject, "O=edge-test,CN=client1");
    EXPECT_EQ(s->info().client_cn, "client1");
    EXPECT_EQ(s->info().client_sha256, sha256_of(cert("client.pem")));
    // The subject survives resumption (it travels in the ticket).
    SSL_SESSION* t = SSL_get1_session(c.ssl.get());
    client c2(o, "example.test", t);
    auto s2 = open(cs);
    ASSERT_EQ(handshake(c2, *s2.s, *w).st, tls::status::ok);
    EXPECT_TRUE(s2->info().resumed);
    EXPECT_EQ(s2->info().client_cn, "client1");
    SSL_SESSION_free(t);
  }
  cfg.client_auth.required = false;
  auto opt = build(cfg);
  {
    client c({}, "example.test");
    auto s = open(opt);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    EXPECT_FALSE(s->info().client_cert);
  }
}

TEST_F(fixture, ocsp_response_is_stapled_for_its_certificate) {
  auto cs = build(standard_config());
  auto want = tls::read_file(cert("ecdsa.ocsp"));
  ASSERT_TRUE(want);
  client_opts o;
  o.ocsp = true;
  {
    client c(o, "example.test");
    auto s = open(cs);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    const unsigned char* p = nullptr;
    long n = SSL_get_tlsext_status_ocsp_resp(c.ssl.get(), &p);
    ASSERT_GT(n, 0);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(p), n), *want);
  }
  {  // RSA certificate of the same name has no response configured
    o.sigalgs = "rsa_pss_rsae_sha256";
    client c(o, "example.test");
    auto s = open(cs);
    ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
    const unsigned char* p = nullptr;
    EXPECT_LE(SSL_get_tlsext_status_ocsp_resp(c.ssl.get(), &p), 0);
  }
}

TEST_F(fixture, data_both_ways_and_close_notify_both_ways) {
  auto cs = build(standard_config());
  client c({}, "example.test");
  auto s = open(cs);
  ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);

  std::string big(100000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  size_t n = 0;
  ASSERT_EQ(SSL_write_ex(c.ssl.get(), big.data(), big.size(), &n), 1);
  std::string got;
  uint8_t buf[16384];
  for (int rounds = 0; got.size() < big.size() && rounds < 100; ++rounds) {
    to_server(c, *s.s);  // the input bound takes 64 KiB at a time
    tls::io_result r;
    while ((r = s->read(buf)).st == tls::status::ok)
      got.append(reinterpret_cast<char*>(buf), r.bytes);
    EXPECT_EQ(r.st, tls::status::want_read);
  }
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big);

  // Partial writes: each call takes at most a record's worth.
  for (size_t off = 0; off < big.size();) {
    auto wr = s->write({reinterpret_cast<const uint8_t*>(big.data()) + off, big.size() - off});
    ASSERT_EQ(wr.st, tls::status::ok);
    ASSERT_GT(wr.bytes, 0u);
    off += wr.bytes;
  }
  to_client(*s.s, c);
  EXPECT_TRUE(c.read_all() == big);

  // Client closes: the server sees closed and answers with its own close_notify.
  SSL_shutdown(c.ssl.get());
  to_server(c, *s.s);
  EXPECT_EQ(s->read(buf).st, tls::status::closed);
  EXPECT_TRUE(s->peer_closed());
  EXPECT_EQ(w->stats().close_notify_received.get(), 1u);
  EXPECT_EQ(w->stats().alerts_sent[SSL_AD_CLOSE_NOTIFY].get(), 1u);
  to_client(*s.s, c);
  char cb[16];
  EXPECT_LE(SSL_read(c.ssl.get(), cb, sizeof cb), 0);
  EXPECT_EQ(SSL_get_error(c.ssl.get(), 0), SSL_ERROR_ZERO_RETURN);
  EXPECT_EQ(s->write({reinterpret_cast<const uint8_t*>("x"), 1}).st, tls::status::closed);
}

TEST_F(fixture, server_initiated_close_notify) {
  auto cs = build(standard_config());
  client c({}, "example.test");
  auto s = open(cs);
  ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
  EXPECT_EQ(s->shutdown().st, tls::status::closed);
  to_client(*s.s, c);
  char cb[16];
  EXPECT_LE(SSL_read(c.ssl.get(), cb, sizeof cb), 0);
  EXPECT_EQ(SSL_get_shutdown(c.ssl.get()) & SSL_RECEIVED_SHUTDOWN, SSL_RECEIVED_SHUTDOWN);
}

TEST_F(fixture, garbage_gets_an_alert_and_a_counted_error) {
  auto cs = build(standard_config());
  {  // a handshake record whose ClientHello is cut short
    auto s = open(cs);
    const uint8_t bad[] = {0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03};
    s->feed(bad);
    auto r = s->handshake();
    EXPECT_EQ(r.st, tls::status::error);
    EXPECT_EQ(r.reason, tls::error_reason::handshake_failed);
    EXPECT_NE(s->last_ssl_error(), 0u);
    uint8_t out[64];
    size_t n = s->drain(out);
    ASSERT_EQ(n, 7u);
    EXPECT_EQ(out[0], 0x15) << "an alert record";
    EXPECT_EQ(out[6], SSL_AD_DECODE_ERROR);
    EXPECT_EQ(w->stats().alerts_sent[SSL_AD_DECODE_ERROR].get(), 1u);
    // Further calls keep reporting the same error without touching OpenSSL again.
    EXPECT_EQ(s->read(out).st, tls::status::error);
  }
  {  // plaintext HTTP on the TLS port: refused (OpenSSL sends no alert to a non-TLS peer)
    auto s = open(cs);
    const char req[] = "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";
    s->feed({reinterpret_cast<const uint8_t*>(req), sizeof req - 1});
    auto r = s->handshake();
    EXPECT_EQ(r.st, tls::status::error);
    EXPECT_EQ(ERR_GET_REASON(s->last_ssl_error()), SSL_R_HTTP_REQUEST);
  }
  EXPECT_EQ(w->stats().handshake_failures.get(), 2u);
}

TEST_F(fixture, key_update_flood_closes_the_connection) {
  auto cfg = standard_config();
  cfg.max_key_updates = 2;
  auto cs = build(cfg);
  client c({}, "example.test");
  auto s = open(cs);
  ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
  uint8_t buf[1024];
  tls::io_result r{};
  for (int i = 0; i < 4 && r.st != tls::status::error; ++i) {
    ASSERT_EQ(SSL_key_update(c.ssl.get(), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    size_t n = 0;
    SSL_write_ex(c.ssl.get(), "hi", 2, &n);
    to_server(c, *s.s);
    do r = s->read(buf);
    while (r.st == tls::status::ok);
  }
  EXPECT_EQ(r.st, tls::status::error);
  EXPECT_EQ(r.reason, tls::error_reason::key_update_limit);
  EXPECT_EQ(w->stats().key_updates.get(), 3u);
}

TEST_F(fixture, renegotiation_is_refused_and_counted) {
  auto cs = build(standard_config());
  client_opts o;
  o.max_version = TLS1_2_VERSION;
  client c(o, "example.test");
  auto s = open(cs);
  ASSERT_EQ(handshake(c, *s.s, *w).st, tls::status::ok);
  ASSERT_EQ(SSL_renegotiate(c.ssl.get()), 1);
  SSL_do_handshake(c.ssl.get());
  to_server(c, *s.s);
  uint8_t buf[256];
  auto r = s->read(buf);
  EXPECT_NE(r.st, tls::status::ok);
  EXPECT_EQ(w->stats().renegotiation_attempts.get(), 1u);
  EXPECT_EQ(w->stats().alerts_sent[SSL_AD_NO_RENEGOTIATION].get(), 1u);
  EXPECT_EQ(w->stats().handshakes_full.get(), 1u) << "no second handshake happened";
}

TEST_F(fixture, input_is_bounded_and_pool_is_bounded) {
  auto cs = build(standard_config());
  {
    auto s = open(cs);
    std::vector<uint8_t> junk(200 * 1024, 0x16);
    size_t took = s->feed(junk);
    EXPECT_EQ(took, w->config().max_input);
    EXPECT_EQ(w->stats().input_bounded.get(), 1u);
  }
  std::vector<tls::session*> all;
  for (int i = 0; i < 64; ++i) all.push_back(w->open(cs));
  EXPECT_EQ(w->open(cs), nullptr);
  EXPECT_EQ(w->stats().sessions_refused.get(), 1u);
  for (auto* s : all) w->close(s);
  EXPECT_EQ(w->open_sessions(), 0u);
}

}  // namespace
