// The health checker against loopback peers: TCP and HTTP checks, rise/fall counting, timeouts,
// the change callback and the per-target state.
#include "health_checker.hh"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hh"

namespace edge::upstream {
namespace {

using namespace test;

// A minimal HTTP/1.0 server on a thread: answers every request with `status`.
struct http_server {
  listener l;
  std::atomic<int> status{200};
  std::atomic<bool> stop{false};
  std::atomic<int> requests{0};
  std::mutex mu;
  std::string last_request;
  std::thread t;

  http_server() {
    t = std::thread([this] {
      while (!stop) {
        int s = l.accept(20);
        if (s < 0) continue;
        std::string req;
        char buf[512];
        while (req.find("\r\n\r\n") == std::string::npos) {
          pollfd p{s, POLLIN, 0};
          if (::poll(&p, 1, 1000) != 1) break;
          ssize_t n = ::recv(s, buf, sizeof buf, 0);
          if (n <= 0) break;
          req.append(buf, static_cast<size_t>(n));
        }
        {
          std::lock_guard g(mu);
          last_request = req;
        }
        ++requests;
        std::string resp =
            "HTTP/1.0 " + std::to_string(status.load()) + " X\r\nContent-Length: 0\r\n\r\n";
        write_all(s, resp.data(), resp.size());
        ::close(s);
      }
    });
  }
  ~http_server() {
    stop = true;
    t.join();
  }
};

// Records callbacks; waits for the n-th.
struct changes {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<health_change> seen;
  std::vector<uint64_t> failures_at_change;  // failed checks so far
  std::vector<uint64_t>
      successes_at_change;  // passed checks so far (one check at a time per target)
  const health_checker* hc = nullptr;

  health_checker::change_fn fn() {
    return [this](const health_change& c) {
      std::lock_guard g(mu);
      seen.push_back(c);
      uint64_t checks = hc ? hc->state(c.target).checks.get() : 0;
      uint64_t failures = hc ? hc->state(c.target).failures.get() : 0;
      failures_at_change.push_back(failures);
      successes_at_change.push_back(checks - failures);
      cv.notify_all();
    };
  }
  bool wait(size_t n, int ms = 5000) {
    std::unique_lock g(mu);
    return cv.wait_for(g, std::chrono::milliseconds(ms), [&] { return seen.size() >= n; });
  }
};

health_target target(uint16_t port, health_kind kind, unsigned rise = 2, unsigned fall = 3) {
  health_target t;
  t.pool = "gw";
  t.backend = 0;
  t.address = addr("127.0.0.1");
  t.port = port;
  t.params.kind = kind;
  t.params.interval_ms = 100;
  t.params.timeout_ms = 80;
  t.params.rise = rise;
  t.params.fall = fall;
  return t;
}

TEST(health_checker, rejects_bad_params) {
  auto t = target(80, health_kind::http);
  t.params.path = "no-slash";
  auto r = health_checker::create({t}, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("path"), std::string::npos);
  t = target(80, health_kind::tcp);
  t.params.fall = 0;
  EXPECT_FALSE(health_checker::create({t}, nullptr));
  t = target(80, health_kind::tcp);
  t.params.timeout_ms = 200;  // > interval
  EXPECT_FALSE(health_checker::create({t}, nullptr));
  t = target(0, health_kind::tcp);
  EXPECT_FALSE(health_checker::create({t}, nullptr));
}

TEST(health_checker, tcp_down_after_fall_and_up_after_rise) {
  auto l = std::make_unique<listener>();
  const uint16_t port = l->port;
  changes ch;
  auto hc = health_checker::create({target(port, health_kind::tcp, 2, 3)}, ch.fn());
  ASSERT_TRUE(hc) << hc.error().str();
  ch.hc = hc->get();
  (*hc)->start();
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  EXPECT_TRUE((*hc)->state(0).up.load());
  EXPECT_GE((*hc)->state(0).checks.get(), 3u);
  EXPECT_EQ((*hc)->state(0).failures.get(), 0u);
  {
    std::lock_guard g(ch.mu);
    EXPECT_TRUE(ch.seen.empty());
  }

  l.reset();  // connection refused from now on
  ASSERT_TRUE(ch.wait(1));
  {
    std::lock_guard g(ch.mu);
    EXPECT_FALSE(ch.seen[0].up);
    EXPECT_EQ(ch.seen[0].last_failure, health_failure::connect_refused);
    EXPECT_EQ(ch.seen[0].info->port, port);
    EXPECT_EQ(ch.failures_at_change[0], 3u);  // exactly `fall` failed checks
  }
  EXPECT_FALSE((*hc)->state(0).up.load());

  listener back(false, 64, port);
  ASSERT_GE(back.fd, 0);
  ASSERT_TRUE(ch.wait(2));
  {
    std::lock_guard g(ch.mu);
    EXPECT_TRUE(ch.seen[1].up);
    // exactly `rise` passed checks after going down
    EXPECT_EQ(ch.successes_at_change[1] - ch.successes_at_change[0], 2u);
  }
  EXPECT_TRUE((*hc)->state(0).up.load());
  EXPECT_EQ((*hc)->state(0).transitions.get(), 2u);
  std::map<std::string, uint64_t> metrics;
  visit((*hc)->state(0), [&](std::string_view k, uint64_t v) { metrics[std::string(k)] = v; });
  EXPECT_EQ(metrics["up"], 1u);
  EXPECT_EQ(metrics["transitions"], 2u);
  EXPECT_GE(metrics["failures"], 3u);
  (*hc)->stop();
}

TEST(health_checker, http_status_decides) {
  http_server srv;
  changes ch;
  auto t = target(srv.l.port, health_kind::http, 1, 2);
  t.params.path = "/healthz";
  t.params.host = "gw.internal";
  auto hc = health_checker::create({t}, ch.fn());
  ASSERT_TRUE(hc);
  ch.hc = hc->get();
  (*hc)->start();
  ASSERT_TRUE(run_until([] { return 0u; },
                        [&] { return (*hc)->state(0).last_status.load() == 200; }, 3000));
  {
    std::lock_guard g(srv.mu);
    EXPECT_EQ(srv.last_request.rfind("GET /healthz HTTP/1.0\r\nHost: gw.internal:", 0), 0u)
        << srv.last_request;
  }
  srv.status = 503;
  ASSERT_TRUE(ch.wait(1));
  {
    std::lock_guard g(ch.mu);
    EXPECT_FALSE(ch.seen[0].up);
    EXPECT_EQ(ch.seen[0].last_failure, health_failure::bad_status);
    EXPECT_EQ(ch.seen[0].last_status, 503);
  }
  srv.status = 302;  // 3xx counts as up
  ASSERT_TRUE(ch.wait(2));
  {
    std::lock_guard g(ch.mu);
    EXPECT_TRUE(ch.seen[1].up);
  }
  (*hc)->stop();
}

TEST(health_checker, http_expected_status) {
  http_server srv;
  srv.status = 200;
  changes ch;
  auto t = target(srv.l.port, health_kind::http, 1, 1);
  t.params.expect_status = 204;
  auto hc = health_checker::create({t}, ch.fn());
  ASSERT_TRUE(hc);
  (*hc)->start();
  ASSERT_TRUE(ch.wait(1));
  {
    std::lock_guard g(ch.mu);
    EXPECT_FALSE(ch.seen[0].up);
    EXPECT_EQ(ch.seen[0].last_status, 200);
  }
  srv.status = 204;
  ASSERT_TRUE(ch.wait(2));
  (*hc)->stop();
}

TEST(health_checker, timeouts_and_garbage_fail) {
  blackhole bh;   // connect never completes
  listener mute;  // accepts (backlog) but never answers HTTP
  changes ch;
  auto a = target(bh.port(), health_kind::tcp, 1, 1);
  auto b = target(mute.port, health_kind::http, 1, 1);
  b.backend = 1;
  auto hc = health_checker::create({a, b}, ch.fn());
  ASSERT_TRUE(hc);
  (*hc)->start();
  ASSERT_TRUE(ch.wait(2));
  (*hc)->stop();
  std::lock_guard g(ch.mu);
  for (const auto& c : ch.seen) {
    EXPECT_FALSE(c.up);
    if (c.target == 0) {
      EXPECT_EQ(c.last_failure, health_failure::connect_timeout);
    } else {
      EXPECT_EQ(c.last_failure, health_failure::timeout);
    }
  }
}

TEST(health_checker, non_http_answer_is_bad_response) {
  listener l;
  std::atomic<bool> stop{false};
  std::thread t([&] {
    while (!stop) {
      int s = l.accept(20);
      if (s < 0) continue;
      write_all(s, "SSH-2.0-OpenSSH\r\n", 17);
      ::close(s);
    }
  });
  changes ch;
  auto hc = health_checker::create({target(l.port, health_kind::http, 1, 1)}, ch.fn());
  ASSERT_TRUE(hc);
  (*hc)->start();
  bool got = ch.wait(1);
  (*hc)->stop();
  stop = true;
  t.join();
  ASSERT_TRUE(got);
  std::lock_guard g(ch.mu);
  EXPECT_EQ(ch.seen[0].last_failure, health_failure::bad_response);
}

// A status line that arrives in pieces is reassembled (one recv is not one line).
TEST(health_checker, split_status_line_is_reassembled) {
  listener l;
  std::atomic<bool> stop{false};
  std::thread t([&] {
    while (!stop) {
      int s = l.accept(20);
      if (s < 0) continue;
      char buf[512];
      (void)::recv(s, buf, sizeof buf, 0);
      for (const char* part : {"HTT", "P/1.1 5", "03 Busy\r\n\r\n"}) {
        write_all(s, part, std::strlen(part));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      ::close(s);
    }
  });
  changes ch;
  auto hc = health_checker::create({target(l.port, health_kind::http, 1, 1)}, ch.fn());
  ASSERT_TRUE(hc);
  (*hc)->start();
  bool got = ch.wait(1);
  (*hc)->stop();
  stop = true;
  t.join();
  ASSERT_TRUE(got);
  std::lock_guard g(ch.mu);
  EXPECT_EQ(ch.seen[0].last_failure, health_failure::bad_status);
  EXPECT_EQ(ch.seen[0].last_status, 503);
}

TEST(health_checker, many_targets_stop_promptly) {
  std::vector<std::unique_ptr<listener>> ls;
  std::vector<health_target> ts;
  for (int i = 0; i < 50; ++i) {
    ls.push_back(std::make_unique<listener>());
    auto t = target(ls.back()->port, health_kind::tcp);
    t.backend = static_cast<size_t>(i);
    ts.push_back(t);
  }
  auto hc = health_checker::create(ts, nullptr);
  ASSERT_TRUE(hc);
  (*hc)->start();
  std::this_thread::sleep_for(std::chrono::milliseconds(450));
  auto t0 = std::chrono::steady_clock::now();
  (*hc)->stop();
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_LT(ms, 500);
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_TRUE((*hc)->state(i).up.load());
    EXPECT_GE((*hc)->state(i).checks.get(), 3u);
    EXPECT_EQ((*hc)->state(i).failures.get(), 0u);
  }
}

// A reload replaces the checker: a backend the old checker had taken down starts down in the new
// one (even with another kind of check), so the new checker's first `rise` passes publish "up"; a
// new checker that started every target up would never report the recovery (issue 17 item 1).
TEST(health_checker, reload_carries_state_and_recovery_is_reported) {
  auto l = std::make_unique<listener>();
  const uint16_t port = l->port;
  listener other;
  l.reset();  // refused: the old checker takes it down
  changes old_ch;
  auto old_hc = health_checker::create({target(port, health_kind::tcp, 2, 1)}, old_ch.fn());
  ASSERT_TRUE(old_hc) << old_hc.error().str();
  (*old_hc)->start();
  ASSERT_TRUE(old_ch.wait(1));
  (*old_hc)->stop();
  ASSERT_FALSE((*old_hc)->state(0).up.load());

  // The backend comes back before the reload; the reload changes the check to HTTP and adds a
  // backend (unknown to the old checker: starts up) and moves the old one to index 1.
  std::vector<health_target> next{target(other.port, health_kind::tcp),
                                  target(port, health_kind::http)};
  next[1].backend = 1;
  auto other_pool = target(port, health_kind::tcp);
  other_pool.pool = "other";  // same address and port in another pool: its own state
  other_pool.backend = 0;
  next.push_back(other_pool);
  const std::vector<bool> up = carry_health(old_hc->get(), next);
  EXPECT_EQ(up, (std::vector<bool>{true, false, true}));
  EXPECT_TRUE(next[0].params.initially_up);
  EXPECT_FALSE(next[1].params.initially_up);
  EXPECT_EQ(carry_health(nullptr, next), up) << "no old checker: the targets keep their states";

  listener reopened(false, 64, port);
  ASSERT_GE(reopened.fd, 0);
  std::atomic<bool> serving{true};
  std::thread srv([&] {
    while (serving) {
      int s = reopened.accept(20);
      if (s < 0) continue;
      char buf[512];
      (void)::recv(s, buf, sizeof buf, 0);
      static const char resp[] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
      write_all(s, resp, sizeof resp - 1);
      ::close(s);
    }
  });
  next.resize(2);
  changes ch;
  auto hc = health_checker::create(next, ch.fn());
  ASSERT_TRUE(hc) << hc.error().str();
  ch.hc = hc->get();
  EXPECT_FALSE((*hc)->state(1).up.load()) << "the new checker starts where the old one was";
  (*hc)->start();
  const bool reported = ch.wait(1);
  serving = false;
  srv.join();
  ASSERT_TRUE(reported) << "the recovery is reported after the reload";
  std::lock_guard g(ch.mu);
  EXPECT_EQ(ch.seen[0].target, 1u);
  EXPECT_TRUE(ch.seen[0].up);
  EXPECT_EQ(ch.successes_at_change[0], 2u) << "after exactly `rise` passes";
  EXPECT_TRUE((*hc)->state(0).up.load());
}

// A backend as nginx behaves with and without `listen ... proxy_protocol`: with it, a connection
// that does not start with a PROXY header is closed unanswered; without it, anything but a request
// line gets a 400. Records the first bytes of the last connection.
struct pp_backend {
  listener l;
  bool expects_proxy;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::string first;
  std::thread t;

  explicit pp_backend(bool proxy) : expects_proxy(proxy) {
    t = std::thread([this] {
      static const std::string local_hdr("\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16);
      while (!stop) {
        int s = l.accept(20);
        if (s < 0) continue;
        std::string got;
        char buf[512];
        for (;;) {  // until a full request head after any header, or the check ends
          const size_t head = got.compare(0, 12, local_hdr, 0, 12) == 0 ? 16 : 0;
          if (got.size() >= head && got.find("\r\n\r\n", head) != std::string::npos) break;
          pollfd p{s, POLLIN, 0};
          if (::poll(&p, 1, 300) != 1) break;
          ssize_t n = ::recv(s, buf, sizeof buf, 0);
          if (n <= 0) break;
          got.append(buf, static_cast<size_t>(n));
        }
        {
          std::lock_guard g(mu);
          first = got;
        }
        const bool has_hdr = got.compare(0, 16, local_hdr) == 0;
        const std::string req = has_hdr ? got.substr(16) : got;
        std::string resp;
        if (expects_proxy && !has_hdr)
          resp = "";  // "broken header": closed
        else if (!expects_proxy && has_hdr)
          resp = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        else if (req.empty() || req.rfind("GET ", 0) == 0)
          resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        else
          resp = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        if (!resp.empty()) write_all(s, resp.data(), resp.size());
        ::close(s);
      }
    });
  }
  ~pp_backend() {
    stop = true;
    t.join();
  }
  std::string seen() {
    std::lock_guard g(mu);
    return first;
  }
};

// The check speaks PROXY v2 (LOCAL) when the pool does; a mismatch either way is named.
TEST(health_checker, proxy_v2_checks_and_mismatch) {
  static const std::string local_hdr("\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16);
  struct row {
    const char* what;
    bool backend_expects_proxy;
    bool check_sends_proxy;
    health_kind kind;
    bool stays_up;
    health_failure why;  // when it goes down
    int status;
    const char* starts_with;  // what the backend received first
  };
  const row rows[] = {
      {"http, PROXY on both sides", true, true, health_kind::http, true, health_failure::none, 0,
       "\r\n\r\n"},
      {"http, backend expects PROXY, pool sends none", true, false, health_kind::http, false,
       health_failure::closed_early, 0, "GET / HTTP/1.0"},
      {"http, pool sends PROXY to a plain backend", false, true, health_kind::http, false,
       health_failure::proxy_rejected, 400, "\r\n\r\n"},
      {"http, plain on both sides", false, false, health_kind::http, true, health_failure::none, 0,
       "GET / HTTP/1.0"},
      {"tcp, PROXY on both sides: the header alone", true, true, health_kind::tcp, true,
       health_failure::none, 0, "\r\n\r\n"},
  };
  for (const row& r : rows) {
    SCOPED_TRACE(r.what);
    pp_backend be(r.backend_expects_proxy);
    changes ch;
    auto t = target(be.l.port, r.kind, 1, 1);
    t.params.proxy_v2 = r.check_sends_proxy;
    auto hc = health_checker::create({t}, ch.fn());
    ASSERT_TRUE(hc) << hc.error().str();
    ch.hc = hc->get();
    (*hc)->start();
    if (r.stays_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(350));
      EXPECT_TRUE((*hc)->state(0).up.load());
      EXPECT_GE((*hc)->state(0).checks.get(), 2u);
      EXPECT_EQ((*hc)->state(0).failures.get(), 0u);
    } else {
      ASSERT_TRUE(ch.wait(1));
      std::lock_guard g(ch.mu);
      EXPECT_FALSE(ch.seen[0].up);
      EXPECT_EQ(ch.seen[0].last_failure, r.why) << to_string(ch.seen[0].last_failure);
      EXPECT_EQ(ch.seen[0].last_status, r.status);
    }
    (*hc)->stop();
    const std::string seen = be.seen();
    EXPECT_EQ(seen.rfind(r.starts_with, 0), 0u) << "backend received: " << seen;
    if (r.check_sends_proxy) {
      EXPECT_EQ(seen.compare(0, 16, local_hdr), 0) << "PROXY v2 LOCAL, no addresses";
      if (r.kind == health_kind::tcp)
        EXPECT_EQ(seen.size(), 16u) << "a tcp check sends the header only";
      else
        EXPECT_EQ(seen.compare(16, 4, "GET "), 0);
    }
  }
  EXPECT_NE(
      std::string(explain(health_failure::proxy_rejected, true)).find("proxy_protocol mismatch"),
      std::string::npos);
  EXPECT_NE(std::string(explain(health_failure::closed_early, false)).find("proxy_protocol"),
            std::string::npos);
}

// health_check.port: the check goes to its own port; the target keeps the backend's (metrics).
TEST(health_checker, separate_check_port) {
  closed_port backend_port;  // the service port refuses: only the check port answers
  listener check_port;
  changes ch;
  auto t = target(backend_port.port, health_kind::tcp, 1, 1);
  t.params.port = check_port.port;
  auto hc = health_checker::create({t}, ch.fn());
  ASSERT_TRUE(hc);
  (*hc)->start();
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  (*hc)->stop();
  EXPECT_TRUE((*hc)->state(0).up.load());
  EXPECT_EQ((*hc)->state(0).failures.get(), 0u);
  EXPECT_GE((*hc)->state(0).checks.get(), 2u);
  EXPECT_EQ((*hc)->target(0).port, backend_port.port);
}

}  // namespace
}  // namespace edge::upstream
