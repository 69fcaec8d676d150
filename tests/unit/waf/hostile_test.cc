// Hostile input against the engine (issue 10): PCRE2 confirm errors fail closed, path exclusions
// match the normalised path at a segment boundary, fields without '=' are scanned by name, and
// engine errors block with a counted outcome.
#include <gtest/gtest.h>

#include <string>

#include "engine_fixture.hh"

namespace {

using waf::verdict_kind;
using waf_test::make_engine;
using waf_test::run1;

std::string get(const std::string& target, const std::string& extra_headers = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: test\r\n" + extra_headers + "\r\n";
}

std::string repeat(std::string_view unit, size_t n) {
  std::string s;
  s.reserve(unit.size() * n);
  for (size_t i = 0; i < n; ++i) s += unit;
  return s;
}

waf::policy big_heads() {
  waf::policy p;
  p.limits.max_request_line = 65536;
  p.limits.max_head_bytes = 65536;
  return p;
}

// Backreferences make Hyperscan take these only in prefilter mode: PCRE2 confirms each match. The
// padding drives PCRE2 into its JIT stack limit or its match limit; before the fix that error was
// read as "no match" and the attack passed.
struct backtrack_case {
  const char* name;
  const char* pattern;  // YAML double-quoted
  std::string attack;   // argument value carrying the payload behind padding
  std::string clean;    // a value Hyperscan does not match: PCRE2 never runs
};

class backtracking : public ::testing::TestWithParam<backtrack_case> {};

TEST_P(backtracking, padded_payload_still_blocks_and_the_error_is_counted) {
  const auto& c = GetParam();
  auto e = make_engine(
      std::string("rules:\n  - id: 7\n    action: block\n    phase: args\n    pattern: \"") +
          c.pattern + "\"\n",
      big_heads());
  ASSERT_TRUE(e);
  ASSERT_EQ(e->pol->rules().stats().prefiltered, 1u) << c.name;
  auto o = run1(*e, get("/?q=" + c.attack));
  EXPECT_EQ(o.kind, verdict_kind::block) << c.name;
  EXPECT_EQ(o.status, 403) << c.name;
  EXPECT_EQ(o.ids, std::vector<uint32_t>{7}) << c.name;
  EXPECT_GE(e->st.confirm_errors.get(), 1u) << c.name;
  EXPECT_EQ(e->st.prefilter_rejected.get(), 0u) << c.name;
  // The same rule still passes a clean request.
  auto clean = run1(*e, get("/?q=" + c.clean));
  EXPECT_EQ(clean.kind, verdict_kind::pass) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    all, backtracking,
    ::testing::Values(backtrack_case{"jit_stack", "(?:(a)|b)*\\\\1evil",
                                     repeat("ab", 20000) + "aevil", repeat("ab", 100)},
                      backtrack_case{"match_limit", "(\\\\w+\\\\s?)*\\\\1$",
                                     repeat("aaaa+", 24) + "!", repeat("-", 100)}),
    [](const auto& i) { return std::string(i.param.name); });

TEST(hostile, confirm_error_in_detect_only_is_a_detection_with_the_rule) {
  waf::policy p = big_heads();
  p.detect_only = true;
  auto e = make_engine(
      "rules:\n  - id: 7\n    action: block\n    phase: args\n    pattern: "
      "\"(?:(a)|b)*\\\\1evil\"\n",
      p);
  ASSERT_TRUE(e);
  auto in = waf::inspector::create(e->pol, *e->ws);
  ASSERT_TRUE(in);
  std::string req = get("/?q=" + repeat("ab", 20000) + "aevil");
  auto v = (*in)->feed(*e->ws, e->st, req);
  EXPECT_EQ(v.kind, verdict_kind::detect);
  ASSERT_EQ((*in)->matches().size(), 1u);
  EXPECT_EQ((*in)->matches()[0].rule_id, 7u);
  EXPECT_TRUE((*in)->matches()[0].confirm_error);
  std::string j = waf::audit_json(**in, v, "r1");
  EXPECT_NE(j.find("\"confirm_error\":true"), std::string::npos) << j;
}

// Exclusion of rule 10 under /search: the path is percent-decoded, `;` parameters are read both as
// Tomcat/Spring strip them and as literal bytes, dot segments resolved, repeated slashes collapsed
// or kept (the exclusion must hold both ways), and the prefix must end at a segment boundary. An
// ambiguous path (encoded '/' or
// '\', bad escape) gets no exclusion.
struct excl_case {
  const char* path;
  bool excluded;
};

class exclusion_paths : public ::testing::TestWithParam<excl_case> {};

TEST_P(exclusion_paths, match_the_normalised_path_at_a_segment_boundary) {
  const auto& c = GetParam();
  waf::policy p;
  p.exclusions.push_back({{10}, "/search", ""});
  auto e = make_engine(
      "rules:\n  - id: 10\n    action: block\n    phase: args\n    pattern: attack\n", p);
  ASSERT_TRUE(e);
  auto o = run1(*e, get(std::string(c.path) + "?x=attack"));
  EXPECT_EQ(o.kind, c.excluded ? verdict_kind::pass : verdict_kind::block) << c.path;
}

INSTANTIATE_TEST_SUITE_P(
    all, exclusion_paths,
    ::testing::Values(
        excl_case{"/search", true}, excl_case{"/search/", true}, excl_case{"/search/x", true},
        excl_case{"/search/a/../b", true}, excl_case{"/search/./x", true},
        excl_case{"/%73earch/x", true}, excl_case{"/search//x", true},
        excl_case{"//search//x", false}, excl_case{"/searchXYZ", false},
        excl_case{"/searchXYZ/x", false}, excl_case{"/search/..;/login", false},
        excl_case{"/search/..;x=1/login", false}, excl_case{"/search/%2e%2e/login", false},
        excl_case{"/search/%2E%2e;/login", false}, excl_case{"/search/.%2e/login", false},
        excl_case{"/search%2f..%2flogin", false}, excl_case{"/search%2Fx", false},
        excl_case{"/search/..%2flogin", false}, excl_case{"/search/..\\login", false},
        excl_case{"/search/%5c..%5clogin", false}, excl_case{"/search/%zz", false},
        excl_case{"/search/x%", false}, excl_case{"/search//../login", false},
        excl_case{"/x//../search/y", false}, excl_case{"/search;a=b/x", false},
        excl_case{"/login/../search", true}, excl_case{"/search/..", false}, excl_case{"/", false},
        excl_case{"/other", false}));

TEST(hostile, exclusion_prefix_is_normalised_too) {
  waf::policy p;
  p.exclusions.push_back({{10}, "/search/", ""});
  auto e = make_engine(
      "rules:\n  - id: 10\n    action: block\n    phase: args\n    pattern: attack\n", p);
  ASSERT_TRUE(e);
  EXPECT_EQ(run1(*e, get("/search?x=attack")).kind, verdict_kind::pass);
  EXPECT_EQ(run1(*e, get("/search/y?x=attack")).kind, verdict_kind::pass);
  EXPECT_EQ(run1(*e, get("/searchy?x=attack")).kind, verdict_kind::block);
}

TEST(hostile, normalize_path_table) {
  struct row {
    const char* raw;
    waf::path_params pp;
    bool merge;
    const char* want;  // nullptr: ambiguous
  } rows[] = {
      {"/a/b", waf::path_params::strip, true, "/a/b"},
      {"/a/../b", waf::path_params::strip, true, "/b"},
      {"/../../b", waf::path_params::strip, true, "/b"},
      {"/a/..;/b", waf::path_params::strip, true, "/b"},
      {"/a/..;/b", waf::path_params::keep, true, "/a/..;/b"},
      {"/a;x=1/b;y", waf::path_params::strip, true, "/a/b"},
      {"/a//b", waf::path_params::strip, true, "/a/b"},
      {"/a//b", waf::path_params::keep, false, "/a//b"},
      {"/a//../b", waf::path_params::keep, false, "/a/b"},
      {"/%61/%2E%2e/b", waf::path_params::keep, true, "/b"},
      {"/a/", waf::path_params::keep, true, "/a/"},
      {"/a/.", waf::path_params::keep, true, "/a/"},
      {"/a%2fb", waf::path_params::keep, true, nullptr},
      {"/a%5cb", waf::path_params::keep, true, nullptr},
      {"/a\\b", waf::path_params::keep, true, nullptr},
      {"/a%00b", waf::path_params::keep, true, nullptr},
      {"/a%g0", waf::path_params::keep, true, nullptr},
      {"/a%", waf::path_params::keep, true, nullptr},
      {"a/b", waf::path_params::keep, true, nullptr},
      {"", waf::path_params::keep, true, nullptr},
  };
  for (const auto& r : rows) {
    char out[64];
    auto n = waf::normalize_path(r.raw, r.pp, r.merge, out);
    if (!r.want) {
      EXPECT_FALSE(n) << r.raw;
      continue;
    }
    ASSERT_TRUE(n) << r.raw;
    EXPECT_EQ(std::string_view(out, *n), r.want) << r.raw;
  }
}

// Fields without '=' (a query argument or cookie that is only a name) are scanned by name and with
// an empty value; they used to memcpy from a null pointer (UBSan, found by libFuzzer).
TEST(hostile, query_argument_and_cookie_without_equals) {
  auto e = make_engine(
      "rules:\n"
      "  - id: 1\n    action: block\n    phase: arg_names\n    pattern: evilname\n"
      "  - id: 2\n    action: block\n    phase: cookie_names\n    pattern: badcookie\n");
  ASSERT_TRUE(e);
  EXPECT_EQ(run1(*e, get("/?evilname")).ids, std::vector<uint32_t>{1});
  EXPECT_EQ(run1(*e, get("/?a=1&evilname&b")).kind, verdict_kind::block);
  EXPECT_EQ(run1(*e, get("/", "Cookie: a=1; badcookie\r\n")).ids, std::vector<uint32_t>{2});
  EXPECT_EQ(run1(*e, get("/", "Cookie: badcookie\r\n")).kind, verdict_kind::block);
  EXPECT_EQ(run1(*e, get("/?plain&x", "Cookie: plain; y\r\n")).kind, verdict_kind::pass);
}

}  // namespace

namespace {

// A urlencoded form value longer than the room the inspector has for it was scanned as an
// argument only up to that room: padding put a payload out of reach of every args rule. Now the
// policy's body-limit action applies: reject (413, counted), or inspect_partial (counted).
TEST(hostile, form_value_beyond_the_argument_room_is_not_passed_silently) {
  const std::string rules =
      "rules:\n  - id: 5\n    action: block\n    phase: args\n    pattern: attack\n";
  const std::string body = "q=" + std::string(3000, 'A') + "attack";
  const std::string req =
      "POST /f HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  waf::policy p;
  p.limits.max_head_bytes = 1024;
  // The room for an argument is the policy's body.max_value_bytes now, not what the head left.
  p.body.max_value_bytes = 1024;
  auto e = make_engine(rules, p);
  ASSERT_TRUE(e);
  auto o = run1(*e, req);
  EXPECT_EQ(o.kind, verdict_kind::block);
  EXPECT_EQ(o.status, 413);
  EXPECT_EQ(e->st.form_truncated.get(), 1u);
  EXPECT_EQ(e->st.blocked_body_limit.get(), 1u);
  // A value that fits is still scanned whole.
  auto small =
      run1(*e,
           "POST /f HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
           "Content-Length: 14\r\n\r\nq=AAAAA+attack");
  EXPECT_EQ(small.kind, verdict_kind::block);
  EXPECT_EQ(small.status, 403);

  p.on_body_limit = waf::body_limit_action::inspect_partial;
  auto partial = make_engine(rules, p);
  ASSERT_TRUE(partial);
  EXPECT_EQ(run1(*partial, req).kind, verdict_kind::pass);
  EXPECT_EQ(partial->st.form_truncated.get(), 1u);
}

// A negated condition PCRE2 cannot decide holds (fail closed: the rule fires). Before, the error
// counted as a match of the pattern, which for `!@rx` means the rule never fired.
TEST(hostile, negated_confirm_error_fails_closed) {
  auto e = make_engine(
      "rules:\n  - id: 8\n    action: block\n    phase: uri_path\n    pattern: \"^/\"\n"
      "    chain:\n      - phase: args:q\n        negate: true\n"
      "        pattern: \"(\\\\w+\\\\s?)*\\\\1$\"\n",
      big_heads());
  ASSERT_TRUE(e);
  auto o = run1(*e, get("/?q=" + repeat("aaaa+", 24) + "!"));
  EXPECT_GE(e->st.confirm_errors.get(), 1u);
  EXPECT_EQ(o.kind, verdict_kind::block);
  EXPECT_EQ(o.ids, std::vector<uint32_t>{8});
  // A value the pattern matches (so the negated condition fails) passes.
  EXPECT_EQ(run1(*e, get("/?q=abab")).kind, verdict_kind::pass);
}

// capture + TX (condition::derive): a derived regex that PCRE2 cannot decide fails closed too,
// and a capture whose groups an attacker makes huge is cut at the buffer, not overflowed.
waf::rule capture_rule(uint32_t id, std::string derived_rx) {
  waf::rule r;
  r.id = id;
  r.act = waf::action::block;
  waf::condition cap;
  cap.selectors = {{waf::target::args, "q", {}}};
  cap.args = {"^x(.*)$"};
  waf::condition d;
  d.selectors = cap.selectors;
  d.derive = {{waf::value_part::kind::text, 0, "<"},
              {waf::value_part::kind::group, 1, {}},
              {waf::value_part::kind::text, 0, ">"}};
  d.args = {std::move(derived_rx)};
  r.conditions = {cap, d};
  return r;
}

TEST(hostile, derived_regex_error_fails_closed) {
  auto e = make_engine(std::vector<waf::rule>{capture_rule(9, "^<(\\w+\\s?)*\\1>$")}, big_heads());
  ASSERT_TRUE(e);
  auto o = run1(*e, get("/?q=x" + repeat("aaaa+", 24) + "!"));
  EXPECT_EQ(o.kind, verdict_kind::block);
  EXPECT_EQ(o.ids, std::vector<uint32_t>{9});
  EXPECT_GE(e->st.confirm_errors.get(), 1u);
  EXPECT_EQ(run1(*e, get("/?q=xab")).kind, verdict_kind::pass);
}

TEST(hostile, derived_value_is_bounded_by_the_scratch_buffer) {
  // The built value is "<" + the group three times + ">": with a 30,000-byte group the closing '>'
  // no longer fits in half the buffer and the rule (which wants it) does not fire; nothing
  // overflows (ASan builds check).
  waf::rule r = capture_rule(9, ">$");
  auto& parts = r.conditions[1].derive;
  parts.insert(parts.begin() + 1, 2, parts[1]);
  auto e = make_engine(std::vector<waf::rule>{r}, big_heads());
  ASSERT_TRUE(e);
  EXPECT_EQ(run1(*e, get("/?q=x" + repeat("a", 100))).kind, verdict_kind::block);
  static_assert(3 * 30000 > waf::worker_scratch::buffer_bytes / 2);
  auto o = run1(*e, get("/?q=x" + repeat("a", 30000)));
  EXPECT_EQ(o.perr, waf::http_error::none);
  EXPECT_EQ(o.kind, verdict_kind::pass);
}

TEST(hostile, derived_conditions_are_validated) {
  auto bad = [](std::vector<waf::rule> rs) { return !waf::ruleset::compile(std::move(rs)); };
  waf::rule first = capture_rule(1, "a");
  first.conditions.erase(first.conditions.begin());  // derived with nothing before it
  EXPECT_TRUE(bad({first}));
  waf::rule negated = capture_rule(2, "a");
  negated.conditions[0].negate = true;  // no captures from a negated condition
  EXPECT_TRUE(bad({negated}));
  waf::rule group = capture_rule(3, "a");
  group.conditions[1].derive[1].group = 10;  // TX:0..9 only
  EXPECT_TRUE(bad({group}));
  waf::rule operand = capture_rule(4, "a");
  operand.conditions[0].operand = {{waf::value_part::kind::header, 0, "host"}};  // not derived
  EXPECT_TRUE(bad({operand}));
  waf::rule rx_operand = capture_rule(5, "a");
  rx_operand.conditions[1].operand = {{waf::value_part::kind::header, 0, "host"}};
  EXPECT_TRUE(bad({rx_operand}));
  EXPECT_FALSE(bad({capture_rule(6, "a")}));
  waf::rule mm = capture_rule(7, "a");  // multi_match needs a plain condition
  mm.conditions[1].multi_match = true;
  EXPECT_TRUE(bad({mm}));
  mm.conditions[1] = mm.conditions[0];
  mm.conditions[1].multi_match = true;
  mm.conditions[1].negate = true;
  EXPECT_TRUE(bad({mm}));
  mm.conditions[1].negate = false;
  mm.conditions[1].transforms = {waf::transform::url_decode, waf::transform::lowercase};
  EXPECT_FALSE(bad({mm}));
}

}  // namespace
