#pragma once
// The control-plane return type shared by every module: a value or an error that says what went
// wrong and where (a config file position, a rule id). The data plane never uses it.
#include <string>
#include <utility>
#include "common/expected.hh"

namespace common {

struct error {
  std::string message;
  std::string where;  // "file:line:col", "rule 942100", or empty

  std::string str() const { return where.empty() ? message : where + ": " + message; }
};

template <class T>
using result = common::expected<T, error>;

inline common::unexpected<error> fail(std::string message, std::string where = {}) {
  return common::unexpected<error>(error{std::move(message), std::move(where)});
}

}  // namespace common
