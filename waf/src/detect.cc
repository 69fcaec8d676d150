// libinjection's detectors taken from libmodsecurity3 (dlopen or link; see detect.hh).
#include "waf/detect.hh"

#include <mutex>

#if defined(EDGE_LIBINJECTION_DLOPEN)
#include <dlfcn.h>
#endif

namespace waf {
namespace {

using sqli_fn = int (*)(const char*, size_t, char*);
using xss_fn = int (*)(const char*, size_t);

#if defined(EDGE_LIBINJECTION_LINK)
}  // namespace
}  // namespace waf
extern "C" int libinjection_sqli(const char* s, size_t slen, char fingerprint[]);
extern "C" int libinjection_xss(const char* s, size_t slen);
namespace waf {
namespace {
#endif

sqli_fn g_sqli = nullptr;
xss_fn g_xss = nullptr;
std::string g_why;
std::once_flag g_once;

void load_once() {
#if defined(EDGE_LIBINJECTION_LINK)
  g_sqli = &libinjection_sqli;
  g_xss = &libinjection_xss;
#elif defined(EDGE_LIBINJECTION_DLOPEN)
  // Kept open for the life of the process: the pointers are used by every worker.
  void* h = dlopen("libmodsecurity.so.3", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    g_why = std::string("libinjection not available: cannot open libmodsecurity.so.3 (") +
            (e ? e : "?") + "; install Debian's libmodsecurity3)";
    return;
  }
  auto s = reinterpret_cast<sqli_fn>(dlsym(h, "libinjection_sqli"));
  auto x = reinterpret_cast<xss_fn>(dlsym(h, "libinjection_xss"));
  if (!s || !x) {
    g_why =
        "libinjection not available: libmodsecurity.so.3 does not export "
        "libinjection_sqli/libinjection_xss";
    return;
  }
  g_sqli = s;
  g_xss = x;
#else
  g_why = "libinjection not available: built with -Dlibinjection=disabled";
#endif
}

}  // namespace

bool libinjection_load(std::string* why) {
  std::call_once(g_once, load_once);
  if (!g_sqli && why) *why = g_why;
  return g_sqli != nullptr;
}

bool detect_sqli(std::string_view s, char* fingerprint) {
  char fp[8] = {};
  if (!g_sqli || s.empty()) return false;
  int r = g_sqli(s.data(), s.size(), fp);
  if (fingerprint) {
    for (size_t i = 0; i < 6; ++i) fingerprint[i] = fp[i];
    fingerprint[5] = 0;
  }
  return r != 0;
}

bool detect_xss(std::string_view s) {
  return g_xss && !s.empty() && g_xss(s.data(), s.size()) != 0;
}

}  // namespace waf
