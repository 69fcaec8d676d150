// The admin API's request parser on hostile and ordinary input (table-driven), and the server's
// deadlines and eviction with tiny limits over real loopback sockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "edge/admin.hh"

namespace {

using edge::http_parse;

struct parse_case {
  const char* description;
  std::string input;
  http_parse expected;
  const char* path = "";
  const char* body = "";
};

TEST(admin_parse, table) {
  const edge::http_request_limits lim{.max_head = 64, .max_body = 8};
  const std::vector<parse_case> cases = {
      {"curl GET", "GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", http_parse::complete,
       "/healthz"},
      {"query split off", "GET /m?a=1 HTTP/1.0\r\n\r\n", http_parse::complete, "/m"},
      {"body by Content-Length", "POST /r HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcdef",
       http_parse::complete, "/r", "abc"},
      {"head not finished", "GET /healthz HTTP/1.1\r\nHost: x\r\n", http_parse::incomplete},
      {"body not finished", "POST /r HTTP/1.1\r\nContent-Length: 3\r\n\r\nab",
       http_parse::incomplete},
      {"head over the limit", "GET /" + std::string(80, 'a') + " HTTP/1.1\r\n\r\n",
       http_parse::too_large},
      {"no end of head within the limit", "GET / HTTP/1.1\r\nX: " + std::string(80, 'a'),
       http_parse::too_large},
      {"body over the limit", "POST /r HTTP/1.1\r\nContent-Length: 9\r\n\r\n",
       http_parse::too_large},
      {"Content-Length overflow", "POST /r HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
       http_parse::bad},
      {"negative Content-Length", "POST /r HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
       http_parse::bad},
      {"two Content-Lengths",
       "POST /r HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab", http_parse::bad},
      {"Transfer-Encoding", "POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
       http_parse::bad},
      {"obs-fold", "GET / HTTP/1.1\r\n folded\r\n\r\n", http_parse::bad},
      {"header without colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", http_parse::bad},
      {"space in header name", "GET / HTTP/1.1\r\nHo st: x\r\n\r\n", http_parse::bad},
      {"NUL in header value", std::string("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 27),
       http_parse::bad},
      {"bare CR in value", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", http_parse::bad},
      {"target not origin-form", "GET http://x/ HTTP/1.1\r\n\r\n", http_parse::bad},
      {"byte above 0x7e in target", "GET /\xff HTTP/1.1\r\n\r\n", http_parse::bad},
      {"unknown version", "GET / HTTP/2.0\r\n\r\n", http_parse::bad},
      {"no version", "GET /\r\n\r\n", http_parse::bad},
      {"two spaces", "GET  / HTTP/1.1\r\n\r\n", http_parse::bad},
      {"method not a token", "G(T / HTTP/1.1\r\n\r\n", http_parse::bad},
      {"method too long", std::string(17, 'G') + " / HTTP/1.1\r\n\r\n", http_parse::bad},
  };
  for (const auto& c : cases) {
    edge::http_request r;
    EXPECT_EQ(edge::parse_http_request(c.input, r, lim), c.expected) << c.description;
    if (c.expected == http_parse::complete) {
      EXPECT_EQ(r.path, c.path) << c.description;
      EXPECT_EQ(r.body, c.body) << c.description;
    }
  }
}

int connect_to(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

// True when the peer closed `fd` (after any response bytes).
bool closed_by_server(int fd) {
  char buf[512];
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 0) == 1) {
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) return n == 0 || errno != EAGAIN;
  }
  return false;
}

void serve_for(edge::admin_server& s, std::chrono::milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) s.poll_once(10);
}

TEST(admin_server, deadlines_and_eviction) {
  edge::admin_limits lim;
  lim.max_clients = 4;
  lim.idle_timeout = std::chrono::milliseconds(200);
  lim.request_timeout = std::chrono::milliseconds(400);
  edge::admin_server s(lim);
  ASSERT_TRUE(s.listen(*l4::ip_addr::parse("127.0.0.1"), 0));
  s.route("GET", "/healthz", [](const edge::http_request&) {
    return edge::http_response{200, "text/plain", "ok\n"};
  });
  const uint16_t port = s.port();
  ASSERT_NE(port, 0);

  // Four idle clients fill the table; a fifth evicts the oldest.
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(connect_to(port));
    serve_for(s, std::chrono::milliseconds(20));
  }
  EXPECT_EQ(s.clients(), 4u) << "accepted " << s.counters().accepted << " evicted "
                             << s.counters().evictions << " idle " << s.counters().idle_timeouts;
  const int fifth = connect_to(port);
  serve_for(s, std::chrono::milliseconds(30));
  EXPECT_EQ(s.counters().evictions, 1u);
  EXPECT_TRUE(closed_by_server(idle[0])) << "the oldest idle client is the one evicted";
  EXPECT_FALSE(closed_by_server(idle[1]));

  // Idle ones time out; a partial request runs into the request deadline even while it trickles.
  const int slow = connect_to(port);
  for (int i = 0; i < 8; ++i) {
    pollfd p{slow, POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) break;  // answered: stop before a send could meet the close
    ASSERT_EQ(send(slow, "X", 1, MSG_NOSIGNAL), 1);
    serve_for(s, std::chrono::milliseconds(100));
  }
  serve_for(s, std::chrono::milliseconds(20));
  // The slow client took the slot of idle[1] (the table was full again); the other three idled out.
  EXPECT_EQ(s.counters().evictions, 2u);
  EXPECT_EQ(s.counters().idle_timeouts, 3u);
  EXPECT_EQ(s.counters().request_timeouts, 1u);
  char buf[64] = {};
  EXPECT_GT(recv(slow, buf, sizeof buf - 1, MSG_DONTWAIT), 0);
  EXPECT_EQ(std::string(buf).rfind("HTTP/1.1 408", 0), 0u) << buf;
  EXPECT_EQ(s.clients(), 0u);

  // And a real request is answered.
  const int c = connect_to(port);
  const std::string req = "GET /healthz HTTP/1.1\r\n\r\n";
  ASSERT_EQ(send(c, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  serve_for(s, std::chrono::milliseconds(30));
  std::string got(256, '\0');
  got.resize(
      static_cast<size_t>(std::max<ssize_t>(0, recv(c, got.data(), got.size(), MSG_DONTWAIT))));
  EXPECT_EQ(got.rfind("HTTP/1.1 200 OK", 0), 0u) << got;
  EXPECT_NE(got.find("\r\n\r\nok\n"), std::string::npos);
  for (int fd : idle) close(fd);
  close(fifth);
  close(slow);
  close(c);
}

TEST(admin_server, throwing_handler_is_a_500_not_an_abort) {
  edge::admin_server s;
  ASSERT_TRUE(s.listen(*l4::ip_addr::parse("127.0.0.1"), 0));
  s.route("GET", "/boom", [](const edge::http_request&) -> edge::http_response {
    throw std::runtime_error("boom");
  });
  const int c = connect_to(s.port());
  const std::string req = "GET /boom HTTP/1.1\r\n\r\n";
  ASSERT_EQ(send(c, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  serve_for(s, std::chrono::milliseconds(30));
  char buf[64] = {};
  EXPECT_GT(recv(c, buf, sizeof buf - 1, MSG_DONTWAIT), 0);
  EXPECT_EQ(std::string(buf).rfind("HTTP/1.1 500", 0), 0u) << buf;
  EXPECT_EQ(s.counters().handler_errors, 1u);
  close(c);
}

}  // namespace
