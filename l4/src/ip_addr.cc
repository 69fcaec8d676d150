#include "l4/ip_addr.hh"

#include <arpa/inet.h>

#include <charconv>

namespace l4 {

std::optional<ip_addr> ip_addr::parse(std::string_view s) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (s.empty() || s.size() >= sizeof(buf)) return std::nullopt;
  s.copy(buf, s.size());
  buf[s.size()] = '\0';
  ip_addr a;
  if (inet_pton(AF_INET, buf, a.b.data()) == 1) return a;
  if (inet_pton(AF_INET6, buf, a.b.data()) == 1) {
    a.v6 = true;
    return a;
  }
  return std::nullopt;
}

std::string ip_addr::str() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(v6 ? AF_INET6 : AF_INET, b.data(), buf, sizeof(buf));
  return buf;
}

std::optional<ip_prefix> ip_prefix::parse(std::string_view s) {
  const auto slash = s.find('/');
  auto addr = ip_addr::parse(s.substr(0, slash));
  if (!addr) return std::nullopt;
  ip_prefix p{*addr, static_cast<uint8_t>(addr->v6 ? 128 : 32)};
  if (slash != std::string_view::npos) {
    const auto len = s.substr(slash + 1);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(len.data(), len.data() + len.size(), v);
    if (ec != std::errc{} || ptr != len.data() + len.size() || len.empty() || v > p.len)
      return std::nullopt;
    p.len = static_cast<uint8_t>(v);
  }
  return p;
}

bool ip_prefix::contains(const ip_addr& a) const {
  if (a.v6 != addr.v6) return false;
  const unsigned full = len / 8, rest = len % 8;
  for (unsigned i = 0; i < full; ++i)
    if (a.b[i] != addr.b[i]) return false;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a.b[full] & mask) == (addr.b[full] & mask);
}

std::string ip_prefix::str() const {
  return addr.str() + "/" + std::to_string(len);
}

}  // namespace l4
