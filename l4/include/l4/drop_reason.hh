#pragma once
// Every reason a packet is not forwarded, declared once. The enum, the names used in /metrics and
// the descriptions all come from the .def tables next to this header (one per stage family).
#include <array>
#include <cstdint>
#include <string_view>

#include "common/counter.hh"
#include "common/enum_text.hh"

namespace l4 {

#define L4_SEVERITIES(X) X(info, "info") X(warn, "warn") X(error, "error")
enum class severity : uint8_t { L4_SEVERITIES(COMMON_ENUMERATOR) };
inline const char* to_string(severity s) {
  static constexpr const char* texts[] = {L4_SEVERITIES(COMMON_ENUM_TEXT)};
  return common::enum_text(s, texts);
}

enum class drop : uint16_t {
  none = 0,
#define X(name, sev, desc) name,
#include "l4/drops_dispatch.def"
#include "l4/drops_lb.def"
#include "l4/drops_parse.def"
#include "l4/drops_tcp.def"
#undef X
  count_,
};

inline constexpr size_t drop_count = static_cast<size_t>(drop::count_);

struct drop_info {
  std::string_view name;
  severity sev;
  std::string_view description;
};

inline constexpr std::array<drop_info, drop_count> drop_table{{
    {"none", severity::info, "not dropped"},
#define X(name, sev, desc) {#name, severity::sev, desc},
#include "l4/drops_dispatch.def"
#include "l4/drops_lb.def"
#include "l4/drops_parse.def"
#include "l4/drops_tcp.def"
#undef X
}};

constexpr const drop_info& info(drop d) {
  return drop_table[static_cast<size_t>(d)];
}

// Per-worker drop counters, indexed by reason.
struct drop_counters {
  std::array<common::counter, drop_count> by_reason;
  void add(drop d, uint64_t n = 1) { by_reason[static_cast<size_t>(d)].add(n); }
  uint64_t get(drop d) const { return by_reason[static_cast<size_t>(d)].get(); }
};

}  // namespace l4
