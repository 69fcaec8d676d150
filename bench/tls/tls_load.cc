// Load client for the TLS peer bench (bench/tls/peer_bench.py): one thread, epoll, non-blocking
// OpenSSL, `conns` connections kept in flight against one TLS server for `secs` seconds.
//
//   full    a new TLS 1.3 session per connection (no ticket offered), then one small HTTP/1.1
//           request with `Connection: close`; the response is read to the server's EOF, so the
//           server completes the handshake, relays to its upstream and back, and closes.
//   resume  the same, but every connection offers the newest ticket it was given (one priming
//           full handshake first); a connection the server did not resume counts as not_resumed.
//   bulk    keep-alive GETs of a large file over `conns` connections; counts body bytes.
//
// The server's certificate type is chosen by the signature algorithms the client offers
// (`--sig ecdsa` → ECDSA+SHA256, `--sig rsa` → RSA-PSS/PKCS#1 with SHA-256) and checked on every
// handshake (a wrong one is an error). Key exchange is X25519, the cipher TLS_AES_128_GCM_SHA256,
// so every server does the same crypto. The certificate chain is not verified (the client's CPU
// is not what is measured); the CertificateVerify signature still is, by OpenSSL.
//
// Usage: tls_load --connect IP:PORT --mode full|resume|bulk [--sig ecdsa|rsa] [--conns N]
//                 [--rate CONN_PER_S] [--secs S] [--path /] [--sni example.test]
//                 [--timeout-ms 5000]
// --rate paces new connections (at most `conns` in flight), so servers of different speed see the
// same offered load.
// Prints one line of key=value figures; exit 0 when at least one request completed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct ctx_free {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct session_free {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using ctx_ptr = std::unique_ptr<SSL_CTX, ctx_free>;
using session_ptr = std::unique_ptr<SSL_SESSION, session_free>;

enum class mode { full, resume, bulk };

// Every way a connection can fail, counted under its name.
#define TLS_LOAD_ERRORS(X) \
  X(connect)               \
  X(handshake)             \
  X(wrong_key)             \
  X(write)                 \
  X(read)                  \
  X(bad_response)          \
  X(early_eof)             \
  X(timeout)
enum class error : uint8_t {
#define X(n) n,
  TLS_LOAD_ERRORS(X)
#undef X
      count
};
constexpr const char* error_names[] = {
#define X(n) #n,
    TLS_LOAD_ERRORS(X)
#undef X
};

struct options {
  sockaddr_in addr{};
  mode m = mode::full;
  bool rsa = false;
  int conns = 32;
  double secs = 10;
  std::string path = "/";
  std::string sni = "example.test";
  int64_t timeout_ns = 5'000'000'000;
  double rate = 0;  // new connections per second at most (0: as fast as `conns` allows)
};

struct counters {
  uint64_t connections = 0;  // TCP connections opened
  uint64_t handshakes = 0;   // completed TLS handshakes
  uint64_t resumed = 0;      // of which the server resumed
  uint64_t not_resumed = 0;  // resume mode only, after priming
  uint64_t requests = 0;     // complete responses with status 200
  uint64_t bytes = 0;        // decrypted response bytes (head and body)
  uint64_t errors[static_cast<size_t>(error::count)] = {};
};

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

enum class state : uint8_t { free, connecting, handshake, write, read_head, read_body, drain };

struct conn {
  int fd = -1;
  SSL* ssl = nullptr;
  state st = state::free;
  size_t req_off = 0;
  char head[4096];
  size_t head_len = 0;
  int64_t body_left = 0;  // -1: until EOF
  int64_t deadline = 0;
  bool offered = false;  // a ticket was offered (resume mode)
};

class client {
 public:
  explicit client(const options& o) : o_(o), conns_(static_cast<size_t>(o.conns)) {}

  bool init() {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx_) return false;
    SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx_.get(), TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_NONE, nullptr);
    // Sessions are reused only where this client says so (resume mode), never from a cache.
    SSL_CTX_set_session_cache_mode(ctx_.get(), SSL_SESS_CACHE_OFF);
    // A server that closes without close_notify still ends a response cleanly (EOF, not an error).
    SSL_CTX_set_options(ctx_.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    const char* sigalgs = o_.rsa ? "RSA-PSS+SHA256:rsa_pss_pss_sha256:RSA+SHA256" : "ECDSA+SHA256";
    if (SSL_CTX_set1_sigalgs_list(ctx_.get(), sigalgs) != 1 ||
        SSL_CTX_set1_groups_list(ctx_.get(), "X25519") != 1 ||
        SSL_CTX_set_ciphersuites(ctx_.get(), "TLS_AES_128_GCM_SHA256") != 1 ||
        SSL_CTX_set_alpn_protos(ctx_.get(), alpn, sizeof alpn) != 0)
      return false;
    std::string conn_hdr = o_.m == mode::bulk ? "" : "Connection: close\r\n";
    request_ = "GET " + o_.path + " HTTP/1.1\r\nHost: " + o_.sni + "\r\n" + conn_hdr + "\r\n";
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    return ep_ >= 0;
  }

  void run() {
    const int64_t t0 = t0_ = now_ns();
    const int64_t end = t0 + static_cast<int64_t>(o_.secs * 1e9);
    const int wait_ms = o_.rate > 0 ? 1 : 50;  // a paced client opens connections between events
    int64_t next_scan = t0;
    epoll_event evs[256];
    top_up();
    while (active_ > 0 || (o_.rate > 0 && !stopping_)) {
      int n = epoll_wait(ep_, evs, 256, wait_ms);
      for (int i = 0; i < n; ++i) drive(*static_cast<conn*>(evs[i].data.ptr));
      const int64_t now = now_ns();
      if (!stopping_ && now >= end) {
        stopping_ = true;
        // Bulk is a rate over the window; handshake modes let the connections in flight finish so
        // that the server's CPU matches the counted handshakes.
        if (o_.m == mode::bulk)
          for (auto& c : conns_)
            if (c.st != state::free) finish(c, true);
      }
      if (now >= next_scan) {
        for (auto& c : conns_)
          if (c.st != state::free && now > c.deadline) fail(c, error::timeout);
        next_scan = now + 100'000'000;
      }
      top_up();
    }
    wall_s_ = static_cast<double>(now_ns() - t0) / 1e9;
  }

  int report() const {
    uint64_t errs = 0;
    for (uint64_t e : n_.errors) errs += e;
    const char* mname = o_.m == mode::full ? "full" : o_.m == mode::resume ? "resume" : "bulk";
    std::printf(
        "tls_load mode=%s sig=%s conns=%d rate=%.0f secs=%.3f connections=%lu handshakes=%lu "
        "resumed=%lu not_resumed=%lu requests=%lu bytes=%lu hs_per_s=%.1f MB_per_s=%.1f errors=%lu",
        mname, o_.rsa ? "rsa" : "ecdsa", o_.conns, o_.rate, wall_s_, n_.connections, n_.handshakes,
        n_.resumed, n_.not_resumed, n_.requests, n_.bytes,
        static_cast<double>(n_.handshakes) / wall_s_, static_cast<double>(n_.bytes) / wall_s_ / 1e6,
        errs);
    for (size_t i = 0; i < static_cast<size_t>(error::count); ++i)
      if (n_.errors[i] != 0) std::printf(" err_%s=%lu", error_names[i], n_.errors[i]);
    std::printf("\n");
    if (!first_error_.empty())
      std::fprintf(stderr, "tls_load: first error: %s\n", first_error_.c_str());
    return n_.requests > 0 ? 0 : 1;
  }

 private:
  // Connections wanted in flight now: one until resume mode holds a ticket, none once stopping.
  int wanted() const {
    if (stopping_) return 0;
    if (o_.m == mode::resume && !ticket_) return 1;
    return o_.conns;
  }

  void top_up() {
    // Paced: no more connections than `rate` × elapsed time (the first one at once).
    const uint64_t allowed =
        o_.rate > 0 ? static_cast<uint64_t>(static_cast<double>(now_ns() - t0_) * o_.rate / 1e9) + 1
                    : UINT64_MAX;
    for (auto& c : conns_) {
      if (active_ >= wanted() || n_.connections >= allowed) return;
      if (c.st == state::free) open(c);
    }
  }

  void open(conn& c) {
    c = conn{};
    c.deadline = now_ns() + o_.timeout_ns;
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ++active_;
    ++n_.connections;
    c.st = state::connecting;
    if (c.fd < 0) return fail(c, error::connect, "socket");
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c.fd, reinterpret_cast<const sockaddr*>(&o_.addr), sizeof o_.addr) != 0 &&
        errno != EINPROGRESS)
      return fail(c, error::connect, std::strerror(errno));
    c.ssl = SSL_new(ctx_.get());
    if (c.ssl == nullptr || SSL_set_fd(c.ssl, c.fd) != 1) return fail(c, error::connect, "SSL_new");
    SSL_set_connect_state(c.ssl);
    SSL_set_tlsext_host_name(c.ssl, o_.sni.c_str());
    if (o_.m == mode::resume && ticket_) {
      SSL_set_session(c.ssl, ticket_.get());
      c.offered = true;
    }
    // Edge-triggered on both directions: drive() always runs OpenSSL until it reports WANT_*,
    // which means the socket itself returned EAGAIN.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    ev.data.ptr = &c;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) != 0) return fail(c, error::connect, "epoll_ctl");
  }

  void drive(conn& c) {
    char buf[65536];
    for (;;) {
      switch (c.st) {
        case state::free:
          return;
        case state::connecting: {
          int err = 0;
          socklen_t len = sizeof err;
          if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
            return fail(c, error::connect, std::strerror(err));
          c.st = state::handshake;
          break;
        }
        case state::handshake: {
          int r = SSL_do_handshake(c.ssl);
          if (r != 1) {
            if (want(c.ssl, r)) return;
            return fail(c, error::handshake, ssl_error());
          }
          if (!handshake_done(c)) return;
          c.st = state::write;
          break;
        }
        case state::write: {
          int r = SSL_write(c.ssl, request_.data() + c.req_off,
                            static_cast<int>(request_.size() - c.req_off));
          if (r <= 0) {
            if (want(c.ssl, r)) return;
            return fail(c, error::write, ssl_error());
          }
          c.req_off += static_cast<size_t>(r);
          if (c.req_off == request_.size()) c.st = state::read_head;
          break;
        }
        case state::read_head:
        case state::read_body:
        case state::drain: {
          int r = SSL_read(c.ssl, buf, sizeof buf);
          if (r <= 0) {
            if (want(c.ssl, r)) return;
            int e = SSL_get_error(c.ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN) return eof(c);
            return fail(c, error::read, ssl_error());
          }
          n_.bytes += static_cast<uint64_t>(r);
          if (!consume(c, buf, static_cast<size_t>(r))) return;
          break;
        }
      }
    }
  }

  // Checks the certificate type the server signed with, keeps resumption counts.
  bool handshake_done(conn& c) {
    ++n_.handshakes;
    int nid = NID_undef;
    SSL_get_peer_signature_type_nid(c.ssl, &nid);
    const bool rsa = nid == EVP_PKEY_RSA || nid == EVP_PKEY_RSA_PSS;
    const bool reused = SSL_session_reused(c.ssl) == 1;
    // A resumed handshake carries no CertificateVerify, so there is no signature to check.
    if (!reused && (rsa != o_.rsa || nid == NID_undef)) {
      fail(c, error::wrong_key, OBJ_nid2sn(nid));
      return false;
    }
    if (reused)
      ++n_.resumed;
    else if (c.offered)
      ++n_.not_resumed;
    return true;
  }

  // Feeds decrypted response bytes; false when the connection ended (failed or finished).
  bool consume(conn& c, const char* p, size_t n) {
    if (c.st == state::drain) return true;  // bytes after a complete response: ignored until EOF
    if (c.st == state::read_head) {
      size_t take = n < sizeof c.head - c.head_len ? n : sizeof c.head - c.head_len;
      std::memcpy(c.head + c.head_len, p, take);
      std::string_view h(c.head, c.head_len + take);
      size_t end = h.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        c.head_len += take;
        if (c.head_len == sizeof c.head)
          return fail(c, error::bad_response, "head too long"), false;
        return true;
      }
      const size_t used = end + 4 - c.head_len;  // bytes of p that belong to the head
      h = h.substr(0, end + 2);
      if (!(h.starts_with("HTTP/1.1 200 ") || h.starts_with("HTTP/1.0 200 ")))
        return fail(c, error::bad_response, std::string(h.substr(0, h.find('\r')))), false;
      c.body_left = content_length(h);
      c.st = state::read_body;
      p += used;
      n -= used;
    }
    if (c.body_left >= 0) {
      if (static_cast<int64_t>(n) > c.body_left) n = static_cast<size_t>(c.body_left);
      c.body_left -= static_cast<int64_t>(n);
      if (c.body_left == 0) response_done(c);
    }
    return c.st != state::free;
  }

  static int64_t content_length(std::string_view h) {
    for (size_t at = h.find("\r\n"); at != std::string_view::npos; at = h.find("\r\n", at + 2)) {
      std::string_view line = h.substr(at + 2, h.find("\r\n", at + 2) - at - 2);
      constexpr std::string_view key = "content-length:";
      if (line.size() > key.size() && strncasecmp(line.data(), key.data(), key.size()) == 0)
        return std::strtoll(std::string(line.substr(key.size())).c_str(), nullptr, 10);
    }
    return -1;
  }

  void response_done(conn& c) {
    ++n_.requests;
    c.deadline = now_ns() + o_.timeout_ns;
    if (o_.m != mode::bulk) {
      c.st = state::drain;  // the server closes after `Connection: close`
      return;
    }
    if (stopping_) return finish(c, true);
    c.st = state::write;
    c.req_off = 0;
    c.head_len = 0;
  }

  void eof(conn& c) {
    if (c.st == state::drain || (c.st == state::read_body && c.body_left < 0)) {
      if (c.st == state::read_body) ++n_.requests;
      return finish(c, true);
    }
    fail(c, error::early_eof);
  }

  bool want(SSL* ssl, int r) {
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
  }

  std::string ssl_error() {
    unsigned long e = ERR_peek_error();
    char b[256];
    if (e == 0)
      std::snprintf(b, sizeof b, "errno %d (%s)", errno, std::strerror(errno));
    else
      ERR_error_string_n(e, b, sizeof b);
    ERR_clear_error();
    return b;
  }

  void fail(conn& c, error e, const std::string& why = "") {
    ++n_.errors[static_cast<size_t>(e)];
    if (first_error_.empty())
      first_error_ = std::string(error_names[static_cast<size_t>(e)]) + ": " + why;
    ERR_clear_error();
    finish(c, false);
  }

  void finish(conn& c, bool ok) {
    if (c.ssl != nullptr) {
      // OpenSSL marks the session of an SSL freed without a shutdown as not resumable; this
      // connection ended cleanly (the server closed after the response), so say so.
      if (ok) SSL_set_shutdown(c.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
      if (ok && o_.m == mode::resume) {
        // The newest ticket replaces the held one: servers may treat tickets as single-use.
        session_ptr s(SSL_get1_session(c.ssl));
        if (s && SSL_SESSION_is_resumable(s.get()) == 1) ticket_ = std::move(s);
      }
      SSL_free(c.ssl);
    }
    if (c.fd >= 0) close(c.fd);  // also leaves the epoll set
    c.ssl = nullptr;
    c.fd = -1;
    c.st = state::free;
    --active_;
  }

  options o_;
  ctx_ptr ctx_;
  session_ptr ticket_;
  std::string request_;
  std::vector<conn> conns_;
  counters n_;
  std::string first_error_;
  int64_t t0_ = 0;
  int ep_ = -1;
  int active_ = 0;
  bool stopping_ = false;
  double wall_s_ = 0;
};

int usage(const char* why) {
  std::fprintf(
      stderr,
      "tls_load: %s\nusage: tls_load --connect IP:PORT --mode full|resume|bulk [--sig ecdsa|rsa] "
      "[--conns N] [--rate CONN_PER_S] [--secs S] [--path /] [--sni NAME] [--timeout-ms MS]\n",
      why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  bool have_addr = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i + 1 >= argc) return usage("missing value");
    const char* v = argv[++i];
    if (a == "--connect") {
      std::string s(v);
      size_t colon = s.rfind(':');
      if (colon == std::string::npos) return usage("--connect wants IP:PORT");
      o.addr.sin_family = AF_INET;
      o.addr.sin_port = htons(static_cast<uint16_t>(std::atoi(s.c_str() + colon + 1)));
      if (inet_pton(AF_INET, s.substr(0, colon).c_str(), &o.addr.sin_addr) != 1)
        return usage("bad IPv4 address");
      have_addr = true;
    } else if (a == "--mode") {
      std::string_view m = v;
      if (m == "full")
        o.m = mode::full;
      else if (m == "resume")
        o.m = mode::resume;
      else if (m == "bulk")
        o.m = mode::bulk;
      else
        return usage("bad --mode");
    } else if (a == "--sig") {
      std::string_view s = v;
      if (s != "ecdsa" && s != "rsa") return usage("bad --sig");
      o.rsa = s == "rsa";
    } else if (a == "--conns") {
      o.conns = std::atoi(v);
      if (o.conns < 1 || o.conns > 10000) return usage("--conns out of 1..10000");
    } else if (a == "--secs") {
      o.secs = std::atof(v);
      if (!(o.secs > 0)) return usage("bad --secs");
    } else if (a == "--rate") {
      o.rate = std::atof(v);
      if (!(o.rate >= 0)) return usage("bad --rate");
    } else if (a == "--path") {
      o.path = v;
    } else if (a == "--sni") {
      o.sni = v;
    } else if (a == "--timeout-ms") {
      o.timeout_ns = std::atoll(v) * 1'000'000;
      if (o.timeout_ns <= 0) return usage("bad --timeout-ms");
    } else {
      return usage("unknown option");
    }
  }
  if (!have_addr) return usage("--connect is required");
  signal(SIGPIPE, SIG_IGN);  // a write to a connection the server reset is an error, not an exit
  client c(o);
  if (!c.init()) {
    ERR_print_errors_fp(stderr);
    return usage("OpenSSL setup failed");
  }
  c.run();
  return c.report();
}
