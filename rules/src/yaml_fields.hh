#pragma once
// Strict field readers shared by the rules directory's YAML loaders (rule files and policies in
// loader.cc, limit files in limits_file.cc): every error is "file:line:col: PREFIX message", where
// PREFIX names the entry once it is known ("rule 942100: ", "limit NAME: ").
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/result.hh"

namespace rules::yaml_fields {

inline std::string where(const std::string& file, const YAML::Mark& m) {
  if (m.is_null()) return file;
  return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}
inline std::string where(const std::string& file, const YAML::Node& n) {
  return where(file, n.Mark());
}

struct ctx {
  const std::string& file;
  std::string prefix;  // names the entry once it is known: "rule 123: "
  common::unexpected<common::error> err(const YAML::Node& n, const std::string& msg) const {
    return common::fail(prefix + msg, where(file, n));
  }
};

// A mapping whose keys are all scalars among `allowed`.
inline common::result<void> check_keys(const ctx& c, const YAML::Node& map,
                                       std::initializer_list<std::string_view> allowed,
                                       const char* what) {
  if (!map.IsMap()) return c.err(map, std::string(what) + " must be a mapping");
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar()) return c.err(it->first, "keys must be scalars");
    const std::string k = it->first.Scalar();
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      return c.err(it->first, "unknown key '" + k + "' in " + what);
  }
  return {};
}

inline common::result<std::string> str(const ctx& c, const YAML::Node& n, const char* key) {
  if (!n.IsScalar()) return c.err(n, std::string("'") + key + "' must be a string");
  return n.Scalar();
}

// A whole decimal integer within lo..hi (no sign for unsigned T, no trailing text).
template <class T>
common::result<T> integer(const ctx& c, const YAML::Node& n, const char* key,
                          std::type_identity_t<T> lo, std::type_identity_t<T> hi) {
  static_assert(std::is_integral_v<T>);
  if (!n.IsScalar()) return c.err(n, std::string("'") + key + "' must be an integer");
  const std::string& s = n.Scalar();
  T v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    return c.err(n, std::string("'") + key + "' must be an integer, got '" + s + "'");
  if (v < lo || v > hi)
    return c.err(n, std::string("'") + key + "' out of range " + std::to_string(lo) + ".." +
                        std::to_string(hi));
  return v;
}

inline common::result<bool> boolean(const ctx& c, const YAML::Node& n, const char* key) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    if (s == "true") return true;
    if (s == "false") return false;
  }
  return c.err(n, std::string("'") + key + "' must be true or false");
}

// One string, or a list of them.
inline common::result<std::vector<std::string>> str_list(const ctx& c, const YAML::Node& n,
                                                         const char* key) {
  std::vector<std::string> out;
  if (n.IsScalar()) {
    out.push_back(n.Scalar());
    return out;
  }
  if (!n.IsSequence())
    return c.err(n, std::string("'") + key + "' must be a string or a list of strings");
  for (const auto& e : n) {
    if (!e.IsScalar()) return c.err(e, std::string("'") + key + "' entries must be strings");
    out.push_back(e.Scalar());
  }
  return out;
}

// One of the named values; the error lists them.
template <class E>
common::result<E> choice(const ctx& c, const YAML::Node& n, const char* key,
                         std::initializer_list<std::pair<std::string_view, E>> opts) {
  auto s = str(c, n, key);
  if (!s) return common::unexpected(s.error());
  std::string names;
  for (const auto& [name, v] : opts) {
    if (*s == name) return v;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  return c.err(n, "unknown " + std::string(key) + " '" + *s + "' (" + names + ")");
}

inline common::result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return common::fail("cannot open file", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace rules::yaml_fields
