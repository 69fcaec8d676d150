// edgectl's admin API client (cpp-httplib) against the real admin server on IPv4 and IPv6
// loopback, the --admin errors an operator sees, and the reply body cap.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

#include "edge/admin.hh"
#include "edge/edgectl_http.hh"

namespace {

// The admin server polled on a thread while the client runs on this one.
class served {
 public:
  explicit served(const char* addr) {
    srv_.route("GET", "/healthz", [](const edge::http_request&) {
      return edge::http_response{200, "text/plain", "ok\n"};
    });
    srv_.route("POST", "/drain", [](const edge::http_request& r) {
      return edge::http_response{202, "text/plain", "query=" + r.query};
    });
    ok_ = static_cast<bool>(srv_.listen(*l4::ip_addr::parse(addr), 0));
    if (ok_)
      th_ = std::thread([this] {
        while (!stop_) srv_.poll_once(10);
      });
  }
  ~served() {
    stop_ = true;
    if (th_.joinable()) th_.join();
  }
  bool ok() const { return ok_; }
  uint16_t port() const { return srv_.port(); }

 private:
  edge::admin_server srv_;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::thread th_;
};

TEST(edgectl_http, get_and_post_over_ipv4_and_ipv6) {
  for (const char* addr : {"127.0.0.1", "::1"}) {
    served s(addr);
    if (!s.ok()) {
      if (std::string(addr) == "::1") GTEST_SKIP() << "no IPv6 loopback";
      FAIL() << "listen " << addr;
    }
    const std::string admin = std::string(addr) == "::1"
                                  ? "[::1]:" + std::to_string(s.port())
                                  : std::string(addr) + ":" + std::to_string(s.port());
    const edge::ctl::reply r = edge::ctl::http(admin, "GET", "/healthz", 2);
    EXPECT_EQ(r.error, "") << admin;
    EXPECT_EQ(r.status, 200) << admin;
    EXPECT_EQ(r.body, "ok\n") << admin;
    const edge::ctl::reply d = edge::ctl::http(admin, "POST", "/drain?grace=5&deadline=30", 2);
    EXPECT_EQ(d.status, 202) << admin << " " << d.error;
    EXPECT_EQ(d.body, "query=grace=5&deadline=30") << admin;
    const edge::ctl::reply nf = edge::ctl::http(admin, "GET", "/nope", 2);
    EXPECT_EQ(nf.status, 404) << admin << " " << nf.error;
  }
}

TEST(edgectl_http, bad_admin_and_unreachable) {
  EXPECT_EQ(edge::ctl::http("localhost", "GET", "/").error,
            "bad --admin localhost (want HOST:PORT)");
  EXPECT_EQ(edge::ctl::http("127.0.0.1:0", "GET", "/").error, "bad --admin port in 127.0.0.1:0");
  EXPECT_EQ(edge::ctl::http("127.0.0.1:70000", "GET", "/").error,
            "bad --admin port in 127.0.0.1:70000");
  EXPECT_EQ(edge::ctl::http("localhost:9180", "GET", "/").error,
            "bad --admin address localhost (want an IP address)");
  // A port bound but not listening refuses the connect.
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  const std::string admin = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  const edge::ctl::reply r = edge::ctl::http(admin, "GET", "/healthz", 1);
  close(fd);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error.rfind("cannot reach the edged admin API at " + admin + ": ", 0), 0u) << r.error;
  EXPECT_NE(r.error.find("(is edged running?)"), std::string::npos) << r.error;
}

// A peer that answers a body over the cap: an error, and no 64 MiB kept.
TEST(edgectl_http, reply_body_is_capped) {
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(listen(lfd, 1), 0);
  socklen_t len = sizeof sa;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len);
  std::thread peer([lfd] {
    const int c = accept(lfd, nullptr, nullptr);
    if (c < 0) return;
    char req[4096];
    (void)read(c, req, sizeof req);
    const size_t body = edge::ctl::max_reply_body + 1;
    const std::string head =
        "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body) + "\r\n\r\n";
    (void)send(c, head.data(), head.size(), MSG_NOSIGNAL);
    const std::string chunk(1 << 16, 'x');
    for (size_t sent = 0; sent < body;) {
      const ssize_t n = send(c, chunk.data(), std::min(chunk.size(), body - sent), MSG_NOSIGNAL);
      if (n <= 0) break;  // the client gave up
      sent += static_cast<size_t>(n);
    }
    close(c);
  });
  const std::string admin = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  const edge::ctl::reply r = edge::ctl::http(admin, "GET", "/metrics", 5);
  peer.join();
  close(lfd);
  EXPECT_EQ(r.error, "reply from the admin API at " + admin + " exceeds 64 MiB");
  EXPECT_TRUE(r.body.empty());
}

}  // namespace
