// Fuzz target: request bodies. The first two bytes choose the framing (Content-Length or chunked),
// the body processor (bits 1 and 5: opaque, urlencoded, multipart with boundary "fuzzB", JSON), the
// policy (body limit, reject or inspect_partial, body errors blocked or inspected raw,
// detect-only) and the segment size; the rest is the body, sent behind a fixed
// head through the inspector with the shipped rules (their body rules run in Hyperscan stream
// mode through the streaming transformations). Bit 7 instead sends a WebSocket upgrade, answers it
// 101 and feeds the rest as the client's frames (on_upgrade: inspect_raw: headers parsed, payloads
// unmasked and scanned). Invariants: no crash or sanitizer report, progress on every call,
// consumed within what was given, a verdict once the flow ends, at most max_matches audit entries;
// in the tunnel every byte is passed on until a block, and a 400 there is a frame refused.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>

#include "rules/loader.hh"
#include "waf/inspector.hh"

#ifndef FUZZ_RULES_DIR
#error "FUZZ_RULES_DIR must name rules/shipped"
#endif

namespace {

struct state {
  std::shared_ptr<const waf::bound_policy> pol[8];
  std::unique_ptr<waf::worker_scratch> ws;
  waf::worker_stats st;
};

state* init() {
  auto rs = rules::load_rules_dir(FUZZ_RULES_DIR);
  if (!rs) std::abort();
  auto c = waf::ruleset::compile(std::move(*rs));
  if (!c) std::abort();
  auto* s = new state();
  for (unsigned i = 0; i < 8; ++i) {
    waf::policy p;
    p.body_limit = (i & 1) ? 64 : 8192;
    p.on_body_limit =
        (i & 2) ? waf::body_limit_action::inspect_partial : waf::body_limit_action::reject;
    p.detect_only = (i & 4) != 0;
    p.on_body_error = (i & 2) ? waf::body_error_action::inspect_raw : waf::body_error_action::block;
    p.body.max_value_bytes = (i & 1) ? 64 : 4096;
    p.body.max_json_depth = (i & 1) ? 4 : 64;
    p.on_upgrade = waf::upgrade_action::inspect_raw;
    auto b = waf::bound_policy::bind(*c, p);
    if (!b) std::abort();
    s->pol[i] = *b;
  }
  s->ws = std::make_unique<waf::worker_scratch>(std::move(*waf::worker_scratch::create(**c)));
  return s;
}

void check(bool ok) {
  if (!ok) std::abort();
}

int websocket(state& s, uint8_t sel, size_t seg, std::string_view frames) {
  static const std::string head =
      "GET /chat HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  auto in = waf::inspector::create(s.pol[(sel >> 2) & 7], *s.ws);
  check(in.has_value());
  auto v = (*in)->feed(*s.ws, s.st, {head.data(), head.size()});
  check(v.request_complete && (*in)->awaiting_upgrade());
  (*in)->upgrade_response(s.st, 101);
  check((*in)->tunnel_open());
  const uint64_t refused0 = s.st.ws_refused.get();
  std::span<const char> rest(frames.data(), frames.size());
  while (!rest.empty()) {
    auto piece = rest.first(std::min(seg, rest.size()));
    v = (*in)->feed(*s.ws, s.st, piece);
    check(v.consumed == piece.size());
    if (v.kind == waf::verdict_kind::block) {
      check(v.status == 403 || (v.status == 400 && s.st.ws_refused.get() == refused0 + 1));
      return 0;
    }
    check(v.forward.size() == piece.size());
    rest = rest.subspan(v.consumed);
  }
  (void)(*in)->finish(*s.ws, s.st);
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static state* s = init();
  if (size < 2) return 0;
  const uint8_t sel = data[0];
  const size_t seg = (data[1] % 61) + 1;
  std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  if (sel & 128) return websocket(*s, sel, seg, body);
  const bool chunked = sel & 1, pipelined = sel & 64;
  const unsigned kind = ((sel >> 1) & 1) | (((sel >> 5) & 1) << 1);
  std::string head = "POST /submit?a=1 HTTP/1.1\r\nHost: fuzz\r\n";
  static const char* const types[] = {"application/octet-stream",
                                      "application/x-www-form-urlencoded",
                                      "multipart/form-data; boundary=fuzzB", "application/json"};
  head += std::string("Content-Type: ") + types[kind] + "\r\n";
  // Chunked: the body bytes are the chunked encoding itself (sizes, extensions, trailers).
  if (chunked)
    head += "Transfer-Encoding: chunked\r\n";
  else
    head += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  head += "\r\n";
  std::string req = head;
  req.append(body);
  if (pipelined) req += "GET /next HTTP/1.1\r\nHost: fuzz\r\n\r\n";

  auto in = waf::inspector::create(s->pol[(sel >> 2) & 7], *s->ws);
  check(in.has_value());
  std::span<const char> rest(req.data(), req.size());
  bool blocked = false;
  while (!rest.empty()) {
    auto piece = rest.first(std::min(seg, rest.size()));
    auto v = (*in)->feed(*s->ws, s->st, piece);
    check(v.consumed <= piece.size());
    check((*in)->matches().size() <= waf::inspector::max_matches);
    if (v.kind == waf::verdict_kind::block) {
      check(v.status == 400 || v.status == 403 || v.status == 413);
      // A 400 after the head is a body the processor could not parse (or chunked framing), or a
      // multipart body with a strict error (on_body_error: block, as ModSecurity's 200003).
      check(v.status != 400 || (*in)->parse_error() != waf::http_error::none ||
            (*in)->body_parse_error() != waf::body_error::none ||
            ((*in)->multipart_flags() & waf::strict_error_mask) != 0);
      blocked = true;
      break;
    }
    check(v.consumed > 0);
    check(v.forward.size() <= v.consumed || v.head_complete);
    rest = rest.subspan(v.consumed);
  }
  auto f = (*in)->finish(*s->ws, s->st);
  if (blocked) check(f.kind == waf::verdict_kind::block);
  return 0;
}
