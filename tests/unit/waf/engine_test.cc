// Operators, targets, chains, scoring, policy and verdicts through the real compiler and inspector.
#include <algorithm>

#include <gtest/gtest.h>

#include "engine_fixture.hh"

namespace {

using waf::verdict_kind;
using waf_test::make_engine;
using waf_test::run;
using waf_test::run1;

std::string get(const std::string& target, const std::string& extra_headers = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: test\r\n" + extra_headers + "\r\n";
}

std::string one_rule(const std::string& body) {
  return "rules:\n  - id: 1\n    action: block\n" + body;
}

struct op_case {
  const char* name;
  std::string rule;  // YAML lines after id/action
  std::string hit, miss;
};

class operators : public ::testing::TestWithParam<op_case> {};

TEST_P(operators, hit_blocks_and_miss_passes) {
  const auto& c = GetParam();
  auto e = make_engine(one_rule(c.rule));
  ASSERT_TRUE(e);
  auto h = run1(*e, c.hit);
  EXPECT_EQ(h.kind, verdict_kind::block) << c.name;
  EXPECT_EQ(h.status, 403);
  EXPECT_EQ(h.ids, std::vector<uint32_t>{1});
  auto m = run1(*e, c.miss);
  EXPECT_EQ(m.kind, verdict_kind::pass) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    all, operators,
    ::testing::Values(
        op_case{"rx", "    phase: args\n    pattern: \"a+b\"\n", get("/?x=zaaab"), get("/?x=zb")},
        op_case{"rx_caseless", "    phase: args\n    pattern: \"select\"\n    caseless: true\n",
                get("/?x=SeLeCt"), get("/?x=selec")},
        op_case{"pm", "    phase: args\n    operator: pm\n    patterns: [foo, bar]\n",
                get("/?x=zzbarzz"), get("/?x=fo")},
        op_case{"contains", "    phase: uri\n    operator: contains\n    pattern: \"a.b\"\n",
                get("/xa.by"), get("/xaxb")},
        op_case{"begins_with",
                "    phase: uri_path\n    operator: begins_with\n    pattern: /admin\n",
                get("/admin/x"), get("/x/admin")},
        op_case{"ends_with", "    phase: uri_path\n    operator: ends_with\n    pattern: .php\n",
                get("/a.php"), get("/a.php/x")},
        op_case{"streq", "    phase: method\n    operator: streq\n    pattern: TRACE\n",
                "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", "TRACEX / HTTP/1.1\r\nHost: a\r\n\r\n"},
        op_case{"within",
                "    phase: method\n    operator: within\n    pattern: \"DELETE PURGE\"\n",
                "PURGE / HTTP/1.1\r\nHost: a\r\n\r\n", get("/")},
        op_case{"not_within",
                "    phase: method\n    operator: within\n    negate: true\n    pattern: \"GET "
                "HEAD\"\n",
                "PUT / HTTP/1.1\r\nHost: a\r\n\r\n", get("/")},
        op_case{"header_by_name", "    phase: header:user-agent\n    pattern: sqlmap\n",
                get("/", "User-Agent: sqlmap/1\r\n"), get("/", "X-Other: sqlmap\r\n")},
        op_case{"header_names",
                "    phase: header_names\n    operator: streq\n    pattern: x-evil\n    "
                "transforms: [lowercase]\n",
                get("/", "X-Evil: 1\r\n"), get("/", "X-Good: x-evil\r\n")},
        op_case{"cookies", "    phase: cookies:session\n    pattern: \"^evil\"\n",
                get("/", "Cookie: a=1; session=evil\r\n"),
                get("/", "Cookie: evil=1; session=ok\r\n")},
        op_case{"cookie_names",
                "    phase: cookie_names\n    operator: streq\n    pattern: debug\n",
                get("/", "Cookie: a=1; debug=1\r\n"), get("/", "Cookie: a=debug\r\n")},
        op_case{"arg_names", "    phase: arg_names\n    operator: contains\n    pattern: \"[\"\n",
                get("/?a%5B0%5D=1"), get("/?a=%5B")},
        op_case{"query_string",
                "    phase: query_string\n    operator: contains\n    pattern: \"%00\"\n",
                get("/?a=%00"), get("/?a=00")},
        op_case{"request_line", "    phase: request_line\n    pattern: \"HTTP/1\\\\.0$\"\n",
                "GET / HTTP/1.0\r\n\r\n", get("/")},
        op_case{"protocol", "    phase: protocol\n    operator: streq\n    pattern: HTTP/1.0\n",
                "GET / HTTP/1.0\r\n\r\n", get("/")},
        op_case{"exclude_field", "    phase: args\n    exclude: [token]\n    pattern: evil\n",
                get("/?q=evil"), get("/?token=evil")},
        op_case{"transform_pipeline",
                "    phase: args\n    pattern: \"<script>\"\n    transforms: [html_entity_decode, "
                "lowercase]\n",
                get("/?x=%26lt;SCRIPT%26gt;"), get("/?x=script")},
        op_case{"prefilter_backreference", "    phase: args\n    pattern: \"(['\\\"])x\\\\1\"\n",
                get("/?a='x'"), get("/?a='x%22")},
        op_case{"prefilter_lookahead", "    phase: args\n    pattern: \"foo(?!bar)\"\n",
                get("/?a=foobaz"), get("/?a=foobar")}));

TEST(engine, prefilter_patterns_are_counted_and_confirmed) {
  auto e = make_engine(one_rule("    phase: args\n    pattern: \"foo(?!bar)\"\n"));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pol->rules().stats().prefiltered, 1u);
  run1(*e, get("/?a=foobar"));
  EXPECT_EQ(e->st.prefilter_rejected.get(), 1u);
  run1(*e, get("/?a=foox"));
  EXPECT_EQ(e->st.prefilter_confirmed.get(), 1u);
}

TEST(engine, stream_target_refuses_pattern_needing_confirm) {
  auto rs =
      rules::parse_rule_file(one_rule("    phase: body\n    pattern: \"(a)\\\\1\"\n"), "r.yaml");
  ASSERT_TRUE(rs);
  auto c = waf::ruleset::compile(std::move(*rs));
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().str().find("r.yaml:2:5: rule 1: pattern rejected by Hyperscan"),
            std::string::npos)
      << c.error().str();
  EXPECT_NE(c.error().str().find("stream target"), std::string::npos);
}

TEST(engine, chain_needs_every_condition) {
  auto e =
      make_engine(one_rule("    phase: method\n    operator: streq\n    pattern: POST\n    "
                           "chain:\n      - phase: uri_path\n"
                           "        operator: begins_with\n        pattern: /admin\n"));
  ASSERT_TRUE(e);
  EXPECT_EQ(run1(*e, "POST /admin HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").kind,
            verdict_kind::block);
  EXPECT_EQ(run1(*e, "POST /user HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").kind,
            verdict_kind::pass);
  EXPECT_EQ(run1(*e, get("/admin")).kind, verdict_kind::pass);
}

TEST(engine, negated_chain_condition_needs_the_field_present) {
  auto e =
      make_engine(one_rule("    phase: uri_path\n    operator: begins_with\n    pattern: /api\n    "
                           "chain:\n      - phase: header:content-type\n"
                           "        pattern: json\n        negate: true\n"));
  ASSERT_TRUE(e);
  EXPECT_EQ(run1(*e, get("/api", "Content-Type: text/xml\r\n")).kind, verdict_kind::block);
  EXPECT_EQ(run1(*e, get("/api", "Content-Type: application/json\r\n")).kind, verdict_kind::pass);
  EXPECT_EQ(run1(*e, get("/api")).kind, verdict_kind::pass)
      << "absent field: no match, as ModSecurity";
}

const char* scoring_rules = R"(set: s
rules:
  - id: 10
    phase: args
    pattern: aaa
    score: 3
  - id: 11
    phase: args
    pattern: bbb
    score: 3
  - id: 12
    phase: args
    pattern: logme
    action: log
  - id: 13
    phase: args
    pattern: deep
    paranoia: 2
    score: 5
)";

TEST(engine, anomaly_score_reaches_threshold) {
  auto e = make_engine(scoring_rules);
  ASSERT_TRUE(e);
  auto one = run1(*e, get("/?x=aaa"));
  EXPECT_EQ(one.kind, verdict_kind::detect);
  EXPECT_EQ(one.score, 3);
  auto both = run1(*e, get("/?x=aaa&y=bbb"));
  EXPECT_EQ(both.kind, verdict_kind::block);
  EXPECT_EQ(both.score, 6);
  EXPECT_EQ(both.ids, (std::vector<uint32_t>{10, 11}));
  auto log = run1(*e, get("/?x=logme"));
  EXPECT_EQ(log.kind, verdict_kind::detect);
  EXPECT_EQ(log.score, 0);
  EXPECT_EQ(run1(*e, get("/?x=deep")).kind, verdict_kind::pass) << "paranoia 2 rule off at level 1";
}

TEST(engine, paranoia_and_threshold_from_policy) {
  waf::policy p;
  p.paranoia = 2;
  p.anomaly_threshold = 10;
  auto e = make_engine(scoring_rules, p);
  ASSERT_TRUE(e);
  auto r = run1(*e, get("/?x=deep&y=aaa"));
  EXPECT_EQ(r.kind, verdict_kind::detect);
  EXPECT_EQ(r.score, 8);
  EXPECT_EQ(run1(*e, get("/?x=deep&y=aaa&z=bbb")).kind, verdict_kind::block);
}

TEST(engine, detect_only_never_blocks) {
  waf::policy p;
  p.detect_only = true;
  auto e = make_engine(scoring_rules, p);
  ASSERT_TRUE(e);
  auto r = run1(*e, get("/?x=aaa&y=bbb"));
  EXPECT_EQ(r.kind, verdict_kind::detect);
  EXPECT_EQ(r.ids, (std::vector<uint32_t>{10, 11}));
  EXPECT_EQ(r.forwarded, get("/?x=aaa&y=bbb"));
  EXPECT_EQ(e->st.detected.get(), 1u);
  EXPECT_EQ(e->st.blocked_rules.get(), 0u);
}

TEST(engine, rule_sets_select_rules) {
  waf::policy p;
  p.rule_sets = {"other"};
  auto rs = rules::parse_rule_file(scoring_rules, "s.yaml");
  ASSERT_TRUE(rs);
  auto c = waf::ruleset::compile(std::move(*rs));
  ASSERT_TRUE(c);
  auto b = waf::bound_policy::bind(*c, p);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().str().find("unknown rule set 'other'"), std::string::npos);
  p.rule_sets = {"s"};
  EXPECT_TRUE(waf::bound_policy::bind(*c, p));
}

TEST(engine, exclusions_by_path_and_by_argument) {
  waf::policy p;
  p.exclusions.push_back({{10}, "/upload", ""});
  p.exclusions.push_back({{11}, "", "comment"});
  auto e = make_engine(scoring_rules, p);
  ASSERT_TRUE(e);
  EXPECT_EQ(run1(*e, get("/upload/x?x=aaa")).kind, verdict_kind::pass);
  EXPECT_EQ(run1(*e, get("/other?x=aaa")).kind, verdict_kind::detect);
  EXPECT_EQ(run1(*e, get("/?comment=bbb")).kind, verdict_kind::pass);
  EXPECT_EQ(run1(*e, get("/?title=bbb")).kind, verdict_kind::detect);
  waf::policy bad;
  bad.exclusions.push_back({{999}, "", ""});
  auto rs = rules::parse_rule_file(scoring_rules, "s.yaml");
  auto c = waf::ruleset::compile(std::move(*rs));
  auto b = waf::bound_policy::bind(*c, bad);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().str().find("unknown rule id 999"), std::string::npos);
}

TEST(engine, parse_errors_block_with_400_and_are_counted) {
  auto e = make_engine(scoring_rules);
  ASSERT_TRUE(e);
  auto r = run1(
      *e, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(r.kind, verdict_kind::block);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.perr, waf::http_error::content_length_and_transfer_encoding);
  EXPECT_EQ(e->st.blocked_parse.get(), 1u);
  EXPECT_EQ(e->st.parse_errors[size_t(waf::http_error::content_length_and_transfer_encoding)].get(),
            1u);
  auto t = run(*e, {"GET / HTTP/1.1\r\nHost"});
  EXPECT_EQ(t.status, 400);
  EXPECT_EQ(t.perr, waf::http_error::truncated);
}

TEST(engine, pipelined_requests_each_get_a_verdict) {
  auto e = make_engine(scoring_rules);
  ASSERT_TRUE(e);
  std::string two =
      "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz" + get("/?x=aaa&y=bbb");
  auto r = run1(*e, two);
  EXPECT_EQ(r.requests, 2u);
  EXPECT_EQ(r.kind, verdict_kind::block);
  EXPECT_EQ(r.forwarded, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz");
}

TEST(engine, block_response_names_the_request) {
  char buf[256];
  size_t n = waf::format_block_response(403, "req-42", buf);
  std::string s(buf, n);
  EXPECT_TRUE(s.starts_with("HTTP/1.1 403 Forbidden\r\n")) << s;
  EXPECT_NE(s.find("X-Request-Id: req-42\r\n"), std::string::npos);
  EXPECT_NE(s.find("Connection: close\r\n"), std::string::npos);
  EXPECT_TRUE(s.ends_with("403 Forbidden: request req-42\n"));
  auto cl = s.find("Content-Length: ");
  EXPECT_EQ(std::stoul(s.substr(cl + 16)), s.size() - s.find("\r\n\r\n") - 4);
  char small[16];
  EXPECT_EQ(waf::format_block_response(403, "req-42", small), 0u);
}

TEST(engine, audit_json_names_rule_field_and_excerpt) {
  auto e = make_engine(one_rule(
      "    phase: args\n    pattern: \"union\\\\s+select\"\n    transforms: [url_decode]\n"));
  ASSERT_TRUE(e);
  auto in = waf::inspector::create(e->pol, *e->ws);
  ASSERT_TRUE(in);
  std::string req = get("/?id=1%20union%20select%201");
  auto v = (*in)->feed(*e->ws, e->st, req);
  ASSERT_EQ(v.kind, verdict_kind::block);
  auto m = (*in)->matches();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].field_name(), "id");
  EXPECT_EQ(m[0].excerpt_text(), "1 union select");
  EXPECT_TRUE(m[0].blocking);
  std::string j = waf::audit_json(**in, v, "r1");
  EXPECT_NE(j.find("\"rule_ids\":[1]"), std::string::npos) << j;
  EXPECT_NE(j.find("\"field\":\"id\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"verdict\":\"block\""), std::string::npos) << j;
}

}  // namespace

// Block groups (one per transformation pipeline) share a scan when their pipelines make the same
// value of a field; a match counts only for the groups whose pipelines made the value it was found
// in, never for a group that made another value of the field or does not read it at all.
TEST(engine, shared_scans_count_a_match_only_for_the_groups_that_made_the_value) {
  auto rule = [](int id, const std::string& phase, const std::string& transforms) {
    return "  - id: " + std::to_string(id) + "\n    action: block\n    phase: " + phase +
           "\n    pattern: abc\n" +
           (transforms.empty() ? "" : "    transforms: " + transforms + "\n");
  };
  auto e = make_engine("rules:\n" + rule(1, "args", "[lowercase]") + rule(2, "args", "") +
                       rule(3, "args", "[url_decode]") + rule(4, "header:x-probe", "") +
                       rule(5, "header:x-probe", "[lowercase]"));
  ASSERT_TRUE(e);
  using ids = std::vector<uint32_t>;
  auto fired = [&](const std::string& req) {
    auto o = run1(*e, req);
    std::sort(o.ids.begin(), o.ids.end());
    return o.ids;
  };
  EXPECT_EQ(fired(get("/?q=ABC")), (ids{1}));
  EXPECT_EQ(fired(get("/?q=abc")), (ids{1, 2, 3}));
  EXPECT_EQ(fired(get("/?q=a%2562c")), (ids{3})) << "args are decoded once; rule 3 decodes again";
  EXPECT_EQ(fired(get("/?q=x", "X-Probe: xABCx\r\n")), (ids{5}));
  EXPECT_EQ(fired(get("/?q=x", "X-Probe: abc\r\n")), (ids{4, 5}));
  EXPECT_EQ(fired(get("/?q=x", "X-Other: abc\r\n")), ids{}) << "no group reads X-Other";
  EXPECT_EQ(fired(get("/?abc=1", "X-Probe: ABC\r\n")), (ids{5})) << "names are not args";
}

// The same with values large enough that the worker's arena fills and flushes in the middle of a
// field (five distinct values of 90-120 KiB), and a pipeline longer than the kept prefix levels.
TEST(engine, shared_scans_attribute_matches_across_arena_flushes_and_long_pipelines) {
  auto rule = [](int id, const std::string& pattern, const std::string& transforms) {
    return "  - id: " + std::to_string(id) + "\n    action: block\n    phase: args\n" +
           "    pattern: \"" + pattern + "\"\n" +
           (transforms.empty() ? "" : "    transforms: " + transforms + "\n");
  };
  waf::policy p;
  p.detect_only = true;                 // every rule that holds is listed
  p.body.max_value_bytes = 124 * 1024;  // the most a policy allows
  auto e = make_engine(
      "rules:\n" + rule(1, "Ab  Ab", "") + rule(2, "ab  ab", "[lowercase]") +
          rule(4, "AbAbEVILx", "[remove_whitespace]") + rule(5, "Ab Ab", "[compress_whitespace]") +
          rule(6, "ababevilx",
               "[trim, lowercase, remove_nulls, compress_whitespace, trim, lowercase, "
               "remove_whitespace]") +
          rule(7, "ababevilx", "[lowercase, remove_whitespace]") + rule(8, "NOPE", "") +
          rule(9, "Ab  Ab", "[lowercase]") + rule(10, "ab  ab", "[remove_whitespace]"),
      p);
  ASSERT_TRUE(e);
  std::string v;
  while (v.size() < 120 * 1024) v += "Ab  ";
  v += "EVIL x";
  const std::string body = "a=" + v;
  auto o = run1(*e,
                "POST /f HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded"
                "\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body);
  std::sort(o.ids.begin(), o.ids.end());
  EXPECT_EQ(o.ids, (std::vector<uint32_t>{1, 2, 4, 5, 6, 7}));
}

// The compile memo: a rule added in front of 200 others (every entry index moves) recompiles the
// chunk it lands in, and shares the other block databases with the running set; both sets still
// match what they hold.
TEST(engine, a_changed_rule_recompiles_only_its_own_chunk) {
  std::string many = "rules:\n";
  for (int i = 1; i <= 200; ++i)
    many += "  - id: " + std::to_string(i) + "\n    action: block\n    phase: args\n" +
            "    pattern: \"tok" + std::to_string(i) + "x\"\n";
  const std::string added =
      "  - id: 9999\n    action: block\n    phase: args\n    pattern: \"newtokx\"\n";
  auto rules_of = [](const std::string& yaml) {
    auto rs = rules::parse_rule_file(yaml, "test.yaml");
    EXPECT_TRUE(rs.has_value()) << (rs ? "" : rs.error().str());
    return rs ? *rs : std::vector<waf::rule>{};
  };
  auto a = waf::ruleset::compile(rules_of(many));
  ASSERT_TRUE(a.has_value()) << a.error().str();
  auto b = waf::ruleset::compile(rules_of("rules:\n" + added + many.substr(7)));
  ASSERT_TRUE(b.has_value()) << b.error().str();
  ASSERT_GE((*a)->block_dbs().size(), 4u) << "200 entries make several chunks";
  size_t fresh = 0;
  for (const auto& db : (*b)->block_dbs()) {
    bool shared = false;
    for (const auto& old : (*a)->block_dbs()) shared = shared || old == db;
    fresh += !shared;
  }
  EXPECT_GE(fresh, 1u);
  EXPECT_LE(fresh, 2u) << "of " << (*b)->block_dbs().size();
  auto again = waf::ruleset::compile(rules_of(many));
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(std::equal((*a)->block_dbs().begin(), (*a)->block_dbs().end(),
                         (*again)->block_dbs().begin(), (*again)->block_dbs().end()))
      << "the same rules compiled again share every database";

  auto eb = make_engine(rules_of("rules:\n" + added + many.substr(7)));
  ASSERT_TRUE(eb);
  for (int i : {1, 57, 133, 200}) {
    auto o = run1(*eb, get("/?q=tok" + std::to_string(i) + "x"));
    EXPECT_EQ(o.ids, std::vector<uint32_t>{static_cast<uint32_t>(i)});
  }
  EXPECT_EQ(run1(*eb, get("/?q=newtokx")).ids, std::vector<uint32_t>{9999});
  EXPECT_TRUE(run1(*eb, get("/?q=tok0x")).ids.empty());
}

// A set whose database the memo gives back (the same rules compiled again) still confirms its
// prefiltered patterns: a backreference, which Hyperscan's prefilter mode approximates, is
// checked by PCRE2 in both sets.
TEST(engine, a_database_from_the_memo_still_confirms_prefiltered_patterns) {
  const std::string yaml =
      "rules:\n  - id: 1\n    action: block\n    phase: args\n    pattern: \"(ab|cd)x\\\\1\"\n";
  auto first = make_engine(yaml);
  ASSERT_TRUE(first);
  auto second = make_engine(yaml);
  ASSERT_TRUE(second);
  ASSERT_EQ(first->pol->rules().block_dbs().size(), 1u);
  EXPECT_EQ(first->pol->rules().block_dbs()[0], second->pol->rules().block_dbs()[0]);
  EXPECT_EQ(second->pol->rules().stats().prefiltered, 1u);
  for (auto* e : {first.get(), second.get()}) {
    EXPECT_EQ(run1(*e, get("/?q=abxab")).ids, std::vector<uint32_t>{1});
    EXPECT_TRUE(run1(*e, get("/?q=abxcd")).ids.empty()) << "the confirm refuses what \\1 does not";
  }
}
