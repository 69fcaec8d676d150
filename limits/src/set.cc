#include "limits/set.hh"

#include <algorithm>
#include <charconv>
#include <random>

namespace limits {

const char* to_string(key_kind k) {
  switch (k) {
    case key_kind::src:
      return "src";
    case key_kind::src_prefix:
      return "src_prefix";
    case key_kind::vip:
      return "vip";
    case key_kind::sni:
      return "sni";
    case key_kind::route:
      return "route";
    case key_kind::header:
      return "header";
  }
  return "?";
}
const char* to_string(scope s) {
  switch (s) {
    case scope::syn:
      return "syn";
    case scope::conn:
      return "conn";
    case scope::concurrent:
      return "concurrent";
    case scope::packets:
      return "packets";
    case scope::bytes:
      return "bytes";
    case scope::requests:
      return "requests";
  }
  return "?";
}
const char* to_string(action a) {
  switch (a) {
    case action::drop:
      return "drop";
    case action::rst:
      return "rst";
    case action::http_429:
      return "429";
  }
  return "?";
}

// --- state_registry ----------------------------------------------------------------------------

common::result<limit_state*> state_registry::add(std::unique_ptr<limit_state> s) {
  const size_t n = n_.load(std::memory_order_relaxed);
  if (n == capacity)
    return common::fail("more than " + std::to_string(capacity) +
                        " distinct limits and ACL lists since start: restart edged to reset them");
  slots_[n] = std::move(s);
  n_.store(n + 1, std::memory_order_release);
  return slots_[n].get();
}

common::result<limit_state*> state_registry::get(const limit_spec& s) {
  std::lock_guard lk(mu_);
  const std::string sc = to_string(s.what), act = to_string(s.act);
  const size_t n = n_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < n; ++i) {
    limit_state& st = *slots_[i];
    if (!st.acl && st.name == s.name && st.label2 == sc && st.label3 == act &&
        st.table->capacity() == keyed_table::capacity_for(s.table_keys))
      return &st;
  }
  auto st = std::make_unique<limit_state>();
  st->name = s.name;
  st->label2 = sc;
  st->label3 = act;
  st->table = std::make_unique<keyed_table>(s.table_keys);
  // Random, so that a client cannot compute which keys share a bucket from the (public) limit
  // name; kept with the state, so a reload keeps every key's history.
  std::random_device rd;
  st->salt = (uint64_t{rd()} << 32) | rd();
  return add(std::move(st));
}

common::result<limit_state*> state_registry::get_acl(const std::string& service,
                                                     const std::string& list) {
  std::lock_guard lk(mu_);
  const size_t n = n_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < n; ++i) {
    limit_state& st = *slots_[i];
    if (st.acl && st.label2 == service && st.label3 == list) return &st;
  }
  auto st = std::make_unique<limit_state>();
  st->acl = true;
  st->name = service + "/" + list;
  st->label2 = service;
  st->label3 = list;
  return add(std::move(st));
}

// --- limit_set ---------------------------------------------------------------------------------

common::result<std::shared_ptr<const limit_set>> limit_set::build(const limits_config& cfg,
                                                                  state_registry& reg) {
  auto set = std::make_shared<limit_set>();
  std::vector<std::string> names;
  for (const limit_spec& s : cfg.limits) {
    auto c = std::make_unique<compiled_limit>();
    c->spec = s;
    if (c->spec.burst == 0) c->spec.burst = std::max<uint64_t>(1, s.rate);
    c->gcra = gcra_params::of(s.rate, c->spec.burst);
    auto st = reg.get(c->spec);
    if (!st) {
      auto e = st.error();
      e.where = s.where;
      return common::unexpected(std::move(e));
    }
    c->state = *st;
    c->salt = (*st)->salt;
    for (const auto& n : s.services)
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    set->limits_.push_back(std::move(c));
  }
  for (const acl_spec& a : cfg.acls)
    if (std::find(names.begin(), names.end(), a.service) == names.end()) names.push_back(a.service);

  auto place = [](service_limits& sl, const compiled_limit* c) {
    const scope w = c->spec.what;
    if (w == scope::syn || w == scope::packets || w == scope::bytes)
      sl.packet.push_back(c);
    else if (w == scope::conn || w == scope::concurrent)
      sl.accept.push_back(c);
    else
      sl.request.push_back(c);
  };
  for (const auto& n : names) {
    auto sl = std::make_unique<service_limits>();
    sl->name = n;
    const bool explicit_only =
        std::find(cfg.explicit_only.begin(), cfg.explicit_only.end(), n) != cfg.explicit_only.end();
    for (const auto& c : set->limits_)
      if ((c->spec.services.empty() && !explicit_only) ||
          std::find(c->spec.services.begin(), c->spec.services.end(), n) != c->spec.services.end())
        place(*sl, c.get());
    for (const acl_spec& a : cfg.acls) {
      if (a.service != n) continue;
      if (sl->acl_table) return common::fail("a second ACL for service '" + n + "'", a.where);
      auto t = acl::build(a);
      if (!t) return common::unexpected(t.error());
      sl->acl_table = std::move(*t);
      for (const acl_list& l : a.lists) {
        auto st = reg.get_acl(n, l.name);
        if (!st) return common::unexpected(st.error());
        sl->acl_states.push_back(*st);
      }
      auto st = reg.get_acl(n, sl->acl_table->default_deny() ? "default_deny" : "default_allow");
      if (!st) return common::unexpected(st.error());
      sl->acl_states.push_back(*st);
    }
    set->services_.push_back(std::move(sl));
  }
  auto all = std::make_unique<service_limits>();
  for (const auto& c : set->limits_)
    if (c->spec.services.empty()) place(*all, c.get());
  if (!all->packet.empty() || !all->accept.empty() || !all->request.empty())
    set->all_ = std::move(all);
  return std::shared_ptr<const limit_set>(std::move(set));
}

const service_limits* limit_set::service(std::string_view name) const {
  for (const auto& s : services_)
    if (s->name == name) return s.get();
  return all_.get();
}

const service_limits* limit_set::named(std::string_view name) const {
  for (const auto& s : services_)
    if (s->name == name) return s.get();
  return nullptr;
}

namespace {

size_t addr_len(const flow& f) {
  return f.v6 ? 16 : 4;
}

// The key of a flow for an L4 or accept limit.
uint64_t flow_key(const compiled_limit& c, const flow& f) {
  const limit_spec& s = c.spec;
  std::array<char, 19> b{};
  size_t n = 0;
  switch (s.key) {
    case key_kind::src:
      n = addr_len(f);
      std::copy_n(f.src.begin(), n, b.begin());
      break;
    case key_kind::src_prefix: {
      n = addr_len(f);
      const unsigned len = f.v6 ? s.prefix_v6 : s.prefix_v4;
      for (size_t i = 0; i < n; ++i) {
        const unsigned bits = len >= (i + 1) * 8 ? 8 : len > i * 8 ? len - i * 8 : 0;
        b[i] = static_cast<char>(f.src[i] & static_cast<uint8_t>(0xff00u >> bits));
      }
      b[n++] = static_cast<char>(len);
      break;
    }
    case key_kind::vip:
      n = addr_len(f);
      std::copy_n(f.vip.begin(), n, b.begin());
      b[n++] = static_cast<char>(f.vip_port >> 8);
      b[n++] = static_cast<char>(f.vip_port);
      break;
    default:  // route/sni/header: not L4 keys (validated); one bucket
      break;
  }
  b[n++] = static_cast<char>(f.v6);
  return key_hash(c.salt, {b.data(), n});
}

bool path_matches(std::string_view path, std::string_view prefix) {
  if (prefix.empty()) return true;
  if (path.substr(0, prefix.size()) != prefix) return false;
  return path.size() == prefix.size() || prefix.back() == '/' || path[prefix.size()] == '/' ||
         path[prefix.size()] == '?';
}

// Counts the verdict; returns whether it decides (an enforced limit that is over).
bool account(const compiled_limit& c, const verdict& v, unsigned worker) {
  limit_counts& k = c.state->on(worker);
  if (!v.tracked) {
    k.untracked.add();
    return false;
  }
  if (!v.limited) {
    k.allowed.add();
    return false;
  }
  if (c.spec.detect_only) {
    k.detected.add();
    return false;
  }
  k.limited.add();
  return true;
}

decision limited(const compiled_limit& c, const verdict& v) {
  return {
      .what = outcome::limited, .act = c.spec.act, .by = &c, .retry_after_ns = v.retry_after_ns};
}

}  // namespace

decision limit_set::check_packet(const service_limits& s, const flow& f, bool syn, uint32_t bytes,
                                 uint64_t now, unsigned worker) {
  if (s.acl_table) {
    const acl_verdict a = s.acl_table->lookup(f.v6, f.src.data());
    const size_t i = a.list < 0 ? s.acl_states.size() - 1 : static_cast<size_t>(a.list);
    if (a.denied) {
      if (i < s.acl_states.size()) s.acl_states[i]->on(worker).limited.add();
      return {.what = outcome::acl_denied};
    }
    if (syn && i < s.acl_states.size()) s.acl_states[i]->on(worker).allowed.add();
  }
  for (const compiled_limit* c : s.packet) {
    const scope w = c->spec.what;
    if (w == scope::syn && !syn) continue;
    const uint64_t cost = w == scope::bytes ? bytes : 1;
    const verdict v = c->state->table->gcra(flow_key(*c, f), now, cost, c->gcra);
    if (account(*c, v, worker)) return limited(*c, v);
  }
  return {};
}

decision limit_set::check_accept(const service_limits& s, const flow& f, uint64_t now,
                                 unsigned worker, conn_hold& hold) {
  for (const compiled_limit* c : s.accept) {
    const uint64_t h = flow_key(*c, f);
    if (c->spec.what == scope::conn) {
      const verdict v = c->state->table->gcra(h, now, 1, c->gcra);
      if (account(*c, v, worker)) {
        hold.release();
        return limited(*c, v);
      }
      continue;
    }
    if (hold.n == conn_hold::max) continue;  // validated: at most 4 concurrency limits per service
    const verdict v = c->state->table->acquire(h, c->spec.rate, c->spec.detect_only);
    const bool took = v.tracked && (!v.limited || c->spec.detect_only);
    if (account(*c, v, worker)) {
      hold.release();
      return limited(*c, v);
    }
    if (took) {
      hold.table[hold.n] = c->state->table.get();
      hold.key[hold.n] = h;
      ++hold.n;
    }
  }
  return {};
}

decision limit_set::check_request(const service_limits& s, const flow& f, const request_info& r,
                                  uint64_t now, unsigned worker) {
  for (const compiled_limit* c : s.request) {
    const limit_spec& sp = c->spec;
    if (!sp.method.empty() && sp.method != r.method) continue;
    if (!path_matches(r.path, sp.path_prefix)) continue;
    uint64_t h = 0;
    switch (sp.key) {
      case key_kind::sni:
        if (r.sni.empty()) continue;
        h = key_hash(c->salt, r.sni);
        break;
      case key_kind::header: {
        const std::string_view v =
            r.header != nullptr ? r.header(r.ctx, sp.header) : std::string_view{};
        if (v.empty()) continue;
        h = key_hash(c->salt, v);
        break;
      }
      case key_kind::route:
        h = key_hash(c->salt, "route");
        break;
      default:
        h = flow_key(*c, f);
    }
    const verdict v = c->state->table->gcra(h, now, 1, c->gcra);
    if (account(*c, v, worker)) return limited(*c, v);
  }
  return {};
}

}  // namespace limits
