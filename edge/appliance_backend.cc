// Backends changed live by the operator (edgectl backend enable|disable|weight): no reload, the
// change is published in a new snapshot at once. A disabled backend is published as down (it
// leaves Maglev and the upstream pools' choice; established flows stay), a weight override
// replaces the configured weight. Overrides are keyed by pool name and ADDRESS:PORT, survive
// reloads, and are ignored (and listed as stale) once the configuration no longer has the backend.
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "edge/appliance.hh"

namespace edge {
namespace {

std::string backend_name(const backend_config& b) {
  return (b.address.v6 ? "[" + b.address.str() + "]" : b.address.str()) + ":" +
         std::to_string(b.port);
}

}  // namespace

bool appliance::operator_disabled(const std::string& pool, const backend_config& b) const {
  if (overrides_.empty()) return false;
  const auto it = overrides_.find(pool + "|" + backend_name(b));
  return it != overrides_.end() && it->second.disabled;
}

std::shared_ptr<const config> appliance::effective_config() const {
  bool any_weight = false;
  for (const auto& [k, o] : overrides_) any_weight = any_weight || o.weight.has_value();
  if (!any_weight) return cfg_;
  auto c = std::make_shared<config>(*cfg_);
  for (auto& p : c->pools)
    for (auto& b : p.backends)
      if (auto it = overrides_.find(p.name + "|" + backend_name(b));
          it != overrides_.end() && it->second.weight)
        b.weight = *it->second.weight;
  return c;
}

std::string appliance::backends_json() const {
  std::lock_guard lock(publish_mu_);
  nlohmann::json j = nlohmann::json::array();
  const auto eff = effective_config();
  for (const auto& p : eff->pools) {
    const auto h = healthy_.find(p.name);
    for (size_t i = 0; i < p.backends.size(); ++i) {
      const auto& b = p.backends[i];
      const bool healthy = h == healthy_.end() || i >= h->second.size() || h->second[i];
      j.push_back({{"pool", p.name},
                   {"backend", backend_name(b)},
                   {"healthy", healthy},
                   {"disabled", operator_disabled(p.name, b)},
                   {"weight", b.weight},
                   {"configured_weight",
                    cfg_->pools[static_cast<size_t>(&p - eff->pools.data())].backends[i].weight}});
    }
  }
  return j.dump(2) + "\n";
}

void appliance::install_backend_routes() {
  admin_.route("GET", "/backends", [this](const http_request&) {
    return http_response{200, "application/json", backends_json()};
  });
  // POST /backend?pool=P&backend=ADDR:PORT&state=enabled|disabled  or  &weight=N
  admin_.route("POST", "/backend", [this](const http_request& r) {
    const std::string pool = query_param(r.query, "pool"), name = query_param(r.query, "backend");
    const std::string state = query_param(r.query, "state"),
                      weight = query_param(r.query, "weight");
    if (state.empty() == weight.empty())
      return http_response{400, "text/plain", "want state=enabled|disabled or weight=0..65535\n"};
    if (!state.empty() && state != "enabled" && state != "disabled")
      return http_response{400, "text/plain", "state: want enabled or disabled\n"};
    uint32_t w = 0;
    if (!weight.empty()) {
      if (weight.size() > 5 || weight.find_first_not_of("0123456789") != std::string::npos ||
          (w = static_cast<uint32_t>(std::stoul(weight))) > 65535)
        return http_response{400, "text/plain", "weight: want 0..65535\n"};
    }
    {
      std::lock_guard lock(publish_mu_);
      const pool_config* p = cfg_->find_pool(pool);
      if (p == nullptr) return http_response{404, "text/plain", "no pool '" + pool + "'\n"};
      bool found = false;
      for (const auto& b : p->backends) found = found || backend_name(b) == name;
      if (!found)
        return http_response{404, "text/plain",
                             "pool '" + pool + "' has no backend '" + name + "'\n"};
      auto& o = overrides_[pool + "|" + name];
      if (!state.empty()) o.disabled = state == "disabled";
      if (!weight.empty()) o.weight = w;
    }
    if (auto pr = republish(); !pr)
      return http_response{409, "text/plain", pr.error().str() + "\n"};
    const std::string what = !state.empty() ? state : "weight " + weight;
    spdlog::info("backend {} of pool {}: {} (operator, live)", name, pool, what);
    ++backend_changes_;
    return http_response{200, "text/plain",
                         "backend " + name + " of pool " + pool + ": " + what + "\n"};
  });
}

}  // namespace edge
