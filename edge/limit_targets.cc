#include "edge/limit_targets.hh"

#include <string>

namespace edge {
namespace {

// Why service `s` cannot enforce limit `l`, or null.
const char* cannot_enforce(const limits::limit_spec& l, const service_config& s) {
  using limits::scope;
  if (s.kind == service_kind::l4) {
    switch (l.what) {
      case scope::syn:
        if (s.protocol != 6) return "a syn limit needs TCP; this l4 service is UDP";
        return nullptr;
      case scope::packets:
      case scope::bytes:
        return nullptr;
      case scope::conn:
      case scope::concurrent:
        return "kind l4 forwards packets and sees no handshake or connection end; use syn, "
               "packets or bytes";
      case scope::requests:
        return "kind l4 does not parse requests; use syn, packets or bytes";
    }
    return nullptr;
  }
  if (l.what == scope::requests && !s.waf)
    return "requests are counted once the WAF's parser has a request head, and this service has "
           "no waf policy";
  return nullptr;
}

}  // namespace

common::result<void> check_limit_targets(const limits::limits_config& lc, const config& c) {
  for (const auto& l : lc.limits)
    for (const auto& name : l.services)
      for (const auto& s : c.services) {
        if (s.name != name) continue;
        if (const char* why = cannot_enforce(l, s))
          return common::fail("limit " + l.name + ": scope " + limits::to_string(l.what) +
                                  " on service '" + name + "' (kind " + to_string(s.kind) +
                                  "): " + why,
                              l.where);
      }
  return {};
}

void mark_explicit_only(limits::limits_config& lc, const config& c) {
  lc.explicit_only.clear();
  for (const auto& s : c.services)
    if (s.kind == service_kind::l4) lc.explicit_only.push_back(s.name);
}

}  // namespace edge
