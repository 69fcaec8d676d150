#include "edge/admin.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/sockaddr.hh"

namespace edge {
namespace {

// RFC 9110 token characters (method, header names).
bool is_tchar(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return true;
  if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(ch)) != std::string_view::npos;
}

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  return true;
}

// A header field value: visible ASCII, obs-text, space and tab; no other control byte (CR, LF,
// NUL).
bool valid_field_value(std::string_view v) {
  for (unsigned char ch : v)
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return false;
  return true;
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

}  // namespace

http_parse parse_http_request(std::string_view in, http_request& r,
                              const http_request_limits& lim) {
  const size_t head_end = in.substr(0, std::min(in.size(), lim.max_head + 4)).find("\r\n\r\n");
  if (head_end == std::string_view::npos)
    return in.size() >= lim.max_head + 4 ? http_parse::too_large : http_parse::incomplete;
  if (head_end > lim.max_head) return http_parse::too_large;
  const std::string_view head = in.substr(0, head_end + 2);  // every line ends with CRLF

  // Request line: METHOD SP request-target SP HTTP/1.x
  const size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0 || sp1 > 16) return http_parse::bad;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return http_parse::bad;
  const std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                         version = line.substr(sp2 + 1);
  for (unsigned char ch : method)
    if (!is_tchar(ch)) return http_parse::bad;
  if (target.front() != '/') return http_parse::bad;
  for (unsigned char ch : target)
    if (ch <= 0x20 || ch >= 0x7f) return http_parse::bad;
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return http_parse::bad;

  bool have_length = false;
  size_t content_length = 0;
  for (size_t pos = line_end + 2; pos < head.size();) {
    const size_t eol = head.find("\r\n", pos);
    const std::string_view h = head.substr(pos, eol - pos);
    pos = eol + 2;
    const size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return http_parse::bad;  // also obs-fold
    const std::string_view name = h.substr(0, colon), value = trim_ows(h.substr(colon + 1));
    for (unsigned char ch : name)
      if (!is_tchar(ch)) return http_parse::bad;
    if (!valid_field_value(value)) return http_parse::bad;
    if (ieq(name, "transfer-encoding")) return http_parse::bad;  // no chunked bodies here
    if (ieq(name, "content-length")) {
      if (have_length || value.empty() || value.size() > 10) return http_parse::bad;
      size_t v = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '9') return http_parse::bad;
        v = v * 10 + static_cast<size_t>(ch - '0');
      }
      if (v > lim.max_body) return http_parse::too_large;
      have_length = true;
      content_length = v;
    }
  }
  const size_t body_at = head_end + 4;
  if (in.size() - body_at < content_length) return http_parse::incomplete;
  r.method.assign(method);
  const size_t q = target.find('?');
  r.path.assign(target.substr(0, q));
  r.query.assign(q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
  r.body.assign(in.substr(body_at, content_length));
  return http_parse::complete;
}

const char* http_reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string query_param(std::string_view query, std::string_view key) {
  auto hex = [](char ch) -> int {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') return (ch | 0x20) - 'a' + 10;
    return -1;
  };
  for (size_t pos = 0; pos <= query.size();) {
    const size_t amp = std::min(query.find('&', pos), query.size());
    const std::string_view kv = query.substr(pos, amp - pos);
    pos = amp + 1;
    const size_t eq = kv.find('=');
    if (kv.substr(0, eq) != key) continue;
    if (eq == std::string_view::npos) return "1";
    std::string out;
    const std::string_view v = kv.substr(eq + 1);
    for (size_t i = 0; i < v.size(); ++i) {
      char ch = v[i];
      if (ch == '+') {
        ch = ' ';
      } else if (ch == '%') {
        const int hi = i + 1 < v.size() ? hex(v[i + 1]) : -1,
                  lo = i + 2 < v.size() ? hex(v[i + 2]) : -1;
        if (hi < 0 || lo < 0) return {};
        ch = static_cast<char>(hi * 16 + lo);
        i += 2;
      }
      if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) return {};
      out += ch;
    }
    return out;
  }
  return {};
}

admin_server::~admin_server() {
  for (auto& c : clients_)
    if (c.fd >= 0) close(c.fd);
  if (listen_fd_ >= 0) close(listen_fd_);
}

common::result<void> admin_server::listen(const l4::ip_addr& addr, uint16_t port) {
  // Idle admin clients, upstream sockets and files share the process's descriptors: take what the
  // hard limit allows, and give the admin API at most a quarter of it.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    if (nofile.rlim_cur < nofile.rlim_max) {
      rlimit raised = nofile;
      raised.rlim_cur = nofile.rlim_max;
      if (setrlimit(RLIMIT_NOFILE, &raised) == 0) nofile = raised;
    }
    if (nofile.rlim_cur != RLIM_INFINITY)
      limits_.max_clients =
          std::min<size_t>(limits_.max_clients, std::max<size_t>(16, nofile.rlim_cur / 4));
  }

  const common::sock_addr sa = common::make_sock_addr(addr.v6, addr.b.data(), port);
  const std::string where = "admin " + addr.str() + ":" + std::to_string(port);
  listen_fd_ = socket(sa.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) return common::fail(std::string("socket: ") + strerror(errno), where);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(listen_fd_, sa.get(), sa.len) != 0)
    return common::fail(std::string("bind: ") + strerror(errno), where);
  // A deep backlog: a burst of connections waits in the kernel instead of retrying SYNs for
  // seconds.
  if (::listen(listen_fd_, 1024) != 0)
    return common::fail(std::string("listen: ") + strerror(errno), where);
  return {};
}

uint16_t admin_server::port() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (listen_fd_ < 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return 0;
  return common::sock_port(ss);
}

void admin_server::route(const std::string& method, const std::string& path, handler h) {
  routes_[{method, path}] = std::move(h);
}

http_response admin_server::dispatch(const http_request& r) {
  // No admin request may end the process: a handler that throws (a JSON dump, an allocation) is a
  // 500.
  try {
    if (auto it = routes_.find({r.method, r.path}); it != routes_.end()) return it->second(r);
    for (const auto& [key, h] : routes_)
      if (key.second == r.path) return {405, "text/plain", "method not allowed\n"};
    return {404, "text/plain", "not found\n"};
  } catch (const std::exception& e) {
    ++counters_.handler_errors;
    return {500, "text/plain", std::string("internal error: ") + e.what() + "\n"};
  } catch (...) {
    ++counters_.handler_errors;
    return {500, "text/plain", "internal error\n"};
  }
}

void admin_server::respond(client& c, const http_response& resp) {
  ++counters_.requests;
  c.out = "HTTP/1.1 " + std::to_string(resp.status) + " " + http_reason(resp.status) +
          "\r\nContent-Type: " + resp.content_type +
          "\r\nContent-Length: " + std::to_string(resp.body.size()) +
          "\r\nConnection: close\r\n\r\n" + resp.body;
  c.responded = true;
  c.answered = clock::now();
  c.in.clear();
  c.in.shrink_to_fit();
}

void admin_server::serve(client& c) {
  http_request r;
  switch (parse_http_request(c.in, r, limits_.request)) {
    case http_parse::incomplete:
      return;
    case http_parse::complete:
      respond(c, dispatch(r));
      return;
    case http_parse::bad:
      ++counters_.bad_requests;
      respond(c, {400, "text/plain", "bad request\n"});
      return;
    case http_parse::too_large:
      ++counters_.bad_requests;
      respond(c, {413, "text/plain", "request too large\n"});
      return;
  }
}

admin_server::clock::time_point admin_server::deadline(const client& c) const {
  if (c.responded) return c.answered + limits_.write_timeout;
  return std::min(c.accepted + limits_.request_timeout, c.last_read + limits_.idle_timeout);
}

void admin_server::close_client(client& c) {
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;
}

void admin_server::expire(clock::time_point now) {
  for (auto& c : clients_) {
    if (c.fd < 0 || deadline(c) > now) continue;
    if (c.responded) {
      ++counters_.write_timeouts;
    } else if (c.last_read + limits_.idle_timeout <= now && c.in.empty()) {
      ++counters_.idle_timeouts;
    } else {
      // A partial request (slowloris): say why, best effort, and close.
      ++counters_.request_timeouts;
      static constexpr std::string_view timeout_response =
          "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      [[maybe_unused]] ssize_t n =
          send(c.fd, timeout_response.data(), timeout_response.size(), MSG_NOSIGNAL);
    }
    close_client(c);
  }
}

// Frees one slot: the client that has been idle the longest (a client that already has its answer
// and is slow to read it counts from when it was answered).
bool admin_server::evict_oldest() {
  client* oldest = nullptr;
  auto active = [](const client& c) { return c.responded ? c.answered : c.last_read; };
  for (auto& c : clients_)
    if (c.fd >= 0 && (oldest == nullptr || active(c) < active(*oldest))) oldest = &c;
  if (oldest == nullptr) return false;
  ++counters_.evictions;
  close_client(*oldest);
  return true;
}

void admin_server::accept_all(clock::time_point now) {
  // Bounded per round so that serving the ready clients is never starved by a connection flood.
  size_t open = 0;
  for (const auto& c : clients_) open += c.fd >= 0;
  for (int i = 0; i < 1024; ++i) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
        return;
      ++counters_.accept_errors;
      // Out of descriptors (EMFILE, ENFILE) or memory: free a slot for the next try; with nothing
      // to free, stop polling the listener for a moment instead of spinning on it.
      if ((errno == EMFILE || errno == ENFILE) && evict_oldest()) {
        --open;
        continue;
      }
      accept_paused_until_ = now + std::chrono::milliseconds(100);
      return;
    }
    ++counters_.accepted;
    // Table full: the new connection takes the slot of the one idle the longest (chosen before
    // the new one is in the table, and only once a connection is really there).
    if (open >= limits_.max_clients && evict_oldest()) --open;
    ++open;
    clients_.push_back({fd, now, now, {}, {}, {}, 0, false});
  }
}

void admin_server::poll_once(int timeout_ms) {
  auto now = clock::now();
  expire(now);
  std::erase_if(clients_, [](const client& c) { return c.fd < 0; });

  // Sleep until a socket is ready, the next deadline or the caller's timeout, whichever is first.
  auto wake = now + std::chrono::milliseconds(std::max(timeout_ms, 0));
  for (const auto& c : clients_) wake = std::min(wake, deadline(c));
  const bool accepting = listen_fd_ >= 0 && accept_paused_until_ <= now;
  if (!accepting && listen_fd_ >= 0) wake = std::min(wake, accept_paused_until_);
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake - now).count();

  std::vector<pollfd> fds;
  fds.reserve(clients_.size() + 1);
  for (auto& c : clients_)
    fds.push_back({c.fd, static_cast<short>(c.responded ? POLLOUT : POLLIN), 0});
  fds.push_back({accepting ? listen_fd_ : -1, POLLIN, 0});
  if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(wait, 0))) <= 0) return;
  now = clock::now();

  for (size_t i = 0; i < clients_.size(); ++i) {
    client& c = clients_[i];
    const short ev = fds[i].revents;
    if (ev == 0) continue;
    if (!c.responded && (ev & (POLLIN | POLLHUP | POLLERR))) {
      char buf[4096];
      const ssize_t n = read(c.fd, buf, sizeof(buf));
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close_client(c);
        continue;
      }
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        c.last_read = now;
        serve(c);
      }
    } else if (c.responded && (ev & (POLLHUP | POLLERR))) {
      close_client(c);
      continue;
    }
    if (c.responded) {
      const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n > 0) c.sent += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || c.sent == c.out.size()) close_client(c);
    }
  }
  std::erase_if(clients_, [](const client& c) { return c.fd < 0; });
  if (fds.back().revents & POLLIN) accept_all(now);
}

void append_admin_counters(prom_text::writer& out, const admin_counters& c) {
#define EDGE_ADMIN_COUNTER_TEXT(member, name, help) \
  out.family(name, "counter", help);                \
  out.sample(c.member);
  EDGE_ADMIN_COUNTERS(EDGE_ADMIN_COUNTER_TEXT)
#undef EDGE_ADMIN_COUNTER_TEXT
}

void admin_server::append_metrics(prom_text::writer& out) const {
  append_admin_counters(out, counters_);
  out.family("edge_admin_clients", "gauge", "Open admin API connections.");
  out.sample(clients_.size());
  out.family("edge_admin_max_clients", "gauge",
             "Admin API connection slots; beyond them the connection idle the longest is evicted.");
  out.sample(limits_.max_clients);
}

}  // namespace edge
