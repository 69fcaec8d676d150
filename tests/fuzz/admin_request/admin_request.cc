// Fuzz target: the admin API's HTTP request parser (edge::parse_http_request) on the bytes a client
// sent so far. The first byte picks the limits (the defaults or tiny ones, so that the size checks
// are reached). Invariants: no crash; a complete request has a path that starts with '/' and holds
// no space or control byte, a body within the limit, and the same result with more bytes appended
// (what the server sees when the rest of a pipelined stream arrives); "incomplete" never exceeds
// the head limit plus the body limit.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "edge/admin.hh"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  edge::http_request_limits lim;
  if (data[0] & 1) lim = {.max_head = 64, .max_body = 16};
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  edge::http_request r;
  const auto st = edge::parse_http_request(in, r, lim);
  switch (st) {
    case edge::http_parse::complete: {
      if (r.path.empty() || r.path[0] != '/') std::abort();
      for (unsigned char ch : r.path + r.query)
        if (ch <= 0x20 || ch >= 0x7f) std::abort();
      if (r.method.empty() || r.method.size() > 16 || r.body.size() > lim.max_body) std::abort();
      std::string more(in);
      more += "GET /x HTTP/1.1\r\n\r\n";
      edge::http_request r2;
      if (edge::parse_http_request(more, r2, lim) != edge::http_parse::complete ||
          r2.method != r.method || r2.path != r.path || r2.query != r.query || r2.body != r.body)
        std::abort();
      break;
    }
    case edge::http_parse::incomplete:
      if (in.size() > lim.max_head + 4 + lim.max_body) std::abort();
      break;
    case edge::http_parse::bad:
    case edge::http_parse::too_large:
      break;
  }
  return 0;
}
