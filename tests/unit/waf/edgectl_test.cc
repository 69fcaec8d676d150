// `edgectl rules check` and `edgectl waf eval` (edge/edgectl_waf.cc) as an operator runs them.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "edgectl_waf.hh"

#ifndef RULES_SHIPPED_DIR
#error "RULES_SHIPPED_DIR must name rules/shipped"
#endif

namespace fs = std::filesystem;

namespace {

struct result {
  int rc;
  std::string out, err;
};

result call(int (*fn)(int, char**), std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  int rc = fn(static_cast<int>(args.size()), argv.data());
  std::cout.flush();
  std::fflush(stdout);
  std::fflush(stderr);
  return {rc, testing::internal::GetCapturedStdout(), testing::internal::GetCapturedStderr()};
}

class edgectl : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("edgectl-waf-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    auto p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
  fs::path dir_;
};

TEST_F(edgectl, rules_check_reports_counts) {
  auto r = call(edgectl_rules_main, {"check", RULES_SHIPPED_DIR});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("ok: 6 files, 20 rules (20 from YAML, 0 imported, 0 skipped)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("compiled: "), std::string::npos);
}

TEST_F(edgectl, rules_check_names_file_line_and_rule) {
  std::string f =
      write("bad/x.yaml", "rules:\n  - id: 42\n    phase: args\n    pattern: \"(unclosed\"\n");
  auto r = call(edgectl_rules_main, {"check", (dir_ / "bad").string()});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find(f + ":2:5: rule 42: pattern rejected by Hyperscan"), std::string::npos)
      << r.err;
}

TEST_F(edgectl, rules_check_lists_skipped_secrules) {
  write("crs/r.conf",
        "SecRule ARGS \"@rx evil\" \"id:1,phase:2,block,setvar:'tx.anomaly_score_pl1=+5'\"\n"
        "SecRule REMOTE_ADDR \"@rbl sbl.example\" \"id:2,phase:2,deny\"\n"
        "SecRule RESPONSE_BODY \"@rx x\" \"id:3,phase:4,deny\"\n");
  auto r = call(edgectl_rules_main, {"check", (dir_ / "crs").string(), "--list-skipped"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("1 imported, 2 skipped"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("r.conf:2 rule 2: operator @rbl not supported"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("r.conf:3 rule 3: response phase"), std::string::npos) << r.out;
}

TEST_F(edgectl, waf_eval_prints_one_json_line_per_request) {
  std::string sqli =
      write("sqli.http", "GET /p?id=1%27%20union%20select%201 HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string ok =
      write("ok.http", "GET /p?id=7 HTTP/1.1\r\nHost: a\r\n\r\nGET /q HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string bad = write("bad.http", "GET / HTTP/1.1\nHost: a\n\n");
  auto r = call(edgectl_waf_main, {"eval", "--rules", RULES_SHIPPED_DIR, sqli, ok, bad});
  EXPECT_EQ(r.rc, 0) << r.err;
  std::vector<std::string> lines;
  for (size_t s = 0, e; (e = r.out.find('\n', s)) != std::string::npos; s = e + 1)
    lines.push_back(r.out.substr(s, e - s));
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_NE(lines[0].find("\"verdict\":\"block\",\"status\":403"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"rule_ids\":[100100]"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"anomaly_score\":5"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"verdict\":\"pass\""), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find("ok.http#1"), std::string::npos) << "pipelined second request";
  EXPECT_NE(lines[3].find("\"status\":400,\"parse_error\":\"bare_lf\""), std::string::npos)
      << lines[3];
}

TEST_F(edgectl, waf_eval_detect_only_and_jsonl) {
  // {"id":"a","request":base64("GET /?q=<script> ...")}
  std::string jl = write(
      "reqs.jsonl",
      "{\"id\":\"a\",\"request\":\"R0VUIC8/cT0lM0NzY3JpcHQlM0UgSFRUUC8xLjENCkhvc3Q6IGENCg0K\"}\n");
  auto r = call(edgectl_waf_main,
                {"eval", "--rules", RULES_SHIPPED_DIR, "--detect-only", "--jsonl", jl});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("\"request_id\":\"a\",\"verdict\":\"detect\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"rule_ids\":[100200]"), std::string::npos) << r.out;
  std::string broken = write("broken.jsonl", "not json\n");
  auto b = call(edgectl_waf_main, {"eval", "--rules", RULES_SHIPPED_DIR, "--jsonl", broken});
  EXPECT_EQ(b.rc, 1);
  EXPECT_NE(b.err.find("broken.jsonl:1"), std::string::npos) << b.err;
}

TEST_F(edgectl, usage_errors) {
  EXPECT_EQ(call(edgectl_waf_main, {"eval"}).rc, 2);
  EXPECT_EQ(
      call(edgectl_waf_main, {"eval", "--rules", RULES_SHIPPED_DIR, "--paranoia", "x", "f"}).rc, 2);
  EXPECT_EQ(call(edgectl_rules_main, {"lint", "d"}).rc, 2);
}

}  // namespace
