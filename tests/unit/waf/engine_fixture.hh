#pragma once
// Builds an engine from YAML rule text and runs requests through an inspector in segments.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "rules/loader.hh"
#include "waf/inspector.hh"

namespace waf_test {

struct engine {
  std::shared_ptr<const waf::bound_policy> pol;
  std::unique_ptr<waf::worker_scratch> ws;
  waf::worker_stats st;
};

inline std::unique_ptr<engine> make_engine(std::vector<waf::rule> rs, waf::policy p = {}) {
  auto compiled = waf::ruleset::compile(std::move(rs));
  EXPECT_TRUE(compiled.has_value()) << (compiled ? "" : compiled.error().str());
  if (!compiled) return nullptr;
  auto b = waf::bound_policy::bind(*compiled, std::move(p));
  EXPECT_TRUE(b.has_value()) << (b ? "" : b.error().str());
  if (!b) return nullptr;
  auto e = std::make_unique<engine>();
  e->pol = *b;
  auto ws = waf::worker_scratch::create(e->pol->rules());
  EXPECT_TRUE(ws.has_value());
  e->ws = std::make_unique<waf::worker_scratch>(std::move(*ws));
  return e;
}

inline std::unique_ptr<engine> make_engine(const std::string& yaml, waf::policy p = {}) {
  auto rs = rules::parse_rule_file(yaml, "test.yaml");
  EXPECT_TRUE(rs.has_value()) << (rs ? "" : rs.error().str());
  if (!rs) return nullptr;
  return make_engine(std::move(*rs), std::move(p));
}

struct outcome {
  waf::verdict_kind kind = waf::verdict_kind::need_more;
  uint16_t status = 0;
  std::vector<uint32_t> ids;
  int score = 0;
  waf::http_error perr = waf::http_error::none;
  std::string forwarded;  // what pass/detect verdicts told us to send upstream
  size_t requests = 0;
};

// Feeds the segments in order; stops at the first block. Returns the last request's outcome.
inline outcome run(engine& e, const std::vector<std::string>& segments,
                   waf::inspector::mode m = waf::inspector::mode::http) {
  outcome o;
  auto in = waf::inspector::create(e.pol, *e.ws, m);
  EXPECT_TRUE(in.has_value());
  if (!in) return o;
  auto take = [&](const waf::verdict& v) {
    o.kind = v.kind;
    o.status = v.status;
    if (v.kind == waf::verdict_kind::pass || v.kind == waf::verdict_kind::detect)
      o.forwarded.append(v.forward.data(), v.forward.size());
    if (v.request_complete || v.kind == waf::verdict_kind::block) {
      ++o.requests;
      o.ids.clear();
      for (const auto& mm : (*in)->matches()) o.ids.push_back(mm.rule_id);
      o.score = (*in)->anomaly_score();
      o.perr = (*in)->parse_error();
    }
  };
  for (const auto& s : segments) {
    std::span<const char> d(s.data(), s.size());
    while (!d.empty()) {
      auto v = (*in)->feed(*e.ws, e.st, d);
      take(v);
      if (v.kind == waf::verdict_kind::block) return o;
      d = d.subspan(v.consumed);
    }
  }
  auto v = (*in)->finish(*e.ws, e.st);
  if (v.kind == waf::verdict_kind::block || m == waf::inspector::mode::raw) take(v);
  return o;
}

inline outcome run1(engine& e, const std::string& req) {
  return run(e, {req});
}

}  // namespace waf_test
