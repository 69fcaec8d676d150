// Body processors through the inspector: what the rules see of urlencoded, multipart and JSON
// bodies, what a body that does not parse gets, and that segmenting changes nothing.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine_fixture.hh"

namespace {

using waf::verdict_kind;
using waf_test::make_engine;
using waf_test::run;
using waf_test::run1;

const std::string rules = R"(rules:
  - id: 1
    action: block
    phase: args
    pattern: "union\\s+select"
    caseless: true
  - id: 2
    action: block
    phase: files
    pattern: "\\.php$"
  - id: 3
    action: block
    phase: multipart_part_headers
    pattern: "^content-transfer-encoding:"
    caseless: true
  - id: 4
    action: block
    phase: body_vars:multipart_strict_error
    operator: streq
    pattern: "1"
  - id: 5
    action: block
    phase: args:json.user.name
    pattern: "^admin$"
  - id: 6
    action: block
    phase: body
    pattern: "raw-marker"
  - id: 7
    action: block
    phase: arg_names
    pattern: "^evil"
  - id: 8
    action: block
    phase: files_sizes
    pattern: "^[0-9]{7,}$"
)";

std::string request(const std::string& ct, const std::string& body) {
  return "POST /submit HTTP/1.1\r\nHost: t\r\nContent-Type: " + ct +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string part(const std::string& disp, const std::string& content,
                 const std::string& extra = "") {
  return "--B0undary\r\nContent-Disposition: form-data; " + disp + "\r\n" + extra + "\r\n" +
         content + "\r\n";
}
const std::string mp_ct = "multipart/form-data; boundary=B0undary";
const std::string mp_end = "--B0undary--\r\n";

struct row {
  const char* what;
  std::string ct, body;
  verdict_kind kind;
  uint16_t status;
  std::vector<uint32_t> ids;
};

TEST(body_inspect, rules_see_fields_files_and_flags_not_file_content) {
  const std::string binary =
      std::string("\x89PNG\r\n\x1a\n\0\0", 10) + "union select * from users--<script>";
  row rows[] = {
      {"sqli in a multipart field",
       mp_ct,
       part("name=\"q\"", "1 UNION  SELECT pw") + mp_end,
       verdict_kind::block,
       403,
       {1}},
      {"attack-looking file content passes",
       mp_ct,
       part("name=\"f\"; filename=\"x.png\"", binary, "Content-Type: image/png\r\n") + mp_end,
       verdict_kind::pass,
       0,
       {}},
      {"php file name",
       mp_ct,
       part("name=\"f\"; filename=\"shell.php\"", "<?php") + mp_end,
       verdict_kind::block,
       403,
       {2}},
      {"part header",
       mp_ct,
       part("name=\"a\"", "1", "Content-Transfer-Encoding: base64\r\n") + mp_end,
       verdict_kind::block,
       403,
       {3}},
      // modsecurity.conf-recommended's 200003: a strict error is a 400 under on_body_error:
      // block, before any rule (the variable itself: multipart_strict_error_blocks_...).
      {"strict error (LF-only lines)",
       mp_ct,
       "--B0undary\nContent-Disposition: form-data; name=\"a\"\n\n1\n--B0undary--\n",
       verdict_kind::block,
       400,
       {}},
      {"field name",
       mp_ct,
       part("name=\"evil_field\"", "x") + mp_end,
       verdict_kind::block,
       403,
       {7}},
      {"file size",
       mp_ct,
       part("name=\"f\"; filename=\"big.bin\"", std::string(1'000'000, 'z')) + mp_end,
       verdict_kind::block,
       403,
       {8}},
      {"multipart body is not scanned raw",
       mp_ct,
       part("name=\"a\"", "raw-marker") + mp_end,
       verdict_kind::pass,
       0,
       {}},
      {"sqli in a JSON value",
       "application/json",
       R"({"items":[{"id":"1 union select 2"}]})",
       verdict_kind::block,
       403,
       {1}},
      {"JSON path names",
       "application/json",
       R"({"user":{"name":"admin"}})",
       verdict_kind::block,
       403,
       {5}},
      {"JSON key", "application/json", R"({"evil":1})", verdict_kind::pass, 0, {}},
      // ModSecurity v3 keeps the raw JSON as REQUEST_BODY besides parsing it into ARGS (CRS
      // 920273).
      {"JSON body is also the raw REQUEST_BODY",
       "application/json",
       R"({"a":"raw-marker"})",
       verdict_kind::block,
       403,
       {6}},
      {"urlencoded body is not scanned raw (its pairs are the args)",
       "application/x-www-form-urlencoded",
       "a=raw-marker",
       verdict_kind::pass,
       0,
       {}},
      {"opaque body scanned raw", "text/plain", "raw-marker", verdict_kind::block, 403, {6}},
      {"urlencoded field beyond 32 KiB is scanned whole",
       "application/x-www-form-urlencoded",
       "q=" + std::string(40000, 'a') + "+union+select+1",
       verdict_kind::block,
       403,
       {1}},
  };
  waf::policy p;
  p.body_limit = 2 << 20;
  auto e = make_engine(rules, p);
  ASSERT_TRUE(e);
  for (const auto& r : rows) {
    auto o = run1(*e, request(r.ct, r.body));
    EXPECT_EQ(o.kind, r.kind) << r.what;
    EXPECT_EQ(o.status, r.status) << r.what;
    EXPECT_EQ(o.ids, r.ids) << r.what;
  }
}

// The same request in segments of every size from 1 to 17 bytes: the same verdict.
TEST(body_inspect, verdict_does_not_depend_on_segmentation) {
  auto e = make_engine(rules);
  ASSERT_TRUE(e);
  const std::string reqs[] = {
      request(mp_ct, part("name=\"ok\"", "fine") + part("name=\"q\"", "1 union select 2") + mp_end),
      request("application/json", R"({"a":[1,{"b":"x union select y"}]})"),
      request(mp_ct, part("name=\"f\"; filename=\"a.txt\"", "union select") + mp_end),
  };
  const verdict_kind want[] = {verdict_kind::block, verdict_kind::block, verdict_kind::pass};
  for (size_t i = 0; i < std::size(reqs); ++i)
    for (size_t seg = 1; seg <= 17; ++seg) {
      std::vector<std::string> segs;
      for (size_t k = 0; k < reqs[i].size(); k += seg) segs.push_back(reqs[i].substr(k, seg));
      EXPECT_EQ(run(*e, segs).kind, want[i]) << "request " << i << " segment " << seg;
    }
}

TEST(body_inspect, unparsable_body_is_blocked_or_inspected_raw_as_the_policy_says) {
  const std::string bad_json = request("application/json", "{\"a\":\"raw-marker\" oops}");
  const std::string bad_mp = request(mp_ct, "--B0undary\r\nX: y\r\n\r\nraw-marker\r\n--B0undary--");
  const std::string no_boundary = request("multipart/form-data", "raw-marker");
  const std::string cut_json = request("application/json", "{\"q\":\"1 union select 2");
  {
    auto e = make_engine(rules);
    ASSERT_TRUE(e);
    for (const auto* r : {&bad_json, &bad_mp, &no_boundary, &cut_json}) {
      auto o = run1(*e, *r);
      EXPECT_EQ(o.kind, verdict_kind::block) << *r;
      EXPECT_EQ(o.status, 400) << *r;
    }
    EXPECT_EQ(e->st.blocked_body_error.get(), 4u);
    EXPECT_EQ(e->st.body_errors[static_cast<size_t>(waf::body_error::json_syntax)].get(), 1u);
    EXPECT_EQ(
        e->st.body_errors[static_cast<size_t>(waf::body_error::multipart_no_disposition)].get(),
        1u);
    EXPECT_EQ(e->st.body_errors[static_cast<size_t>(waf::body_error::multipart_no_boundary)].get(),
              1u);
    EXPECT_EQ(e->st.body_errors[static_cast<size_t>(waf::body_error::json_truncated)].get(), 1u);
  }
  waf::policy p;
  p.on_body_error = waf::body_error_action::inspect_raw;
  auto e = make_engine(rules, p);
  ASSERT_TRUE(e);
  // The bytes from the error on go through the body rules; the value cut by the error is an arg.
  for (const auto* r : {&bad_json, &bad_mp, &no_boundary}) {
    auto o = run1(*e, *r);
    EXPECT_EQ(o.kind, verdict_kind::block) << *r;
    EXPECT_EQ(o.ids, std::vector<uint32_t>{6}) << *r;
  }
  auto o = run1(*e, cut_json);
  EXPECT_EQ(o.status, 403);
  EXPECT_EQ(o.ids, std::vector<uint32_t>{1});
  EXPECT_EQ(e->st.body_inspected_raw.get(), 4u);
  // A urlencoded body that parses is not scanned raw under inspect_raw either (JSON always is).
  EXPECT_EQ(run1(*e, request("application/x-www-form-urlencoded", "a=raw-marker")).kind,
            verdict_kind::pass);
}

// A bare LF before a delimiter: the WAF sees "hello" in q and a file part it does not scan; a
// CRLF-strict backend sees one field q holding the attack. Blocked (400) as ModSecurity's
// recommended rule 200003 does; under inspect_raw the flag stays a variable for the rules.
TEST(body_inspect, multipart_strict_error_blocks_unless_inspect_raw) {
  const std::string smuggled =
      request(mp_ct,
              "--B0undary\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nhello\n--B0undary\n"
              "Content-Disposition: form-data; name=\"f\"; filename=\"a\"\n\n1 union select 2\r\n" +
                  mp_end);
  auto e = make_engine(rules);
  ASSERT_TRUE(e);
  auto o = run1(*e, smuggled);
  EXPECT_EQ(o.kind, verdict_kind::block);
  EXPECT_EQ(o.status, 400);
  EXPECT_EQ(e->st.blocked_body_error.get(), 1u);
  EXPECT_EQ(e->st.multipart_strict.get(), 1u);
  // A well-formed body with the same fields passes.
  EXPECT_EQ(run1(*e, request(mp_ct, part("name=\"q\"", "hello") + mp_end)).kind,
            verdict_kind::pass);
  waf::policy p;
  p.on_body_error = waf::body_error_action::inspect_raw;
  auto raw = make_engine(rules, p);
  ASSERT_TRUE(raw);
  o = run1(*raw, smuggled);
  EXPECT_EQ(o.status, 403);
  EXPECT_EQ(o.ids, std::vector<uint32_t>{4});
}

// The same smuggled boundary, the body in three segments: the block comes with the segment that
// holds the bare LF, and nothing from it or after it is forwarded (a backend that handles parts as
// they stream in never sees the hidden part start).
TEST(body_inspect, multipart_strict_error_blocks_where_it_is_seen) {
  const std::string first = "--B0undary\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nhello";
  const std::string second =
      "\n--B0undary\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\n\n";
  const std::string third = "1 union select 2\r\n" + mp_end;
  const std::string req = request(mp_ct, first + second + third);
  const size_t head_len = req.size() - first.size() - second.size() - third.size();
  auto e = make_engine(rules);
  ASSERT_TRUE(e);
  auto o = run(*e, {req.substr(0, head_len) + first, second, third});
  EXPECT_EQ(o.kind, verdict_kind::block);
  EXPECT_EQ(o.status, 400);
  EXPECT_EQ(o.forwarded, req.substr(0, head_len) + first) << "bytes after the error went upstream";
  EXPECT_EQ(e->st.multipart_strict.get(), 1u);
  EXPECT_EQ(e->st.blocked_body_error.get(), 1u);
}

// Two Content-Type headers: the WAF would take the first (text/plain: a raw scan, no ARGS), a
// last-wins backend the form. A 400, whatever the order.
TEST(body_inspect, a_second_content_type_is_refused) {
  auto e = make_engine(rules);
  ASSERT_TRUE(e);
  const std::string req =
      "POST /submit HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
      "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 18\r\n\r\n"
      "q=1+union+select+2";
  auto o = run1(*e, req);
  EXPECT_EQ(o.kind, verdict_kind::block);
  EXPECT_EQ(o.status, 400);
}

// on_body_limit: inspect_partial inspects everything within the limit, the field still open at
// the limit included (it reached the rules only at the body's end, which is never seen).
TEST(body_inspect, inspect_partial_inspects_the_field_open_at_the_limit) {
  waf::policy p;
  p.body_limit = 100;  // the attack lies within it, the padding beyond
  p.on_body_limit = waf::body_limit_action::inspect_partial;
  auto e = make_engine(rules, p);
  ASSERT_TRUE(e);
  const std::string pad(200, 'x');
  const std::string reqs[] = {
      request("application/x-www-form-urlencoded", "a=1&q=1+union+select+2" + pad),
      request(mp_ct, part("name=\"q\"", "1 union select 2" + pad) + mp_end),
      request("application/json", R"({"q":"1 union select 2)" + pad + "\"}"),
  };
  for (const auto& r : reqs) {
    auto o = run1(*e, r);
    EXPECT_EQ(o.status, 403) << r;
    EXPECT_EQ(o.ids, std::vector<uint32_t>{1}) << r;
  }
  EXPECT_EQ(e->st.body_partial.get(), 3u);
  // Within the limit and clean: passes (partially inspected).
  EXPECT_EQ(run1(*e, request("application/x-www-form-urlencoded", "q=fine" + pad)).kind,
            verdict_kind::pass);
}

TEST(body_inspect, argument_limits_follow_the_policy) {
  const std::string big = request("application/x-www-form-urlencoded",
                                  "q=" + std::string(70000, 'a') + "+union+select+1");
  auto e = make_engine(rules);  // default: 64 KiB per value, reject
  ASSERT_TRUE(e);
  auto o = run1(*e, big);
  EXPECT_EQ(o.status, 413);
  EXPECT_EQ(e->st.form_truncated.get(), 1u);
  waf::policy p;
  p.body.max_value_bytes = 100 * 1024;
  auto roomy = make_engine(rules, p);
  ASSERT_TRUE(roomy);
  EXPECT_EQ(run1(*roomy, big).status, 403);
  p = {};
  p.body.max_json_depth = 4;
  auto shallow = make_engine(rules, p);
  ASSERT_TRUE(shallow);
  EXPECT_EQ(run1(*shallow, request("application/json", "[[[[[1]]]]]")).status, 400);
  EXPECT_EQ(run1(*shallow, request("application/json", "[[[[1]]]]")).kind, verdict_kind::pass);
  // Counters by processor.
  EXPECT_EQ(shallow->st.body_json.get(), 2u);
  EXPECT_EQ(e->st.body_urlencoded.get(), 1u);
}

TEST(body_inspect, pipelined_requests_each_get_their_own_processor) {
  auto e = make_engine(rules);
  ASSERT_TRUE(e);
  std::string two = request("application/json", R"({"a":1})") +
                    request(mp_ct, part("name=\"q\"", "union select") + mp_end);
  auto o = run(*e, {two});
  EXPECT_EQ(o.requests, 2u);
  EXPECT_EQ(o.kind, verdict_kind::block);
  EXPECT_EQ(o.ids, std::vector<uint32_t>{1});
}

}  // namespace

namespace {

const std::string ws_head =
    "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
// A client WebSocket frame (RFC 6455 §5.2): FIN + opcode (text by default), the payload masked
// with `key` (as every client must), its length in 7, 16 or 64 bits as it needs.
std::string ws_frame(const std::string& payload, uint8_t first = 0x81, uint32_t key = 0x01020304,
                     bool masked = true) {
  std::string f(1, static_cast<char>(first));
  const uint8_t m = masked ? 0x80 : 0;
  const uint64_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(m | n);
  } else if (n < 65536) {
    f += static_cast<char>(m | 126);
    for (int s = 8; s >= 0; s -= 8) f += static_cast<char>(n >> s);
  } else {
    f += static_cast<char>(m | 127);
    for (int s = 56; s >= 0; s -= 8) f += static_cast<char>(n >> s);
  }
  const uint8_t k[4] = {uint8_t(key >> 24), uint8_t(key >> 16), uint8_t(key >> 8), uint8_t(key)};
  if (masked) f.append(reinterpret_cast<const char*>(k), 4);
  for (size_t i = 0; i < n; ++i)
    f += masked ? static_cast<char>(payload[i] ^ k[i & 3]) : payload[i];
  return f;
}
const std::string frame = ws_frame("raw-marker");  // masked text, as a browser sends it

struct ws_flow {
  std::unique_ptr<waf::inspector> in;
  waf_test::engine* e;
  waf::verdict feed(const std::string& s) { return in->feed(*e->ws, e->st, {s.data(), s.size()}); }
  // Feeds all of s (a head and its body come back in two verdicts); the last verdict.
  waf::verdict feed_all(const std::string& s) {
    std::span<const char> d(s.data(), s.size());
    waf::verdict v;
    while (!d.empty()) {
      v = in->feed(*e->ws, e->st, d);
      if (v.kind == verdict_kind::block || v.consumed == 0) break;
      d = d.subspan(v.consumed);
    }
    return v;
  }
};

ws_flow open_flow(waf_test::engine& e) {
  auto in = waf::inspector::create(e.pol, *e.ws);
  EXPECT_TRUE(in.has_value());
  return ws_flow{std::move(*in), &e};
}

TEST(upgrade, websocket_becomes_a_tunnel_after_101_and_stays_http_otherwise) {
  auto e = make_engine(rules);
  ASSERT_TRUE(e);
  auto f = open_flow(*e);
  auto v = f.feed(ws_head);
  EXPECT_EQ(v.kind, verdict_kind::pass);
  EXPECT_TRUE(v.request_complete);
  EXPECT_TRUE(f.in->awaiting_upgrade());
  // Until the answer is known, no byte is taken (nor passed).
  v = f.feed(frame);
  EXPECT_EQ(v.kind, verdict_kind::need_more);
  EXPECT_EQ(v.consumed, 0u);
  f.in->upgrade_response(e->st, 101);
  EXPECT_TRUE(f.in->tunnel_open());
  for (int i = 0; i < 3; ++i) {  // frames are not HTTP and not scanned: passed whole
    v = f.feed(frame);
    EXPECT_EQ(v.kind, verdict_kind::pass);
    EXPECT_EQ(v.consumed, frame.size());
    EXPECT_EQ(std::string(v.forward.data(), v.forward.size()), frame);
  }
  EXPECT_EQ(f.in->finish(*e->ws, e->st).kind, verdict_kind::pass);
  EXPECT_EQ(e->st.upgrades.get(), 1u);

  // Refused (the upstream answered 200/404/...): what follows is parsed and inspected as HTTP.
  auto g = open_flow(*e);
  g.feed(ws_head);
  g.in->upgrade_response(e->st, 404);
  EXPECT_FALSE(g.in->tunnel_open());
  v = g.feed_all(request("application/x-www-form-urlencoded", "q=1+union+select+2"));
  EXPECT_EQ(v.kind, verdict_kind::block);
  EXPECT_EQ(v.status, 403);
  EXPECT_EQ(e->st.upgrades_refused.get(), 1u);
  // Other upgrades (h2c) and upgrades with a body are plain HTTP requests: no tunnel.
  for (const std::string& r :
       {std::string("GET / HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade, "
                    "HTTP2-Settings\r\n\r\n"),
        std::string("GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n"),
        std::string("POST / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
                    "Content-Length: 1\r\n\r\nx")}) {
    auto h = open_flow(*e);
    EXPECT_EQ(h.feed(r).kind, verdict_kind::pass) << r;
    EXPECT_FALSE(h.in->awaiting_upgrade()) << r;
  }
}

TEST(upgrade, tunnel_is_scanned_by_the_body_rules_under_inspect_raw) {
  waf::policy p;
  p.on_upgrade = waf::upgrade_action::inspect_raw;
  auto e = make_engine(rules, p);
  ASSERT_TRUE(e);
  auto f = open_flow(*e);
  f.feed(ws_head);
  f.in->upgrade_response(e->st, 101);
  // The marker (masked, as a client sends it) split across two writes is still found.
  auto v = f.feed(frame.substr(0, 10));
  EXPECT_EQ(v.kind, verdict_kind::pass);
  v = f.feed(frame.substr(10));
  EXPECT_EQ(v.kind, verdict_kind::block);
  EXPECT_EQ(v.status, 403);
  EXPECT_EQ(e->st.ws_frames.get(), 1u);
}

// Frames are unmasked whatever their length encoding and however they are cut, and a message's
// fragments are one stream; benign frames pass byte for byte.
TEST(upgrade, websocket_frames_are_unmasked_across_lengths_fragments_and_writes) {
  waf::policy p;
  p.on_upgrade = waf::upgrade_action::inspect_raw;
  auto e = make_engine(rules, p);
  ASSERT_TRUE(e);
  const std::string pad(300, 'x');
  const struct {
    const char* name;
    std::string bytes;
  } cases[] = {
      {"16-bit length", ws_frame(pad + "raw-marker")},
      {"64-bit length", ws_frame(std::string(70000, 'y') + "raw-marker", 0x82, 0xdeadbeef)},
      {"fragments of one message", ws_frame("raw-", 0x01) + ws_frame("marker", 0x80, 0x11223344)},
      {"after a ping", ws_frame("hello", 0x89) + ws_frame("say raw-marker")},
  };
  for (const auto& c : cases) {
    for (const size_t step : {size_t(1), size_t(7), c.bytes.size()}) {
      auto f = open_flow(*e);
      f.feed(ws_head);
      f.in->upgrade_response(e->st, 101);
      waf::verdict v;
      for (size_t off = 0; off < c.bytes.size(); off += step) {
        v = f.feed(c.bytes.substr(off, step));
        if (v.kind == verdict_kind::block) break;
      }
      EXPECT_EQ(v.kind, verdict_kind::block) << c.name << ", writes of " << step;
      EXPECT_EQ(v.status, 403) << c.name;
    }
  }
  auto f = open_flow(*e);
  f.feed(ws_head);
  f.in->upgrade_response(e->st, 101);
  const std::string benign = ws_frame(pad) + ws_frame("hello", 0x8a);
  auto v = f.feed(benign);
  EXPECT_EQ(v.kind, verdict_kind::pass);
  EXPECT_EQ(std::string(v.forward.data(), v.forward.size()), benign);
}

// A frame the WAF cannot read ends the tunnel with a 400 rather than pass uninspected: an unmasked
// client frame (a protocol error), a compressed one (permessage-deflate), a length past 2^63.
TEST(upgrade, websocket_frames_that_cannot_be_inspected_end_the_tunnel) {
  waf::policy p;
  p.on_upgrade = waf::upgrade_action::inspect_raw;
  auto e = make_engine(rules, p);
  ASSERT_TRUE(e);
  const std::string huge = std::string("\x82\xff\x80\0\0\0\0\0\0\0\x01\x02\x03\x04", 14);
  for (const std::string& bad :
       {ws_frame("raw-marker", 0x81, 0, false), ws_frame("compressed", 0xc1), huge}) {
    auto f = open_flow(*e);
    f.feed(ws_head);
    f.in->upgrade_response(e->st, 101);
    auto v = f.feed(bad);
    EXPECT_EQ(v.kind, verdict_kind::block);
    EXPECT_EQ(v.status, 400);
  }
  EXPECT_EQ(e->st.ws_refused.get(), 3u);
}

}  // namespace
