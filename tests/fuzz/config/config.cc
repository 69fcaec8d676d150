// Fuzz target: the YAML configuration loader (edge::parse_config) on arbitrary text. Invariants:
// nothing escapes (yaml-cpp's exceptions and the loader's own are turned into errors at
// parse_config's boundary), every error has a message and a position, and a config that loads
// keeps the promises the admin API relies on: names in [A-Za-z0-9._-]{1,64}, no backend on a
// loopback, unspecified or the admin address.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "edge/config.hh"

namespace {

bool good_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (unsigned char ch : s)
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          ch == '.' || ch == '_' || ch == '-'))
      return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // A path in a directory that does not exist: relative file names in the input resolve there.
  auto c = edge::parse_config(text, "/nonexistent-fuzz-dir/edged.yaml");
  if (!c) {
    if (c.error().message.empty() || c.error().where.empty()) std::abort();
    return 0;
  }
  for (const auto& p : c->ports)
    if (!good_name(p.name)) std::abort();
  for (const auto& p : c->pools) {
    if (!good_name(p.name) || p.backends.empty()) std::abort();
    for (const auto& b : p.backends) {
      if (b.address == c->admin.address) std::abort();
      if (!b.address.v6 && b.address.b[0] == 127) std::abort();
    }
  }
  for (const auto& s : c->services)
    if (!good_name(s.name) || c->find_pool(s.pool) == nullptr) std::abort();
  return 0;
}
