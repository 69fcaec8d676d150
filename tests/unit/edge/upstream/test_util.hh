#pragma once
// Loopback helpers for the upstream tests: listening sockets, blocking peers on threads, a poll
// loop with a deadline. Test code only; the blocking calls here never run on a worker.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/sockaddr.hh"
#include "l4/ip_addr.hh"

namespace edge::upstream::test {

inline l4::ip_addr addr(const char* s) {
  return *l4::ip_addr::parse(s);
}

// A listening TCP socket on an ephemeral loopback port.
struct listener {
  int fd = -1;
  uint16_t port = 0;
  bool v6 = false;

  explicit listener(bool ipv6 = false, int backlog = 64, uint16_t want_port = 0) : v6(ipv6) {
    fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const uint32_t lo4 = htonl(INADDR_LOOPBACK);
    common::sock_addr sa = v6 ? common::make_sock_addr(true, &in6addr_loopback, want_port)
                              : common::make_sock_addr(false, &lo4, want_port);
    sockaddr_storage& ss = sa.ss;
    socklen_t len = sa.len;
    if (::bind(fd, sa.get(), len) != 0 || ::listen(fd, backlog) != 0) {
      ::close(fd);
      fd = -1;
      return;
    }
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    port = common::sock_port(ss);
  }
  ~listener() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  // Accepted socket or -1 after timeout_ms.
  int accept(int timeout_ms = 3000) const {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return -1;
    return ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
  }
  l4::ip_addr address() const { return addr(v6 ? "::1" : "127.0.0.1"); }
};

// A port on which nothing listens (connect is refused): bound, never listening.
struct closed_port {
  int fd = -1;
  uint16_t port = 0;
  closed_port() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    ::bind(fd, reinterpret_cast<sockaddr*>(&sa), len);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
  }
  ~closed_port() { ::close(fd); }
};

// A listener whose accept queue is full, so further SYNs are dropped and connects hang: a
// connect timeout without sending anything off the machine.
struct blackhole {
  listener l{false, 0};
  std::vector<int> fillers;
  blackhole() {
    for (int k = 0; k < 4; ++k) {
      int f = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      sa.sin_port = htons(l.port);
      ::connect(f, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
      fillers.push_back(f);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ~blackhole() {
    for (int f : fillers) ::close(f);
  }
  uint16_t port() const { return l.port; }
};

inline bool read_exact(int fd, void* buf, size_t n, int timeout_ms = 3000) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t got = 0;
  while (got < n) {
    pollfd pf{fd, POLLIN, 0};
    if (::poll(&pf, 1, timeout_ms) != 1) return false;
    ssize_t r = ::recv(fd, p + got, n - got, 0);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

inline bool write_all(int fd, const void* buf, size_t n) {
  auto* p = static_cast<const uint8_t*>(buf);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::send(fd, p + done, n - done, MSG_NOSIGNAL);
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

// FNV-1a over a stream, for comparing what was sent with what arrived.
struct fnv {
  uint64_t h = 0xcbf29ce484222325ULL;
  uint64_t n = 0;
  void add(const void* d, size_t len) {
    auto* p = static_cast<const uint8_t*>(d);
    for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
    n += len;
  }
};

inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  return v;
}

// Polls until pred() or the deadline; true if pred() held.
template <class Poll, class Pred>
bool run_until(Poll&& poll_once, Pred&& pred, int timeout_ms = 5000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    if (poll_once() == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

}  // namespace edge::upstream::test
