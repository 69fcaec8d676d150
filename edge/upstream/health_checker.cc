#include "health_checker.hh"

#include "proxy_v2.hh"

#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <tuple>

#include "common/sockaddr.hh"

namespace edge::upstream {

const char* to_string(health_failure f) {
  static constexpr const char* texts[] = {EDGE_HEALTH_FAILURES(COMMON_ENUM_TEXT)};
  return common::enum_text(f, texts, "unknown");
}

const char* explain(health_failure f, bool proxy_v2) {
  switch (f) {
    case health_failure::none:
      return "ok";
    case health_failure::proxy_rejected:
      return "proxy_protocol mismatch: the backend answered the PROXY v2 header with 400 (it does "
             "not "
             "expect PROXY protocol: set proxy_protocol: false on the pool or make the backend "
             "accept it, "
             "e.g. nginx listen ... proxy_protocol)";
    case health_failure::closed_early:
      return proxy_v2 ? "closed without an answer after the PROXY v2 header"
                      : "closed without an answer (a backend that expects a PROXY header, e.g. "
                        "nginx listen "
                        "... proxy_protocol, does this: proxy_protocol mismatch? set "
                        "proxy_protocol: true)";
    case health_failure::bad_response:
      return proxy_v2 ? "no HTTP status line in the answer to the PROXY v2 header and request "
                        "(proxy_protocol "
                        "mismatch?)"
                      : "no HTTP status line in the answer";
    case health_failure::bad_status:
      return "HTTP status not the one expected";
    case health_failure::connect_refused:
      return "connection refused";
    case health_failure::connect_timeout:
      return "connect timed out";
    case health_failure::timeout:
      return "no answer within timeout_ms";
    default:
      return to_string(f);
  }
}

namespace {

enum op : uint8_t { op_connect = 1, op_send, op_recv, op_cancel };

uint64_t now_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
      duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
}

// "HTTP/1.x NNN": the status, -1 if this is not a status line, 0 if more bytes are needed.
int parse_status(const char* p, size_t n) {
  static constexpr char prefix[] = "HTTP/1.";
  const size_t pl = sizeof prefix - 1;
  if (std::memcmp(p, prefix, std::min(n, pl)) != 0) return -1;
  if (n < pl + 5) return 0;
  if (p[pl] < '0' || p[pl] > '9' || p[pl + 1] != ' ') return -1;
  int s = 0;
  for (size_t k = pl + 2; k < pl + 5; ++k) {
    if (p[k] < '0' || p[k] > '9') return -1;
    s = s * 10 + (p[k] - '0');
  }
  return s >= 100 ? s : -1;
}

}  // namespace

struct health_checker::ring_holder {
  io_uring ring{};
  bool ok = false;
  ~ring_holder() {
    if (ok) io_uring_queue_exit(&ring);
  }
};

struct health_checker::check {
  enum class phase : uint8_t { idle, connecting, sending, receiving };
  phase ph = phase::idle;
  bool verdict_given = true;
  int fd = -1;
  unsigned inflight = 0;
  uint64_t next_due_ms = 0;
  uint64_t deadline_ms = 0;
  unsigned ok_run = 0;
  unsigned fail_run = 0;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string request;
  size_t sent = 0;
  char buf[256]{};
  size_t len = 0;
};

common::result<std::unique_ptr<health_checker>> health_checker::create(
    std::vector<health_target> targets, change_fn on_change, unsigned ring_entries) {
  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& t = targets[i];
    const std::string who =
        "health check for " + t.pool + "[" + std::to_string(t.backend) + "] " + t.address.str();
    if (t.port == 0) return common::fail(who + ": port 0");
    const auto& p = t.params;
    if (p.interval_ms == 0 || p.timeout_ms == 0)
      return common::fail(who + ": interval and timeout must be > 0");
    if (p.timeout_ms > p.interval_ms)
      return common::fail(who + ": timeout must not exceed interval");
    if (p.rise == 0 || p.fall == 0) return common::fail(who + ": rise and fall must be >= 1");
    if (p.kind == health_kind::http &&
        (p.path.empty() || p.path[0] != '/' || p.path.find_first_of("\r\n ") != std::string::npos))
      return common::fail(who +
                          ": HTTP path must start with '/' and contain no spaces or line breaks");
    if (p.host.find_first_of("\r\n") != std::string::npos) return common::fail(who + ": bad Host");
  }
  std::unique_ptr<health_checker> h(new health_checker());
  h->ring_ = std::make_unique<ring_holder>();
  int rc = io_uring_queue_init(ring_entries, &h->ring_->ring, 0);
  if (rc < 0)
    return common::fail(std::string("health checker io_uring_queue_init: ") + std::strerror(-rc));
  h->ring_->ok = true;
  h->targets_ = std::move(targets);
  h->on_change_ = std::move(on_change);
  const size_t n = h->targets_.size();
  h->states_ = std::make_unique<health_state[]>(n);
  h->checks_ = std::make_unique<check[]>(n);
  const uint64_t now = now_ms();
  for (size_t i = 0; i < n; ++i) {
    const health_target& t = h->targets_[i];
    check& c = h->checks_[i];
    h->states_[i].up.store(t.params.initially_up, std::memory_order_relaxed);
    const uint16_t port = t.params.port != 0 ? t.params.port : t.port;
    const common::sock_addr sa = common::make_sock_addr(t.address.v6, t.address.b.data(), port);
    c.addr = sa.ss;
    c.addr_len = sa.len;
    if (t.params.proxy_v2) {
      // Signature, version 2 + LOCAL, AF_UNSPEC, no address block (spec section 2.2).
      c.request.assign(reinterpret_cast<const char*>(pp2_signature), sizeof pp2_signature);
      c.request.append({'\x20', '\x00', '\x00', '\x00'});
    }
    if (t.params.kind == health_kind::http) {
      std::string host = t.params.host;
      if (host.empty()) host = t.address.v6 ? "[" + t.address.str() + "]" : t.address.str();
      host += ":" + std::to_string(port);
      c.request += "GET " + t.params.path + " HTTP/1.0\r\nHost: " + host +
                   "\r\nUser-Agent: edge-health-check\r\nConnection: close\r\n\r\n";
    }
    // Spread the first round over the interval so that 1,000 targets do not fire at once.
    c.next_due_ms =
        now + (t.params.interval_ms * i / std::max<size_t>(n, 1)) % t.params.interval_ms;
  }
  return h;
}

health_checker::~health_checker() {
  stop();
  if (checks_)
    for (size_t i = 0; i < targets_.size(); ++i)
      if (checks_[i].fd >= 0) ::close(checks_[i].fd);
}

void health_checker::start() {
  if (thread_.joinable()) return;
  stop_.store(false);
  thread_ = std::thread([this] { run(); });
}

void health_checker::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void health_checker::start_check(size_t i, uint64_t now) {
  check& c = checks_[i];
  const health_target& t = targets_[i];
  c.next_due_ms = now + t.params.interval_ms;
  c.deadline_ms = now + t.params.timeout_ms;
  c.verdict_given = false;
  c.len = 0;
  c.sent = 0;
  states_[i].checks.add();
  c.fd = ::socket(c.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  io_uring_sqe* sqe = c.fd >= 0 ? io_uring_get_sqe(&ring_->ring) : nullptr;
  if (!sqe) {
    finish(c, i, false, health_failure::no_resources, 0);
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
    return;
  }
  io_uring_prep_connect(sqe, c.fd, reinterpret_cast<const sockaddr*>(&c.addr), c.addr_len);
  io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(i) << 8) | op_connect);
  c.ph = check::phase::connecting;
  ++c.inflight;
}

void health_checker::finish(check& c, size_t i, bool ok, health_failure why, int status) {
  if (c.verdict_given) return;
  c.verdict_given = true;
  health_state& s = states_[i];
  const health_params& p = targets_[i].params;
  s.last_status.store(status, std::memory_order_relaxed);
  s.last_failure.store(static_cast<uint8_t>(why), std::memory_order_relaxed);
  bool up = s.up.load(std::memory_order_relaxed);
  bool changed = false;
  if (ok) {
    c.fail_run = 0;
    if (++c.ok_run >= p.rise && !up) changed = true;
  } else {
    s.failures.add();
    c.ok_run = 0;
    if (++c.fail_run >= p.fall && up) changed = true;
  }
  if (changed) {
    up = !up;
    s.up.store(up, std::memory_order_relaxed);
    s.transitions.add();
    if (on_change_) on_change_(health_change{i, &targets_[i], up, why, status});
  }
  if (c.inflight > 0) cancel(c);
}

void health_checker::cancel(check& c) {
  // Keep the descriptor until every op on it is in, so that its number is not reused under them.
  if (c.fd < 0) return;
  (void)::shutdown(c.fd, SHUT_RDWR);
  if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring)) {
    io_uring_prep_cancel_fd(sqe, c.fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(&c - checks_.get()) << 8) | op_cancel);
    ++c.inflight;
  }
}

void health_checker::on_cqe(uint64_t ud, int res) {
  const size_t i = static_cast<size_t>(ud >> 8);
  const int o = static_cast<int>(ud & 0xff);
  if (i >= targets_.size()) return;
  check& c = checks_[i];
  if (c.inflight) --c.inflight;
  if (!c.verdict_given && o != op_cancel) step(c, i, o, res);
  if (c.verdict_given && c.inflight == 0 && c.ph != check::phase::idle) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
    c.ph = check::phase::idle;
  }
}

void health_checker::step(check& c, size_t i, int o, int res) {
  const health_params& p = targets_[i].params;
  if (o == op_connect) {
    if (res == -ECONNREFUSED) return finish(c, i, false, health_failure::connect_refused, 0);
    if (res < 0) return finish(c, i, false, health_failure::connect_error, 0);
    // A TCP check passes on connect; with PROXY v2 once the header is out, so that the backend
    // sees a well-formed connection rather than a broken header.
    if (c.request.empty()) return finish(c, i, true, health_failure::none, 0);
    c.ph = check::phase::sending;
  } else if (o == op_send) {
    if (res < 0) return finish(c, i, false, health_failure::send_error, 0);
    c.sent += static_cast<size_t>(res);
    if (c.sent >= c.request.size()) {
      if (p.kind == health_kind::tcp) return finish(c, i, true, health_failure::none, 0);
      c.ph = check::phase::receiving;
    }
  } else if (o == op_recv) {
    if (res < 0) return finish(c, i, false, health_failure::recv_error, 0);
    c.len += static_cast<size_t>(res);
    int status = parse_status(c.buf, c.len);
    if (status < 0 || (status == 0 && (res == 0 || c.len == sizeof c.buf)))
      return finish(
          c, i, false,
          res == 0 && c.len == 0 ? health_failure::closed_early : health_failure::bad_response, 0);
    if (status > 0) {
      bool ok = p.expect_status ? status == p.expect_status : (status >= 200 && status < 400);
      const health_failure why = ok                            ? health_failure::none
                                 : p.proxy_v2 && status == 400 ? health_failure::proxy_rejected
                                                               : health_failure::bad_status;
      return finish(c, i, ok, why, status);
    }
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
  if (!sqe) return finish(c, i, false, health_failure::no_resources, 0);
  if (c.ph == check::phase::sending) {
    io_uring_prep_send(sqe, c.fd, c.request.data() + c.sent, c.request.size() - c.sent,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(i) << 8) | op_send);
  } else {
    io_uring_prep_recv(sqe, c.fd, c.buf + c.len, sizeof c.buf - c.len, 0);
    io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(i) << 8) | op_recv);
  }
  ++c.inflight;
}

void health_checker::run() {
  io_uring* ring = &ring_->ring;
  auto drain = [&] {
    io_uring_cqe* cqes[64];
    unsigned n;
    while ((n = io_uring_peek_batch_cqe(ring, cqes, 64)) > 0) {
      for (unsigned k = 0; k < n; ++k) on_cqe(io_uring_cqe_get_data64(cqes[k]), cqes[k]->res);
      io_uring_cq_advance(ring, n);
    }
  };
  while (!stop_.load(std::memory_order_relaxed)) {
    // Completions first: a check that finished in time is not failed because this thread woke late.
    drain();
    const uint64_t now = now_ms();
    uint64_t wake = now + 100;  // also bounds how long stop() waits
    for (size_t i = 0; i < targets_.size(); ++i) {
      check& c = checks_[i];
      if (!c.verdict_given && now >= c.deadline_ms)
        finish(c, i, false,
               c.ph == check::phase::connecting ? health_failure::connect_timeout
                                                : health_failure::timeout,
               0);
      if (c.ph == check::phase::idle && c.inflight == 0 && now >= c.next_due_ms)
        start_check(i, now);
      if (c.ph == check::phase::idle) {
        wake = std::min(wake, c.next_due_ms);
      } else if (!c.verdict_given) {
        wake = std::min(wake, c.deadline_ms);
      }
    }
    io_uring_submit(ring);
    if (io_uring_cq_ready(ring) == 0 && wake > now) {
      __kernel_timespec ts{};
      const uint64_t ms = wake - now;
      ts.tv_sec = static_cast<long long>(ms / 1000);
      ts.tv_nsec = static_cast<long long>(ms % 1000) * 1000000;
      io_uring_cqe* cqe = nullptr;
      (void)io_uring_wait_cqe_timeout(ring, &cqe, &ts);
    }
  }
  // Leave no op in flight on a descriptor we are about to close.
  for (size_t i = 0; i < targets_.size(); ++i) {
    check& c = checks_[i];
    c.verdict_given = true;
    if (c.inflight) cancel(c);
  }
  io_uring_submit(ring);
  const uint64_t until = now_ms() + 1000;
  auto pending = [&] {
    for (size_t i = 0; i < targets_.size(); ++i)
      if (checks_[i].inflight) return true;
    return false;
  };
  while (pending() && now_ms() < until) {
    __kernel_timespec ts{0, 50000000};
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) == 0 && cqe) {
      on_cqe(io_uring_cqe_get_data64(cqe), cqe->res);
      io_uring_cqe_seen(ring, cqe);
    }
  }
}

std::vector<bool> carry_health(const health_checker* old, std::vector<health_target>& targets) {
  using key = std::tuple<std::string, std::string, uint16_t>;
  std::map<key, bool> was;
  if (old != nullptr)
    for (size_t i = 0; i < old->size(); ++i) {
      const health_target& t = old->target(i);
      was[key{t.pool, t.address.str(), t.port}] = old->state(i).up.load(std::memory_order_relaxed);
    }
  std::vector<bool> up(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    health_target& t = targets[i];
    if (auto it = was.find(key{t.pool, t.address.str(), t.port}); it != was.end())
      t.params.initially_up = it->second;
    up[i] = t.params.initially_up;
  }
  return up;
}

}  // namespace edge::upstream
