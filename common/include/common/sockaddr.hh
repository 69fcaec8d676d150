#pragma once
// The one place a socket address is built from raw address bytes and a port (admin listener,
// edgectl, upstream connects, health checks, tests).
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>

namespace common {

struct sock_addr {
  sockaddr_storage ss{};
  socklen_t len = 0;

  int family() const { return ss.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&ss); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&ss); }
};

// `addr` holds 16 bytes (v6) or 4 (v4), network byte order; `port` is in host order.
inline sock_addr make_sock_addr(bool v6, const void* addr, uint16_t port) {
  sock_addr a;
  if (v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    std::memcpy(&s6->sin6_addr, addr, 16);
    a.len = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    std::memcpy(&s4->sin_addr, addr, 4);
    a.len = sizeof(sockaddr_in);
  }
  return a;
}

// The port of an AF_INET or AF_INET6 address, in host order.
inline uint16_t sock_port(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port
                                        : reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
}

}  // namespace common
