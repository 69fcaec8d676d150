// Body and raw payload scanning in stream mode: matches split across TCP segments and chunk
// boundaries, body limits, end-of-data anchors; plus the compiled-database cache and per-flow
// state.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine_fixture.hh"

namespace {

using waf::verdict_kind;
using waf_test::make_engine;
using waf_test::run;

const char* body_rules = R"(rules:
  - id: 20
    phase: body
    pattern: "<script>"
    caseless: true
    transforms: [url_decode]
    action: block
  - id: 21
    phase: body
    operator: ends_with
    pattern: "--END"
    action: block
)";

std::string post_cl(const std::string& body) {
  return "POST /f HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}
std::string chunked_head() {
  return "POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
}

TEST(stream, attack_split_at_every_segment_boundary) {
  auto e = make_engine(body_rules);
  ASSERT_TRUE(e);
  std::string body =
      "hello %3Cscr"
      "ipt%3E world";  // url-encoded, so a cut can fall inside %3C
  std::string req = post_cl(body);
  size_t head = req.size() - body.size();
  for (size_t cut = head + 1; cut < req.size(); ++cut) {
    auto r = run(*e, {req.substr(0, cut), req.substr(cut)});
    EXPECT_EQ(r.kind, verdict_kind::block) << "cut at body offset " << cut - head;
    EXPECT_EQ(r.ids, std::vector<uint32_t>{20});
  }
  EXPECT_EQ(run(*e, {post_cl("hello scr ipt")}).kind, verdict_kind::pass);
}

TEST(stream, attack_split_across_chunks_and_segments) {
  auto e = make_engine(body_rules);
  ASSERT_TRUE(e);
  // "<script>" spread over three chunks; then the encoded stream cut byte by byte.
  std::string req = chunked_head() + "3\r\nx<s\r\n4\r\ncrip\r\n2\r\nt>\r\n0\r\n\r\n";
  for (size_t step = 1; step < 12; ++step) {
    std::vector<std::string> segs;
    for (size_t i = 0; i < req.size(); i += step) segs.push_back(req.substr(i, step));
    auto r = run(*e, segs);
    EXPECT_EQ(r.kind, verdict_kind::block) << "segment size " << step;
    EXPECT_EQ(r.ids, std::vector<uint32_t>{20});
  }
  auto clean = run(*e, {chunked_head() + "3\r\nx<s\r\n4\r\ncrip\r\n2\r\nX>\r\n0\r\n\r\n"});
  EXPECT_EQ(clean.kind, verdict_kind::pass);
  EXPECT_EQ(clean.forwarded, chunked_head() + "3\r\nx<s\r\n4\r\ncrip\r\n2\r\nX>\r\n0\r\n\r\n")
      << "everything passed is forwarded, framing included";
}

TEST(stream, end_anchor_reported_at_end_of_body) {
  auto e = make_engine(body_rules);
  ASSERT_TRUE(e);
  EXPECT_EQ(run(*e, {post_cl("abc--END")}).ids, std::vector<uint32_t>{21});
  EXPECT_EQ(run(*e, {post_cl("abc--END "), ""}).kind, verdict_kind::pass);
  // The stream is reset between requests: a second request on the flow starts clean.
  auto two = run(*e, {post_cl("abc--EN") + post_cl("D")});
  EXPECT_EQ(two.kind, verdict_kind::pass);
  EXPECT_EQ(two.requests, 2u);
}

TEST(stream, body_limit_reject_or_inspect_partial) {
  waf::policy p;
  p.body_limit = 16;
  auto rej = make_engine(body_rules, p);
  ASSERT_TRUE(rej);
  auto r = run(*rej, {post_cl(std::string(40, 'a'))});
  EXPECT_EQ(r.kind, verdict_kind::block);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(rej->st.blocked_body_limit.get(), 1u);
  p.on_body_limit = waf::body_limit_action::inspect_partial;
  auto part = make_engine(body_rules, p);
  ASSERT_TRUE(part);
  EXPECT_EQ(run(*part, {post_cl(std::string(20, 'a') + "<script>")}).kind, verdict_kind::pass)
      << "beyond the limit is not inspected";
  EXPECT_EQ(run(*part, {post_cl("<script>" + std::string(20, 'a'))}).kind, verdict_kind::block);
  EXPECT_EQ(part->st.body_partial.get(), 2u);
}

TEST(stream, raw_payload_split_across_segments) {
  auto e = make_engine(R"(rules:
  - id: 30
    phase: raw_payload
    operator: contains
    pattern: "\u0001EXPLOIT"
    action: block
)");
  ASSERT_TRUE(e);
  auto r = run(*e,
               {"abc\x01"
                "EXP",
                "LOIT"},
               waf::inspector::mode::raw);
  EXPECT_EQ(r.kind, verdict_kind::block);
  EXPECT_EQ(e->st.raw_blocked.get(), 1u);
  EXPECT_EQ(run(*e,
                {"abc\x01"
                 "EXP",
                 "LOIX"},
                waf::inspector::mode::raw)
                .kind,
            verdict_kind::pass);
}

TEST(stream, state_bytes_per_flow_is_bounded) {
  auto e = make_engine(body_rules);
  ASSERT_TRUE(e);
  auto in = waf::inspector::create(e->pol, *e->ws);
  ASSERT_TRUE(in);
  size_t b = (*in)->state_bytes();
  // Dominated by the head buffer (max_head_bytes = 32 KiB by default) and the header slots; the
  // body processors' field buffer (body.max_name_bytes + body.max_value_bytes) is taken only when a
  // body a processor parses starts, so it is not in a new flow's state.
  EXPECT_GT(b, 32u * 1024);
  EXPECT_LT(b, 48u * 1024);
  auto raw = waf::inspector::create(e->pol, *e->ws, waf::inspector::mode::raw);
  ASSERT_TRUE(raw);
  EXPECT_LT((*raw)->state_bytes(), 6144u) << "raw flows hold no head buffer";
  std::printf("state bytes per flow: http %zu, raw %zu, hs stream state %zu\n", b,
              (*raw)->state_bytes(), e->pol->rules().stats().stream_state_bytes);
}

TEST(cache, second_compile_loads_from_cache_and_behaves_the_same) {
  auto dir =
      std::filesystem::temp_directory_path() / ("waf-cache-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  waf::compile_options o;
  o.cache_dir = dir.string();
  auto load = [&] {
    auto rs = rules::parse_rule_file(body_rules, "b.yaml");
    return waf::ruleset::compile(std::move(*rs), o);
  };
  auto a = load();
  ASSERT_TRUE(a);
  EXPECT_FALSE((*a)->stats().from_cache);
  auto b = load();
  ASSERT_TRUE(b);
  EXPECT_TRUE((*b)->stats().from_cache);
  EXPECT_EQ((*a)->hash(), (*b)->hash());
  // A corrupt cache file is ignored (recompiled), never trusted.
  for (auto& f : std::filesystem::directory_iterator(dir))
    std::filesystem::resize_file(f.path(), 20);
  auto c = load();
  ASSERT_TRUE(c);
  EXPECT_FALSE((*c)->stats().from_cache);
  auto bound = waf::bound_policy::bind(*b, {});
  ASSERT_TRUE(bound);
  waf_test::engine e;
  e.pol = *bound;
  e.ws = std::make_unique<waf::worker_scratch>(std::move(*waf::worker_scratch::create(**b)));
  EXPECT_EQ(run(e, {post_cl("<script>")}).kind, verdict_kind::block);
  std::filesystem::remove_all(dir);
}

TEST(cache, background_compile_returns_an_immutable_ruleset) {
  auto rs = rules::parse_rule_file(body_rules, "b.yaml");
  ASSERT_TRUE(rs);
  auto fut = waf::compile_in_background(std::move(*rs));
  auto r = fut.get();
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->rules().size(), 2u);
  // A worker scratch made for one ruleset grows to cover another (grow-only).
  auto other = waf::ruleset::compile(std::move(*rules::parse_rule_file(R"(rules:
  - id: 1
    phase: args
    pattern: "x{2,40}y"
)",
                                                                       "o.yaml")));
  ASSERT_TRUE(other);
  auto ws = waf::worker_scratch::create(**r);
  ASSERT_TRUE(ws);
  EXPECT_TRUE(ws->prepare(**other));
}

}  // namespace

namespace {

TEST(form_body, urlencoded_pairs_are_scanned_as_arguments) {
  auto e = waf_test::make_engine(R"(rules:
  - id: 40
    phase: args
    pattern: "evil\\d"
    action: block
  - id: 41
    phase: arg_names
    operator: streq
    pattern: "bad name"
    action: block
)");
  ASSERT_TRUE(e);
  auto form = [](const std::string& body, const char* ct = "application/x-www-form-urlencoded") {
    return "POST /f HTTP/1.1\r\nHost: a\r\nContent-Type: " + std::string(ct) +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  std::string req = form("a=1&q=ev%69l7&b=2");
  for (size_t cut = req.size() - 14; cut < req.size(); ++cut) {
    auto r = waf_test::run(*e, {req.substr(0, cut), req.substr(cut)});
    EXPECT_EQ(r.kind, waf::verdict_kind::block) << cut;
    EXPECT_EQ(r.ids, std::vector<uint32_t>{40});
  }
  EXPECT_EQ(waf_test::run1(*e, form("bad+name=1")).ids, std::vector<uint32_t>{41});
  EXPECT_EQ(waf_test::run1(*e, form("q=evil7", "text/plain")).kind, waf::verdict_kind::pass)
      << "only urlencoded bodies are parsed into arguments";
  EXPECT_EQ(waf_test::run1(*e, form("q=evilX&r=7")).kind, waf::verdict_kind::pass);
}

}  // namespace
