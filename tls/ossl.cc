#include "tls/ossl.hh"

#include <openssl/err.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace tls {

std::string drain_ossl_errors() {
  std::string out;
  const char* data = nullptr;
  int flags = 0;
  unsigned long e;
  while ((e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    if (!out.empty()) out += "; ";
    const char* lib = ERR_lib_error_string(e);
    const char* reason = ERR_reason_error_string(e);
    if (lib != nullptr) {
      out += lib;
      out += "::";
    }
    if (reason != nullptr) {
      out += reason;
    } else {
      char buf[128];
      ERR_error_string_n(e, buf, sizeof buf);
      out += buf;
    }
    if (data != nullptr && (flags & ERR_TXT_STRING) != 0 && *data != '\0') {
      out += " (";
      out += data;
      out += ")";
    }
  }
  return out;
}

common::error ossl_error(std::string_view what, std::string where) {
  std::string msg(what);
  std::string reasons = drain_ossl_errors();
  if (!reasons.empty()) {
    msg += ": ";
    msg += reasons;
  }
  return common::error{std::move(msg), std::move(where)};
}

common::result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return common::fail(std::string("cannot open: ") + std::strerror(errno), path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return common::fail("read failed", path);
  return ss.str();
}

}  // namespace tls
