#include "edge/admin.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace edge {
namespace {

constexpr size_t max_request_bytes = 64 * 1024;
constexpr size_t max_clients = 64;

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Parses a complete request in `in`; returns false while more bytes are needed, and sets
// `bad` when the request is malformed.
bool parse_request(const std::string& in, http_request& r, bool& bad) {
  const size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    bad = in.size() >= max_request_bytes;
    return bad;
  }
  const size_t line_end = in.find("\r\n");
  const std::string line = in.substr(0, line_end);
  const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1 || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
    bad = true;
    return true;
  }
  r.method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const size_t q = target.find('?');
  r.path = target.substr(0, q);
  r.query = q == std::string::npos ? "" : target.substr(q + 1);
  size_t content_length = 0;
  for (size_t pos = line_end + 2; pos < head_end;) {
    const size_t eol = in.find("\r\n", pos);
    std::string h = in.substr(pos, eol - pos);
    pos = eol + 2;
    for (auto& ch : h) {
      if (ch == ':') break;
      ch = static_cast<char>(tolower(ch));
    }
    if (h.rfind("content-length:", 0) == 0) {
      content_length = strtoul(h.c_str() + 15, nullptr, 10);
      if (content_length > max_request_bytes) {
        bad = true;
        return true;
      }
    }
  }
  if (in.size() < head_end + 4 + content_length) return false;
  r.body = in.substr(head_end + 4, content_length);
  return true;
}

}  // namespace

const char* http_reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

admin_server::~admin_server() {
  for (auto& c : clients_) close(c.fd);
  if (listen_fd_ >= 0) close(listen_fd_);
}

common::result<void> admin_server::listen(const l4::ip_addr& addr, uint16_t port) {
  sockaddr_storage ss{};
  socklen_t len;
  if (addr.v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    std::memcpy(&s6->sin6_addr, addr.b.data(), 16);
    len = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    std::memcpy(&s4->sin_addr, addr.b.data(), 4);
    len = sizeof(sockaddr_in);
  }
  const std::string where = "admin " + addr.str() + ":" + std::to_string(port);
  listen_fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) return common::fail(std::string("socket: ") + strerror(errno), where);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return common::fail(std::string("bind: ") + strerror(errno), where);
  if (::listen(listen_fd_, 64) != 0) return common::fail(std::string("listen: ") + strerror(errno), where);
  return {};
}

void admin_server::route(const std::string& method, const std::string& path, handler h) {
  routes_[{method, path}] = std::move(h);
}

http_response admin_server::dispatch(const http_request& r) const {
  if (auto it = routes_.find({r.method, r.path}); it != routes_.end()) return it->second(r);
  for (const auto& [key, h] : routes_)
    if (key.second == r.path) return {405, "text/plain", "method not allowed\n"};
  return {404, "text/plain", "not found\n"};
}

void admin_server::serve(client& c) {
  http_request r;
  bool bad = false;
  if (!parse_request(c.in, r, bad)) return;
  const http_response resp = bad ? http_response{400, "text/plain", "bad request\n"} : dispatch(r);
  c.out = "HTTP/1.1 " + std::to_string(resp.status) + " " + http_reason(resp.status) +
          "\r\nContent-Type: " + resp.content_type +
          "\r\nContent-Length: " + std::to_string(resp.body.size()) +
          "\r\nConnection: close\r\n\r\n" + resp.body;
  c.responded = true;
}

void admin_server::poll_once(int timeout_ms) {
  std::vector<pollfd> fds;
  fds.push_back({listen_fd_, POLLIN, 0});
  for (auto& c : clients_) fds.push_back({c.fd, static_cast<short>(c.responded ? POLLOUT : POLLIN), 0});
  if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return;

  for (size_t i = 0; i < clients_.size(); ++i) {
    client& c = clients_[i];
    const short ev = fds[i + 1].revents;
    if (ev == 0) continue;
    if (!c.responded && (ev & (POLLIN | POLLHUP | POLLERR))) {
      char buf[4096];
      const ssize_t n = read(c.fd, buf, sizeof(buf));
      if (n <= 0) {
        close(c.fd);
        c.fd = -1;
        continue;
      }
      c.in.append(buf, static_cast<size_t>(n));
      serve(c);
    }
    if (c.responded) {
      const ssize_t n = write(c.fd, c.out.data() + c.sent, c.out.size() - c.sent);
      if (n > 0) c.sent += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) c.sent = c.out.size();
      if (c.sent == c.out.size()) {
        close(c.fd);
        c.fd = -1;
      }
    }
  }
  std::erase_if(clients_, [](const client& c) { return c.fd < 0; });

  if (fds[0].revents & POLLIN) {
    while (clients_.size() < max_clients) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) break;
      set_nonblocking(fd);
      clients_.push_back({fd, {}, {}, 0, false});
    }
  }
}

}  // namespace edge
