// Strict YAML loader for limit files (`*.limits.yaml`) and their `.cidr` lists.
#include "rules/limits_file.hh"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include "limits/set.hh"
#include "yaml_fields.hh"

namespace rules {

using namespace yaml_fields;
namespace {

using common::fail;
using limits::action;
using limits::key_kind;
using limits::scope;

bool label_safe(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '.';
  });
}

common::result<limits::limit_spec> parse_limit(const ctx& c0, const YAML::Node& n) {
  ctx c{c0.file, {}};
  if (auto k = check_keys(c, n,
                          {"name", "services", "scope", "key", "prefix", "header", "match", "rate",
                           "burst", "action", "mode", "table_size"},
                          "limit");
      !k)
    return common::unexpected(k.error());
  limits::limit_spec s;
  s.where = where(c.file, n.Mark());
  const YAML::Node name = n["name"];
  if (!name) return c.err(n, "a limit needs a 'name'");
  auto nm = str(c, name, "name");
  if (!nm) return common::unexpected(nm.error());
  if (!label_safe(*nm)) return c.err(name, "'name' must be 1-64 of [A-Za-z0-9_.-]");
  s.name = *nm;
  c.prefix = "limit " + s.name + ": ";
  if (const YAML::Node x = n["services"]) {
    auto l = str_list(c, x, "services");
    if (!l) return common::unexpected(l.error());
    s.services = *l;
  }
  const YAML::Node sc = n["scope"];
  if (!sc) return c.err(n, "missing 'scope' (syn, conn, concurrent, packets, bytes, requests)");
  auto w = choice<scope>(c, sc, "scope",
                         {{"syn", scope::syn},
                          {"conn", scope::conn},
                          {"concurrent", scope::concurrent},
                          {"packets", scope::packets},
                          {"bytes", scope::bytes},
                          {"requests", scope::requests}});
  if (!w) return common::unexpected(w.error());
  s.what = *w;
  if (const YAML::Node x = n["key"]) {
    auto k = choice<key_kind>(c, x, "key",
                              {{"src", key_kind::src},
                               {"src_prefix", key_kind::src_prefix},
                               {"vip", key_kind::vip},
                               {"sni", key_kind::sni},
                               {"route", key_kind::route},
                               {"header", key_kind::header}});
    if (!k) return common::unexpected(k.error());
    s.key = *k;
    if (limits::is_l4(s.what) && s.key != key_kind::src && s.key != key_kind::src_prefix &&
        s.key != key_kind::vip)
      return c.err(x, std::string("key '") + limits::to_string(s.key) +
                          "' needs scope requests (L4 scopes: src, "
                          "src_prefix, vip)");
  }
  if (const YAML::Node x = n["prefix"]) {
    if (s.key != key_kind::src_prefix) return c.err(x, "'prefix' needs key src_prefix");
    if (auto k = check_keys(c, x, {"v4", "v6"}, "prefix"); !k) return common::unexpected(k.error());
    if (const YAML::Node v = x["v4"]) {
      auto p = integer<uint64_t>(c, v, "prefix.v4", 1, 32);
      if (!p) return common::unexpected(p.error());
      s.prefix_v4 = static_cast<uint8_t>(*p);
    }
    if (const YAML::Node v = x["v6"]) {
      auto p = integer<uint64_t>(c, v, "prefix.v6", 1, 128);
      if (!p) return common::unexpected(p.error());
      s.prefix_v6 = static_cast<uint8_t>(*p);
    }
  } else if (s.key == key_kind::src_prefix) {
    s.prefix_v4 = 24, s.prefix_v6 = 64;
  }
  if (const YAML::Node x = n["header"]) {
    if (s.key != key_kind::header) return c.err(x, "'header' needs key header");
    auto h = str(c, x, "header");
    if (!h) return common::unexpected(h.error());
    if (!label_safe(*h)) return c.err(x, "'header' must be a header name");
    s.header = *h;
    std::transform(s.header.begin(), s.header.end(), s.header.begin(), [](char ch) {
      return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch + 32) : ch;
    });
  } else if (s.key == key_kind::header) {
    return c.err(n, "key header needs 'header' (the header's name)");
  }
  if (const YAML::Node x = n["match"]) {
    if (s.what != scope::requests) return c.err(x, "'match' needs scope requests");
    if (auto k = check_keys(c, x, {"method", "path_prefix"}, "match"); !k)
      return common::unexpected(k.error());
    if (const YAML::Node m = x["method"]) {
      auto v = str(c, m, "method");
      if (!v) return common::unexpected(v.error());
      if (!label_safe(*v)) return c.err(m, "'method' must be an HTTP method");
      s.method = *v;
    }
    if (const YAML::Node m = x["path_prefix"]) {
      auto v = str(c, m, "path_prefix");
      if (!v) return common::unexpected(v.error());
      if (v->empty() || (*v)[0] != '/') return c.err(m, "'path_prefix' must start with '/'");
      s.path_prefix = *v;
    }
  }
  const YAML::Node rate = n["rate"];
  if (!rate)
    return c.err(n, s.what == scope::concurrent ? "missing 'rate' (connections held at once)"
                                                : "missing 'rate' (per second)");
  auto r = integer<uint64_t>(c, rate, "rate", 1, 10'000'000'000ull);
  if (!r) return common::unexpected(r.error());
  s.rate = *r;
  if (const YAML::Node x = n["burst"]) {
    if (s.what == scope::concurrent) return c.err(x, "'burst' has no meaning for scope concurrent");
    auto b = integer<uint64_t>(c, x, "burst", 1, 10'000'000'000ull);
    if (!b) return common::unexpected(b.error());
    s.burst = *b;
  }
  // Defaults and what each scope can do.
  switch (s.what) {
    case scope::syn:
      s.act = action::drop;
      break;
    case scope::packets:
    case scope::bytes:
      s.act = action::drop;
      break;
    case scope::conn:
    case scope::concurrent:
      s.act = action::rst;
      break;
    case scope::requests:
      s.act = action::http_429;
      break;
  }
  if (const YAML::Node x = n["action"]) {
    auto a = choice<action>(
        c, x, "action", {{"drop", action::drop}, {"rst", action::rst}, {"429", action::http_429}});
    if (!a) return common::unexpected(a.error());
    s.act = *a;
    const bool ok = s.what == scope::requests                            ? true
                    : s.what == scope::syn                               ? s.act != action::http_429
                    : s.what == scope::packets || s.what == scope::bytes ? s.act == action::drop
                                                                         : s.act == action::rst;
    if (!ok)
      return c.err(
          x,
          std::string("action '") + limits::to_string(s.act) + "' does not apply to scope " +
              limits::to_string(s.what) +
              " (syn: drop, rst; packets, bytes: drop; conn, concurrent: rst; requests: 429, rst, "
              "drop)");
  }
  if (const YAML::Node x = n["mode"]) {
    auto m = str(c, x, "mode");
    if (!m) return common::unexpected(m.error());
    if (*m == "enforce")
      s.detect_only = false;
    else if (*m == "detect_only")
      s.detect_only = true;
    else
      return c.err(x, "unknown mode '" + *m + "' (enforce, detect_only)");
  }
  if (const YAML::Node x = n["table_size"]) {
    auto t = integer<uint64_t>(c, x, "table_size", 16, 1ull << 28);
    if (!t) return common::unexpected(t.error());
    s.table_keys = *t;
  }
  return s;
}

common::result<limits::acl_spec> parse_acl(const ctx& c0, const YAML::Node& n,
                                           const std::string& dir) {
  ctx c{c0.file, {}};
  if (auto k = check_keys(c, n, {"service", "deny", "allow"}, "acl entry"); !k)
    return common::unexpected(k.error());
  limits::acl_spec a;
  a.where = where(c.file, n.Mark());
  const YAML::Node svc = n["service"];
  if (!svc) return c.err(n, "an acl entry needs a 'service'");
  auto s = str(c, svc, "service");
  if (!s) return common::unexpected(s.error());
  a.service = *s;
  c.prefix = "acl " + a.service + ": ";
  for (const char* kind : {"deny", "allow"}) {
    const YAML::Node x = n[kind];
    if (!x) continue;
    auto entries = str_list(c, x, kind);
    if (!entries) return common::unexpected(entries.error());
    limits::acl_list inl{.name = std::string("inline_") + kind,
                         .where = where(c.file, x.Mark()),
                         .deny = kind[0] == 'd',
                         .prefixes = {}};
    for (size_t i = 0; i < entries->size(); ++i) {
      const std::string& e = (*entries)[i];
      const YAML::Node at = x.IsSequence() ? x[i] : x;
      if (e.size() > 5 && e.ends_with(".cidr")) {
        if (e.find('/') != std::string::npos || e.starts_with("."))
          return c.err(at, "'" + e + "': a list file is a name in the rules directory (no '/')");
        const std::string path = (std::filesystem::path(dir) / e).string();
        auto text = read_file(path);
        if (!text) return c.err(at, "cannot read list file '" + e + "'");
        auto ps = limits::parse_cidr_text(*text, path);
        if (!ps) return common::unexpected(ps.error());
        a.lists.push_back({.name = e,
                           .where = where(c.file, at.Mark()),
                           .deny = kind[0] == 'd',
                           .prefixes = *ps});
        continue;
      }
      auto p = limits::parse_prefix(e);
      if (!p) return c.err(at, p.error().message + " (an entry is a prefix or a NAME.cidr file)");
      inl.prefixes.push_back(*p);
    }
    if (!inl.prefixes.empty()) a.lists.push_back(std::move(inl));
  }
  if (a.lists.empty()) return c.err(n, "an acl entry needs 'deny' or 'allow'");
  return a;
}

}  // namespace

bool is_limits_file(std::string_view f) {
  return f.ends_with(".limits.yaml") || f.ends_with(".limits.yml");
}

common::result<limits::limits_config> parse_limits_file(std::string_view text,
                                                        const std::string& file,
                                                        const std::string& dir) {
  try {
    YAML::Node doc = YAML::Load(std::string(text));
    ctx c{file, {}};
    if (!doc || doc.IsNull()) return fail("empty document", file);
    if (auto k = check_keys(c, doc, {"limits", "acl"}, "a limit file"); !k)
      return common::unexpected(k.error());
    limits::limits_config out;
    out.files = 1;
    if (const YAML::Node l = doc["limits"]) {
      if (!l.IsSequence()) return c.err(l, "'limits' must be a list");
      for (const auto& e : l) {
        auto s = parse_limit(c, e);
        if (!s) return common::unexpected(s.error());
        out.limits.push_back(std::move(*s));
      }
    }
    if (const YAML::Node l = doc["acl"]) {
      if (!l.IsSequence()) return c.err(l, "'acl' must be a list");
      for (const auto& e : l) {
        auto a = parse_acl(c, e, dir);
        if (!a) return common::unexpected(a.error());
        out.acls.push_back(std::move(*a));
      }
    }
    return out;
  } catch (const YAML::Exception& e) {
    return fail("YAML: " + e.msg, where(file, e.mark));
  }
}

common::result<limits::limits_config> load_limits_dir(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return fail("not a directory", dir);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file() && is_limits_file(e.path().filename().string()))
      files.push_back(e.path());
  if (ec) return fail("cannot list directory: " + ec.message(), dir);
  std::sort(files.begin(), files.end());
  limits::limits_config all;
  std::set<std::string> names, acl_services;
  size_t concurrent = 0;
  for (const auto& p : files) {
    auto text = read_file(p.string());
    if (!text) return common::unexpected(text.error());
    auto one = parse_limits_file(*text, p.string(), dir);
    if (!one) return common::unexpected(one.error());
    for (auto& l : one->limits) {
      if (!names.insert(l.name).second)
        return fail("limit " + l.name + ": duplicate name", l.where);
      if (l.what == scope::concurrent && ++concurrent > limits::conn_hold::max)
        return fail("limit " + l.name + ": more than " + std::to_string(limits::conn_hold::max) +
                        " concurrent limits in the rules directory",
                    l.where);
      all.limits.push_back(std::move(l));
    }
    for (auto& a : one->acls) {
      if (!acl_services.insert(a.service).second)
        return fail("acl " + a.service + ": a second acl entry for this service", a.where);
      all.acls.push_back(std::move(a));
    }
    ++all.files;
  }
  return all;
}

}  // namespace rules
