#include "edge/service_limits.hh"

namespace edge {

common::result<void> service_registry::apply(const config& c) {
  const size_t n = n_.load(std::memory_order_relaxed);
  size_t added = 0;
  for (const auto& s : c.services)
    if (s.kind != service_kind::l4 && find(s.name) == nullptr) ++added;
  if (n + added > capacity)
    return common::fail("more than " + std::to_string(capacity) +
                            " distinct tcp/tls service names since start: restart edged to reset "
                            "the per-service counters",
                        c.path);
  size_t next = n;
  for (const auto& s : c.services) {
    if (s.kind == service_kind::l4) continue;
    service_counters* sc = find(s.name);
    if (sc == nullptr) {
      // Not yet visible to readers (n_ is stored below): the name can be written plainly.
      sc = &slots_[next++];
      sc->name = s.name;
      sc->limit.store(s.max_connections, std::memory_order_relaxed);
      n_.store(next, std::memory_order_release);
    } else {
      sc->limit.store(s.max_connections, std::memory_order_relaxed);  // a reload's new limit
    }
  }
  return {};
}

service_counters* service_registry::find(std::string_view name) const {
  const size_t n = n_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i)
    if (slots_[i].name == name) return &slots_[i];
  return nullptr;
}

}  // namespace edge
