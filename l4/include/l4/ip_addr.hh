#pragma once
// An IPv4 or IPv6 address (network byte order) and a prefix, for tables and config.
#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace l4 {

struct ip_addr {
  std::array<uint8_t, 16> b{};  // IPv4 in the first 4 bytes, rest zero
  bool v6 = false;

  static ip_addr v4_from_be(uint32_t be) {
    ip_addr a;
    std::memcpy(a.b.data(), &be, 4);
    return a;
  }
  static ip_addr v6_from(const uint8_t* p) {
    ip_addr a;
    a.v6 = true;
    std::memcpy(a.b.data(), p, 16);
    return a;
  }
  uint32_t v4_be() const {
    uint32_t v;
    std::memcpy(&v, b.data(), 4);
    return v;
  }
  size_t size() const { return v6 ? 16 : 4; }

  static std::optional<ip_addr> parse(std::string_view s);
  std::string str() const;

  friend bool operator==(const ip_addr&, const ip_addr&) = default;
  friend auto operator<=>(const ip_addr&, const ip_addr&) = default;
};

struct ip_prefix {
  ip_addr addr;
  uint8_t len = 0;

  static std::optional<ip_prefix> parse(std::string_view s);  // "10.0.0.1/24", "fd00::1/64"
  bool contains(const ip_addr& a) const;
  std::string str() const;
};

struct ip_addr_hash {
  size_t operator()(const ip_addr& a) const noexcept {
    uint64_t x, y;
    std::memcpy(&x, a.b.data(), 8);
    std::memcpy(&y, a.b.data() + 8, 8);
    return static_cast<size_t>((x * 0x9e3779b97f4a7c15ULL) ^ (y + a.v6));
  }
};

}  // namespace l4
