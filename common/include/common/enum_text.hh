#pragma once
// enum <-> text through one X-macro list per enum, X(enumerator, "text"):
//   #define EDGE_DRAIN_PHASES(X) X(serving, "serving") X(grace, "grace") ...
//   enum class drain_phase : uint8_t { EDGE_DRAIN_PHASES(COMMON_ENUMERATOR) };
//   static constexpr const char* texts[] = {EDGE_DRAIN_PHASES(COMMON_ENUM_TEXT)};
//   to_string(p) = common::enum_text(p, texts)   (config parsing builds its choices from it too)
// The enumerators count from 0 in list order, so the text of value i is entry i.
#include <cstddef>

#define COMMON_ENUMERATOR(id, text) id,
#define COMMON_ENUM_TEXT(id, text) text,
// For lists whose second field is a description: the enumerator's own name as its text.
#define COMMON_ENUM_NAME(id, text) #id,

namespace common {

template <class E, size_t N>
constexpr const char* enum_text(E e, const char* const (&texts)[N], const char* unknown = "?") {
  const auto i = static_cast<size_t>(e);
  return i < N ? texts[i] : unknown;
}

}  // namespace common
