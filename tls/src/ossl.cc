#include "tls/ossl.hh"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
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

secret_bytes::~secret_bytes() {
  OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

common::result<secret_bytes> read_secret_file(const std::string& path, std::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return common::fail(
        std::string("cannot open ") + std::string(what) + ": " + std::strerror(errno), path);
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } c{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return common::fail(std::string("stat: ") + std::strerror(errno), path);
  if (!S_ISREG(st.st_mode)) return common::fail(std::string(what) + " is not a regular file", path);
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return common::fail(
        std::string(what) + " " + path + " has mode " + mode +
            ": group or others may access it; refused (chmod 600 it, as ssh requires)",
        path);
  }
  constexpr off_t max_size = 1 << 20;
  if (st.st_size > max_size) return common::fail(std::string(what) + " is over 1 MiB", path);
  secret_bytes out(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return common::fail(std::string("read failed: ") + std::strerror(errno), path);
    if (n == 0) break;  // shrank since fstat
    got += static_cast<size_t>(n);
  }
  out.shrink(got);
  return out;
}

}  // namespace tls
