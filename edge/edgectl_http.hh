#pragma once
// The admin API client of edgectl (one request per connection, as the admin server wants).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/sockaddr.hh"

namespace edge::ctl {

struct reply {
  int status = 0;
  std::string body;
  std::string error;  // set when edged could not be reached or answered garbage
};

// `admin` is HOST:PORT or [V6]:PORT; `timeout_s` bounds connect, send and each read.
inline reply http(const std::string& admin, const std::string& method, const std::string& path,
                  int timeout_s = 5) {
  reply r;
  const auto colon = admin.rfind(':');
  if (colon == std::string::npos) {
    r.error = "bad --admin " + admin + " (want HOST:PORT)";
    return r;
  }
  std::string host = admin.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string port_s = admin.substr(colon + 1);
  unsigned long port = 0;
  if (port_s.empty() || port_s.size() > 5 ||
      port_s.find_first_not_of("0123456789") != std::string::npos ||
      (port = std::stoul(port_s)) == 0 || port > 65535) {
    r.error = "bad --admin port in " + admin;
    return r;
  }
  const bool v6 = host.find(':') != std::string::npos;
  unsigned char bytes[16]{};
  if (inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), bytes) != 1) {
    r.error = "bad --admin address " + host + " (want an IP address)";
    return r;
  }
  const common::sock_addr sa = common::make_sock_addr(v6, bytes, static_cast<uint16_t>(port));
  const int fd = socket(sa.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r.error = std::string("socket: ") + strerror(errno);
    return r;
  }
  timeval tv{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, sa.get(), sa.len) != 0) {
    r.error = "cannot reach the edged admin API at " + admin + ": " + strerror(errno) +
              " (is edged running?)";
    close(fd);
    return r;
  }
  const std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + admin +
                          "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    r.error = std::string("write to admin API failed: ") + strerror(errno);
    close(fd);
    return r;
  }
  std::string in;
  char buf[8192];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0 && in.size() < (64u << 20);)
    in.append(buf, static_cast<size_t>(n));
  close(fd);
  const auto head_end = in.find("\r\n\r\n");
  if ((in.rfind("HTTP/1.1 ", 0) != 0 && in.rfind("HTTP/1.0 ", 0) != 0) ||
      head_end == std::string::npos || in.size() < 12 ||
      in.substr(9, 3).find_first_not_of("0123456789") != std::string::npos) {
    r.error = "malformed reply from the admin API at " + admin;
    return r;
  }
  r.status = std::stoi(in.substr(9, 3));
  r.body = in.substr(head_end + 4);
  return r;
}

}  // namespace edge::ctl
