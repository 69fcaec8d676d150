// Fuzz target: arbitrary bytes through the request-head parser, the path normaliser, the chunked
// decoder, the response framer and a full inspector (shipped rules, the capture-chain importer
// data file so derived conditions run on hostile fields, a path exclusion) fed in
// segments whose sizes come from the input. Invariants: no crash, every call makes progress or ends
// the flow, consumed never exceeds what was given, a normalised path is canonical (see check_path).
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "rules/loader.hh"
#include "rules/secrule.hh"
#include "waf/inspector.hh"

#ifndef FUZZ_RULES_DIR
#error "FUZZ_RULES_DIR must name rules/shipped"
#endif
#ifndef FUZZ_CAPTURE_CONF
#error "FUZZ_CAPTURE_CONF must name tests/unit/rules/secrule/capture.conf"
#endif

namespace {

struct state {
  std::shared_ptr<const waf::bound_policy> pol;
  std::unique_ptr<waf::worker_scratch> ws;
  waf::worker_stats st;
};

state* init() {
  auto rs = rules::load_rules_dir(FUZZ_RULES_DIR);
  if (!rs) std::abort();
  auto cap = rules::import_secrules({FUZZ_CAPTURE_CONF}, "capture");
  if (!cap || cap->rules.empty()) std::abort();
  rs->insert(rs->end(), cap->rules.begin(), cap->rules.end());
  auto c = waf::ruleset::compile(std::move(*rs));
  if (!c) std::abort();
  waf::policy p;
  p.exclusions.push_back({{100100}, "/search", ""});
  p.body_limit = 4096;
  p.limits.max_head_bytes = 4096;
  auto b = waf::bound_policy::bind(*c, p);
  if (!b) std::abort();
  auto* s = new state();
  s->pol = *b;
  s->ws = std::make_unique<waf::worker_scratch>(std::move(*waf::worker_scratch::create(**c)));
  return s;
}

void check(bool ok) {
  if (!ok) std::abort();
}

// A normalised path starts with '/', is no longer than the raw one, has no "." or ".." segment
// (and no empty one when slashes are merged), and normalising it again changes nothing.
void check_path(std::string_view raw) {
  static char out[8192], again[8192];
  if (raw.size() > sizeof out) return;
  for (auto pp : {waf::path_params::strip, waf::path_params::keep})
    for (bool merge : {true, false}) {
      auto n = waf::normalize_path(raw, pp, merge, out);
      if (!n) continue;
      std::string_view norm(out, *n);
      check(!norm.empty() && norm[0] == '/' && norm.size() <= raw.size());
      for (size_t i = 0; i < norm.size(); ++i) {
        if (norm[i] != '/') continue;
        std::string_view rest = norm.substr(i + 1);
        std::string_view seg = rest.substr(0, rest.find('/'));
        check(seg != "." && seg != "..");
        if (merge) check(!(seg.empty() && i + 1 < norm.size()));
      }
      if (norm.find('%') == std::string_view::npos &&
          (pp == waf::path_params::keep || norm.find(';') == std::string_view::npos)) {
        auto m = waf::normalize_path(norm, pp, merge, again);
        check(m && std::string_view(again, *m) == norm);
      }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static state* s = init();
  if (size == 0) return 0;
  const char* p = reinterpret_cast<const char*>(data + 1);
  size_t n = size - 1;
  size_t seg = (data[0] % 31) + 1;

  // Parser alone.
  waf::http_limits lim;
  waf::head_scan_state hs;
  size_t end = 0;
  if (waf::find_head_end(p, n, lim, hs, end) == waf::http_error::none && end) {
    check(end <= n);
    std::vector<waf::http_header> slots(lim.max_header_count);
    waf::request_head h;
    if (waf::parse_request_head(std::string_view(p, end), lim, slots, h) == waf::http_error::none)
      check_path(h.path);
  }
  check_path(std::string_view(p, std::min<size_t>(n, 512)));
  // Chunked decoder alone, in segments.
  waf::chunked_decoder d;
  for (size_t off = 0; off < n;) {
    size_t k = std::min(seg, n - off);
    uint64_t got = 0;
    auto r = d.feed(p + off, k, [&](const char*, size_t m) { got += m; });
    check(r.consumed <= k);
    if (r.st != waf::chunked_decoder::status::need_more) break;
    check(r.consumed == k);
    off += k;
  }
  // The response framer (the access log's view of upstream answers), in segments: it always takes
  // what it is given unless a response ends inside it, a response's size is the bytes it took,
  // and once lost or a tunnel it stays so.
  {
    waf::response_framer f;
    uint64_t since = 0;
    bool gone = false;
    for (size_t off = 0; off < n;) {
      std::span<const char> piece(p + off, std::min(seg, n - off));
      const auto r = f.feed(piece, (data[0] & 0x40) != 0);
      check(r.used <= piece.size());
      since += r.used;
      using ev = waf::response_framer::event;
      if (gone) check(r.ev == ev::lost || (r.ev == ev::none && !f.following()));
      if (r.ev == ev::done || r.ev == ev::tunnel) {
        check(r.bytes == since && r.status >= 100 && r.status <= 999);
        since = 0;
      } else {
        check(r.used == piece.size());
      }
      if (r.ev == ev::lost || r.ev == ev::tunnel) gone = true;
      off += r.used;
      if (r.used == 0 && r.ev != ev::done) break;
    }
    f.close();
  }
  // The inspector, in segments.
  for (auto m : {waf::inspector::mode::http, waf::inspector::mode::raw}) {
    auto in = waf::inspector::create(s->pol, *s->ws, m);
    check(in.has_value());
    std::span<const char> rest(p, n);
    while (!rest.empty()) {
      auto piece = rest.first(std::min(seg, rest.size()));
      auto v = (*in)->feed(*s->ws, s->st, piece);
      check(v.consumed <= piece.size());
      if (v.kind == waf::verdict_kind::block) break;
      check(v.consumed > 0);  // progress: a live flow always takes bytes
      rest = rest.subspan(v.consumed);
    }
    (*in)->finish(*s->ws, s->st);
    check((*in)->matches().size() <= waf::inspector::max_matches);
  }
  return 0;
}
