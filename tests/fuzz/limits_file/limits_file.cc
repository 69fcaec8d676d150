// Fuzz target: the rules directory's limit files. The first byte picks the input: a whole
// `*.limits.yaml` (its `.cidr` references resolve in a directory that holds one fixed list), a
// `.cidr` list, or one prefix. Invariants: no crash or exception escapes; a rejected file names
// where (file:line); what loads stays within the bounds the loader promises (rates non-zero,
// prefix lengths within the family, host bits zero).
#include <unistd.h>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "limits/spec.hh"
#include "rules/limits_file.hh"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

const std::string& cidr_dir() {
  static const std::string dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("fuzz-limits-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::ofstream(d / "blocked.cidr") << "# fixed list\n10.0.0.0/8\n2001:db8::/32\n192.0.2.7\n";
    return d.string();
  }();
  return dir;
}

// Within the family, host bits zero.
void check_prefix(const limits::prefix& p) {
  const unsigned bits = p.v6 ? 128 : 32;
  check(p.len <= bits);
  for (unsigned b = p.len; b < bits; ++b) check(!(p.addr[b / 8] & (0x80u >> (b % 8))));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto r = rules::parse_limits_file(text, "fuzz.limits.yaml", cidr_dir());
      if (!r) {
        check(r.error().str().find(".limits.yaml") != std::string::npos ||
              r.error().str().find(".cidr") != std::string::npos);
        break;
      }
      for (const auto& l : r->limits) {
        check(!l.name.empty());
        check(l.rate > 0 && l.table_keys > 0);
        if (l.key == limits::key_kind::src_prefix) check(l.prefix_v4 <= 32 && l.prefix_v6 <= 128);
      }
      for (const auto& a : r->acls)
        for (const auto& list : a.lists)
          for (const auto& p : list.prefixes) check_prefix(p);
      break;
    }
    case 1: {
      auto r = limits::parse_cidr_text(text, "fuzz.cidr");
      if (r)
        for (const auto& p : *r) check_prefix(p);
      else
        check(r.error().str().find("fuzz.cidr") != std::string::npos);
      break;
    }
    case 2: {
      auto r = limits::parse_prefix(text);
      if (r) check_prefix(*r);
      break;
    }
  }
  return 0;
}
