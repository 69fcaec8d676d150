#include "limits/spec.hh"

#include <arpa/inet.h>

#include <charconv>

namespace limits {

common::result<prefix> parse_prefix(std::string_view text) {
  prefix p;
  const size_t slash = text.find('/');
  const std::string addr(text.substr(0, slash));
  if (inet_pton(AF_INET, addr.c_str(), p.addr.data()) == 1) {
    p.v6 = false;
  } else if (inet_pton(AF_INET6, addr.c_str(), p.addr.data()) == 1) {
    p.v6 = true;
  } else {
    return common::fail("not an IPv4 or IPv6 address: '" + addr + "'");
  }
  const unsigned max = p.v6 ? 128 : 32;
  unsigned len = max;
  if (slash != std::string_view::npos) {
    const std::string_view l = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(l.data(), l.data() + l.size(), len);
    if (l.empty() || ec != std::errc() || end != l.data() + l.size() || len > max)
      return common::fail("bad prefix length '" + std::string(l) + "' (0.." + std::to_string(max) +
                          ")");
  }
  p.len = static_cast<uint8_t>(len);
  for (unsigned i = 0; i < (p.v6 ? 16u : 4u); ++i) {
    const unsigned bits = len >= (i + 1) * 8 ? 8 : len > i * 8 ? len - i * 8 : 0;
    const auto keep = static_cast<uint8_t>(0xff00u >> bits);
    if ((p.addr[i] & ~keep) != 0)
      return common::fail("host bits set in '" + std::string(text) + "' beyond /" +
                          std::to_string(len));
  }
  return p;
}

common::result<std::vector<prefix>> parse_cidr_text(std::string_view text,
                                                    const std::string& file) {
  std::vector<prefix> out;
  size_t line = 0;
  while (!text.empty()) {
    ++line;
    const size_t nl = text.find('\n');
    std::string_view l = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (const size_t hash = l.find('#'); hash != std::string_view::npos) l = l.substr(0, hash);
    while (!l.empty() && (l.front() == ' ' || l.front() == '\t')) l.remove_prefix(1);
    while (!l.empty() && (l.back() == ' ' || l.back() == '\t' || l.back() == '\r'))
      l.remove_suffix(1);
    if (l.empty()) continue;
    auto p = parse_prefix(l);
    if (!p) return common::fail(p.error().message, file + ":" + std::to_string(line));
    out.push_back(*p);
  }
  return out;
}

}  // namespace limits
